"""Two judges on the same held-out items: accuracy and position consistency, and their difference with an interval.

    python bench/judge_compare.py A.json B.json [--independent] [--out diff.json]

A and B are curves written by ``bench/judge_budget.py --out`` (their last checkpoints are compared). When both
were written with ``--per-item`` on the same items (the digest of the items' text matches), the difference
A - B is paired item by item (``datarl.metrics.stats.paired_difference``: an item both judges get right or
both get wrong adds no noise). Otherwise only the two tables are known, and the difference is that of two
independent proportions (Newcombe's interval, ``proportion_difference``): wider than the paired one would be
on the same items, so a difference it calls is there, and one it misses may still be. Two judges measured
per item on *different* items (other runs, another machine's SFT policy) are refused unless ``--independent``
asks for that comparison of two independent samples.

Per kind (``gt``: math answers against the ground truth, with the judge's own ``genrm.gt`` threshold;
``pairs``: general pairs against the gold order) it prints each judge's share with its Wilson 95% interval
and A - B's difference with its 95% interval.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

METRICS = (("agreement", "correct"), ("position_consistency", "consistent"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", help="judge_budget.py --out JSON of judge A")
    ap.add_argument("b", help="judge_budget.py --out JSON of judge B (the difference is A - B)")
    ap.add_argument(
        "--independent",
        action="store_true",
        help="compare judges measured on different items as two independent samples (Newcombe) instead of refusing",
    )
    ap.add_argument("--out", help="write the comparison as JSON here")
    args = ap.parse_args()
    try:
        a, b = _load(args.a), _load(args.b)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    per_item = "items" in a and "items" in b
    paired = per_item and a["items"]["digest"] == b["items"]["digest"]
    if per_item and not paired and not args.independent:
        print(
            f"error: {args.a} and {args.b} were measured on different items (digests differ); --independent "
            "compares them as two independent samples",
            file=sys.stderr,
        )
        return 2
    print(f"A: {args.a} (step {a['last']['step']})\nB: {args.b} (step {b['last']['step']})")
    print(
        "paired item by item"
        if paired
        else "different items: independent proportions (Newcombe)"
        if per_item
        else "tables only: independent proportions (Newcombe), conservative"
    )
    result = {"a": args.a, "b": args.b, "paired": paired, "kinds": {}}
    for kind in sorted(set(a["last"]["table"]) & set(b["last"]["table"])):
        result["kinds"][kind] = rows = {}
        for metric, per_item in METRICS:
            rows[metric] = row = _compare(a, b, kind, metric, per_item, paired)
            print(
                f"{kind:5s} {metric:20s}  A {_fmt(row['a'])}  B {_fmt(row['b'])}  "
                f"A-B {row['diff']:+.3f} [{row['ci95_low']:+.3f}, {row['ci95_high']:+.3f}]"
            )
    if args.out:
        from datarl.io import write_json

        write_json(args.out, result)
    return 0


def _load(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read a judge_budget.py curve ({e})") from e
    if not isinstance(data, dict) or not data.get("checkpoints"):
        raise ValueError(f"{path}: no checkpoints (write it with bench/judge_budget.py --out)")
    data["last"] = data["checkpoints"][-1]
    if "items" in data and "scores" not in data["last"]:
        raise ValueError(f"{path}: its last checkpoint has no per-item scores")
    return data


def _outcomes(data: dict, kind: str, per_item: str) -> list[int]:
    """Per item of ``kind``: 1 if the judge got it right (``correct``) or both orders agreed (``consistent``)."""
    last, items = data["last"], data["items"]
    threshold = last["table"][kind]["threshold"]
    out = []
    for k, label, score, consistent in zip(items["kind"], items["label"], last["scores"], last["consistent"]):
        if k == kind:
            out.append(int((score > threshold) == bool(label)) if per_item == "correct" else int(consistent))
    return out


def _compare(a: dict, b: dict, kind: str, metric: str, per_item: str, paired: bool) -> dict:
    from datarl.metrics.stats import paired_difference, proportion_difference, wilson_interval

    row: dict = {}
    counts = []
    for name, data in (("a", a), ("b", b)):
        table = data["last"]["table"][kind]
        n = int(table["items"])
        successes = round(table[metric] * n)
        counts += [successes, n]
        row[name] = {"share": table[metric], "n": n, "ci95": list(wilson_interval(successes, n))}
    if paired:
        diff = paired_difference(_outcomes(b, kind, per_item), _outcomes(a, kind, per_item))
        row.update(diff=diff["diff"], ci95_low=diff["ci95_low"], ci95_high=diff["ci95_high"])
        row.update(a_only=diff["improved"], b_only=diff["worsened"])
    else:
        row.update(proportion_difference(*counts))
    return row


def _fmt(side: dict) -> str:
    low, high = side["ci95"]
    return f"{side['share']:.3f} [{low:.3f}, {high:.3f}] (n {side['n']})"


if __name__ == "__main__":
    sys.exit(main())
