"""The ``datarl`` command line: parses arguments, calls one function, prints.

User mistakes (bad files, bad config) print a one-line ``datarl: error: ...`` and
exit 2; they never show a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Sequence

from datarl import __version__

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def _router_config(args: argparse.Namespace):  # -> RouterConfig
    from datarl.config import load_config
    from datarl.rewards.router import RouterConfig

    data = load_config(args.config)
    reward = data.get("reward", data)  # accept a whole run config with a reward: section
    cfg = {k: reward[k] for k in ("router", "sources") if k in reward}
    return RouterConfig.from_mapping(cfg)


def cmd_validate(args: argparse.Namespace) -> int:
    from datarl.records import format_errors
    from datarl.scoring import load_for_scoring

    loaded = load_for_scoring(args.input, _router_config(args))
    tasks: dict[str, int] = {}
    for rec in loaded.records:
        tasks[rec.task] = tasks.get(rec.task, 0) + 1
    mix = ", ".join(f"{t}={n}" for t, n in sorted(tasks.items())) or "none"
    print(f"{args.input}: {loaded.total_lines} lines, {len(loaded.records)} valid ({mix}), "
          f"{len(loaded.errors)} bad")
    if loaded.errors:
        print(format_errors(loaded.errors, limit=args.max_errors), file=sys.stderr)
        return 1
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from datarl.scoring import ScoreOptions, score_file

    options = ScoreOptions(workers=args.workers, timeout_s=args.timeout, strict=args.strict,
                           progress=False if args.no_progress else None, router=_router_config(args))
    summary = score_file(args.input, args.output, options)
    print(summary.format())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="datarl",
        description="Data-centric RLHF: hybrid rewards (verifiers + generative RM), Pre-PPO prompt "
                    "selection, curriculum PPO. Records are JSONL or Parquet (see README, 'Records').",
    )
    parser.add_argument("--version", action="version", version=f"datarl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", metavar="FILE",
                       help="YAML/JSON config; its 'router:' maps task -> source, 'sources:' sets source "
                            "options (e.g. sources: {rtv.math: {rel_tol: 1e-6}})")

    p = sub.add_parser("validate", help="check a records file without scoring it",
                       description="Check every line of a JSONL/Parquet records file against the record "
                                   "schema and the router. Prints 'file:line: field: problem' for each bad "
                                   "line; exit 1 if any.")
    p.add_argument("input", metavar="FILE")
    p.add_argument("--max-errors", type=int, default=50, help="errors to print (default 50)")
    add_config(p)
    p.set_defaults(fn=cmd_validate)

    p = sub.add_parser("score", help="score responses with the reward router",
                       description="Score every record that has a 'response' and write the records back with "
                                   "'reward', 'reward_source' and 'reward_info', in input order. Bad lines go "
                                   "to OUTPUT.errors.jsonl (or, with --strict, nothing is scored). The output "
                                   "appears only when the run completes.")
    p.add_argument("input", metavar="INPUT", help="records, .jsonl or .parquet")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="where to write scored records (.jsonl, or .parquet with reward_info as JSON text)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes (default: number of cores = %(default)s)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="wall-clock limit per item; an item past it scores 0 with failure 'timeout' "
                        "(default %(default)s)")
    p.add_argument("--strict", action="store_true", help="refuse the whole file if any line is bad")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    add_config(p)
    p.set_defaults(fn=cmd_score)
    return parser


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return EXIT_USAGE
    if getattr(args, "workers", 1) < 1:
        parser.error("--workers must be at least 1")
    if getattr(args, "timeout", 1.0) <= 0:
        parser.error("--timeout must be positive")
    from datarl.config import ConfigError
    from datarl.rewards.router import RouterConfigError
    from datarl.scoring import InputError

    signal.signal(signal.SIGTERM, _raise_interrupt)  # clean up like Ctrl-C
    try:
        return int(args.fn(args))
    except (InputError, ConfigError, RouterConfigError) as exc:
        print(f"datarl: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("datarl: interrupted; no output was written", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
