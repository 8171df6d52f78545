"""``datarl pipeline CONFIG``: the paper's system end to end, one stage after another.

Stages, in order (each writes under ``run_dir``)::

    synth       suite/{train,pool,eval}.jsonl      the embedded task suite (embedded default only)
    sft         (cached model dir)                 the tiny SFT policy, or the configured policy
    pairs       pairs.jsonl                        gold-labelled preference pairs from SFT samples
    bt          bt/                                Bradley-Terry reward model
    genrm       judge/                             pairwise GenRM judge
    references  data/{train,pool,eval}.jsonl       best-of-N (by BT) references for general prompts
    select      data/selected.jsonl                Pre-PPO: train + the hardest pool prompts
    train       train/                             PPO with the hybrid reward and the curriculum
    eval        train/final_eval.json              SFT vs best checkpoint on the whole eval split
    report      train/report.html, report.png      the run's report

A stage is skipped when its outputs exist and its *fingerprint* (its config section, the contents of
its input files, the fingerprints of the stages it depends on) equals the one recorded when it
finished (``run_dir/stages.json``). So a run interrupted anywhere resumes at the interrupted stage;
``select`` and ``train`` also resume inside the stage (scores file, checkpoints). Changing a stage's
config redoes that stage and everything after it.

Everything a user can get wrong (missing files, a missing model, a domain named in ``select.domains``
that the pool lacks, a selection that would be empty, a broken train config) is checked by
:func:`check` before the first stage starts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from datarl.config import load_config, unknown_keys
from datarl.io import write_json
from datarl.errors import ConfigError

__all__ = ["PipelineConfig", "run_pipeline", "STAGES", "load_pipeline_config"]

STAGES = ("synth", "sft", "pairs", "bt", "genrm", "references", "select", "train", "eval", "report")
_SECTIONS = ("synth", "pairs", "bt", "genrm", "references", "select", "train", "reward")


@dataclass(frozen=True)
class PipelineConfig:
    """A pipeline run.

    run_dir: where every stage writes (absolute after loading).
    seed: one seed for every stage.
    policy: ``tiny`` (the embedded SFT policy, built by the ``sft`` stage) or a HF model dir / alias.
    data: user data instead of the synthetic suite: ``{train, pool, eval}`` record files; then the
        ``synth`` stage is skipped and ``policy`` must be given.
    synth: options of ``datarl synth`` (``SynthConfig`` fields).
    pairs: ``{tasks, per_task, samples_per_prompt, label_noise, min_gold_gap, max_new_tokens}``.
    bt: ``BTTrainConfig`` fields; genrm: ``GenRMTrainConfig`` fields.
    references: ``{n, max_new_tokens}``.
    select: ``SelectConfig`` fields (Pre-PPO).
    reward: router overrides (``router:``, ``sources:``); the pipeline fills in its BT model and judge.
    train: the ``datarl train`` sections (``ppo``, ``eval``, ``curriculum``, ``hacking``, ``logging``,
        ``workers``, ``save_every``, ...).
    workers: scoring worker processes for pairs, select and train.
    """

    run_dir: str
    seed: int = 0
    policy: str = "tiny"
    data: Mapping[str, str] | None = None
    synth: Mapping[str, Any] = field(default_factory=dict)
    pairs: Mapping[str, Any] = field(default_factory=dict)
    bt: Mapping[str, Any] = field(default_factory=dict)
    genrm: Mapping[str, Any] = field(default_factory=dict)
    references: Mapping[str, Any] = field(default_factory=dict)
    select: Mapping[str, Any] = field(default_factory=dict)
    reward: Mapping[str, Any] = field(default_factory=dict)
    train: Mapping[str, Any] = field(default_factory=dict)
    workers: int = 2

    @property
    def embedded(self) -> bool:
        return self.data is None

    def path(self, *parts: str) -> str:
        return os.path.join(self.run_dir, *parts)


def load_pipeline_config(path: str, run_dir: str | None = None) -> PipelineConfig:
    """Read a pipeline config; relative paths are relative to the file (``run_dir`` to the cwd)."""
    data = dict(load_config(path))
    unknown, names = unknown_keys(PipelineConfig, data)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; allowed: {', '.join(names)}")
    base = os.path.dirname(os.path.abspath(path))
    for name in _SECTIONS:
        if not isinstance(data.get(name) or {}, Mapping):
            raise ConfigError(f"{path}: {name}: must be a mapping of options")
    if data.get("data") is not None:
        sec = data["data"]
        if not isinstance(sec, Mapping) or set(sec) != {"train", "pool", "eval"}:
            raise ConfigError(f"{path}: data: must give exactly train, pool and eval record files")
        data["data"] = {k: os.path.normpath(os.path.join(base, str(v))) for k, v in sec.items()}
        if str(data.get("policy") or "tiny") == "tiny":
            raise ConfigError(f"{path}: with your own data, set policy: to your SFT model (HF dir or alias); "
                              "the tiny policy only knows the synthetic suite")
    policy = str(data.get("policy") or "tiny")
    if policy != "tiny" and os.path.exists(os.path.join(base, policy)):
        data["policy"] = os.path.normpath(os.path.join(base, policy))
    data["run_dir"] = os.path.abspath(run_dir or data.get("run_dir") or "runs/pipeline")
    for name in _SECTIONS:
        data[name] = dict(data.get(name) or {})
    try:
        return PipelineConfig(**data)
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


# --- fingerprints ------------------------------------------------------------------------------

def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    if os.path.isdir(path):
        for root, _, files in sorted(os.walk(path)):
            for name in sorted(files):
                h.update(name.encode())
                h.update(_file_digest(os.path.join(root, name)).encode())
        return h.hexdigest()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fingerprint(section: Any, inputs: list[str], upstream: list[str]) -> str:
    blob = json.dumps({"section": section, "inputs": [_file_digest(p) for p in inputs if os.path.exists(p)],
                       "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class _Ledger:
    """``stages.json``: the fingerprint and outputs of every finished stage (rewritten atomically)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.done: dict[str, dict[str, Any]] = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                self.done = json.load(fh)

    def is_done(self, stage: str, fingerprint: str) -> bool:
        entry = self.done.get(stage)
        return bool(entry) and entry["fingerprint"] == fingerprint and all(
            os.path.exists(p) for p in entry.get("outputs", []))

    def record(self, stage: str, fingerprint: str, outputs: list[str], seconds: float, **extra: Any) -> None:
        self.done[stage] = {"fingerprint": fingerprint, "outputs": outputs, "seconds": round(seconds, 1), **extra}
        write_json(self.path, self.done)


