"""The stages of ``datarl pipeline`` (see :mod:`datarl.pipeline` for the order and the skipping rule).

Each ``stage_<name>(cfg, ledger)`` returns ``(run, section, inputs)``: the function that does the work
(or None when the stage is not part of this pipeline), the config it depends on, and the files whose
contents it reads. ``run()`` returns ``(outputs, extra)``: the paths it wrote and facts to remember in
the ledger (e.g. the SFT policy's directory).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from typing import Any, Callable, Mapping

from datarl.errors import ConfigError
from datarl.io import write_json, write_text
from datarl.pipeline import PipelineConfig, _Ledger, copy_into

__all__ = ["STAGE_FUNCTIONS", "check", "router_mapping"]

Stage = tuple[Callable[[], tuple[list[str], dict[str, Any]]] | None, Any, list[str]]
_SPLITS = ("train", "pool", "eval")
_PAIRS_DEFAULTS = {"tasks": ["general", "math"], "per_task": 300, "samples_per_prompt": 4, "label_noise": 0.1,
                   "min_gold_gap": 0.1, "max_new_tokens": 128, "file": None}
_BT_DEFAULTS = {"tasks": ["general"]}
_REF_DEFAULTS = {"n": 8, "max_new_tokens": 128}


def _opts(section: Mapping[str, Any], defaults: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(section) - set(defaults))
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) {unknown}; allowed: {', '.join(sorted(defaults))}")
    return {**defaults, **section}


def _tty() -> bool:
    return sys.stderr.isatty()


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def _raw(cfg: PipelineConfig) -> dict[str, str]:
    """The prompt files before references: the suite's or the user's."""
    if cfg.data is not None:
        return dict(cfg.data)
    return {s: cfg.path("suite", f"{s}.jsonl") for s in _SPLITS}


def _data(cfg: PipelineConfig, split: str) -> str:
    return cfg.path("data", f"{split}.jsonl")


def _policy_dir(cfg: PipelineConfig, ledger: _Ledger) -> str:
    if cfg.policy == "tiny":
        return str(ledger.done["sft"]["policy_dir"])
    from datarl.rl.setup import resolve_policy

    return resolve_policy(cfg.policy, cfg.run_dir)


def router_mapping(cfg: PipelineConfig) -> dict[str, Any]:
    """The reward router: defaults, general -> genrm.bon, the pipeline's own BT and judge, user overrides."""
    router = {"general": "genrm.bon", **dict(cfg.reward.get("router") or {})}
    sources = {"genrm.bon": {"judge": cfg.path("judge")}, "genrm.gt": {"judge": cfg.path("judge")},
               "bt": {"model": cfg.path("bt")}}
    for name, opts in dict(cfg.reward.get("sources") or {}).items():
        sources[name] = {**sources.get(name, {}), **dict(opts or {})}
    return {"router": router, "sources": sources}


def _read(path: str) -> list[dict[str, Any]]:
    from datarl.records import read_all_records

    return [r.to_dict() for r in read_all_records(path)]


def _write(path: str, rows: list[dict[str, Any]]) -> None:
    from datarl.io import write_records

    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_records(path, rows)


# --- stages ------------------------------------------------------------------------------------

def stage_synth(cfg: PipelineConfig, ledger: _Ledger) -> Stage:
    if not cfg.embedded:
        return None, None, []

    def run() -> tuple[list[str], dict[str, Any]]:
        from datarl.synth import SynthConfig, write_suite

        paths = write_suite(SynthConfig(seed=cfg.seed, **cfg.synth), cfg.path("suite"))
        return [paths[s] for s in _SPLITS], {}

    return run, {"synth": dict(cfg.synth), "seed": cfg.seed}, []


def stage_sft(cfg: PipelineConfig, ledger: _Ledger) -> Stage:
    if cfg.policy != "tiny":
        return None, None, []
    from datarl.models.sft import SFTConfig, build_sft_policy

    def run() -> tuple[list[str], dict[str, Any]]:
        path = build_sft_policy(log=lambda m: None)
        return [path], {"policy_dir": path}

    return run, {"sft": SFTConfig().digest()}, []


