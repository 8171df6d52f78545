"""`datarl train/pipeline/report`: PPO runs, the whole pipeline, and run reports."""

from __future__ import annotations

import argparse
import os
import sys

from .common import EXIT_INTERRUPTED, EXIT_USAGE


def cmd_train(args: argparse.Namespace) -> int:
    from datarl.rl.setup import load_train_config
    from datarl.rl.trainer import train

    overrides = {}
    if args.resume:
        overrides["run_dir"] = os.path.abspath(args.resume)
    elif args.run_dir:
        overrides["run_dir"] = os.path.abspath(args.run_dir)
    cfg = load_train_config(args.config, overrides)
    if args.steps:
        import dataclasses

        cfg = dataclasses.replace(cfg, ppo=dataclasses.replace(cfg.ppo, steps=args.steps))
    result = train(cfg, resume=bool(args.resume), log=lambda m: print(m, file=sys.stderr))
    print(
        f"trained {result.steps} steps in {result.seconds:.0f} s -> {result.run_dir}"
        + (
            f" (best gold {result.best_gold:.3f} at step {result.best_step}: {result.run_dir}/best)"
            if result.best_gold is not None
            else ""
        )
    )
    return 0


def _parse_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="PPO on a policy with the hybrid reward, a curriculum and monitors",
        description="Run PPO as CONFIG says (YAML/JSON: policy, data, reward, curriculum, ppo, "
        "eval, hacking, logging, run_dir; see docs/ppo.md). Writes metrics.jsonl, "
        "eval.jsonl, checkpoints/, best/ and summary.json under the run directory. "
        "Every config problem is reported before any model is loaded.",
    )
    p.add_argument("config", metavar="CONFIG")
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last checkpoint (after a crash or kill -9)",
    )
    p.add_argument("--run-dir", metavar="DIR", help="override run_dir from the config")
    p.add_argument("--steps", type=int, default=0, help="override ppo.steps")
    p.set_defaults(fn=cmd_train)


def cmd_pipeline(args: argparse.Namespace) -> int:
    from datarl.pipeline import load_pipeline_config, run_pipeline

    cfg = load_pipeline_config(args.config, args.run_dir)
    run_pipeline(cfg, log=lambda m: print(m, file=sys.stderr))
    report = os.path.join(cfg.run_dir, "train", "report.html")
    print(f"report: {report}")
    return 0


def _parse_pipeline(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pipeline",
        help="the whole system: synth, SFT, rewards, Pre-PPO, PPO, eval, report",
        description="Run the stages synth -> sft -> pairs -> bt -> genrm -> references -> pool_scores -> select -> "
        "train -> eval -> report in order under run_dir. A stage whose outputs exist "
        "and whose config and inputs are unchanged is skipped, so an interrupted run "
        "continues where it stopped. examples/demo.yaml is the embedded default "
        "(`make demo`); examples/pipeline_user.yaml runs on your data with an HF policy.",
    )
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("--run-dir", metavar="DIR", help="override run_dir from the config")
    p.set_defaults(fn=cmd_pipeline)


def cmd_study(args: argparse.Namespace) -> int:
    from datarl.study import dry_run, load_study, run_study
    from datarl.study.execute import executor_for

    if args.parallel < 1:
        print("datarl: error: --parallel must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    spec = load_study(args.study, args.study_dir)
    if args.dry_run:
        print(dry_run(spec, args.costs_from or [], args.parallel))
        return 0
    executor = executor_for(args.engine, args.parallel, args.ray_address, args.gpus_per_run)
    try:
        results = run_study(spec, executor, log=lambda m: print(m, file=sys.stderr))
    except KeyboardInterrupt:
        print("datarl: interrupted; run the same command to resume (finished runs are kept)", file=sys.stderr)
        return EXIT_INTERRUPTED
    for c in results["comparisons"]:
        if "difference" in c:
            print(
                f"{c['metric']} {c['arm']} vs {c['vs']} on {c['task']}: {c['difference']:+.3f} "
                f"[{_num(c['low'])}, {_num(c['high'])}] -> {c['verdict']}"
            )
    print(f"results: {os.path.join(spec.study_dir, 'results.md')} and study.html")
    return 0


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:+.3f}"


def _parse_study(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study",
        help="ablations: arms x seeds of the pipeline, shared stages, paired statistics",
        description="Run a study (YAML: base pipeline config, arms as overrides, seeds, baseline, comparisons; "
        "see docs/studies.md and examples/studies/). Every (arm, seed) is a pipeline run under "
        "STUDY_DIR/runs/<arm>/seed-<k>; stages that are equal across runs are computed once and linked. "
        "Finished runs are skipped and an interrupted study resumes. Writes results.json (statistics: "
        "per-prompt paired differences with bootstrap intervals), timings.json, results.md and study.html.",
    )
    p.add_argument("study", metavar="STUDY.yaml")
    p.add_argument("--study-dir", metavar="DIR", help="override study_dir from the study file")
    p.add_argument("--dry-run", action="store_true", help="print the run matrix, what is shared, a time estimate")
    p.add_argument(
        "--costs-from",
        metavar="RUN_DIR",
        action="append",
        help="with --dry-run: also take per-stage costs from this pipeline run (repeatable)",
    )
    p.add_argument("--parallel", type=int, default=1, help="runs at once; the cores are split between them")
    p.add_argument("--engine", choices=("local", "ray"), default="local", help="local processes or Ray tasks")
    p.add_argument("--ray-address", metavar="ADDR", help="with --engine ray: the cluster (default: a local Ray)")
    p.add_argument("--gpus-per-run", type=float, default=0.0, help="with --engine ray: GPUs each run asks for")
    p.set_defaults(fn=cmd_study)


def cmd_report(args: argparse.Namespace) -> int:
    from datarl.report import ReportError, write_report

    try:
        html_path, png_path = write_report(args.run_dir, args.output)
    except ReportError as exc:
        print(f"datarl: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"report: {html_path} (main figure: {png_path})")
    return 0


def _parse_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="write a self-contained HTML report of a training run",
        description="Read RUN_DIR (config.json, metrics.jsonl, eval.jsonl, summary.json, "
        "selection/report.json) and write one HTML page with inline plots (training "
        "curves, gold scores, hacking gap and alarms, diversity, curriculum, Pre-PPO "
        "selection, before/after table) plus the main figure as PNG; prints the path.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument(
        "-o",
        "--output",
        metavar="OUT.html",
        help="where to write the page (default RUN_DIR/report.html); the PNG goes next to it",
    )
    p.set_defaults(fn=cmd_report)


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands, in `datarl --help` order."""
    _parse_train(sub)
    _parse_pipeline(sub)
    _parse_study(sub)
    _parse_report(sub)
