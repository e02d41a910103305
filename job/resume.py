"""Resume: which files an earlier run finished, and what a killed run left behind.

A file is done when its newest record in any journal of ``out_dir/_manifest``
says ``ok`` or ``skipped``, was made by the same processor, holds the input's
current size and modification time, and its output (if the processor names
one) exists. Anything else is done again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections import namedtuple
from collections.abc import Mapping, Sequence

from . import atomic, journal
from .config import JobConfig
from .listing import InputFile
from .processor import DataProcessor
from .outputs import known_output_of, landing_error

log = logging.getLogger("job")


def still_done(config: JobConfig, item: InputFile, record: Mapping[str, object] | None,
               processor: str) -> bool:
    """Whether ``record`` (a file's newest journal record) still describes ``item`` as done.

    It must say ``ok`` or ``skipped``, name the same ``processor`` (identity
    and version), hold the input's current size and modification time (as the
    plan examined it: ``item``'s, else the file's now), and its output (if it
    names one) must exist.
    """
    if record is None or record.get("status") not in journal.DONE or item.error is not None:
        return False
    if record.get("processor") != processor:
        return False
    size, mtime_ns = item.size, item.mtime_ns  # as the plan examined it, moments ago
    if mtime_ns is None:
        try:
            info = os.stat(os.path.join(config.input_dir, item.rel))
        except OSError:
            return False
        size, mtime_ns = info.st_size, info.st_mtime_ns
    if record.get("bytes_in") != size or record.get("mtime_ns") != mtime_ns:
        return False
    output = record.get("output")
    return output is None or (isinstance(output, str)
                              and os.path.isfile(os.path.join(config.out_dir, output)))


class Carried(namedtuple("Carried", "records journaled")):
    """The files an earlier run finished: their ``skipped`` records (a list of dicts), and
    for each whether ``journal`` (this shard's journal name) already holds the file's newest
    record (a list of booleans)."""

    __slots__ = ()


def split_done(config: JobConfig, files: Sequence[InputFile], processor: str,
               journal_name: str = "",
               counts: Sequence[str] = ()) -> tuple[Carried, list[InputFile]]:
    """The files carried over from earlier runs, and the files still to do.

    A carried record keeps the earlier record's ``bytes_in`` and ``counts``
    (the processor's declared counts, :attr:`DataProcessor.counts`).

    For each file the newest record in any journal of ``out_dir`` decides,
    whatever rank layout wrote it (see :func:`journal.newest_records`).
    """
    newest = journal.newest_records(config.out_dir, {f.rel for f in files}) if config.resume \
        else {}
    carried, todo = Carried([], []), []
    if not newest:  # a first run, or no resume: every file to do
        return carried, list(files)
    now = time.time()
    for item in files:
        record, holder = newest.get(item.rel, (None, None))
        if still_done(config, item, record, processor):
            carried.journaled.append(holder == journal_name)
            skipped = {"input": item.rel, "output": record.get("output"), "status": "skipped",
                       "bytes_in": record.get("bytes_in")}
            skipped.update((name, record.get(name)) for name in counts)
            skipped.update(seconds=0.0, attempts=0, error=None, mtime_ns=record.get("mtime_ns"),
                           processor=processor, time=now)
            carried.records.append(skipped)
        else:
            todo.append(item)
    return carried, todo


def ended_cleanly(book: journal.Journal) -> bool:
    """Whether this rank's last run wrote its final manifest (so left no temporary files)."""
    try:
        with open(book.manifest_path, "rb") as stream:
            manifest = json.load(stream)
        return (manifest.get("complete") is True
                and os.path.getmtime(book.manifest_path) >= os.path.getmtime(book.path))
    except (OSError, ValueError):
        return not os.path.exists(book.path)


def remove_stale_temps(config: JobConfig, processor: DataProcessor,
                       files: Sequence[InputFile], tag: str,
                       input_folders: frozenset[tuple[int, int]] = frozenset()) -> None:
    """Remove the temporary files of rank ``tag``'s outputs that a killed run left,
    never in a folder of the inputs (``input_folders``: see :func:`landing_error`)."""
    folders = set()
    for item in files:
        output = known_output_of(processor, config.input_dir, item.rel)
        if output is not None:
            folders.add(os.path.dirname(output))
    folders = {f for f in folders
               if landing_error(f, config.input_dir, config.out_dir, input_folders) is None}
    removed = sum(atomic.remove_temps(folder, tag=tag) for folder in folders)
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run", removed)


_LAYOUT_TAG = re.compile(r"(\d+)of(\d+)")  # the tag the runner gives each rank: INDEXofCOUNT


def other_layout_was_killed(out_dir: str, count: int) -> bool:
    """Whether a rank of a layout other than ``count`` shards did not end cleanly in
    ``out_dir``: its journal is newer than its manifest, or it has none."""
    for name in journal.journal_names(out_dir):
        index, shards = map(int, journal.JOURNAL_NAME.fullmatch(name).groups())
        if shards != count and not ended_cleanly(journal.Journal(out_dir, index, shards)):
            return True
    return False


def _remove_parts_of_other_layouts(out_dir: str, count: int) -> None:
    """Remove the folders of range parts (``_manifest/partial-IIIII-of-NNNNN``) and the
    manifests half written (``shard-….json.PID.partial``) that killed ranks of layouts other
    than ``count`` shards left: the next run of a rank removes its own, but after a layout
    change none comes, and the parts of a large file take as much room as its output. Under
    the conditions of :func:`remove_orphaned_temps`."""
    folder = os.path.join(out_dir, journal.MANIFEST_DIR)
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        parts = journal.PARTS_NAME.fullmatch(name)
        if parts is not None and int(parts.group(2)) != count:
            atomic.remove_folder(os.path.join(folder, name))
            log.info("removed %s, the range parts of a killed run of another rank layout",
                     name)
        manifest = journal.MANIFEST_TEMP_NAME.fullmatch(name)
        if manifest is not None and int(manifest.group(2)) != count:
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                continue  # gone meanwhile (another rank of this layout removed it)
            log.info("removed %s, a manifest half written by a killed run of another rank "
                     "layout", name)


def remove_orphaned_temps(config: JobConfig, processor: DataProcessor,
                          files: Sequence[InputFile], count: int,
                          input_folders: frozenset[tuple[int, int]] = frozenset()) -> None:
    """Remove the temporary files of this rank's outputs written by ranks of another layout,
    and the range parts those ranks left (:func:`_remove_parts_of_other_layouts`).

    Their writers are provably gone: call it only while holding this rank's
    lock after :meth:`job.lock.RankLock.refuse_other_layouts` passed, so no
    rank of another layout runs in ``out_dir`` (one that starts is refused
    while this rank holds its lock), and a rank's workers stop with it.
    Temporary files of this layout's other ranks are theirs to remove (they
    may be running). Only looked for when a rank of another layout was killed.
    """
    if not other_layout_was_killed(config.out_dir, count):
        return
    _remove_parts_of_other_layouts(config.out_dir, count)
    names: dict[str, set[str]] = {}
    for item in files:
        output = known_output_of(processor, config.input_dir, item.rel)
        if output is not None:
            folder, name = os.path.split(output)
            names.setdefault(folder, set()).add(atomic.temp_base(name))

    def orphaned(bases: set[str], base: str, tag: str, pid: str) -> bool:
        layout = _LAYOUT_TAG.fullmatch(tag)
        return base in bases and layout is not None and int(layout.group(2)) != count

    removed = sum(atomic.remove_temps_if(folder, lambda *temp, b=bases: orphaned(b, *temp))
                  for folder, bases in names.items()
                  if landing_error(folder, config.input_dir, config.out_dir,
                                   input_folders) is None)
    if removed:
        log.info("removed %d temporary file(s) left by a killed run of another rank layout",
                 removed)
