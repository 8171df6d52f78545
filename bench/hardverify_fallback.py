"""Benchmark: "verifier first, judge fallback" on HardVerify-Math dev (issue 17, item 2).

TinyV's HardVerify-Math dev half (bench/score_math.py reads the same file): 125 correct answers written in
forms rule verifiers reject, 125 wrong ones; each row is already a datarl math record (task, prompt,
ground_truth) with its response and a 0/1 label. Every row is scored twice through datarl's router and
LocalEngine:

- rtv.math: the rule verifier alone;
- rtv.math -> genrm.gt: the judge (an OpenAI-compatible endpoint, or with ``--judge`` a local judge directory
  such as a ``datarl train-genrm`` or ``bench/judge_budget.py --keep`` output, compared with the record's ground truth)
  is asked only where rtv.math says wrong or finds no answer, and then decides (reward 1 when its
  order-averaged score is above 0.5); a judge call that fails leaves the verifier's verdict (fallback_error).

Prints, per route: correct answers accepted, wrong answers rejected, accuracy, judge calls (items judged;
each is two requests, one per answer order), judge errors and seconds; then what the fallback changed.

Usage:
  python bench/hardverify_fallback.py --base-url http://127.0.0.1:8000/v1 --model smollm2 [--api chat]
  python bench/hardverify_fallback.py --start-llama PATH.gguf [--llama-python /work/.venv-llama/bin/python]
  python bench/hardverify_fallback.py --judge JUDGE_DIR
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from score_math import HARDVERIFY, SHARED, _table

from datarl.executors.engine import LocalEngine
from datarl.metrics.stats import paired_difference
from datarl.rewards.base import RewardResult
from datarl.rewards.router import Router, RouterConfig

ENDPOINT = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_llama(args: argparse.Namespace, log: Path) -> tuple[subprocess.Popen, str]:
    """llama-cpp-python's OpenAI-compatible server on the GGUF; returns once /v1/models answers."""
    port = args.port or _free_port()
    cmd = [args.llama_python, "-m", "llama_cpp.server", "--model", args.start_llama, "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--model_alias", args.model, "--n_ctx", str(args.n_ctx)]
    cmd += ["--n_threads", str(args.n_threads), "--logits_all", "true"]
    print("server:", " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"llama.cpp server exited ({proc.returncode}):\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(base_url + "/models", timeout=2) as resp:
                json.load(resp)
            return proc, base_url
        except OSError:
            time.sleep(1)
    proc.terminate()
    raise SystemExit(f"llama.cpp server did not answer {base_url}/models in 300 s; log: {log}")


def run_route(cfg: dict[str, Any], rows: list[dict], workers: int) -> tuple[list[RewardResult], float]:
    start = time.perf_counter()
    with LocalEngine(Router(RouterConfig.from_mapping(cfg)), workers=workers, timeout_s=30) as engine:
        results = engine.score(rows, [r["response"] for r in rows])
    return results, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="an already running OpenAI-compatible server, e.g. http://host:8000/v1")
    parser.add_argument("--judge", metavar="DIR", help="a local judge directory (hf backend) instead of an endpoint")
    parser.add_argument("--model", default="smollm2", help="the served model name (the alias with --start-llama)")
    parser.add_argument("--api", choices=["completions", "chat"], default="completions", help="judge endpoint")
    parser.add_argument("--start-llama", metavar="GGUF", help="start llama_cpp.server on this GGUF, stop it at the end")
    parser.add_argument("--llama-python", default="/work/.venv-llama/bin/python", help="python with llama_cpp.server")
    parser.add_argument("--port", type=int, default=0, help="port for --start-llama (0: a free one)")
    parser.add_argument("--n-threads", type=int, default=1, help="llama.cpp threads with --start-llama")
    parser.add_argument("--n-ctx", type=int, default=4096, help="llama.cpp context tokens with --start-llama")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="judge per-request timeout (seconds)")
    parser.add_argument("--batch-size", type=int, default=2, help="concurrent judge requests")
    parser.add_argument("--retries", type=int, default=1, help="judge retries per request")
    parser.add_argument("--workers", type=int, default=1, help="rtv.math worker processes")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N rows (0: all)")
    parser.add_argument("--data", type=Path, default=SHARED / HARDVERIFY, help="HardVerify-Math dev JSONL")
    args = parser.parse_args()
    if sum(bool(x) for x in (args.base_url, args.start_llama, args.judge)) != 1:
        parser.error("give one of --base-url, --start-llama or --judge")
    if args.judge and not Path(args.judge).is_dir():
        parser.error(f"--judge {args.judge}: no such judge directory")

    rows = [json.loads(line) for line in args.data.open()]
    rows = rows[: args.limit] if args.limit else rows
    labels = [int(r["label"]) for r in rows]
    proc = None
    base_url = args.base_url
    if args.start_llama:
        proc, base_url = start_llama(args, Path(f"/tmp/hardverify_llama_{args.api}.log"))
    judge: str | dict[str, Any] = args.judge
    if not args.judge:
        judge = {"backend": "openai", "base_url": base_url, "model": args.model, "api": args.api}
        judge |= {"timeout_s": args.timeout_s, "retries": args.retries, "batch_size": args.batch_size}
    try:
        alone, t_alone = run_route({"router": {"math": "rtv.math"}}, rows, args.workers)
        fallback_cfg = {
            "router": {"math": {"source": "rtv.math", "fallback": "genrm.gt"}},
            "sources": {"genrm.gt": {"judge": judge}},
        }
        both, t_both = run_route(fallback_cfg, rows, args.workers)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    report(args, labels, alone, t_alone, both, t_both)


