"""The stages of ``datarl pipeline``, as one ordered table (:data:`STAGES`).

Each ``stage_<name>(cfg, ledger)`` returns ``(run, section, inputs)``: the function that does the work
(or None when the stage is not part of this pipeline), the config it depends on, and the files whose
contents it reads. ``run()`` returns ``(outputs, extra)``: the paths it wrote and facts to remember in
the ledger (e.g. the SFT policy's directory). :mod:`datarl.pipeline.run` runs them in order.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from typing import Any

from datarl.errors import ConfigError
from datarl.io import write_json, write_text
from datarl.pipeline.config import (
    SPLITS,
    PairsOptions,
    PipelineConfig,
    ReferencesOptions,
    data_path,
    raw_paths,
    router_mapping,
    section_options,
)
from datarl.pipeline.ledger import Ledger, fingerprint

__all__ = [
    "NO_SELECTION",
    "STAGES",
    "Stage",
    "policy_dir",
    "load_stage_policy",
    "train_config",
    "read_prompts",
    "judge_options",
    "judge_base",
]

Stage = tuple[Callable[[], tuple[list[str], dict[str, Any]]] | None, Any, list[str]]


def _tty() -> bool:
    return sys.stderr.isatty()


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def policy_dir(cfg: PipelineConfig, ledger: Ledger) -> str:
    """The SFT policy's directory: the ``sft`` stage's (embedded) or the configured one."""
    if cfg.policy == "tiny":
        return str(ledger.done["sft"]["policy_dir"])
    from datarl.rl.setup import resolve_policy

    return resolve_policy(cfg.policy, cfg.run_dir)


def load_stage_policy(cfg: PipelineConfig, ledger: Ledger) -> Any:
    """The SFT policy, loaded."""
    from datarl.models.loading import load_policy

    return load_policy(policy_dir(cfg, ledger))


def read_prompts(path: str) -> list[dict[str, Any]]:
    """Every record of a prompt file, as dicts (any bad line is an error)."""
    from datarl.records import read_all_records

    return [r.to_dict() for r in read_all_records(path)]


def _write(path: str, rows: list[dict[str, Any]]) -> None:
    from datarl.io import write_records

    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_records(path, rows)


def copy_into(src: str, dst: str) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)


# --- stages ------------------------------------------------------------------------------------


def stage_synth(cfg: PipelineConfig, ledger: Ledger) -> Stage:
    if not cfg.embedded:
        return None, None, []

    def run() -> tuple[list[str], dict[str, Any]]:
        from datarl.synth import SynthConfig, write_suite

        paths = write_suite(SynthConfig(seed=cfg.seed, **cfg.synth), cfg.path("suite"))
        return [paths[s] for s in SPLITS], {}

    return run, {"synth": dict(cfg.synth), "seed": cfg.seed}, []


def stage_sft(cfg: PipelineConfig, ledger: Ledger) -> Stage:
    if cfg.policy != "tiny":
        return None, None, []
    from datarl.models.sft import SFTConfig, build_sft_policy

    def run() -> tuple[list[str], dict[str, Any]]:
        path = build_sft_policy(log=lambda m: None)
        return [path], {"policy_dir": path}

    return run, {"sft": SFTConfig().digest()}, []


def stage_pairs(cfg: PipelineConfig, ledger: Ledger) -> Stage:
    opts: PairsOptions = section_options(PairsOptions, cfg.pairs, "pairs")
    section = dataclasses.asdict(opts)
    out = cfg.path("pairs.jsonl")
    if opts.file:

        def copy() -> tuple[list[str], dict[str, Any]]:
            copy_into(str(opts.file), out)
            return [out], {}

        return copy, section, [str(opts.file)]

    def run() -> tuple[list[str], dict[str, Any]]:
        from datarl.models.generate import JOB_BATCH_SIZE, SamplingConfig
        from datarl.models.loading import load_policy
        from datarl.preferences import make_pairs

        records = read_prompts(raw_paths(cfg)["train"])
        chosen = [r for t in opts.tasks for r in [x for x in records if x["task"] == t][: opts.per_task]]
        pairs = make_pairs(
            chosen,
            load_policy(policy_dir(cfg, ledger)),
            samples_per_prompt=opts.samples_per_prompt,
            label_noise=opts.label_noise,
            seed=cfg.seed,
            min_gold_gap=opts.min_gold_gap,
            sampling=SamplingConfig(max_new_tokens=opts.max_new_tokens, batch_size=JOB_BATCH_SIZE),
            progress=_tty(),
        )
        _write(out, pairs)
        return [out], {"pairs": len(pairs)}

    return run, section, [raw_paths(cfg)["train"]]


def stage_bt(cfg: PipelineConfig, ledger: Ledger) -> Stage:
    opts = dict(cfg.bt)
    tasks = opts.pop("tasks", ["general"])  # BT learns the general tasks' preferences by default

    def run() -> tuple[list[str], dict[str, Any]]:
        from datarl.models.bt_train import BTTrainConfig, train_bt
        from datarl.preferences import load_pairs

        pairs = [p for p in load_pairs(cfg.path("pairs.jsonl")) if p.get("task") in tasks]
        if not pairs:
            raise ConfigError(
                f"bt: no pairs of tasks {tasks} in {cfg.path('pairs.jsonl')}; "
                "add those tasks to pairs.tasks or change bt.tasks"
            )
        metrics = train_bt(
            pairs, policy_dir(cfg, ledger), cfg.path("bt"), BTTrainConfig(seed=cfg.seed, **opts), progress=_tty()
        )
        keep = {k: v for k, v in metrics.items() if k.startswith("eval/")}
        return [cfg.path("bt")], {"metrics": keep}

    return run, {**opts, "tasks": tasks}, [cfg.path("pairs.jsonl")]


GT_SAMPLES = 1200  # the embedded default's sampled math responses to training prompts (rtv.math labels them)


def judge_options(cfg: PipelineConfig) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The ``genrm:`` section as the stage reads it: the judge's training options (``GenRMTrainConfig``
    fields but the seed), the held-out options (``HeldoutConfig`` fields) and how many math responses to sample
    for ground-truth items (the embedded default's :data:`GT_SAMPLES` for the tiny policy, else none).
    ``base`` (the judge's own base model) is not among them: :func:`judge_base` reads it."""
    opts = dict(cfg.genrm)
    opts.pop("base", None)
    heldout_opts = dict(opts.pop("heldout", None) or {})
    gt_samples = int(opts.pop("gt_samples", GT_SAMPLES if cfg.policy == "tiny" else 0))
    return opts, heldout_opts, gt_samples


