"""Benchmark: `datarl score` on the shared math files vs a plain math_verify loop.

Both run as whole processes (start-up and imports included) on the same 3,040 items
(2,640 GSM8K + 400 MATH responses):
- datarl: `datarl score INPUT -o OUT` with its default workers (one per core) and
  per-item timeouts;
- rival: one Python process looping `math_verify.verify(parse(gold), parse(response))`
  with math-verify's own default (signal) timeouts.
Prints items/s for both, the ratio, and each side's agreement with the labels.
Usage: python bench/score_math.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
FILES = ["math_gsm8k_solutions.jsonl", "math_qwen_math_cot.jsonl"]

PLAIN_LOOP = r"""
import json, sys
from math_verify import parse, verify
rows = [json.loads(l) for l in open(sys.argv[1])]
agree = 0
for r in rows:
    try:
        ok = bool(verify(parse(r["ground_truth"]), parse(r["response"])))
    except Exception:
        ok = False
    agree += ok == r["label"]
print(json.dumps({"n": len(rows), "agree": agree}))
"""


def _timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, res.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side; the best time is kept")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "math.jsonl"
        inp.write_text("".join((SHARED / f).read_text() for f in FILES))
        n = sum(1 for _ in inp.open())
        out = Path(tmp) / "out.jsonl"
        datarl = [str(Path(sys.executable).parent / "datarl"), "score", str(inp), "-o", str(out), "--no-progress"]
        plain = [sys.executable, "-c", PLAIN_LOOP, str(inp)]
        t_datarl = min(_timed(datarl)[0] for _ in range(args.repeat))
        rows = [json.loads(l) for l in out.open()]
        datarl_agree = sum((r["reward"] == 1.0) == r["label"] for r in rows)
        timings = [_timed(plain) for _ in range(args.repeat)]
        t_plain = min(t for t, _ in timings)
        plain_agree = json.loads(timings[0][1])["agree"]
    print(f"items: {n} on {os.cpu_count()} cores")
    print(f"datarl score (workers={os.cpu_count()}): {t_datarl:6.2f} s  {n / t_datarl:8.1f} items/s  "
          f"agreement {datarl_agree}/{n}")
    print(f"plain math_verify loop (1 process): {t_plain:6.2f} s  {n / t_plain:8.1f} items/s  "
          f"agreement {plain_agree}/{n}")
    print(f"ratio datarl/plain: {t_plain / t_datarl:.2f}x")


if __name__ == "__main__":
    main()
