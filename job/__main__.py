"""``python -m job``: process this rank's shard of the input files (see ``--help``)."""

import sys

from .cli import main

sys.exit(main())
