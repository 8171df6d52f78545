"""``python -m datarl.study.worker RUN_DIR [--stop-before STAGE]``: one study run in its own process.

The study driver starts it (``datarl study --parallel N``); the run's config is ``RUN_DIR/study_run.json``.
Exit 0 when the run got as far as asked, 2 on a user error (one line on stderr), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys

from datarl.errors import UserError
from datarl.interrupts import install_interrupt_handlers
from datarl.study.execute import run_one


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datarl.study.worker", description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--stop-before", default=None, help="end before this stage (shared stages first)")
    args = parser.parse_args(argv)
    install_interrupt_handlers()
    try:
        run_one(args.run_dir, args.stop_before)
    except UserError as exc:
        print(f"datarl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("datarl: interrupted; the run resumes where it stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