def judge_base(cfg: PipelineConfig) -> str | None:
    """``genrm.base``: the model the judge is trained from when it is not the policy (None: the policy)."""
    base = cfg.genrm.get("base")
    return str(base) if base else None


def stage_genrm(cfg: PipelineConfig, ledger: Ledger) -> Stage:
    opts, heldout_opts, gt_samples = judge_options(cfg)
    base = judge_base(cfg)
    # The held-out table needs gold checks (rtv.math, the rubric): the embedded suite's eval split.
    heldout_path = raw_paths(cfg)["eval"] if cfg.data is None else None
    train_path = raw_paths(cfg)["train"]

    def run() -> tuple[list[str], dict[str, Any]]:
        from datarl.models.genrm_build import build_judge
        from datarl.models.genrm_heldout import HeldoutConfig
        from datarl.models.genrm_train import GenRMTrainConfig
        from datarl.models.sft import default_cache_dir
        from datarl.preferences import load_pairs

        meta = build_judge(
            load_pairs(cfg.path("pairs.jsonl")),
            policy_dir(cfg, ledger),
            cfg.path("judge"),
            GenRMTrainConfig(seed=cfg.seed, **opts),
            train_records=read_prompts(train_path) if gt_samples else (),
            gt_samples=gt_samples,
            heldout_records=read_prompts(heldout_path) if heldout_path else (),
            heldout=HeldoutConfig(**heldout_opts),
            cache_dir=default_cache_dir() if cfg.policy == "tiny" else None,  # the embedded judge, like the SFT
            judge_base=base,
            log=_log,
        )
        return [cfg.path("judge")], {"metrics": meta.get("metrics", {}), "heldout": meta.get("heldout", {})}

    section = {**opts, "heldout": heldout_opts, "gt_samples": gt_samples, **({"base": base} if base else {})}
    inputs = [cfg.path("pairs.jsonl"), train_path] + ([heldout_path] if heldout_path else [])
    return run, section, inputs


def stage_references(cfg: PipelineConfig, ledger: Ledger) -> Stage:
    opts: ReferencesOptions = section_options(ReferencesOptions, cfg.references, "references")

    def run() -> tuple[list[str], dict[str, Any]]:
        from datarl.models.generate import JOB_BATCH_SIZE, SamplingConfig
        from datarl.models.loading import load_policy
        from datarl.references import build_references

        policy = load_policy(policy_dir(cfg, ledger))
        outputs = []
        for split, path in raw_paths(cfg).items():
            rows = build_references(
                read_prompts(path),
                policy,
                cfg.path("bt"),
                n=opts.n,
                seed=cfg.seed,
                sampling=SamplingConfig(max_new_tokens=opts.max_new_tokens, batch_size=JOB_BATCH_SIZE),
                progress=_tty(),
                tasks=tuple(opts.tasks),
            )
            _write(data_path(cfg, split), rows)
            outputs.append(data_path(cfg, split))
        return outputs, {}

    section = dataclasses.asdict(opts)
    if section["tasks"] == ["general"]:  # the default, left out: runs made before the option keep their fingerprint
        del section["tasks"]
    return run, section, [*raw_paths(cfg).values(), cfg.path("bt")]


