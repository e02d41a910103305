"""Units of work for the pool: whole files, or byte ranges of a large file.

A file larger than the range size is cut into byte ranges when the
processor has ``process_range`` (as the token splitter does: a file's output
is its ranges' outputs concatenated in order), so that one huge file keeps
every worker busy. Small files
travel in batches (see :data:`BATCH_BYTES`), so that the pipe to a worker is
not crossed once per tiny file. :class:`Assembler` turns task outcomes back
into one result per file, appending a file's ranges to its output in order.
"""

from __future__ import annotations

import functools
import math
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple, Sequence

from .atomic import AtomicWriter, append_file
from .journal import MANIFEST_DIR
from .listing import InputFile, identity
from .pool import Outcome

MIN_RANGE_BYTES = 32 << 20
BATCH_BYTES = 4 << 20
BATCH_FILES = 64
_FILE_KINDS = {stat.S_IFDIR: "folder", stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket",
              stat.S_IFCHR: "character device", stat.S_IFBLK: "block device"}


class Task(NamedTuple):
    """File ``index`` of the to-do list, or its byte range ``[start, end)``, part ``part`` of ``parts``.

    It crosses the pipe to a worker with every file, as plain fields (see
    :func:`pool_items`): a named tuple pickles its class with each instance.
    """

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
    counts: tuple = ()  # the processor's declared counts, in its order (None: not given)
    error: str | None = None
    seconds: float = 0.0
    attempts: int = 1
    output: str | None = None  # relative to out_dir; known when ok


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
    """``(key, args, weight)`` items for :meth:`WorkerPool.imap`."""
    for task in tasks:
        weight = task.end - task.start if task.parts > 1 else files[task.index].size
        yield task, (files[task.index].rel, *task), weight


def part_path(temp_dir: str, task: Task) -> str:
    return os.path.join(temp_dir, f"range-{task.index}-{task.part}-of-{task.parts}.part")


@functools.lru_cache(maxsize=8)
def _folder_prefix(folder: str) -> str:
    return os.path.join(folder, "")


def output_of(processor, input_dir: str, rel: str) -> str | None:
    """The processor's output path for input ``rel`` (None if it names none).

    A ``pathlib.Path`` (any ``os.PathLike``) is taken as its path; anything
    else that is not text is a :class:`TypeError` that says so.
    """
    output = processor.output_path(_folder_prefix(input_dir) + rel)
    if output is None or (type(output) is str and output):
        return output
    try:
        output = os.fsdecode(output)
    except TypeError:
        raise TypeError(f"output_path() returned {type(output).__name__} {output!r:.60}, "
                        "not a path") from None
    if not output:
        raise TypeError("output_path() returned an empty path")
    return output


def known_output_of(processor, input_dir: str, rel: str) -> str | None:
    """:func:`output_of`, or None when the processor cannot say (for the rank's bookkeeping)."""
    try:
        return output_of(processor, input_dir, rel)
    except Exception:  # noqa: BLE001 - the worker reports it against the file
        return None


def counts_of(value: Any, names: Sequence[str]) -> tuple:
    """The declared counts ``names`` of a processor's return value, in that order;
    :class:`TypeError` if the value is unusable.

    ``process`` returns None, or a mapping whose declared counts (if any) are
    non-negative integers; other keys are the processor's own.
    """
    if value is None:
        return (None,) * len(names)
    if type(value) is not dict and not isinstance(value, Mapping):
        example = names[0] if names else "tokens"
        raise TypeError(f"process() returned {type(value).__name__} {value!r:.60}: the runner "
                        f"takes None or a dict of counts, such as {{{example!r}: 12}}")
    counts = tuple(value.get(name) for name in names)
    for name, count in zip(names, counts):
        if count is not None and not (type(count) is int and 0 <= count < 1 << 63):
            try:
                shown = repr(count)[:60]
            except ValueError:  # an integer too long to write out
                shown = "a number too large"
            raise TypeError(f"process() returned {name}={shown}: not a count (an integer "
                            "from 0 to 2**63 - 1)")
    return counts


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(_folder_prefix(folder))


@functools.lru_cache(maxsize=1024)
def landing_error(folder: str, input_dir: str, out_dir: str,
                  input_folders: frozenset[tuple[int, int]] = frozenset()) -> str | None:
    """Why an output may not be written in ``folder``, or None: never onto an input, never
    into ``out_dir/_manifest`` (links followed). ``input_folders`` are the identities
    (device, inode) of the folders the listing read: ``folder`` may not be one of them
    under another name (a bind mount of an input folder inside out_dir)."""
    real = os.path.realpath(folder or ".")
    inputs, outputs = os.path.realpath(input_dir), os.path.realpath(out_dir)
    if _inside(real, os.path.join(outputs, MANIFEST_DIR)):
        return f"its output folder {folder!r} is inside out_dir/{MANIFEST_DIR}, the journals' folder"
    if _inside(real, inputs) and not _inside(real, outputs):
        return f"its output folder {folder!r} is inside input_dir: outputs never land on inputs"
    if input_folders and _reaches_inputs(real, outputs, input_folders):
        return (f"its output folder {folder!r} is in a folder of input_dir reached through a "
                "mount or link: outputs never land on inputs")
    return None


