"""Task outcomes back into one result per file: a file processed in byte ranges is joined.

:class:`Assembler` appends each range's part to the file's output as soon as
every part before it is in, commits the output when the last arrives, and
joins the ranges' counts with the processor's :meth:`~job.DataProcessor.combine_counts`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .atomic import AtomicWriter, append_file
from .listing import InputFile
from .pool import Outcome
from .tasks import Task, counts_of, part_path


class FileResult:
    """One file's outcome, its ranges (if any) joined."""

    def __init__(self, index: int, ok: bool, size: int = 0, mtime_ns: int | None = None,
                 counts: tuple = (), error: str | None = None, seconds: float = 0.0,
                 attempts: int = 1, output: str | None = None) -> None:
        self.index = index
        self.ok = ok
        self.size = size
        self.mtime_ns = mtime_ns
        self.counts = counts  # the processor's declared counts, in its order (None: not given)
        self.error = error
        self.seconds = seconds
        self.attempts = attempts
        self.output = output  # relative to out_dir; known when ok


class _Joining:
    """A ranged file in progress: its part outcomes, and its output as far as appended."""

    def __init__(self) -> None:
        self.outcomes: dict[int, Outcome] = {}
        self.writer: AtomicWriter | None = None
        self.appended = 0
        self.error: str | None = None


class Assembler:
    """Collects task outcomes; returns a :class:`FileResult` when a file is complete.

    A ranged file's output is built as its parts arrive: each part is
    appended as soon as every part before it is in, so the last part's
    arrival leaves little to copy. Call :meth:`abort` if the run stops early.
    """

    def __init__(self, processor, input_dir: str, temp_dir: str, files: Sequence[InputFile]):
        self._processor = processor
        self._input_dir = input_dir
        self._temp_dir = temp_dir
        self._files = files
        self._joining: dict[int, _Joining] = {}

    def add(self, outcome: Outcome) -> FileResult | None:
        task: Task = outcome.key
        if task.parts == 1:
            return self._result(task.index, [outcome])
        joining = self._joining.setdefault(task.index, _Joining())
        joining.outcomes[task.part] = outcome
        if not outcome.ok and joining.error is None:
            joining.error = outcome.error
        self._append_ready(task, joining)
        if len(joining.outcomes) < task.parts:
            return None
        del self._joining[task.index]
        result = self._result(task.index, [joining.outcomes[k] for k in range(task.parts)])
        if result.ok and joining.error is None:
            try:
                joining.writer.commit()
            except OSError as error:
                joining.error = f"{type(error).__name__}: {error}"
        if joining.error is not None or not result.ok:
            self._discard(task, joining)
            result.ok, result.error = False, result.error or joining.error
        return result

    def abort(self) -> None:
        """Remove every partly joined output and part (the run is stopping)."""
        for index, joining in self._joining.items():
            parts = next(iter(joining.outcomes.values())).key.parts
            self._discard(Task(index, 0, parts), joining)
        self._joining.clear()

    def _append_ready(self, task: Task, joining: _Joining) -> None:
        if joining.error is not None:
            return
        try:
            while joining.appended in joining.outcomes:
                if joining.writer is None:
                    path = os.path.join(self._input_dir, self._files[task.index].rel)
                    joining.writer = AtomicWriter(self._processor.output_path(path), buffering=0)
                part = part_path(self._temp_dir, Task(task.index, joining.appended, task.parts))
                append_file(part, joining.writer.stream)
                _remove(part)
                joining.appended += 1
        except OSError as error:
            joining.error = f"{type(error).__name__}: {error}"

    def _discard(self, task: Task, joining: _Joining) -> None:
        if joining.writer is not None:
            joining.writer.abort()
        for k in range(task.parts):
            _remove(part_path(self._temp_dir, Task(task.index, k, task.parts)))

    def _result(self, index: int, outcomes: list[Outcome]) -> FileResult:
        seconds = sum(o.seconds for o in outcomes)
        attempts = max(o.attempts for o in outcomes)
        failed = [o for o in outcomes if not o.ok]
        if failed:
            return FileResult(index, False, self._files[index].size, error=failed[0].error,
                              seconds=seconds, attempts=attempts)
        fingerprints = {o.value[:2] for o in outcomes}
        if len(fingerprints) > 1:
            return FileResult(index, False, self._files[index].size, seconds=seconds,
                              error="input changed while its ranges were processed",
                              attempts=attempts)
        size, mtime_ns = fingerprints.pop()
        if size is None:  # a whole file: the fingerprint its listing took
            size, mtime_ns = self._files[index].size, self._files[index].mtime_ns
        counts = outcomes[0].value[2]
        if len(outcomes) > 1:
            names = self._processor.counts
            try:
                combined = self._processor.combine_counts([dict(zip(names, o.value[2]))
                                                           for o in outcomes])
                counts = counts_of(combined, names)
            except Exception as error:  # noqa: BLE001 - the processor's hook: its file fails
                return FileResult(index, False, self._files[index].size, seconds=seconds,
                                  error=f"combine_counts(): {type(error).__name__}: {error}",
                                  attempts=attempts)
        return FileResult(index, True, size, mtime_ns, counts, seconds=seconds,
                          attempts=attempts, output=outcomes[0].value[3])


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
