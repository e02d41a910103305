"""Resume: which files an earlier run finished, and what a killed run left behind.

A file is done when a journal in ``out_dir/_manifest`` ends with an ``ok`` or
``skipped`` record for it, its input has the size and modification time that
record holds, and its output (if the processor names one) exists. Anything
else is done again.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Mapping, Sequence

from . import atomic, journal
from .config import JobConfig
from .listing import InputFile
from .processor import DataProcessor
from .tasks import output_of

log = logging.getLogger("job")


def still_done(config: JobConfig, item: InputFile, record: Mapping[str, Any] | None) -> bool:
    """Whether ``record`` (from a journal) still describes ``item`` as done."""
    if record is None:
        return False
    try:
        info = os.stat(os.path.join(config.input_dir, item.rel))
    except OSError:
        return False
    if record.get("bytes_in") != info.st_size or record.get("mtime_ns") != info.st_mtime_ns:
        return False
    output = record.get("output")
    return output is None or os.path.isfile(os.path.join(config.out_dir, output))


def split_done(config: JobConfig, files: Sequence[InputFile]
               ) -> tuple[list[dict[str, Any]], list[InputFile]]:
    """The ``skipped`` records carried over from earlier runs, and the files still to do."""
    done = journal.finished_records(config.out_dir) if config.resume else {}
    carried, todo = [], []
    for item in files:
        record = done.get(item.rel)
        if still_done(config, item, record):
            carried.append({**record, "status": "skipped", "seconds": 0.0, "attempts": 0,
                            "error": None})
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
                       files: Sequence[InputFile], tag: str) -> None:
    """Remove the temporary files of rank ``tag``'s outputs that a killed run left."""
    folders = set()
    for item in files:
        output = output_of(processor, config.input_dir, item.rel)
        if output is not None:
            folders.add(os.path.dirname(output))
    removed = sum(atomic.remove_temps(folder, tag=tag) for folder in folders)
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run", removed)