def _reaches_inputs(real: str, outputs: str, input_folders: frozenset[tuple[int, int]]) -> bool:
    """Whether the folder ``real`` (resolved), or a folder above it below ``outputs``
    (above it up to ``/`` when it is not inside ``outputs``), is one of ``input_folders``.

    The folders above count because one that does not exist yet is made through them
    (``out/b/new`` where ``out/b`` is an input folder bound there).
    """
    stop = outputs if _inside(real, outputs) else None
    while real != stop:
        if identity(real) in input_folders:
            return True
        parent = os.path.dirname(real)
        if parent == real:
            return False
        real = parent
    return False


def _check_landing(output: str | None, input_dir: str, out_dir: str,
                   input_folders: frozenset[tuple[int, int]]) -> None:
    if output is not None:
        cut = output.rfind("/") + 1
        folder = output[:cut]  # with its slash: dirname's work, done cheaper
        error = landing_error(folder, input_dir, out_dir, input_folders)
        if (error is None and output[cut:] == MANIFEST_DIR
                and os.path.realpath(folder or ".") == os.path.realpath(out_dir)):
            error = (f"its output would be out_dir/{MANIFEST_DIR}, the journals' folder: the "
                     f"name {MANIFEST_DIR} is reserved at the top of out_dir")
        if error is not None:
            raise ValueError(f"refused to process: {error}")


def _relative(output: str | None, out_dir: str) -> str | None:
    if output is None:
        return None
    prefix = _folder_prefix(out_dir)
    return output[len(prefix):] if output.startswith(prefix) else os.path.relpath(output, prefix)


def output_rel(processor, input_dir: str, out_dir: str, rel: str) -> str | None:
    """The processor's output for input ``rel``, relative to ``out_dir`` (None if unknown)."""
    return _relative(known_output_of(processor, input_dir, rel), out_dir)


def run_task(processor, input_dir: str, out_dir: str, temp_dir: str, rel: str,
             *fields: int, input_folders: frozenset[tuple[int, int]] = frozenset()) -> tuple:
    """Worker side: process the file or its range, the :class:`Task` of ``fields``.

    Returns ``(size, mtime_ns, counts, output)``, ``counts`` as :func:`counts_of`
    and ``output`` relative to ``out_dir``. A file whose output would land on
    an input or among the journals fails (see :func:`landing_error`; ``input_folders``
    are the identities of the listed folders).
    A whole file keeps the fingerprint (size, modification time) the listing
    took, before it was processed: a file changed since is redone on resume.
    The ranges of a file each take it again, so that a file changed between
    its ranges is caught. The other fingerprint is ``(None, None)``.

    Raises :class:`OSError` ``not a regular file (FIFO)`` (or folder, socket,
    device), without calling the processor, if the input is no longer a
    regular file (or a link to one): opening a FIFO would block the worker
    for as long as nothing writes to it.
    """
    task = Task(*fields)
    path = _folder_prefix(input_dir) + rel
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        kind = _FILE_KINDS.get(stat.S_IFMT(info.st_mode), "unknown type")
        raise OSError(f"not a regular file ({kind})")
    output = None
    if task.part == 0:
        absolute = output_of(processor, input_dir, rel)
        _check_landing(absolute, input_dir, out_dir, input_folders)
        output = _relative(absolute, out_dir)
    if task.parts == 1:
        return None, None, counts_of(processor.process(path), processor.counts), output
    end = task.end if task.part < task.parts - 1 else max(task.end, info.st_size)
    value = processor.process_range(path, task.start, end, part_path(temp_dir, task))
    return info.st_size, info.st_mtime_ns, counts_of(value, processor.counts), output


@dataclass
class _Joining:
    """A ranged file in progress: its part outcomes, and its output as far as appended."""

    outcomes: dict[int, Outcome] = field(default_factory=dict)
    writer: AtomicWriter | None = None
    appended: int = 0
    error: str | None = None


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
            if outcome.ok:  # the common case, kept short: many small files pass here
                item = self._files[task.index]
                _, _, value, output = outcome.value
                return FileResult(task.index, True, item.size, item.mtime_ns, value, None,
                                  outcome.seconds, outcome.attempts, output)
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
