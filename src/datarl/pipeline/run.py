"""``datarl pipeline CONFIG``: the paper's system end to end, one stage after another.

Stages, in order (each writes under ``run_dir``)::

    synth       suite/{train,pool,eval}.jsonl      the embedded task suite (embedded default only)
    sft         (cached model dir)                 the tiny SFT policy, or the configured policy
    pairs       pairs.jsonl                        gold-labelled preference pairs from SFT samples
    bt          bt/                                Bradley-Terry reward model
    genrm       judge/                             pairwise GenRM judge
    references  data/{train,pool,eval}.jsonl       best-of-N (by BT) references for general prompts
    pool_scores data/pool.scores.jsonl             Pre-PPO's scoring: SFT samples of every pool prompt, scored
    select      data/selected.jsonl                Pre-PPO: train + the hardest pool prompts (no sampling)
    train       train/                             PPO with the hybrid reward and the curriculum
    eval        train/final_eval.json              SFT vs best checkpoint on the whole eval split
    report      train/report.html, report.png      the run's report

A stage is skipped when its outputs exist and its *fingerprint* (its config section, the contents of
its input files, the fingerprints of the stages it depends on) equals the one recorded when it
finished (``run_dir/stages.json``). So a run interrupted anywhere resumes at the interrupted stage;
``select`` and ``train`` also resume inside the stage (scores file, checkpoints). Changing a stage's
config redoes that stage and everything after it.

Everything a user can get wrong is checked by :func:`datarl.pipeline.checks.check` before the first stage
starts. The package reads one way: ``config`` (the file and its sections) <- ``ledger`` (fingerprints) <-
``stages`` (the ordered table) and ``checks`` <- ``run`` (this loop).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from datarl.pipeline.checks import check
from datarl.pipeline.config import PipelineConfig
from datarl.pipeline.ledger import Ledger, fingerprint
from datarl.pipeline.stages import STAGES
from datarl.pipeline.store import StageStore, run_relative

__all__ = ["run_pipeline"]


def run_pipeline(
    cfg: PipelineConfig,
    *,
    log: Callable[[str], None] = print,
    stop_before: str | None = None,
    store: StageStore | None = None,
) -> dict[str, Any]:
    """Run every stage not already done; returns the ledger. ``stop_before`` ends before that stage (a study
    computes shared stages first); ``store`` holds stages shared with other runs (a study's arms and seeds):
    a stored stage with this run's fingerprint is linked instead of computed, and a computed one is stored."""
    os.makedirs(cfg.run_dir, exist_ok=True)
    check(cfg)  # every user mistake we can see, before the first minute of work
    ledger = Ledger(cfg.path("stages.json"))
    upstream: list[str] = []
    total = time.perf_counter()
    for stage, make in STAGES.items():
        if stage == stop_before:
            break
        fn, section, inputs = make(cfg, ledger)
        if fn is None:  # stage not part of this pipeline (synth with user data, sft with a given policy)
            continue
        stage_fingerprint = fingerprint(run_relative(section, cfg.run_dir), inputs, upstream)
        upstream.append(stage_fingerprint)
        if ledger.is_done(stage, stage_fingerprint):
            if store and not store.has(stage, stage_fingerprint):  # done before it could be stored
                entry = ledger.done[stage]
                extra = {k: v for k, v in entry.items() if k not in ("fingerprint", "outputs", "seconds")}
                store.put(stage, stage_fingerprint, cfg.run_dir, entry["outputs"], extra, entry["seconds"])
            log(f"[{stage}] up to date, skipped")
            continue
        shared = store.link(stage, stage_fingerprint, cfg.run_dir) if store else None
        if shared is not None:
            outputs = shared.pop("outputs")
            ledger.record(stage, stage_fingerprint, outputs, 0.0, **shared)
            log(f"[{stage}] shared, linked from {shared['shared_from']}")
            continue
        log(f"[{stage}] running")
        start = time.perf_counter()
        outputs, extra = fn()
        ledger.record(stage, stage_fingerprint, outputs, time.perf_counter() - start, **extra)
        if store:
            store.put(stage, stage_fingerprint, cfg.run_dir, outputs, extra, ledger.done[stage]["seconds"])
        log(f"[{stage}] done in {time.perf_counter() - start:.0f} s")
    log(f"pipeline finished in {time.perf_counter() - total:.0f} s")
    return ledger.done