NO_SELECTION = "none"  # select.strategy of a run trained on the original prompts only (a study's baseline)


# Options of ``select:`` that only choose among scored prompts: the pool's scores do not depend on them, so
# runs that differ only in these (lowest vs random vs all, 10% vs 50%) share one scoring pass.
SELECTION_ONLY = ("strategy", "fraction", "count", "scope", "normalise", "drop_unsolvable", "histogram_bins")


def _scores_path(cfg: PipelineConfig) -> str:
    return cfg.path("data", "pool.scores.jsonl")


def stage_pool_scores(cfg: PipelineConfig, ledger: Ledger) -> Stage:
    """Sample the SFT policy on the pool and score it (the expensive half of Pre-PPO), for every strategy."""
    if cfg.select.get("strategy") == NO_SELECTION:
        return None, None, []
    scoring = {k: v for k, v in cfg.select.items() if k not in SELECTION_ONLY}

    def run() -> tuple[list[str], dict[str, Any]]:
        from datarl.rewards.router import RouterConfig
        from datarl.select.prepo import SelectConfig
        from datarl.select.prepo_engine import run_select

        scratch = cfg.path("data", "pool.all.jsonl")  # the "all" selection: a by-product, removed
        summary = run_select(
            data_path(cfg, "pool"),
            scratch,
            policy=lambda: load_stage_policy(cfg, ledger),
            router_config=RouterConfig.from_mapping(router_mapping(cfg)),
            cfg=SelectConfig.from_mapping({"seed": cfg.seed, **scoring, "strategy": "all"}),
            train_path=data_path(cfg, "train"),
            scores_path=_scores_path(cfg),
            workers=cfg.workers,
        )
        for path in (scratch, summary.report_path):
            if os.path.exists(path):
                os.remove(path)
        return [_scores_path(cfg)], {"sampled": summary.sampled_now}

    return (
        run,
        {"scoring": scoring, "seed": cfg.seed, "reward": router_mapping(cfg)},
        [data_path(cfg, "pool"), data_path(cfg, "train"), cfg.path("judge"), cfg.path("bt")],
    )


def stage_select(cfg: PipelineConfig, ledger: Ledger) -> Stage:
    out = data_path(cfg, "selected")
    if cfg.select.get("strategy") == NO_SELECTION:  # no pool prompts: the training set as it is

        def copy() -> tuple[list[str], dict[str, Any]]:
            copy_into(data_path(cfg, "train"), out)
            stale = out + ".report.json"  # a selection report of an earlier config would be taken for this one
            if os.path.exists(stale):
                os.remove(stale)
            return [out], {"kept": 0}

        return copy, {"select": dict(cfg.select)}, [data_path(cfg, "train")]

    def run() -> tuple[list[str], dict[str, Any]]:
        from datarl.rewards.router import RouterConfig
        from datarl.select.prepo import SelectConfig
        from datarl.select.prepo_engine import run_select

        own = out + ".scores.jsonl"  # a copy: the pool's scores may be a link shared with other runs
        copy_into(_scores_path(cfg), own)
        summary = run_select(
            data_path(cfg, "pool"),
            out,
            policy=lambda: load_stage_policy(cfg, ledger),
            router_config=RouterConfig.from_mapping(router_mapping(cfg)),
            cfg=SelectConfig.from_mapping({"seed": cfg.seed, **cfg.select}),
            train_path=data_path(cfg, "train"),
            merge=True,
            workers=cfg.workers,
            scores_path=own,
        )
        if summary.sampled_now:
            raise RuntimeError(f"select sampled {summary.sampled_now} pool prompts the pool_scores stage had not")
        return [out, summary.report_path], {"kept": summary.report.get("kept")}

    return (
        run,
        {"select": dict(cfg.select), "reward": router_mapping(cfg)},
        [data_path(cfg, "pool"), data_path(cfg, "train"), _scores_path(cfg)],
    )


def _load(cfg: PipelineConfig, ledger: Ledger) -> Any:
    from datarl.models.loading import load_policy

    return load_policy(policy_dir(cfg, ledger))


