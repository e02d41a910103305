"""``python -m job``: process this rank's shard of the input files (see ``--help``)."""

import gc
import sys

# The objects the job's modules create as they are imported live as long as the process:
# no garbage collection runs while they are created, and once they are, they are frozen
# out of every later one. That spares the start-up its collections (3 ms) and the exit a
# pass over them (10 ms), and a forked worker never writes to their pages to count them.
gc.disable()
try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C before main() handles it: as main() says it, then
    print("error: interrupted by SIGINT before any file was processed", file=sys.stderr)
    sys.exit(130)
gc.freeze()
gc.enable()

sys.exit(main())
