"""Progress of one rank: periodic log lines with files, bytes, rate and ETA."""

from __future__ import annotations

import logging
import time

INTERVAL_SECONDS = 10.0


class Progress:
    """Counts finished files and bytes; logs a line at most every ``interval`` seconds."""

    def __init__(self, files: int, size: int, log: logging.Logger,
                 interval: float = INTERVAL_SECONDS):
        self.files, self.size = files, size
        self.done_files = self.done_bytes = self.failed = 0
        self._log = log
        self._interval = interval
        self._start = self._last = time.monotonic()

    def update(self, size: int, failed: bool = False) -> None:
        self.done_files += 1
        self.done_bytes += size
        self.failed += failed
        now = time.monotonic()
        if now - self._last >= self._interval and self.done_files < self.files:
            self._last = now
            self._log.info("%s", self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self._start, 1e-9)
        rate = self.done_bytes / elapsed
        left = self.size - self.done_bytes
        eta = f"{left / rate:.0f} s" if rate > 0 else "unknown"
        return (f"progress: {self.done_files}/{self.files} files, "
                f"{self.done_bytes / 1e6:.1f}/{self.size / 1e6:.1f} MB, "
                f"{rate / 1e6:.1f} MB/s, {self.failed} failed, ETA {eta}")
