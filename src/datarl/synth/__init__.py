"""``datarl.synth``: the embedded synthetic task suite (DESIGN section 4).

Four tasks, each with a gold check and a reference solution that passes it:
arithmetic word problems (``rtv.math``), small Python functions with assert tests
(``rtv.code``), instruction-constrained notes (``rtv.ifeval``) and open-ended short
writing scored by a hidden rubric (``gold.rubric``, in :mod:`datarl.synth.rubric`).

Public API::

    cfg = SynthConfig(seed=0)                 # counts per split/task, difficulty mix
    splits = build_suite(cfg)                 # {"train", "pool", "eval"} -> record dicts
    paths = write_suite(cfg, "out/")          # *.jsonl + manifest.json
    gold_check(record, response)              # RewardResult; info["gold_pass"]
    demonstration(record, rng, quality)       # reference w.p. quality, else a wrong answer
    sft_examples(records, rng, quality)       # [{prompt, response, ...}] for SFT
"""

from __future__ import annotations

from datarl.synth.demos import demonstration, sft_examples, wrong_response
from datarl.synth.gold import gold_check, gold_passed
from datarl.synth.rubric import PASS_THRESHOLD, REFERENCE_THRESHOLD, gold_score
from datarl.synth.suite import SPLITS, SynthConfig, build_suite, sft_records, write_suite

__all__ = [
    "PASS_THRESHOLD",
    "REFERENCE_THRESHOLD",
    "SPLITS",
    "sft_records",
    "SynthConfig",
    "build_suite",
    "demonstration",
    "gold_check",
    "gold_passed",
    "gold_score",
    "sft_examples",
    "write_suite",
    "wrong_response",
]
