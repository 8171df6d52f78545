"""Train the tiny GenRM+GT judge measured in docs/results.md ("GenRM+GT agreement").

    python scripts/train_gt_judge.py OUT_DIR [--base DIR] [--steps 3000] [--lr 1e-3] [--threads 1]

Judge items: for each of about 3,200 synthetic math prompts (a 3,000-per-task suite's train and pool
splits, minus every prompt of that suite's and the default suite's eval split), the reference solution
(correct) and one synthetic wrong answer (``datarl.synth.wrong_response``), each judged against the
ground truth in both orders. The measured judge took two runs: 3,000 steps at lr 1e-3 from the tiny SFT
policy, then 2,000 steps at lr 3e-4 (``--base`` the first run's output, ``--warmup 10``): about 80 min
on one core. Then calibrate it on SFT samples to *training* prompts (``datarl calibrate-genrm``) and
measure it on eval prompts with ``bench/genrm_agreement.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="judge directory to write")
    ap.add_argument("--base", default=None, help="model to start from (default: the tiny SFT policy)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from datarl.models.genrm_train import GenRMTrainConfig, train_genrm
    from datarl.models.sft import build_sft_policy
    from datarl.synth import SynthConfig, build_suite, wrong_response

    torch.set_num_threads(args.threads)
    suite = build_suite(SynthConfig(train_per_task=3000, pool_per_task=200, eval_per_task=300, tasks=("math",)))
    banned = {json.dumps(r["prompt"]) for r in suite["eval"] + build_suite(SynthConfig())["eval"]}
    records = [r for r in suite["train"] + suite["pool"] if json.dumps(r["prompt"]) not in banned]
    rng = random.Random(0)
    items = []
    for r in records:
        base = {"prompt": r["prompt"], "ground_truth": r["ground_truth"]}
        items += [
            {**base, "response": r["reference"], "correct": True},
            {**base, "response": wrong_response(r, rng), "correct": False},
        ]
    print(f"{len(items)} judge items from {len(records)} prompts", flush=True)
    start = time.time()
    cfg = GenRMTrainConfig(
        steps=args.steps, lr=args.lr, warmup_steps=args.warmup, batch_size=32, max_answer_chars=400, eval_fraction=0.05
    )
    meta = train_genrm(
        [],
        args.base or build_sft_policy(log=lambda m: None),
        args.out,
        cfg,
        gt_records=items,
        log=lambda m: print(m, flush=True),
    )
    print(json.dumps({k: meta[k] for k in ("items", "train", "metrics", "metrics_before")}, indent=1))
    print(f"{time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