def report(
    args: argparse.Namespace,
    labels: list[int],
    alone: list[RewardResult],
    t_alone: float,
    both: list[RewardResult],
    t_both: float,
) -> None:
    judged = [i for i, r in enumerate(both) if "verdicts" in r.info]
    errors = [i for i in judged if "fallback_error" in both[i].info]
    via = f"{args.judge} (hf backend)" if args.judge else f"{args.model} via {ENDPOINT[args.api]} (openai backend)"
    print(f"\nHardVerify-Math dev: {len(labels)} items; judge {via}")
    head = f"{'route':<22} {'correct accepted':>18} {'wrong rejected':>16} {'accuracy':>9}"
    print(head + f" {'judge calls':>12} {'judge errors':>13} {'seconds':>8}")
    for name, results, secs, calls, errs in (
        ("rtv.math", alone, t_alone, 0, 0),
        ("rtv.math -> genrm.gt", both, t_both, len(judged), len(errors)),
    ):
        right, n_right, wrong, n_wrong = _table(labels, [r.score == 1.0 for r in results])
        acc = (right + wrong) / len(labels)
        print(
            f"{name:<22} {f'{right}/{n_right}':>18} {f'{wrong}/{n_wrong}':>16} {acc:>9.1%}"
            f" {calls:>12} {errs:>13} {secs:>8.1f}"
        )
    print(f"(judge calls: items judged, each 2 requests = {2 * len(judged)} requests, one per answer order)")
    right_alone = [int((r.score == 1.0) == bool(y)) for r, y in zip(alone, labels)]
    right_both = [int((r.score == 1.0) == bool(y)) for r, y in zip(both, labels)]
    d = paired_difference(right_alone, right_both)
    print(
        f"fallback - rtv.math accuracy, row by row: {d['diff']:+.3f} [{d['ci95_low']:+.3f}, {d['ci95_high']:+.3f}] "
        f"({d['improved']} rows now right, {d['worsened']} now wrong)"
    )
    decided = [i for i in judged if both[i].info["decided_by"] == "genrm.gt"]
    up = [i for i in decided if both[i].score == 1.0]
    fixed, broke = sum(labels[i] for i in up), sum(1 - labels[i] for i in up)
    down = sum(1 for a, b in zip(alone, both) if a.score == 1.0 and b.score == 0.0)
    print(f"fallback decisions: {len(decided)}; verdict flips wrong->right: {len(up)} ({fixed} correct answers")
    print(f"  now accepted, {broke} wrong answers now accepted); right->wrong: {down} (the judge is never asked then)")
    not_asked = Counter(r.failure for r in alone if r.score == 0.0 and r.failure not in ("wrong_answer", "no_answer"))
    if not_asked:
        print(f"verifier rejections the judge is not asked about: {dict(not_asked)}")
    for lab, name in ((1, "correct"), (0, "wrong")):
        scores = [both[i].info["fallback_score"] for i in decided if labels[i] == lab]
        if scores:
            print(f"judge score on {name} answers it decided: mean {sum(scores) / len(scores):.3f} over {len(scores)}")
    consistent = sum(bool(both[i].info["verdicts"]["genrm.gt"]["position_consistent"]) for i in decided)
    print(f"position-consistent judge verdicts: {consistent}/{len(decided)}")
    if errors:
        kinds = Counter(str(both[i].info["fallback_error"])[:150] for i in errors)
        print("judge errors:", *(f"  {n} x {msg}" for msg, n in kinds.most_common(5)), sep="\n")


if __name__ == "__main__":
    sys.exit(main())
