"""Progress of one rank: a bar on a terminal, periodic log lines otherwise.

On Azure ML (and under ``mpirun``) stderr is a log file, not a terminal: a
line with files, bytes, rate and ETA is logged every ``log_interval``
seconds (the ``progress_interval`` key). On a terminal the bar is redrawn in place at most every
``BAR_INTERVAL`` seconds.
"""

from __future__ import annotations

import logging
import sys
import time
from io import TextIOBase

LOG_INTERVAL_SECONDS = 30.0
BAR_INTERVAL_SECONDS = 0.2
BAR_WIDTH = 24


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """Counts finished files and bytes of one rank and shows them."""

    def __init__(self, files: int, size: int, log: logging.Logger, label: str = "",
                 stream: TextIOBase | None = None, log_interval: float = LOG_INTERVAL_SECONDS):
        self.files, self.size = files, size
        self.done_files = self.done_bytes = self.failed = 0
        self._log = log
        self._label = label
        self._stream = stream if stream is not None else sys.stderr
        self._tty = files > 0 and self._stream.isatty()
        self._interval = BAR_INTERVAL_SECONDS if self._tty else log_interval
        self._start = time.monotonic()
        self._last = self._start

    def update(self, size: int, failed: bool = False, files: int = 1) -> None:
        """One more file finished (``size`` bytes of input), or ``files`` more of ``size``
        bytes in all."""
        self.done_files += files
        self.done_bytes += size
        self.failed += failed
        now = time.monotonic()
        last = self.done_files == self.files
        if now - self._last >= self._interval or (last and self._tty):
            self._last = now
            if self._tty:
                self._draw(now, end="\n" if last else "")
            else:
                self._log.info("progress: %s", self.status(now))

    def status(self, now: float | None = None) -> str:
        """``12/27 files, 3.1/8.0 MB, 1.2 MB/s, 0 failed, ETA 4s``."""
        elapsed = max((now or time.monotonic()) - self._start, 1e-9)
        rate = self.done_bytes / elapsed
        left = self.size - self.done_bytes
        eta = _duration(left / rate) if rate > 0 else "unknown"
        return (f"{self.done_files}/{self.files} files, "
                f"{self.done_bytes / 1e6:.1f}/{self.size / 1e6:.1f} MB, "
                f"{rate / 1e6:.1f} MB/s, {self.failed} failed, ETA {eta}")

    def clear(self) -> None:
        """Erase the bar so that a log line can be written (terminal only)."""
        if self._tty:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._last = 0.0  # redraw on the next update

    def _draw(self, now: float, end: str) -> None:
        fraction = self.done_bytes / self.size if self.size else self.done_files / max(self.files, 1)
        filled = int(BAR_WIDTH * fraction)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        self._stream.write(f"\r\x1b[K{self._label}[{bar}] {fraction:4.0%} {self.status(now)}{end}")
        self._stream.flush()
