"""How well the judge's body orders the general pairs as a plain BT model: a reference line for the judge's pairs.

    python bench/pairs_ceiling.py CONFIG.yaml [--pairs PAIRS.jsonl] [--steps N] [--out result.json]

CONFIG is a pipeline config whose run has finished its ``pairs`` stage. A Bradley-Terry reward model is
trained as the ``bt`` stage trains it (the config's ``bt:`` section and seed, from the same SFT policy the judge
starts from) on the run's pairs of the ``bt`` tasks, or on ``--pairs`` (e.g. more pairs made with
``datarl make-pairs``), for ``--steps`` steps (default: the section's). It is then scored on the ``genrm``
stage's held-out general pairs (the same ``heldout_items`` the judge's table reads: eval prompts, gold order,
no label noise): the share it orders as the gold rubric does (ties count half), with a Wilson 95% interval.

A judge and a BT model on the same body see the same pairs; where BT cannot order them better than the judge
does, the judge's pairs figure is set by the body and the data, not by the pairwise format
(docs/results.md, judge_pairs_ceiling).
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="pipeline config whose run has its pairs (and sft) stages done")
    ap.add_argument("--pairs", help="train on this pairs file instead of the run's pairs.jsonl")
    ap.add_argument("--steps", type=int, help="BT training steps (default: the config's bt.steps)")
    ap.add_argument("--out", help="write the result as JSON here")
    args = ap.parse_args()
    if args.steps is not None and args.steps < 1:
        ap.error("--steps must be >= 1")

    from _pipeline_run import pairs_run
    from scipy.stats import binomtest

    from datarl.io import write_json
    from datarl.models.bt_train import BTTrainConfig, train_bt
    from datarl.models.genrm_heldout import HeldoutConfig, heldout_items
    from datarl.models.loading import load_policy
    from datarl.pipeline.config import raw_paths
    from datarl.pipeline.stages import judge_options, read_prompts
    from datarl.preferences import load_pairs
    from datarl.rewards.bt import bt_scores

    run = pairs_run(args.config)
    if run is None:
        return 2
    cfg, base = run
    pairs_file = args.pairs or cfg.path("pairs.jsonl")
    if not os.path.exists(pairs_file):
        print(f"--pairs {pairs_file}: no such file")
        return 2
    bt_opts = dict(cfg.bt)
    tasks = bt_opts.pop("tasks", ["general"])  # as the bt stage reads its section
    if args.steps is not None:
        bt_opts["steps"] = args.steps
    bt_cfg = BTTrainConfig(seed=cfg.seed, **bt_opts)
    pairs = [p for p in load_pairs(pairs_file) if p.get("task") in tasks]
    if not pairs:
        print(f"{pairs_file}: no pairs of tasks {tasks}")
        return 2

    _, heldout_opts, _ = judge_options(cfg)  # the genrm stage's held-out options; no math responses needed
    heldout_cfg = HeldoutConfig(**{**heldout_opts, "gt_responses": 0})
    items = heldout_items(
        read_prompts(raw_paths(cfg)["eval"]), load_policy(base), heldout_cfg, gt_format="{ground_truth}"
    )
    items = [it for it in items if it.kind == "pairs"]
    if not items:
        print(f"{args.config}: the run's eval split gave no held-out general pairs")
        return 2
    print(
        f"{len(pairs)} training pairs ({', '.join(tasks)}), {len(items)} held-out pairs;",
        f"{bt_cfg.steps} steps, seed {cfg.seed}",
    )

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        metrics = train_bt(pairs, base, os.path.join(tmp, "bt"), bt_cfg)
        seconds = time.perf_counter() - start
        scores = bt_scores(
            os.path.join(tmp, "bt"),
            [it.prompt for it in items] * 2,
            [it.response for it in items] + [it.reference for it in items],
        )
    n = len(items)
    right = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(scores[:n], scores[n:]))
    ci = binomtest(round(right), n).proportion_ci(method="wilson")
    print(f"held-out pairs ordered as gold: {right / n:.3f} [{ci.low:.3f}, {ci.high:.3f}] (Wilson 95%)")
    print(f"BT's own eval split (training prompts, gold order): {metrics.get('eval/gold_accuracy', float('nan')):.3f}")
    print(f"train + its eval split {seconds:.0f} s")
    if args.out:
        write_json(
            args.out,
            {
                "run_dir": cfg.run_dir,
                "seed": cfg.seed,
                "pairs_file": pairs_file,
                "train_pairs": len(pairs),
                "bt": bt_cfg.to_dict(),
                "heldout": dict(heldout_cfg.__dict__),
                "heldout_pairs": n,
                "accuracy": right / n,
                "ci95": [ci.low, ci.high],
                "bt_eval_gold_accuracy": metrics.get("eval/gold_accuracy"),
                "seconds": round(seconds, 1),
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
