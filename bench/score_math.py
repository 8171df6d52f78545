"""Benchmark: `datarl score` on the shared math files vs a plain math_verify loop.

Both run as whole processes (start-up and imports included):
- datarl: `datarl score INPUT -o OUT` with its default workers (one per core) and
  per-item timeouts;
- rival: one Python process looping `math_verify.verify(parse(gold), parse(response))`
  with math-verify's own default (signal) timeouts; a ground truth without `$` is given
  as `$gold$` (math-verify reads more of them that way: 76 vs 40 of the 125 correct
  HardVerify-Math dev answers).

Speed and agreement on 3,040 items (2,640 GSM8K + 400 MATH responses). Then accuracy on
TinyV's HardVerify-Math dev half (125 correct answers written in forms rule verifiers
reject, 125 wrong ones): correct answers accepted and wrong answers rejected, side by side.
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
HARDVERIFY = "math_hardverify_dev.jsonl"

PLAIN_LOOP = r"""
import json, sys
from math_verify import parse, verify
rows = [json.loads(l) for l in open(sys.argv[1])]
accepted = []
for r in rows:
    gold = r["ground_truth"] if "$" in r["ground_truth"] else "$" + r["ground_truth"] + "$"
    try:
        ok = bool(verify(parse(gold), parse(r["response"])))
    except Exception:
        ok = False
    accepted.append(ok)
print(json.dumps(accepted))
"""


def _timed(cmd: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, res.stdout


def _datarl(inp: Path, out: Path) -> list[str]:
    return [str(Path(sys.executable).parent / "datarl"), "score", str(inp), "-o", str(out), "--no-progress"]


def _table(labels: list[int], accepted: list[bool]) -> tuple[int, int, int, int]:
    right = sum(1 for lab, ok in zip(labels, accepted) if lab and ok)
    wrong = sum(1 for lab, ok in zip(labels, accepted) if not lab and not ok)
    return right, sum(labels), wrong, len(labels) - sum(labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each side; the best time is kept")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "math.jsonl"
        inp.write_text("".join((SHARED / f).read_text() for f in FILES))
        rows = [json.loads(line) for line in inp.open()]
        n = len(rows)
        out = Path(tmp) / "out.jsonl"
        plain = [sys.executable, "-c", PLAIN_LOOP, str(inp)]
        t_datarl = min(_timed(_datarl(inp, out))[0] for _ in range(args.repeat))
        scored = [json.loads(line) for line in out.open()]
        datarl_agree = sum((r["reward"] == 1.0) == bool(r["label"]) for r in scored)
        timings = [_timed(plain) for _ in range(args.repeat)]
        t_plain = min(t for t, _ in timings)
        plain_agree = sum(ok == bool(r["label"]) for ok, r in zip(json.loads(timings[0][1]), rows))

        hard = SHARED / HARDVERIFY
        hard_rows = [json.loads(line) for line in hard.open()]
        hard_out = Path(tmp) / "hard.jsonl"
        _timed(_datarl(hard, hard_out))
        datarl_hard = [json.loads(line)["reward"] == 1.0 for line in hard_out.open()]
        plain_hard = json.loads(_timed([sys.executable, "-c", PLAIN_LOOP, str(hard)])[1])
    print(f"items: {n} on {os.cpu_count()} cores")
    print(
        f"datarl score (workers={os.cpu_count()}): {t_datarl:6.2f} s  {n / t_datarl:8.1f} items/s  "
        f"agreement {datarl_agree}/{n}"
    )
    print(
        f"plain math_verify loop (1 process): {t_plain:6.2f} s  {n / t_plain:8.1f} items/s  agreement {plain_agree}/{n}"
    )
    print(f"ratio datarl/plain: {t_plain / t_datarl:.2f}x")
    labels = [int(r["label"]) for r in hard_rows]
    print(f"\nHardVerify-Math dev ({len(labels)} items)   correct accepted      wrong rejected")
    for name, accepted in (("rtv.math", datarl_hard), ("plain math_verify", plain_hard)):
        right, n_right, wrong, n_wrong = _table(labels, accepted)
        print(
            f"{name:<32} {right:>4}/{n_right} ({right / n_right:6.1%})  {wrong:>4}/{n_wrong} ({wrong / n_wrong:6.1%})"
        )


if __name__ == "__main__":
    main()
