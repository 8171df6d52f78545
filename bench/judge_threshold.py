"""Where a judge's ``genrm.gt`` threshold should sit: the held-out table under three threshold rules.

    python bench/judge_threshold.py CONFIG.yaml [CONFIG.yaml ...] [--calibration N] [--seed S] [--out result.json]

Each CONFIG is a pipeline config whose run has finished its ``genrm`` stage. The run's judge scores its held-out
ground-truth items (the stage's ``heldout_items``: SFT responses to eval math prompts, labelled by ``rtv.math``)
and ``N`` SFT samples to the run's *pool* math prompts (never seen by the judge, never an eval prompt), labelled the
same way. The eval items are then decided with:

- ``stored``: the threshold the judge was calibrated with (accuracy on its own held-out training split);
- ``pool_accuracy`` / ``pool_balanced``: the threshold with the highest accuracy / balanced accuracy on the pool
  samples;
- ``oracle``: whether any threshold on the eval items themselves reaches both targets (a ceiling, never a rule).

Prints agreement and balanced agreement per judge and rule, and how many judges reach agreement >= 0.90 and
balanced >= 0.85 (issue 17's targets) under each (docs/results.md, judge_threshold).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

AGREEMENT, BALANCED = 0.90, 0.85


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="+", help="pipeline configs whose runs have their genrm stage done")
    ap.add_argument("--calibration", type=int, default=500, help="pool samples to fit thresholds on (default 500)")
    ap.add_argument("--seed", type=int, default=7, help="sampling seed of the pool samples (default 7)")
    ap.add_argument("--out", help="write the per-judge results as JSON here")
    args = ap.parse_args()
    if args.calibration < 20:
        ap.error("--calibration must be >= 20")

    from datarl.io import write_json

    rows = []
    for path in args.configs:
        row = measure(path, args.calibration, args.seed)
        if row is None:
            return 2
        rows.append(row)
        print(
            f"{row['name']}: {row['eval_items']} eval items ({row['eval_positives']} correct), "
            f"{row['pool_items']} pool samples ({row['pool_positives']} correct), AUC {row['roc_auc']:.3f}, "
            f"{row['seconds']:.0f} s; the stage's table: agreement {(row['stored_table'] or {}).get('agreement')}",
            flush=True,
        )
        for rule in RULES:
            r = row[rule]
            line = f"threshold {r['threshold']:.3f}: agreement {r['agreement']:.3f}, balanced {r['balanced']:.3f}"
            print(f"  {rule:14s} {line}")
        print(f"  oracle: a threshold reaching both targets exists: {row['oracle']}", flush=True)
    print(f"\n{len(rows)} judges; targets: agreement >= {AGREEMENT}, balanced >= {BALANCED}")
    for rule in RULES:
        met = sum(r[rule]["agreement"] >= AGREEMENT and r[rule]["balanced"] >= BALANCED for r in rows)
        mean_a = sum(r[rule]["agreement"] for r in rows) / len(rows)
        mean_b = sum(r[rule]["balanced"] for r in rows) / len(rows)
        print(f"{rule:14s} both targets {met}/{len(rows)}; mean agreement {mean_a:.3f}, mean balanced {mean_b:.3f}")
    print(f"{'oracle':14s} both targets reachable {sum(r['oracle'] for r in rows)}/{len(rows)}")
    if args.out:
        write_json(args.out, {"judges": rows, "calibration": args.calibration, "seed": args.seed})
    return 0


RULES = ("stored", "pool_accuracy", "pool_balanced")


def measure(config_path: str, n: int, seed: int) -> dict | None:
    """One judge's eval items decided under each rule, or None (after saying why) when the run is not ready."""
    from datarl.models.genrm_heldout import (
        HeldoutConfig,
        accuracy,
        balanced_accuracy,
        heldout_items,
        math_samples,
        roc_auc,
    )
    from datarl.models.genrm_train import fit_threshold
    from datarl.models.loading import load_policy
    from datarl.pipeline.config import load_pipeline_config, raw_paths
    from datarl.pipeline.ledger import Ledger
    from datarl.pipeline.stages import policy_dir, read_prompts
    from datarl.rewards.genrm import SOURCE_GT, gt_reference, judge_batch
    from datarl.rewards.genrm_backends import GENRM_META, HFJudge

    start = time.perf_counter()
    cfg = load_pipeline_config(config_path)
    ledger = Ledger(cfg.path("stages.json"))
    judge_dir = cfg.path("judge")
    if "genrm" not in ledger.done or not os.path.isfile(os.path.join(judge_dir, GENRM_META)):
        print(f"{config_path}: run {cfg.run_dir} has no judge yet; run the pipeline to its genrm stage first")
        return None
    with open(os.path.join(judge_dir, GENRM_META), encoding="utf-8") as fh:
        meta = json.load(fh)
    judge = HFJudge.load(judge_dir)  # judge_batch reads raw scores: the stored calibration is applied below
    chars = int((meta.get("config") or {}).get("max_answer_chars", 150))
    policy = load_policy(policy_dir(cfg, ledger))
    items = heldout_items(
        read_prompts(raw_paths(cfg)["eval"]), policy, HeldoutConfig(**meta["heldout_config"]), gt_format=judge.gt_format
    )
    items = [it for it in items if it.kind == "gt"]
    pool = math_samples(read_prompts(raw_paths(cfg)["pool"]), policy, n, seed=seed)

    def scores(triples: list) -> list[float]:
        return [r.score for r in judge_batch(judge, triples, max_answer_chars=chars, source=SOURCE_GT)]

    eval_scores = scores([(it.prompt, it.response, it.reference) for it in items])
    eval_labels = [bool(it.label) for it in items]
    pool_scores = scores([(r["prompt"], r["response"], gt_reference(r, judge)) for r in pool])
    pool_labels = [bool(r["correct"]) for r in pool]
    thresholds = {
        "stored": float((meta.get("calibration") or {}).get(SOURCE_GT, {}).get("threshold", 0.5)),
        "pool_accuracy": fit_threshold(pool_scores, pool_labels, "accuracy")[0],
        "pool_balanced": fit_threshold(pool_scores, pool_labels, "balanced")[0],
    }
    row: dict = {
        "name": os.path.basename(os.path.normpath(cfg.run_dir)),
        "eval_items": len(items),
        "eval_positives": sum(eval_labels),
        "pool_items": len(pool),
        "pool_positives": sum(pool_labels),
        "roc_auc": roc_auc(eval_scores, eval_labels),
        "stored_table": (meta.get("heldout") or {}).get("gt"),  # the genrm stage's own measurement: a control
        "eval_scores": [round(x, 6) for x in eval_scores],
        "eval_labels": eval_labels,
    }
    for rule, th in thresholds.items():
        row[rule] = {
            "threshold": th,
            "agreement": accuracy(eval_scores, eval_labels, th),
            "balanced": balanced_accuracy(eval_scores, eval_labels, th),
        }
    grid = sorted(set(eval_scores))
    cands = [0.0] + [(a + b) / 2 for a, b in zip(grid, grid[1:])] + [1.0]
    row["oracle"] = any(
        accuracy(eval_scores, eval_labels, th) >= AGREEMENT
        and balanced_accuracy(eval_scores, eval_labels, th) >= BALANCED
        for th in cands
    )
    row["seconds"] = time.perf_counter() - start
    return row


if __name__ == "__main__":
    sys.exit(main())
