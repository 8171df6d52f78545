"""Benchmark: `datarl serve` under a burst of concurrent requests on loopback.

Starts the real CLI (`datarl serve --port 0`) on 127.0.0.1, then sends REQUESTS requests at once from
REQUESTS client threads (released together by a barrier; bounded: one request per thread, each with a
deadline), each a small mixed batch of math/code/ifeval samples from the synthetic suite (half the
responses right, half wrong). Prints p50/p99 latency, requests/s and items/s, and checks that nothing was
lost: every request answered with HTTP 200, one reward per sample, each equal to scoring the same sample
directly with the router, no sample flagged. Then stops the server with SIGTERM (exit code 0 expected).
Only 127.0.0.1 is contacted.

Usage: python bench/serve_load.py [--requests 200] [--batch 4] [--workers N] [--max-wait-ms 5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

WRONG = {
    "math": "It is 123456789.\n#### 123456789",
    "code": "```python\ndef nothing():\n    return None\n```",
    "ifeval": "no",
}


def chat(prompt: str) -> str:
    return f"<|im_start|>user\n{prompt}<|im_end|>\n<|im_start|>assistant\n"


def make_requests(
    n_requests: int, batch: int, tasks: tuple[str, ...] = ("math", "code", "ifeval")
) -> tuple[list[dict], list[list[float]]]:
    from datarl.integrations.openrlhf import make_label
    from datarl.rewards.router import Router
    from datarl.synth import SynthConfig, build_suite

    suite = build_suite(SynthConfig(train_per_task=50, pool_per_task=0, eval_per_task=0))["train"]
    records = [r for r in suite if r["task"] in tasks]
    router = Router()
    bodies, expected = [], []
    for k in range(n_requests):
        recs = [records[(k * batch + j) % len(records)] for j in range(batch)]
        resps = [r["reference"] if (k + j) % 2 else WRONG[r["task"]] for j, r in enumerate(recs)]
        prompts = [chat(r["prompt"]) for r in recs]
        bodies.append(
            {
                "query": [p + s + "<|im_end|>" for p, s in zip(prompts, resps)],
                "prompts": prompts,
                "labels": [make_label(r) for r in recs],
            }
        )
        expected.append([router.score(r, s).score for r, s in zip(recs, resps)])
    return bodies, expected


def post(url: str, body: dict, timeout: float) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}")
        return json.loads(resp.read())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200, help="concurrent requests (one per client thread)")
    ap.add_argument("--batch", type=int, default=4, help="samples per request")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="server scoring workers")
    ap.add_argument("--max-wait-ms", type=float, default=5.0, help="server batching window")
    ap.add_argument("--timeout", type=float, default=300.0, help="client deadline per request, seconds")
    ap.add_argument("--tasks", default="math,code,ifeval", help="comma-separated tasks to mix")
    args = ap.parse_args()

    bodies, expected = make_requests(args.requests, args.batch, tuple(args.tasks.split(",")))
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "datarl",
            "serve",
            "--port",
            "0",
            "--workers",
            str(args.workers),
            "--max-wait-ms",
            str(args.max_wait_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base = server.stdout.readline().strip()
        if not base.startswith("http://127.0.0.1:"):
            print(f"server did not start (got {base!r})", file=sys.stderr)
            return 1
        url = base + "/get_reward"
        post(url, bodies[0], args.timeout)  # warm-up: first fork of the workers
        latencies: list[float | None] = [None] * args.requests
        replies: list[dict | str | None] = [None] * args.requests
        gate = threading.Barrier(args.requests + 1)

        def client(k: int) -> None:
            gate.wait()
            t0 = time.perf_counter()
            try:
                replies[k] = post(url, bodies[k], args.timeout)
            except Exception as exc:  # counted as lost below
                replies[k] = f"{type(exc).__name__}: {exc}"
            latencies[k] = time.perf_counter() - t0

        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.requests)]
        for t in threads:
            t.start()
        gate.wait()
        start = time.perf_counter()
        for t in threads:
            t.join(args.timeout + 10)
        wall = time.perf_counter() - start
        with urllib.request.urlopen(base + "/health", timeout=30) as resp:
            stats = json.loads(resp.read())["stats"]
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=120)

    lost = [k for k, r in enumerate(replies) if not isinstance(r, dict)]
    wrong = [k for k, r in enumerate(replies) if isinstance(r, dict) and r["rewards"] != expected[k]]
    flagged = sum(sum(r["extra_logs"]["error"]) for r in replies if isinstance(r, dict))
    lat = sorted(x for x in latencies if x is not None)
    items = args.requests * args.batch
    summary = {
        "requests": args.requests,
        "samples_per_request": args.batch,
        "workers": args.workers,
        "wall_s": round(wall, 3),
        "requests_per_s": round(args.requests / wall, 1),
        "items_per_s": round(items / wall, 1),
        "latency_p50_ms": round(1000 * lat[len(lat) // 2], 1) if lat else None,
        "latency_p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1) if lat else None,
        "latency_max_ms": round(1000 * lat[-1], 1) if lat else None,
        "lost": len(lost),
        "mismatched": len(wrong),
        "flagged_errors": int(flagged),
        "server_batches": stats["batches"] - 1,
        "server_max_batch_items": stats["max_batch_items"],
        "server_multi_request_batches": stats["multi_request_batches"],
        "server_scoring_s": stats["scoring_s"],
        "server_exit_code": code,
    }
    print(json.dumps(summary, indent=2))
    for k in lost[:5]:
        print(f"lost request {k}: {replies[k]}", file=sys.stderr)
    ok = not lost and not wrong and not flagged and code == 0
    print("OK: every sample answered and equal to direct router scoring" if ok else "FAILED", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
