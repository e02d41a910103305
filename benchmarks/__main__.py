"""``python -m benchmarks [--quick] [--reps N] ...``: see ``--help`` and README.md."""

import sys

from .run import main

sys.exit(main())