def stage_pairs(cfg: PipelineConfig, ledger: _Ledger) -> Stage:
    opts = _opts(cfg.pairs, _PAIRS_DEFAULTS, "pairs")
    out = cfg.path("pairs.jsonl")
    if opts["file"]:
        def copy() -> tuple[list[str], dict[str, Any]]:
            copy_into(str(opts["file"]), out)
            return [out], {}
        return copy, opts, [str(opts["file"])]

    def run() -> tuple[list[str], dict[str, Any]]:
        from datarl.models.generate import SamplingConfig
        from datarl.models.loading import load_policy
        from datarl.preferences import make_pairs

        records = _read(_raw(cfg)["train"])
        chosen = [r for t in opts["tasks"] for r in [x for x in records if x["task"] == t][:opts["per_task"]]]
        pairs = make_pairs(chosen, load_policy(_policy_dir(cfg, ledger)),
                           samples_per_prompt=opts["samples_per_prompt"], label_noise=opts["label_noise"],
                           seed=cfg.seed, min_gold_gap=opts["min_gold_gap"],
                           sampling=SamplingConfig(max_new_tokens=opts["max_new_tokens"], batch_size=64),
                           progress=_tty())
        _write(out, pairs)
        return [out], {"pairs": len(pairs)}

    return run, opts, [_raw(cfg)["train"]]


def stage_bt(cfg: PipelineConfig, ledger: _Ledger) -> Stage:
    opts = dict(cfg.bt)
    tasks = opts.pop("tasks", _BT_DEFAULTS["tasks"])

    def run() -> tuple[list[str], dict[str, Any]]:
        from datarl.models.bt_train import BTTrainConfig, train_bt
        from datarl.preferences import load_pairs

        pairs = [p for p in load_pairs(cfg.path("pairs.jsonl")) if p.get("task") in tasks]
        if not pairs:
            raise ConfigError(f"bt: no pairs of tasks {tasks} in {cfg.path('pairs.jsonl')}; "
                              "add those tasks to pairs.tasks or change bt.tasks")
        metrics = train_bt(pairs, _policy_dir(cfg, ledger), cfg.path("bt"),
                           BTTrainConfig(seed=cfg.seed, **opts), progress=_tty())
        keep = {k: v for k, v in metrics.items() if k.startswith("eval/")}
        return [cfg.path("bt")], {"metrics": keep}

    return run, {**opts, "tasks": tasks}, [cfg.path("pairs.jsonl")]


def stage_genrm(cfg: PipelineConfig, ledger: _Ledger) -> Stage:
    def run() -> tuple[list[str], dict[str, Any]]:
        from datarl.models.genrm_train import GenRMTrainConfig, train_genrm
        from datarl.preferences import load_pairs

        meta = train_genrm(load_pairs(cfg.path("pairs.jsonl")), _policy_dir(cfg, ledger), cfg.path("judge"),
                           GenRMTrainConfig(seed=cfg.seed, **cfg.genrm), log=_log)
        return [cfg.path("judge")], {"metrics": meta.get("metrics", {})}

    return run, dict(cfg.genrm), [cfg.path("pairs.jsonl")]


def stage_references(cfg: PipelineConfig, ledger: _Ledger) -> Stage:
    opts = _opts(cfg.references, _REF_DEFAULTS, "references")

    def run() -> tuple[list[str], dict[str, Any]]:
        from datarl.models.generate import SamplingConfig
        from datarl.models.loading import load_policy
        from datarl.references import build_references

        policy = load_policy(_policy_dir(cfg, ledger))
        outputs = []
        for split, path in _raw(cfg).items():
            rows = build_references(_read(path), policy, cfg.path("bt"), n=opts["n"], seed=cfg.seed,
                                    sampling=SamplingConfig(max_new_tokens=opts["max_new_tokens"], batch_size=64),
                                    progress=_tty())
            _write(_data(cfg, split), rows)
            outputs.append(_data(cfg, split))
        return outputs, {}

    return run, opts, [*_raw(cfg).values(), cfg.path("bt")]


def stage_select(cfg: PipelineConfig, ledger: _Ledger) -> Stage:
    out = _data(cfg, "selected")

    def run() -> tuple[list[str], dict[str, Any]]:
        from datarl.rewards.router import RouterConfig
        from datarl.select.prepo import SelectConfig
        from datarl.select.prepo_engine import run_select

        summary = run_select(_data(cfg, "pool"), out, policy=lambda: _load(cfg, ledger),
                             router_config=RouterConfig.from_mapping(router_mapping(cfg)),
                             cfg=SelectConfig.from_mapping({"seed": cfg.seed, **cfg.select}),
                             train_path=_data(cfg, "train"), merge=True, workers=cfg.workers)
        return [out, summary.report_path], {"kept": summary.report.get("kept")}

    return run, {"select": dict(cfg.select), "reward": router_mapping(cfg)}, \
        [_data(cfg, "pool"), _data(cfg, "train"), cfg.path("judge"), cfg.path("bt")]


