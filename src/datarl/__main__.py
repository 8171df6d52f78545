"""``python -m datarl`` is the ``datarl`` command."""

import sys

from datarl.cli import main

sys.exit(main())
