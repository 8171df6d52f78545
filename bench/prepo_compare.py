"""Pre-PPO selection vs random selection at the same count vs all pool prompts, in one seeded experiment.

    python bench/prepo_compare.py runs/demo [--steps 40]

Reuses a finished ``datarl pipeline`` run directory: its Pre-PPO scores file (one scoring pass serves
every strategy), its references, BT model and judge, and its PPO config. For ``random`` (same count as
``lowest``, seeded) and ``all``, it writes the training set (train + selected) and runs the same PPO
(same seed, steps, curriculum, reward) into ``RUN/compare/<strategy>``; ``lowest`` is the pipeline's
own ``RUN/train``. Prints the gold eval score by task after the same number of steps, with 95% CIs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", help="a finished `datarl pipeline` run directory")
    ap.add_argument(
        "--config",
        default=os.path.join(os.path.dirname(__file__), "..", "examples", "demo.yaml"),
        help="the pipeline config the run used (default: examples/demo.yaml)",
    )
    ap.add_argument("--steps", type=int, default=0, help="PPO steps (default: the config's)")
    args = ap.parse_args()

    from datarl.pipeline import load_pipeline_config, router_mapping
    from datarl.pipeline.ledger import Ledger
    from datarl.pipeline.stages import load_stage_policy, policy_dir, train_config
    from datarl.rewards.router import RouterConfig
    from datarl.rl.trainer import train
    from datarl.select.prepo import SelectConfig
    from datarl.select.prepo_engine import run_select

    cfg = load_pipeline_config(args.config, args.run_dir)
    ledger = Ledger(cfg.path("stages.json"))
    if "train" not in ledger.done:
        print(f"{args.run_dir}: run `datarl pipeline` to the end first", file=sys.stderr)
        return 2
    with open(cfg.path("data", "selected.jsonl.report.json")) as fh:
        kept = int(json.load(fh)["kept"])
    scores = cfg.path("data", "selected.jsonl.scores.jsonl")
    runs = {"lowest": cfg.path("train")}
    for strategy in ("random", "all"):
        out = cfg.path("compare", f"selected_{strategy}.jsonl")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        sel = {"seed": cfg.seed, **cfg.select, "strategy": strategy}
        sel.pop("fraction", None)
        if strategy == "random":
            sel["count"] = kept
        run_select(
            cfg.path("data", "pool.jsonl"),
            out,
            policy=lambda: load_stage_policy(cfg, ledger),
            router_config=RouterConfig.from_mapping(router_mapping(cfg)),
            cfg=SelectConfig.from_mapping(sel),
            train_path=cfg.path("data", "train.jsonl"),
            merge=True,
            workers=cfg.workers,
            scores_path=scores,
        )
        tc = train_config(cfg, policy_dir(cfg, ledger))

        run_dir = cfg.path("compare", strategy)
        tc = dataclasses.replace(tc, train_path=out, run_dir=run_dir)
        if args.steps:
            tc = dataclasses.replace(tc, ppo=dataclasses.replace(tc.ppo, steps=args.steps))
        if not os.path.exists(os.path.join(run_dir, "summary.json")):
            train(tc, resume=os.path.exists(os.path.join(run_dir, "config.json")), log=print)
        runs[strategy] = run_dir
    print(
        f"\ngold eval after {args.steps or 'the configured'} PPO steps (95% CI), {kept} selected pool prompts "
        "for lowest and random"
    )
    print(f"  {'strategy':<8} {'task':<8} {'before':>22} {'after':>22}")
    for strategy, run_dir in runs.items():
        with open(os.path.join(run_dir, "summary.json")) as fh:
            summary = json.load(fh)
        for task, after in summary["after"].items():
            before = summary["before"][task]
            print(f"  {strategy:<8} {task:<8} {_fmt(before):>22} {_fmt(after):>22}")
    return 0


def _fmt(s: dict) -> str:
    return f"{s['mean']:.3f} [{s['ci95_low']:.3f}, {s['ci95_high']:.3f}]"


if __name__ == "__main__":
    sys.exit(main())
