"""Units of work for the pool: whole files, or byte ranges of a large file.

A file larger than the range size is cut into byte ranges when the
processor can split ranges (``process_range``/``join_ranges``, as the token
splitter does), so that one huge file keeps every worker busy. Small files
travel in batches (see :data:`BATCH_BYTES`), so that the pipe to a worker is
not crossed once per tiny file. :class:`Assembler` turns task outcomes back
into one result per file, joining a file's ranges in order once all are done.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from .listing import InputFile
from .pool import Outcome

MIN_RANGE_BYTES = 32 << 20
BATCH_BYTES = 4 << 20
BATCH_FILES = 64


@dataclass(frozen=True)
class Task:
    """File ``index`` of the to-do list, or its byte range ``[start, end)``, part ``part`` of ``parts``."""

    index: int
    part: int = 0
    parts: int = 1
    start: int = 0
    end: int = 0


@dataclass
class FileResult:
    """One file's outcome, its ranges (if any) joined."""

    index: int
    ok: bool
    size: int = 0
    mtime_ns: int | None = None
    value: Any = None
    error: str | None = None
    seconds: float = 0.0
    attempts: int = 1


def range_size(files: Sequence[InputFile], workers: int) -> int:
    """The byte-range length that spreads the largest files over ``workers``."""
    return max(MIN_RANGE_BYTES, sum(f.size for f in files) // (4 * workers))


def plan_tasks(files: Sequence[InputFile], workers: int, ranges: bool) -> list[Task]:
    """Tasks for ``files``, largest ranges first so that no worker is left with a long tail."""
    step = range_size(files, workers)
    tasks = []
    for index, item in enumerate(files):
        parts = math.ceil(item.size / step) if ranges and workers > 1 else 1
        if parts < 2:
            tasks.append(Task(index))
            continue
        edges = [item.size * k // parts for k in range(parts + 1)]
        tasks += [Task(index, k, parts, edges[k], edges[k + 1]) for k in range(parts)]
    ranged = [t for t in tasks if t.parts > 1]
    return ranged + [t for t in tasks if t.parts == 1]


def pool_items(tasks: Sequence[Task], files: Sequence[InputFile]) -> Iterator[tuple]:
    """``(key, args, weight)`` items for :meth:`WorkerPool.imap`."""
    for task in tasks:
        weight = task.end - task.start if task.parts > 1 else files[task.index].size
        yield task, (files[task.index].rel, task), weight


def part_path(temp_dir: str, task: Task) -> str:
    return os.path.join(temp_dir, f"range-{task.index}-{task.part}-of-{task.parts}.part")


def run_task(processor, input_dir: str, temp_dir: str, rel: str, task: Task) -> tuple:
    """Worker side: fingerprint the input, then process the file or its range."""
    path = os.path.join(input_dir, rel)
    info = os.stat(path)
    if task.parts == 1:
        return info.st_size, info.st_mtime_ns, processor.process(path)
    end = task.end if task.part < task.parts - 1 else max(task.end, info.st_size)
    value = processor.process_range(path, task.start, end, part_path(temp_dir, task))
    return info.st_size, info.st_mtime_ns, value


@dataclass
class _Pending:
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    failed: Outcome | None = None


class Assembler:
    """Collects task outcomes; returns a :class:`FileResult` when a file is complete."""

    def __init__(self, processor, input_dir: str, temp_dir: str, files: Sequence[InputFile]):
        self._processor = processor
        self._input_dir = input_dir
        self._temp_dir = temp_dir
        self._files = files
        self._pending: dict[int, _Pending] = {}

    def add(self, outcome: Outcome) -> FileResult | None:
        task: Task = outcome.key
        if task.parts == 1:
            return self._result(task.index, [outcome])
        pending = self._pending.setdefault(task.index, _Pending())
        pending.outcomes[task.part] = outcome
        if len(pending.outcomes) < task.parts:
            return None
        del self._pending[task.index]
        ordered = [pending.outcomes[k] for k in range(task.parts)]
        parts = [part_path(self._temp_dir, Task(task.index, k, task.parts)) for k in range(task.parts)]
        result = self._result(task.index, ordered)
        if result.ok:
            result = self._join(result, parts)
        for part in parts:
            _remove(part)
        return result

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
        values = [o.value[2] for o in outcomes]
        value = values[0] if len(values) == 1 else _sum_tokens(values)
        return FileResult(index, True, size, mtime_ns, value, seconds=seconds, attempts=attempts)

    def _join(self, result: FileResult, parts: list[str]) -> FileResult:
        path = os.path.join(self._input_dir, self._files[result.index].rel)
        try:
            self._processor.join_ranges(path, parts)
        except OSError as error:
            result.ok = False
            result.error = f"{type(error).__name__}: {error}"
        return result


def _sum_tokens(values: list[Any]) -> dict[str, Any]:
    return {"tokens": sum(v.get("tokens") or 0 for v in values if isinstance(v, dict))}


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