def train_config(cfg: PipelineConfig, policy_dir: str) -> Any:
    """The ``datarl train`` config of the pipeline's train stage."""
    from datarl.rl.config import TrainConfig

    data = {
        "seed": cfg.seed,
        "workers": cfg.workers,
        **dict(cfg.train),
        "policy": policy_dir,
        "data": {"train": data_path(cfg, "selected"), "eval": data_path(cfg, "eval")},
        "reward": router_mapping(cfg),
        "run_dir": cfg.path("train"),
    }
    return TrainConfig.from_mapping(data)


def stage_train(cfg: PipelineConfig, ledger: Ledger) -> Stage:
    section = {"train": dict(cfg.train), "reward": router_mapping(cfg)}
    inputs = [data_path(cfg, "selected"), data_path(cfg, "eval"), cfg.path("judge"), cfg.path("bt")]

    def run() -> tuple[list[str], dict[str, Any]]:
        from datarl.rl.trainer import train

        run_dir = cfg.path("train")
        mark = os.path.join(run_dir, ".pipeline_fingerprint")
        mark_value = fingerprint(section, inputs, [])
        resume = os.path.exists(os.path.join(run_dir, "config.json"))
        if resume and (not os.path.exists(mark) or open(mark).read().strip() != mark_value):
            shutil.rmtree(run_dir)  # an older run with other inputs: start this one afresh
            resume = False
        os.makedirs(run_dir, exist_ok=True)
        write_text(mark, mark_value)
        report = data_path(cfg, "selected") + ".report.json"
        if os.path.exists(report):
            copy_into(report, os.path.join(run_dir, "selection", "report.json"))
        result = train(train_config(cfg, policy_dir(cfg, ledger)), resume=resume, log=_log)
        return [os.path.join(run_dir, "summary.json")], {"best_step": result.best_step, "best_gold": result.best_gold}

    return run, section, inputs


def stage_eval(cfg: PipelineConfig, ledger: Ledger) -> Stage:
    out = cfg.path("train", "final_eval.json")

    def run() -> tuple[list[str], dict[str, Any]]:
        from datarl.jobs import eval_records
        from datarl.models.generate import JOB_BATCH_SIZE, SamplingConfig
        from datarl.models.loading import load_policy
        from datarl.records import read_all_records
        from datarl.rl.evaluate import gold_function

        eval_cfg = dict(cfg.train.get("eval") or {})
        if not eval_cfg.get("per_task"):  # PPO's own evaluations covered the whole split: reuse them
            with open(cfg.path("train", "summary.json"), encoding="utf-8") as fh:
                summary = json.load(fh)
            result = {
                "sft": {"policy": policy_dir(cfg, ledger), "by_task": summary["before"]},
                "best": {
                    "policy": cfg.path("train", "best"),
                    "step": summary["best_step"],
                    "by_task": summary["best"],
                    "gain": summary.get("gain_best", {}),
                },
            }
            write_json(out, result)
            return [out], {}
        records = read_all_records(data_path(cfg, "eval"))
        gold = gold_function(eval_cfg.get("gold", "synth"))
        greedy = SamplingConfig(temperature=0.0, max_new_tokens=128, batch_size=JOB_BATCH_SIZE)
        result = {}
        for name, path in (("sft", policy_dir(cfg, ledger)), ("best", cfg.path("train", "best"))):
            summary, _ = eval_records(records, load_policy(path), greedy, _gold_or_skip(gold), workers=cfg.workers)
            result[name] = {"policy": path, **summary}
        write_json(out, result)
        return [out], {}

    return run, {"eval": dict(cfg.train.get("eval") or {})}, [cfg.path("train", "summary.json")]


def _gold_or_skip(gold: Callable) -> Callable:
    from datarl.rewards.base import RewardResult

    def fn(record: Mapping[str, Any], response: str) -> Any:
        result = gold(record, response)
        return result if result is not None else RewardResult(0.0, "none", {"failure": "no_gold"})

    return fn


def stage_report(cfg: PipelineConfig, ledger: Ledger) -> Stage:
    def run() -> tuple[list[str], dict[str, Any]]:
        from datarl.report import write_report

        html, png = write_report(cfg.path("train"))
        return [str(html), str(png)], {}

    return run, {}, [cfg.path("train", "summary.json"), cfg.path("train", "final_eval.json")]


STAGES: dict[str, Callable[[PipelineConfig, Ledger], Stage]] = {
    "synth": stage_synth,
    "sft": stage_sft,
    "pairs": stage_pairs,
    "bt": stage_bt,
    "genrm": stage_genrm,
    "references": stage_references,
    "pool_scores": stage_pool_scores,
    "select": stage_select,
    "train": stage_train,
    "eval": stage_eval,
    "report": stage_report,
}
"""Every stage, in the order they run (a dict keeps its insertion order)."""