def _load(cfg: PipelineConfig, ledger: _Ledger) -> Any:
    from datarl.models.loading import load_policy

    return load_policy(_policy_dir(cfg, ledger))


def _train_config(cfg: PipelineConfig, policy_dir: str) -> Any:
    from datarl.rl.config import TrainConfig

    data = {"seed": cfg.seed, "workers": cfg.workers, **dict(cfg.train), "policy": policy_dir,
            "data": {"train": _data(cfg, "selected"), "eval": _data(cfg, "eval")},
            "reward": router_mapping(cfg), "run_dir": cfg.path("train")}
    return TrainConfig.from_mapping(data)


def stage_train(cfg: PipelineConfig, ledger: _Ledger) -> Stage:
    section = {"train": dict(cfg.train), "reward": router_mapping(cfg)}
    inputs = [_data(cfg, "selected"), _data(cfg, "eval"), cfg.path("judge"), cfg.path("bt")]

    def run() -> tuple[list[str], dict[str, Any]]:
        from datarl.pipeline import _fingerprint
        from datarl.rl.trainer import train

        run_dir = cfg.path("train")
        mark = os.path.join(run_dir, ".pipeline_fingerprint")
        fingerprint = _fingerprint(section, inputs, [])
        resume = os.path.exists(os.path.join(run_dir, "config.json"))
        if resume and (not os.path.exists(mark) or open(mark).read().strip() != fingerprint):
            shutil.rmtree(run_dir)  # an older run with other inputs: start this one afresh
            resume = False
        os.makedirs(run_dir, exist_ok=True)
        write_text(mark, fingerprint)
        report = _data(cfg, "selected") + ".report.json"
        if os.path.exists(report):
            copy_into(report, os.path.join(run_dir, "selection", "report.json"))
        result = train(_train_config(cfg, _policy_dir(cfg, ledger)), resume=resume, log=_log)
        return [os.path.join(run_dir, "summary.json")], {"best_step": result.best_step,
                                                          "best_gold": result.best_gold}

    return run, section, inputs


def stage_eval(cfg: PipelineConfig, ledger: _Ledger) -> Stage:
    out = cfg.path("train", "final_eval.json")

    def run() -> tuple[list[str], dict[str, Any]]:
        from datarl.jobs import eval_records
        from datarl.records import read_all_records
        from datarl.models.generate import SamplingConfig
        from datarl.models.loading import load_policy
        from datarl.rl.evaluate import gold_function

        eval_cfg = dict(cfg.train.get("eval") or {})
        if not eval_cfg.get("per_task"):  # PPO's own evaluations covered the whole split: reuse them
            with open(cfg.path("train", "summary.json"), encoding="utf-8") as fh:
                summary = json.load(fh)
            result = {"sft": {"policy": _policy_dir(cfg, ledger), "by_task": summary["before"]},
                      "best": {"policy": cfg.path("train", "best"), "step": summary["best_step"],
                               "by_task": summary["best"], "gain": summary.get("gain_best", {})}}
            write_json(out, result)
            return [out], {}
        records = read_all_records(_data(cfg, "eval"))
        gold = gold_function(eval_cfg.get("gold", "synth"))
        greedy = SamplingConfig(temperature=0.0, max_new_tokens=128, batch_size=64)
        result = {}
        for name, path in (("sft", _policy_dir(cfg, ledger)), ("best", cfg.path("train", "best"))):
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


def stage_report(cfg: PipelineConfig, ledger: _Ledger) -> Stage:
    def run() -> tuple[list[str], dict[str, Any]]:
        from datarl.report import write_report

        html, png = write_report(cfg.path("train"))
        return [str(html), str(png)], {}

    return run, {}, [cfg.path("train", "summary.json"), cfg.path("train", "final_eval.json")]


