"""Processors that misbehave on purpose, for the fault tests (``--processor fault_processors:X``).

Each is the token splitter, except on input files whose content holds a marker.
"""

import os
import signal
import time

from job import TokenSplitter


class Poisoned(TokenSplitter):
    """Raises on files containing ``POISON``."""

    def process(self, path):
        with open(path, "rb") as stream:
            if b"POISON" in stream.read():
                raise ValueError(f"poisoned input {os.path.basename(path)}")
        return super().process(path)


class KilledOnce(TokenSplitter):
    """Dies by SIGKILL (as from the OOM killer) on the first attempt at files containing ``KILL``;
    with ``KILL_ALWAYS`` on every attempt. Writes half an output first."""

    def process(self, path):
        with open(path, "rb") as stream:
            data = stream.read()
        marker = os.path.join(self.out_dir, "_manifest", os.path.basename(path) + ".killed")
        if b"KILL_ALWAYS" in data or (b"KILL" in data and not os.path.exists(marker)):
            open(marker, "w").close()
            from job.atomic import atomic_output
            with atomic_output(self.output_path(path)) as sink:
                sink.write(data[: len(data) // 2])
                sink.flush()
                os.kill(os.getpid(), signal.SIGKILL)
        return super().process(path)


class Hangs(TokenSplitter):
    """Never returns on files containing ``HANG``."""

    def process(self, path):
        with open(path, "rb") as stream:
            if b"HANG" in stream.read():
                while True:
                    time.sleep(1)
        return super().process(path)


class Slow(TokenSplitter):
    """Takes half a second per file (``$SLOW_SECONDS`` when set), writing its output slowly.

    With ``$SLOW_HOLD_AFTER=N`` and ``$SLOW_RELEASE=PATH`` too, each file after the first N
    this worker processes is held besides, its output partly written, until PATH exists:
    a run that is mid-file, having done N files, for as long as a test needs.
    """

    done = 0

    def process(self, path):
        from job.atomic import atomic_output
        with atomic_output(self.output_path(path)) as sink:
            sink.write(b"partial")
            time.sleep(float(os.environ.get("SLOW_SECONDS", "0.5")))
            hold_after, release = os.environ.get("SLOW_HOLD_AFTER"), os.environ.get("SLOW_RELEASE")
            if hold_after is not None and self.done >= int(hold_after):
                while not os.path.exists(release):
                    time.sleep(0.01)
        self.done += 1
        return super().process(path)


class Vanishes(TokenSplitter):
    """Deletes ``f7.txt`` while processing ``f0.txt``: a file vanishing after the listing."""

    def process(self, path):
        if os.path.basename(path) == "f0.txt":
            os.unlink(os.path.join(self.input_dir, "f7.txt"))
        return super().process(path)


class RangeFails(TokenSplitter):
    """Raises on every byte range but the first of a file."""

    def process_range(self, path, start, end, part):
        if start > 0:
            raise ValueError(f"bad range at {start}")
        return super().process_range(path, start, end, part)


class Orphans(TokenSplitter):
    """On files containing ``ORPHAN``: forks a child that sleeps 60 s, ignoring SIGTERM, holding
    every descriptor of the worker (its pipes to the rank included), then the worker exits with
    code 1 (``ORPHAN_EXIT``) or by SIGKILL (``ORPHAN_KILL``). Each child's pid is appended to
    ``out_dir/_manifest/orphans``, so that the test can end it."""

    def process(self, path):
        with open(path, "rb") as stream:
            data = stream.read()
        if b"ORPHAN" in data:
            child = os.fork()
            if child == 0:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                time.sleep(60)
                os._exit(0)
            with open(os.path.join(self.out_dir, "_manifest", "orphans"), "a") as pids:
                pids.write(f"{child}\n")
            if b"ORPHAN_KILL" in data:
                os.kill(os.getpid(), signal.SIGKILL)
            os._exit(1)
        return super().process(path)


class BecomesFifo(TokenSplitter):
    """Replaces ``f5.txt`` by a named pipe while processing ``f0.txt``: after the listing."""

    def process(self, path):
        if os.path.basename(path) == "f0.txt":
            later = os.path.join(self.input_dir, "f5.txt")
            os.unlink(later)
            os.mkfifo(later)
        return super().process(path)
