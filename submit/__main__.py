"""``python -m submit``: build the Azure ML job that runs ``python -m job``, and submit it."""

import sys

from .cli import main

sys.exit(main())
