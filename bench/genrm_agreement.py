"""GenRM+GT agreement with rtv.math on held-out SFT math responses, and BT pair accuracy.

    python bench/genrm_agreement.py --judge JUDGE_DIR [--bt BT_DIR --pairs HELDOUT_PAIRS] [--n 500]

Samples the SFT policy on the suite's *eval* math prompts (never seen by the judge's training,
which uses train prompts), scores each response with ``rtv.math`` (the verifier) and with
``genrm.gt`` (the judge against the ground truth), and prints: raw agreement (judge score > 0.5
iff the verifier says correct), balanced accuracy (mean of the agreement on correct and on wrong
responses: a judge that always says "wrong" gets 0.5 here however rare correct answers are) and
position consistency (both orders gave the same verdict). A judge calibrated with ``datarl
calibrate-genrm`` (a threshold fitted on responses to *training* prompts) is scored calibrated, and the
uncalibrated agreement is printed beside it. With ``--bt``, also the BT model's
pair accuracy on a pairs file (e.g. pairs made from eval prompts), overall and per task.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--judge", required=True, help="GenRM judge directory (datarl train-genrm)")
    ap.add_argument("--suite", default=None, help="suite directory (default: a fresh default suite)")
    ap.add_argument("--policy", default=None, help="SFT policy (default: the tiny SFT policy)")
    ap.add_argument("--n", type=int, default=500, help="responses to judge (default 500)")
    ap.add_argument("--bt", help="BT model directory, to report pair accuracy on --pairs")
    ap.add_argument("--pairs", help="held-out pairs JSONL for --bt")
    args = ap.parse_args()

    from datarl.models.generate import SamplingConfig, generate
    from datarl.models.loading import load_policy
    from datarl.models.sft import build_sft_policy
    from datarl.rewards.genrm import score_genrm_gt_batch
    from datarl.rewards.math import score_math
    from datarl.synth import SynthConfig, build_suite

    if args.suite:
        with open(os.path.join(args.suite, "eval.jsonl")) as fh:
            evals = [json.loads(line) for line in fh]
    else:
        # 300 eval prompts per task: the suite the judge recipe (scripts/train_gt_judge.py) kept out
        # of its training data when the documented judge was trained (math has 2,100 eval prompts now)
        evals = build_suite(SynthConfig(eval_by_task={}))["eval"]
    math_prompts = [r for r in evals if r["task"] == "math"]
    per_prompt = -(-args.n // len(math_prompts))
    policy = load_policy(args.policy or build_sft_policy(log=lambda m: None))
    gens = generate(
        policy,
        [r["prompt"] for r in math_prompts],
        SamplingConfig(temperature=1.0, samples_per_prompt=per_prompt, seed=123, batch_size=64),
    )
    gens = gens[: args.n]
    records = [math_prompts[g.prompt_index] for g in gens]
    texts = [g.text for g in gens]
    truth = [score_math(r, t).score == 1.0 for r, t in zip(records, texts)]
    start = time.perf_counter()
    judged = score_genrm_gt_batch(records, texts, judge=args.judge)
    seconds = time.perf_counter() - start
    errors = [j for j in judged if j.info.get("failure")]
    says = [j.score > 0.5 for j in judged]
    agree = [s == t for s, t in zip(says, truth)]
    on_correct = [a for a, t in zip(agree, truth) if t]
    on_wrong = [a for a, t in zip(agree, truth) if not t]
    consistent = [bool(j.info.get("position_consistent")) for j in judged]
    print(
        f"genrm.gt vs rtv.math on {len(gens)} held-out SFT math responses "
        f"({sum(truth)} correct by rtv.math, {len(errors)} judge errors, {len(gens) / seconds:.1f} judged/s)"
    )
    print(f"  agreement           {sum(agree) / len(agree):.3f}")
    if on_correct and on_wrong:
        print(f"  on correct answers  {sum(on_correct) / len(on_correct):.3f} ({len(on_correct)})")
        print(f"  on wrong answers    {sum(on_wrong) / len(on_wrong):.3f} ({len(on_wrong)})")
        print(f"  balanced accuracy   {(sum(on_correct) / len(on_correct) + sum(on_wrong) / len(on_wrong)) / 2:.3f}")
    print(f"  position consistency {sum(consistent) / len(consistent):.3f}")
    thresholds = {j.info.get("calibration_threshold") for j in judged} - {None}
    if thresholds:  # the judge carries a fitted threshold (datarl calibrate-genrm): show the raw decision too
        raw = [j.info.get("raw_score", j.score) > 0.5 for j in judged]
        print(
            f"  calibrated at threshold {sorted(thresholds)[0]:.3f}; uncalibrated agreement (raw score > 0.5) "
            f"{sum(r == t for r, t in zip(raw, truth)) / len(raw):.3f}"
        )
    if args.bt and args.pairs:
        from datarl.models.bt_train import pair_metrics
        from datarl.preferences import load_pairs
        from datarl.rewards.bt import bt_scores

        pairs = load_pairs(args.pairs)
        rc = bt_scores(args.bt, [p["prompt"] for p in pairs], [p["chosen"] for p in pairs])
        rr = bt_scores(args.bt, [p["prompt"] for p in pairs], [p["rejected"] for p in pairs])
        m = pair_metrics(pairs, list(zip(rc, rr)), "heldout")
        print(f"bt pair accuracy on {len(pairs)} pairs of {args.pairs}:")
        for k, v in sorted(m.items()):
            print(f"  {k:<40} {v:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
