"""Benchmark: `datarl serve` under a burst of concurrent requests on loopback, new server against old.

Two servers score the same workload in the same run, in turn (``--rounds`` alternations, figures per
round and the median of each):

- new: the current `datarl serve` (uvicorn + Starlette) started from the CLI with a token
  (``DATARL_SERVE_TOKEN``), the clients putting it in the URL path as OpenRLHF would
  (``http://127.0.0.1:PORT/TOKEN/get_reward``);
- old: the standard-library server that `datarl serve` was before the change (``src/datarl/server.py``
  at commit ``--old-commit``, read with ``git show`` into a temporary module; nothing of it stays in src/),
  with no token (it has none).

Each round sends REQUESTS requests at once from REQUESTS client threads (released together by a barrier;
bounded: one request per thread, each with a deadline), each a small mixed batch of math/code/ifeval
samples from the synthetic suite (half the responses right, half wrong). Prints p50/p99 latency,
requests/s and items/s for each server and the new/old ratios, and checks that nothing was lost on
either: every request answered with HTTP 200, one reward per sample, each equal to scoring the same sample
directly with the router, no sample flagged. Then stops each server with SIGTERM (exit code 0 expected).
Only 127.0.0.1 is contacted.

Usage: python bench/serve_load.py [--requests 200] [--batch 4] [--workers N] [--max-wait-ms 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OLD_COMMIT = "36ee0d8"  # the last commit with the standard-library server
WRONG = {
    "math": "It is 123456789.\n#### 123456789",
    "code": "```python\ndef nothing():\n    return None\n```",
    "ifeval": "no",
}
# Runs the old server.py (a file path in argv[1]) as `datarl serve` ran it: serve(ServeConfig), URL on stdout.
OLD_DRIVER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("datarl_old_server", sys.argv[1])
old = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = old
spec.loader.exec_module(old)
cfg = old.ServeConfig(port=0, workers=int(sys.argv[2]), max_wait_ms=float(sys.argv[3]))
sys.exit(old.serve(cfg, on_ready=lambda url: print(url, flush=True)))
"""


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


def run_load(
    name: str, cmd: list[str], env: dict[str, str], prefix: str, bodies: list[dict], expected: list, args
) -> dict:
    """Start one server, send the burst, stop it with SIGTERM; the figures and the checks."""
    log = tempfile.TemporaryFile(mode="w+")  # the server's stderr, shown if it does not start
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    code = None
    try:
        base = server.stdout.readline().strip()
        if not base.startswith("http://127.0.0.1:"):
            server.wait(timeout=60)
            log.seek(0)
            raise RuntimeError(f"{name} server did not start (got {base!r}): {log.read()[-2000:]}")
        url = base + prefix + "/get_reward"
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
        with urllib.request.urlopen(base + prefix + "/health", timeout=30) as resp:
            stats = json.loads(resp.read())["stats"]
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=120)
        log.close()

    lost = [k for k, r in enumerate(replies) if not isinstance(r, dict)]
    wrong = [k for k, r in enumerate(replies) if isinstance(r, dict) and r["rewards"] != expected[k]]
    flagged = sum(sum(r["extra_logs"]["error"]) for r in replies if isinstance(r, dict))
    lat = sorted(x for x in latencies if x is not None)
    for k in lost[:5]:
        print(f"{name}: lost request {k}: {replies[k]}", file=sys.stderr)
    return {
        "wall_s": round(wall, 3),
        "requests_per_s": round(args.requests / wall, 1),
        "items_per_s": round(args.requests * args.batch / wall, 1),
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
        "ok": not lost and not wrong and not flagged and code == 0,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200, help="concurrent requests (one per client thread)")
    ap.add_argument("--batch", type=int, default=4, help="samples per request")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="server scoring workers")
    ap.add_argument("--max-wait-ms", type=float, default=5.0, help="server batching window")
    ap.add_argument("--timeout", type=float, default=300.0, help="client deadline per request, seconds")
    ap.add_argument("--tasks", default="math,code,ifeval", help="comma-separated tasks to mix")
    ap.add_argument("--rounds", type=int, default=3, help="old/new alternations (medians are reported)")
    ap.add_argument("--old-commit", default=OLD_COMMIT, help="commit whose src/datarl/server.py is the old server")
    args = ap.parse_args()

    try:
        old_source = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{args.old_commit}:src/datarl/server.py"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"cannot read the old server from git ({exc}); run from a clone with its history", file=sys.stderr)
        return 2
    bodies, expected = make_requests(args.requests, args.batch, tuple(args.tasks.split(",")))
    token = secrets.token_urlsafe(32)
    common = ["--workers", str(args.workers), "--max-wait-ms", str(args.max_wait_ms)]
    with tempfile.TemporaryDirectory() as tmp:
        old_path = Path(tmp) / "old_server.py"
        old_path.write_text(old_source)
        servers = {
            "new": (
                [sys.executable, "-m", "datarl", "serve", "--port", "0", *common],
                {**os.environ, "DATARL_SERVE_TOKEN": token},
                "/" + token,
            ),
            "old": (
                [sys.executable, "-c", OLD_DRIVER, str(old_path), str(args.workers), str(args.max_wait_ms)],
                dict(os.environ),
                "",
            ),
        }
        rounds: dict[str, list[dict]] = {"old": [], "new": []}
        for r in range(args.rounds):
            for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
                cmd, env, prefix = servers[name]
                rounds[name].append(run_load(name, cmd, env, prefix, bodies, expected, args))
                print(f"round {r + 1} {name}: {json.dumps(rounds[name][-1])}", file=sys.stderr, flush=True)

    def median(name: str, key: str) -> float:
        return statistics.median(x[key] for x in rounds[name])

    keys = ("requests_per_s", "items_per_s", "latency_p50_ms", "latency_p99_ms", "latency_max_ms", "wall_s")
    summary = {
        "requests": args.requests,
        "samples_per_request": args.batch,
        "workers": args.workers,
        "rounds": args.rounds,
        "new": {k: median("new", k) for k in keys},
        "old": {k: median("old", k) for k in keys},
        "ratio_new_over_old": {k: round(median("new", k) / median("old", k), 3) for k in keys},
        "lost": {n: sum(x["lost"] for x in rounds[n]) for n in rounds},
        "mismatched": {n: sum(x["mismatched"] for x in rounds[n]) for n in rounds},
        "flagged_errors": {n: sum(x["flagged_errors"] for x in rounds[n]) for n in rounds},
        "server_exit_codes": {n: [x["server_exit_code"] for x in rounds[n]] for n in rounds},
    }
    print(json.dumps(summary, indent=2))
    ok = all(x["ok"] for n in rounds for x in rounds[n])
    print(
        "OK: every sample answered and equal to direct router scoring, on both servers" if ok else "FAILED",
        file=sys.stderr,
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
