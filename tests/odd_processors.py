"""Processors that do unusual but legal (or plainly wrong) things, for the runner's tests."""

import os
import time
import pathlib

from job import TokenSplitter
from job.atomic import atomic_output


class Upper(TokenSplitter):
    """Another processor: the tokens in upper case."""

    def process(self, path):
        counts = super().process(path)
        output = self.output_path(path)
        with open(output, "rb") as source, atomic_output(output) as sink:
            sink.write(source.read().upper())
        return counts


class Versioned(TokenSplitter):
    """The token splitter at the version ``$FAULT_PROCESSOR_VERSION`` (default 1)."""

    version = os.environ.get("FAULT_PROCESSOR_VERSION", "1")


class Returns(TokenSplitter):
    """Returns ``eval($FAULT_RETURN)`` after writing its output."""

    def process(self, path):
        super().process(path)
        return eval(os.environ["FAULT_RETURN"])  # noqa: S307 - the tests' own expressions


class PathOutput(TokenSplitter):
    """Names its outputs with ``pathlib.Path``."""

    def output_path(self, path):
        return pathlib.Path(super().output_path(path))


class InPlace(TokenSplitter):
    """Would write each output onto its input."""

    def output_path(self, path):
        return path


class Raises(TokenSplitter):
    """Fails every file."""

    def process(self, path):
        raise ValueError(f"cannot process {os.path.basename(path)}")


class EmptyOutput(TokenSplitter):
    """Names no output path at all: the empty string."""

    def output_path(self, path):
        return ""


class RaisesBase(TokenSplitter):
    """Raises ``eval($FAULT_RAISE)``, a BaseException that is not an Exception."""

    def process(self, path):
        raise eval(os.environ["FAULT_RAISE"])  # noqa: S307 - the tests' own expressions


class SlowStart(TokenSplitter):
    """Takes a while to build, as a processor that loads a model does; creates the file
    ``$SLOW_START_MARKER``, when set, once it has begun."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if os.environ.get("SLOW_START_MARKER"):
            open(os.environ["SLOW_START_MARKER"], "x").close()
        time.sleep(30)


class NotesAffinity(TokenSplitter):
    """The token splitter that notes how many CPUs each worker process may run on: the
    file ``$AFFINITY_DIR/PID`` holds ``len(os.sched_getaffinity(0))`` of worker ``PID``."""

    def _note(self):
        with open(os.path.join(os.environ["AFFINITY_DIR"], str(os.getpid())), "w") as note:
            note.write(str(len(os.sched_getaffinity(0))))

    def process(self, path):
        self._note()
        return super().process(path)

    def process_range(self, *args):
        self._note()
        return super().process_range(*args)


class Counts(TokenSplitter):
    """Counts what the token splitter does not: lines and bytes (the largest of a file's
    ranges, to show the hook that joins the counts of its ranges), and no tokens."""

    counts = ("lines", "largest")

    def process(self, path):
        super().process(path)
        data = open(path, "rb").read()
        return {"lines": data.count(b"\n"), "largest": len(data)}

    def process_range(self, path, start, end, part):
        super().process_range(path, start, end, part)
        with open(path, "rb") as source:
            source.seek(start)
            data = source.read(end - start)
        return {"lines": data.count(b"\n"), "largest": len(data)}

    def combine_counts(self, parts):
        return {"lines": sum(p["lines"] for p in parts), "largest": max(p["largest"] for p in parts)}


class CountsSeconds(TokenSplitter):
    """Declares a count named like a field of every record: it would overwrite it."""

    counts = ("seconds",)


class CountsTwice(TokenSplitter):
    counts = ("tokens", "tokens")