STAGE_FUNCTIONS: dict[str, Callable[[PipelineConfig, _Ledger], Stage]] = {
    "synth": stage_synth, "sft": stage_sft, "pairs": stage_pairs, "bt": stage_bt, "genrm": stage_genrm,
    "references": stage_references, "select": stage_select, "train": stage_train, "eval": stage_eval,
    "report": stage_report,
}


# --- checks before any work --------------------------------------------------------------------

def check(cfg: PipelineConfig) -> None:
    """Every problem visible without running a stage, as one ``ConfigError``."""
    from datarl.rewards.router import RouterConfig, RouterConfigError
    from datarl.select.prepo import SelectConfig, SelectError

    _opts(cfg.pairs, _PAIRS_DEFAULTS, "pairs")
    _opts(cfg.references, _REF_DEFAULTS, "references")
    if cfg.policy != "tiny":
        from datarl.models.loading import PolicyLoadError, resolve_alias

        try:
            path = resolve_alias(cfg.policy)
        except PolicyLoadError as exc:
            raise ConfigError(f"policy: {exc}") from None
        if not os.path.exists(path):
            raise ConfigError(f"policy: {cfg.policy}: no such model directory or file")
    if not cfg.embedded:
        for split, path in cfg.data.items():
            if not os.path.isfile(path):
                raise ConfigError(f"data.{split}: {path}: no such file")
        if not cfg.pairs.get("file"):
            raise ConfigError("pairs.file: with your own data, give preference pairs (JSONL of prompt, chosen, "
                              "rejected) for the BT model and the judge; the suite's gold checks cannot label yours")
    try:
        RouterConfig.from_mapping(router_mapping(cfg))
        sel = SelectConfig.from_mapping({"seed": cfg.seed, **cfg.select})
    except (RouterConfigError, SelectError) as exc:
        raise ConfigError(str(exc)) from None
    pool = _pool_preview(cfg)
    _check_selection(sel, pool)
    _check_train(cfg, pool)


def _pool_preview(cfg: PipelineConfig) -> dict[str, list[dict[str, Any]]]:
    """The prompts each split will hold (the suite is built in memory: it takes a second)."""
    if cfg.embedded:
        from datarl.synth import SynthConfig, build_suite

        try:
            return build_suite(SynthConfig(seed=cfg.seed, **cfg.synth))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"synth: {exc}") from None
    return {split: _read(path) for split, path in cfg.data.items()}


def _check_selection(sel: Any, splits: Mapping[str, list[dict[str, Any]]]) -> None:
    from datarl.select.prepo import SelectError, matches_domain, target_count

    pool = splits["pool"]
    if not pool:
        raise ConfigError("select: the pool has no prompts")
    if sel.domains:
        for name in sel.domains:
            if not any(matches_domain(str(r.get("domain") or r["task"]), r["task"], [name]) for r in pool):
                have = sorted({str(r.get("domain") or r["task"]) for r in pool})
                raise ConfigError(f"select.domains: the pool has no prompts of domain {name!r} (it has {have})")
    by_domain: dict[str, int] = {}
    for r in pool:
        if not sel.domains or matches_domain(str(r.get("domain") or r["task"]), r["task"], list(sel.domains)):
            by_domain[str(r.get("domain") or r["task"])] = by_domain.get(str(r.get("domain") or r["task"]), 0) + 1
    try:
        if sel.scope == "domain" and sel.count is None and sel.strategy != "all":
            for n in by_domain.values():
                target_count(sel, n)
        else:
            target_count(sel, sum(by_domain.values()))
    except SelectError as exc:
        raise ConfigError(f"select: {exc}") from None


def _check_train(cfg: PipelineConfig, splits: Mapping[str, list[dict[str, Any]]]) -> None:
    from datarl.rl.config import TrainConfig
    from datarl.select.curriculum import CurriculumConfig, CurriculumError, CurriculumSampler

    try:
        tc = TrainConfig.from_mapping({**dict(cfg.train), "policy": "tiny", "data": {"train": "train.jsonl"},
                                       "reward": router_mapping(cfg), "run_dir": cfg.path("train")})
        curriculum = CurriculumConfig.from_value(tc.curriculum, tc.ppo.steps)
        CurriculumSampler([r["task"] for r in splits["train"] + splits["pool"]], curriculum,
                          tc.ppo.prompts_per_step, cfg.seed)
    except (CurriculumError, ValueError) as exc:
        raise ConfigError(f"train: {exc}") from None
