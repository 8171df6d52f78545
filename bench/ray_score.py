"""10,000 mixed records (math / code / ifeval) through the local engine and the Ray engine on this machine.

Records come from the embedded synth suite, repeated with unique ids; half the responses are the
reference, half a wrong answer. Both engines score the same records with the default router and the
same per-item timeout; the script prints items/s for each (Ray with and without its start-up), their
ratio, and checks that the results are identical by id (the code sandbox's ``wall_seconds`` aside).

    OMP_NUM_THREADS=1 .venv/bin/python bench/ray_score.py --records 10000 --workers 2
"""

from __future__ import annotations

import argparse
import random
import sys
import time


def build_records(count: int, seed: int = 0) -> tuple[list[dict], list[str]]:
    from datarl.synth import SynthConfig, build_suite, wrong_response

    base = build_suite(SynthConfig(seed=seed, pool_per_task=0, eval_per_task=0, tasks=("math", "code", "ifeval")))[
        "train"
    ]
    rng = random.Random(seed)
    records = [{**base[i % len(base)], "id": f"{base[i % len(base)]['id']}#{i}"} for i in range(count)]
    responses = [r["reference"] if i % 2 == 0 else wrong_response(r, rng) for i, r in enumerate(records)]
    return records, responses


def comparable(result) -> tuple:
    return result.score, result.source, {k: v for k, v in result.info.items() if k != "wall_seconds"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2, help="local worker processes = Ray actors (default 2)")
    ap.add_argument("--timeout", type=float, default=30.0, help="per-item limit, both engines")
    ap.add_argument("--batch-size", type=int, default=None, help="Ray rows per actor call (default: planned)")
    args = ap.parse_args()

    from datarl.executors.engine import LocalEngine
    from datarl.executors.ray_engine import RayEngine, RayOptions, plan_blocks
    from datarl.rewards.router import Router, RouterConfig

    records, responses = build_records(args.records)
    tasks = {t: sum(r["task"] == t for r in records) for t in ("math", "code", "ifeval")}
    print(f"{len(records)} records: " + ", ".join(f"{t}={n}" for t, n in tasks.items()))
    cfg = RouterConfig()

    start = time.perf_counter()
    with LocalEngine(Router(cfg), workers=args.workers, timeout_s=args.timeout) as engine:
        local = engine.score(records, responses)
    local_s = time.perf_counter() - start
    print(f"local engine, {args.workers} workers: {local_s:.1f} s, {len(records) / local_s:.1f} items/s")

    options = RayOptions(actors=args.workers, batch_size=args.batch_size)
    plan = plan_blocks(len(records), args.workers, args.batch_size)
    start = time.perf_counter()
    with RayEngine(options) as engine:
        engine.resources()  # Ray start-up, timed apart from the scoring
        started = time.perf_counter()
        remote = engine.score_responses(cfg, records, responses, args.timeout)
        ray_s = time.perf_counter() - started
    total_s = time.perf_counter() - start
    print(
        f"ray engine, {plan.actors} actors, {plan.blocks} blocks of {plan.batch_size} rows: {ray_s:.1f} s "
        f"({len(records) / ray_s:.1f} items/s); with Ray start-up and shutdown {total_s:.1f} s "
        f"({len(records) / total_s:.1f} items/s)"
    )
    print(f"ratio ray/local: {local_s / ray_s:.2f} (scoring), {local_s / total_s:.2f} (with start-up)")

    by_id = {r["id"]: x for r, x in zip(records, remote)}
    differ = [r["id"] for r, x in zip(records, local) if comparable(by_id[r["id"]]) != comparable(x)]
    failures = sum(1 for x in remote if x.failure in ("timeout", "internal_error", "worker_crashed"))
    print(f"identical by id: {len(records) - len(differ)}/{len(records)}; timeouts/internal errors: {failures}")
    if differ:
        print(f"first differing id: {differ[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