def run_pipeline(cfg: PipelineConfig, *, log: Callable[[str], None] = print,
                 stop_before: str | None = None) -> dict[str, Any]:
    """Run every stage not already done; returns the ledger. ``stop_before`` ends early (tests)."""
    from datarl.pipeline_stages import STAGE_FUNCTIONS, check

    os.makedirs(cfg.run_dir, exist_ok=True)
    check(cfg)  # every user mistake we can see, before the first minute of work
    ledger = _Ledger(cfg.path("stages.json"))
    upstream: list[str] = []
    total = time.perf_counter()
    for stage in STAGES:
        if stage == stop_before:
            break
        fn, section, inputs = STAGE_FUNCTIONS[stage](cfg, ledger)
        if fn is None:  # stage not part of this pipeline (synth with user data, sft with a given policy)
            continue
        fingerprint = _fingerprint(section, inputs, upstream)
        upstream.append(fingerprint)
        if ledger.is_done(stage, fingerprint):
            log(f"[{stage}] up to date, skipped")
            continue
        log(f"[{stage}] running")
        start = time.perf_counter()
        outputs, extra = fn()
        ledger.record(stage, fingerprint, outputs, time.perf_counter() - start, **extra)
        log(f"[{stage}] done in {time.perf_counter() - start:.0f} s")
    log(f"pipeline finished in {time.perf_counter() - total:.0f} s")
    return ledger.done


def copy_into(src: str, dst: str) -> None:
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)
