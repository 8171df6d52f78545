"""The ``datarl`` command line: parses arguments, calls one function, prints.

User mistakes (bad files, bad config) print a one-line ``datarl: error: ...`` and
exit 2; they never show a traceback. Each topic module (data, rewards, runs,
serving) holds its subcommands' handlers and a ``register(sub)`` that adds their
parsers; heavy imports stay inside the handlers so ``datarl --help`` starts fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from datarl import __version__
from datarl.errors import UserError
from datarl.interrupts import install_interrupt_handlers

from . import data, rewards, runs, serving
from .common import EXIT_INTERRUPTED, EXIT_USAGE

__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE", "build_parser", "install_interrupt_handlers", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="datarl",
        description="Data-centric RLHF: hybrid rewards (verifiers + generative RM), Pre-PPO prompt "
        "selection, curriculum PPO. Records are JSONL or Parquet (see README, 'Records').",
    )
    parser.add_argument("--version", action="version", version=f"datarl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for topic in (data, rewards, runs, serving):  # this order is the order of `datarl --help`
        topic.register(sub)
    return parser


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
    # Model loading's per-file progress bars and load reports are noise on a command line.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    install_interrupt_handlers()
    try:
        return int(args.fn(args))
    except UserError as exc:
        print(f"datarl: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("datarl: interrupted; no output was written", file=sys.stderr)
        return EXIT_INTERRUPTED
