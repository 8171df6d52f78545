"""Judge throughput of the tiny GenRM: pairs/s batched vs one pair at a time.

A pair is one (prompt, response, reference) triple, judged in both orders (two forward
passes' worth of prompts). Throughput does not depend on the weights, so without ``--judge``
a fresh model of the tiny SFT shape (``TinyModelConfig()``) is used.

    python bench/judge.py [--judge DIR] [--pairs 128] [--batch-size 32] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--judge", help="a trained GenRM dir (default: fresh tiny-SFT-shaped model)")
    ap.add_argument("--pairs", type=int, default=128, help="pairs judged per mode")
    ap.add_argument("--batch-size", type=int, default=32, help="judge prompts per forward pass when batched")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args()

    import torch

    from datarl.rewards.genrm import judge_batch
    from datarl.rewards.genrm_backends import HFJudge
    from datarl.synth import SynthConfig, build_suite, wrong_response

    torch.set_num_threads(args.threads)
    recs = build_suite(SynthConfig(tasks=("math", "general"), train_per_task=200, pool_per_task=0, eval_per_task=0))[
        "train"
    ]
    if args.judge:
        judge = HFJudge.load(args.judge, batch_size=args.batch_size)
    else:
        from datarl.models.tiny import TinyModelConfig, build_tiny_policy

        texts = [str(r["prompt"]) + "\n" + str(r["reference"]) for r in recs]
        judge = HFJudge(build_tiny_policy(texts, TinyModelConfig(), seed=0), batch_size=args.batch_size)
    rng = random.Random(0)
    items = []
    for r in (recs * (args.pairs // len(recs) + 1))[: args.pairs]:
        ref = f"#### {r['ground_truth']}" if r["task"] == "math" else r["reference"]
        items.append((r["prompt"], wrong_response(r, rng), ref))
    judge_batch(judge, items[:4])  # warm-up
    t = time.perf_counter()
    batched = judge_batch(judge, items)
    batched_s = time.perf_counter() - t
    judge.batch_size = 1
    t = time.perf_counter()
    single = [judge_batch(judge, [it])[0] for it in items]
    single_s = time.perf_counter() - t
    drift = max(abs(a.score - b.score) for a, b in zip(batched, single))
    n_params = sum(p.numel() for p in judge.policy.model.parameters())
    print(
        f"judge {judge.name} ({n_params / 1e6:.2f}M params), {len(items)} pairs (2 prompts each), "
        f"{args.threads} thread(s)"
    )
    print(f"batched (batch_size={args.batch_size}): {len(items) / batched_s:.1f} pairs/s")
    print(f"one pair at a time:      {len(items) / single_s:.1f} pairs/s")
    print(f"ratio batched / single:  {single_s / batched_s:.2f}x   (max score difference {drift:.2e})")


if __name__ == "__main__":
    main()
