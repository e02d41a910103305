"""Units of work for the pool: whole files, or byte ranges of a large file.

A file larger than the range size is cut into byte ranges when the
processor has ``process_range`` (as the token splitter does: a file's output
is its ranges' outputs concatenated in order), so that one huge file keeps
every worker busy. Small files travel in batches (see :data:`BATCH_BYTES`),
so that the pipe to a worker is not crossed once per tiny file. A worker runs
:meth:`Runner.run`; :class:`job.assemble.Assembler` turns the outcomes back into
one result per file.
"""

from __future__ import annotations

import math
import os
from collections import namedtuple
from collections.abc import Iterator, Mapping, Sequence

from .listing import InputFile, require_regular
from .outputs import check_landing, checked_output, folder_prefix, relative

MIN_RANGE_BYTES = 32 << 20
BATCH_BYTES = 4 << 20
#: At most this many files per hand-out (fewer when they weigh BATCH_BYTES): a batch
#: costs the rank a pipe round trip, a wake-up and two pickles. On 20,000 tiny files
#: (row 10) the pool's own time per file in the rank went from 3.2-4.7 µs with 64 to
#: 2.5-4.1 µs with 256 (CPU time, on the shared 2-core machine).
BATCH_FILES = 256


class Task(namedtuple("Task", "index part parts start end", defaults=(0, 1, 0, 0))):
    """File ``index`` of the to-do list, or its byte range ``[start, end)``, part ``part`` of ``parts``.

    It crosses the pipe to a worker with every file, as plain fields (see
    :func:`pool_items`): a named tuple pickles its class with each instance.
    """

    __slots__ = ()


def range_size(files: Sequence[InputFile], workers: int) -> int:
    """The byte-range length that spreads the largest files over ``workers``."""
    return max(MIN_RANGE_BYTES, sum(f.size for f in files) // (4 * workers))


def plan_tasks(files: Sequence[InputFile], workers: int, ranges: bool) -> list[Task]:
    """Tasks for ``files``, largest ranges first so that no worker is left with a long tail."""
    step = range_size(files, workers)
    if not ranges or workers < 2 or max((f.size for f in files), default=0) <= step:
        return [Task(index) for index in range(len(files))]
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
    """``(key, args, weight)`` items for :meth:`WorkerPool.imap`; the arguments of
    :meth:`Runner.run`: ``(rel, index)`` for a whole file, ``(rel, *task)`` for a range."""
    for task in tasks:
        if task.parts > 1:
            yield task, (files[task.index].rel, *task), task.end - task.start
        else:
            item = files[task.index]
            yield task, (item.rel, task.index), item.size


def part_path(temp_dir: str, task: Task) -> str:
    return os.path.join(temp_dir, f"range-{task.index}-{task.part}-of-{task.parts}.part")


def counts_of(value: object, names: Sequence[str]) -> tuple:
    """The declared counts ``names`` of a processor's return value, in that order;
    :class:`TypeError` if the value is unusable.

    ``process`` returns None, or a mapping whose declared counts (if any) are
    non-negative integers; other keys are the processor's own.
    """
    if value is None:
        return (None,) * len(names)
    if type(value) is dict and len(names) == 1:  # the usual case (the token splitter's)
        count = value.get(names[0])
        if count is None or (type(count) is int and 0 <= count < 1 << 63):
            return (count,)
    if type(value) is not dict and not isinstance(value, Mapping):
        example = names[0] if names else "tokens"
        raise TypeError(f"process() returned {type(value).__name__} {value!r:.60}: the runner "
                        f"takes None or a dict of counts, such as {{{example!r}: 12}}")
    counts = tuple(map(value.get, names))
    for name, count in zip(names, counts):
        if count is not None and not (type(count) is int and 0 <= count < 1 << 63):
            try:
                shown = repr(count)[:60]
            except ValueError:  # an integer too long to write out
                shown = "a number too large"
            raise TypeError(f"process() returned {name}={shown}: not a count (an integer "
                            "from 0 to 2**63 - 1)")
    return counts


class Runner:
    """Worker side: what a worker calls for each task (:meth:`run`), its folders joined once.

    ``input_folders`` are the identities of the listed folders (see
    :func:`job.outputs.landing_error`).
    """

    def __init__(self, processor, input_dir: str, out_dir: str, temp_dir: str,
                 input_folders: frozenset[tuple[int, int]] = frozenset()):
        self.processor = processor
        self.input_dir, self.out_dir, self.temp_dir = input_dir, out_dir, temp_dir
        self.input_folders = input_folders
        self._input_prefix, self._output_prefix = folder_prefix(input_dir), folder_prefix(out_dir)

    def run(self, rel: str, *fields: int) -> tuple:
        """Process the file ``rel`` (``fields``: its index) or its range (the fields of its
        :class:`Task`).

        Returns ``(size, mtime_ns, counts, output)``, ``counts`` as :func:`counts_of`
        and ``output`` relative to ``out_dir``. A file whose output would land on
        an input or among the journals fails (see :func:`job.outputs.landing_error`).
        A whole file keeps the fingerprint (size, modification time) the listing
        took, before it was processed: a file changed since is redone on resume.
        The ranges of a file each take it again, so that a file changed between
        its ranges is caught. The other fingerprint is ``(None, None)``.

        Raises :class:`OSError` ``not a regular file (FIFO)`` (or folder, socket,
        device), without calling the processor, if the input is no longer a
        regular file (or a link to one): opening a FIFO would block the worker
        for as long as nothing writes to it (and opening a device can act on it).
        """
        processor = self.processor
        path = self._input_prefix + rel
        info = os.stat(path)
        require_regular(info.st_mode)
        task = Task(*fields) if len(fields) > 1 else None  # a whole file: (index,)
        output = None
        if task is None or task.part == 0:
            absolute = checked_output(processor.output_path(path))
            check_landing(absolute, self.input_dir, self.out_dir, self.input_folders)
            output = relative(absolute, self.out_dir, self._output_prefix)
        if task is None or task.parts == 1:
            return None, None, counts_of(processor.process(path), processor.counts), output
        end = task.end if task.part < task.parts - 1 else max(task.end, info.st_size)
        value = processor.process_range(path, task.start, end, part_path(self.temp_dir, task))
        return info.st_size, info.st_mtime_ns, counts_of(value, processor.counts), output
