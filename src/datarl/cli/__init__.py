"""The ``datarl`` command line: parses arguments, calls one function, prints.

User mistakes (bad files, bad config) print a one-line ``datarl: error: ...`` and
exit 2; they never show a traceback. Each topic module (data, rewards, runs,
serving) holds its subcommands' handlers and a ``register(sub)`` that adds their
parsers; heavy imports stay inside the handlers so ``datarl --help`` starts fast.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Sequence

from datarl import __version__

from . import data, rewards, runs, serving
from .common import EXIT_INTERRUPTED, EXIT_USAGE

__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE", "build_parser", "main"]

# Commands that load or train models, and so can fail on a bad model, pairs file or judge.
_MODEL_COMMANDS = ("generate", "eval", "sft", "make-pairs", "train-bt", "train-genrm", "calibrate-genrm",
                   "build-references",
                   "train", "pipeline")
_SELECT_COMMANDS = ("select", "pipeline")


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


def _user_errors(command: str) -> tuple[type[BaseException], ...]:
    """The exceptions that mean a user mistake for COMMAND: printed in one line, exit 2."""
    from datarl.config import ConfigError
    from datarl.rewards.router import RouterConfigError
    from datarl.scoring import InputError

    user_errors: tuple[type[BaseException], ...] = (InputError, ConfigError, RouterConfigError)
    if command in _MODEL_COMMANDS:
        from datarl.models.bt_train import BTDataError
        from datarl.models.generate import GenerationError
        from datarl.models.loading import PolicyLoadError
        from datarl.preferences import PairsError
        from datarl.rewards.bt import BTModelError
        from datarl.rewards.genrm import JudgeError

        user_errors += (GenerationError, PolicyLoadError, PairsError, BTDataError, BTModelError, JudgeError)

    if command in _SELECT_COMMANDS:
        from datarl.models.generate import GenerationError
        from datarl.models.loading import PolicyLoadError
        from datarl.select.prepo import SelectError

        user_errors += (GenerationError, PolicyLoadError, SelectError)
    return user_errors


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
    user_errors = _user_errors(args.command)
    # Model loading's per-file progress bars and load reports are noise on a command line.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    signal.signal(signal.SIGTERM, _raise_interrupt)  # clean up like Ctrl-C
    try:
        return int(args.fn(args))
    except user_errors as exc:
        print(f"datarl: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("datarl: interrupted; no output was written", file=sys.stderr)
        return EXIT_INTERRUPTED
