"""SIGINT and SIGTERM held while a step must not be cut in the middle.

The rank turns both into an exception (:mod:`job.run`), which Python raises
between any two bytecodes of the main thread: between a system call's return
and the line that books its result, say. A step that must be whole waits for
them instead: the pool starting or stopping a worker, the journal writing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def held() -> Iterator[None]:
    """SIGINT and SIGTERM wait (in the main thread) until the block ends, and are then
    raised again, to the handlers of before. Elsewhere than in the main thread, where
    Python runs no handler, nothing changes.

    Their handlers are swapped for ones that only note the signal, rather than the
    signals masked: a signal masked in this thread may reach another (the rank lock's
    heartbeat), whose handler Python still runs here.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    kept = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not None]
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in kept}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in caught:
            signal.raise_signal(signum)
