"""``python -m datarl.cli`` (used by the tests' subprocesses) is the ``datarl`` command."""

import sys

from . import main

sys.exit(main())
