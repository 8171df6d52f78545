"""The pipeline's judge: held-out quality against training time (issue 17's "quality against minutes" curve).

    python bench/judge_budget.py CONFIG.yaml [--steps 2400] [--every 300] [--out curve.json]
                                             [--base MODEL] [--at-start] [--keep DIR] [--per-item]

CONFIG is a pipeline config whose run has finished its ``pairs`` stage (``datarl pipeline CONFIG.yaml``
until ``[pairs] done``; the SFT policy from the model cache). The judge is trained as the ``genrm`` stage
trains it (the config's ``genrm:`` section, the run's seed, the same sampled ground-truth responses and
held-out items), except for ``--steps``; every ``--every`` steps it is measured on the stage's held-out
items (500 SFT answers to eval math prompts, general pairs from eval prompts) with the ``genrm.gt``
threshold fitted then, as the stage fits it at the end. The learning rate follows the schedule of the whole
run (warm-up, cosine to 10% at ``--steps``), so a checkpoint before the end is not what a run of that many
steps would give: it is the curve of one longer run. Prints one row per checkpoint (training minutes, not
counting the measurements) and writes them, with the set-up, to ``--out``.

``--base`` trains the judge from another causal LM (a directory, a ``.gguf`` file or an alias such as
``smollm2-135m``) instead of the config's ``genrm.base`` or, without one, the run's SFT policy; the
ground-truth responses and held-out items are still the SFT policy's samples, so the tables compare directly.
``--at-start`` measures the untrained judge first (step 0, the ``genrm.gt`` threshold at 0.5: nothing is
fitted before training). ``--keep DIR`` saves the trained judge there (by default it is trained in a
temporary directory and discarded). ``--per-item`` also writes, at every checkpoint, the judge's score and
position consistency on each held-out item (with the items' kinds, labels and a digest of their text), so two
judges measured on the same items can be compared item by item (``bench/judge_compare.py``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

COLUMNS = [
    ("gt", "agreement"),
    ("gt", "balanced_agreement"),
    ("gt", "position_consistency"),
    ("gt", "roc_auc"),
    ("gt", "threshold"),
    ("pairs", "agreement"),
    ("pairs", "position_consistency"),
]  # no ROC AUC for the pairs: every held-out pair is labelled "the response wins"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="pipeline config whose run has its pairs (and sft) stages done")
    ap.add_argument("--steps", type=int, default=2400, help="training steps of the run (default 2400)")
    ap.add_argument("--every", type=int, default=300, help="measure every this many steps (default 300)")
    ap.add_argument("--out", help="write the curve as JSON here")
    ap.add_argument(
        "--base", help="train the judge from this model (default: the config's genrm.base, else the run's SFT policy)"
    )
    ap.add_argument("--at-start", action="store_true", help="also measure the untrained judge (step 0)")
    ap.add_argument("--keep", metavar="DIR", help="save the trained judge here (default: discarded)")
    ap.add_argument(
        "--per-item", action="store_true", help="with --out, also write each held-out item's score at every checkpoint"
    )
    args = ap.parse_args()
    if args.steps < 1 or args.every < 1:
        ap.error("--steps and --every must be >= 1")
    if args.per_item and not args.out:
        ap.error("--per-item needs --out (the per-item scores are written there)")

    from _pipeline_run import pairs_run

    from datarl.models.genrm_heldout import HeldoutConfig, heldout_items, judge_table, judge_verdicts, math_samples
    from datarl.models.genrm_train import GenRMTrainConfig, train_genrm
    from datarl.models.loading import load_policy
    from datarl.pipeline.config import raw_paths
    from datarl.pipeline.stages import judge_base as configured_base
    from datarl.pipeline.stages import judge_options, read_prompts
    from datarl.preferences import load_pairs
    from datarl.rewards.genrm_backends import HFJudge

    run = pairs_run(args.config)
    if run is None:
        return 2
    cfg, base = run
    opts, heldout_opts, gt_samples = judge_options(cfg)  # as the genrm stage reads them
    heldout_cfg = HeldoutConfig(**heldout_opts)
    train_cfg = GenRMTrainConfig(seed=cfg.seed, **{**opts, "steps": args.steps})

    policy = load_policy(base)
    sampled = math_samples(read_prompts(raw_paths(cfg)["train"]), policy, gt_samples, seed=train_cfg.seed)
    items = heldout_items(read_prompts(raw_paths(cfg)["eval"]), policy, heldout_cfg, gt_format=train_cfg.gt_format)
    judge_base = args.base or configured_base(cfg) or base  # --base, else the config's genrm.base, else the policy
    print(
        f"{len(sampled)} sampled math responses, {len(items)} held-out items; {args.steps} steps, seed {cfg.seed}, "
        f"judge from {judge_base}"
    )
    header = "step  train_min  " + "  ".join(f"{k}/{m}" for k, m in COLUMNS)
    print(header, flush=True)
    rows: list[dict] = []

    def measure(step: int, seconds: float, judge) -> None:
        verdicts = judge_verdicts(judge, items, max_answer_chars=train_cfg.max_answer_chars)
        table = judge_table(judge, items, max_answer_chars=train_cfg.max_answer_chars, verdicts=verdicts)
        row = {"step": step, "train_seconds": round(seconds, 1), "table": table}
        if args.per_item:
            row["scores"] = [round(float(v["score"]), 5) for v in verdicts]
            row["consistent"] = [int(v["consistent"]) for v in verdicts]
        rows.append(row)
        cells = [f"{table.get(k, {}).get(m, float('nan')):.3f}" for k, m in COLUMNS]
        print(f"{step:5d}  {seconds / 60:8.2f}  " + "  ".join(cells), flush=True)
        if args.out:  # after every checkpoint, so a stopped run keeps what it measured
            kept = items if args.per_item else None
            _write(args.out, cfg, train_cfg, gt_samples, heldout_cfg, rows, judge_base, kept)

    if args.at_start:
        untrained = HFJudge.load(judge_base, gt_format=train_cfg.gt_format, gt_verdict=train_cfg.gt_verdict)
        untrained.policy.model.eval()
        measure(0, 0.0, untrained)
        del untrained
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train_genrm(
            load_pairs(cfg.path("pairs.jsonl")),
            judge_base,
            args.keep or os.path.join(tmp, "judge"),
            train_cfg,
            gt_records=sampled,
            log=None,
            on_checkpoint=measure,
            checkpoint_every=args.every,
        )
    print(f"wall {time.perf_counter() - start:.0f} s")
    return 0


def _write(path, cfg, train_cfg, gt_samples, heldout_cfg, rows, judge_base, items) -> None:
    import hashlib
    import json

    from datarl.io import write_json

    extra = {}
    if items is not None:
        text = json.dumps([[it.kind, it.prompt, it.response, it.reference, it.label] for it in items], sort_keys=True)
        extra["items"] = {
            "digest": hashlib.sha256(text.encode()).hexdigest(),
            "kind": [it.kind for it in items],
            "label": [int(it.label) for it in items],
        }
    write_json(
        path,
        {
            **extra,
            "run_dir": cfg.run_dir,
            "seed": cfg.seed,
            "judge_base": judge_base,
            "genrm": train_cfg.to_dict(),
            "gt_samples": gt_samples,
            "heldout": dict(heldout_cfg.__dict__),
            "checkpoints": rows,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
