"""Outputs that appear only when complete: write to a temporary name, then rename.

A temporary file lives in a per-rank folder (set by the runner with
:func:`use_temp_dir`) or, by default, beside its final name as a dotfile, so
the input listing never picks it up. Each temporary name carries the writing
process's id: :func:`remove_temps_of` clears what a killed worker left.
"""

from __future__ import annotations

import errno
import itertools
import os
import shutil
from contextlib import contextmanager
from typing import BinaryIO, Iterator

_temp_dir: str | None = None
_counter = itertools.count()


def use_temp_dir(path: str | None) -> None:
    """Write temporary files into ``path`` (one folder per rank), or beside the output."""
    global _temp_dir
    _temp_dir = path


def _temp_name(final: str) -> str:
    tag = f"{os.getpid()}-{next(_counter)}"
    if _temp_dir is not None:
        return os.path.join(_temp_dir, f"{tag}.partial")
    folder, name = os.path.split(final)
    return os.path.join(folder, f".{name}.{tag}.partial")


def _replace(temp: str, final: str) -> None:
    try:
        os.replace(temp, final)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        # The temp folder is on another file system: copy beside, then rename.
        folder, name = os.path.split(final)
        beside = os.path.join(folder, f".{name}.{os.getpid()}.partial")
        try:
            shutil.move(temp, beside)
            os.replace(beside, final)
        except BaseException:
            _unlink(beside)
            raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


@contextmanager
def atomic_output(final: str | os.PathLike, buffering: int = -1) -> Iterator[BinaryIO]:
    """Open a binary file that appears at ``final`` only if the block completes.

    On any exception the temporary file is removed and ``final`` is untouched.
    The parent folders of ``final`` are created.
    """
    final = os.fspath(final)
    os.makedirs(os.path.dirname(final) or ".", exist_ok=True)
    temp = _temp_name(final)
    try:
        with open(temp, "wb", buffering=buffering) as stream:
            yield stream
        _replace(temp, final)
    except BaseException:
        _unlink(temp)
        raise


def remove_temps_of(pid: int, temp_dir: str) -> int:
    """Remove the temporary files that process ``pid`` left in ``temp_dir``; returns the count."""
    removed = 0
    prefix = f"{pid}-"
    try:
        names = os.listdir(temp_dir)
    except FileNotFoundError:
        return 0
    for name in names:
        if name.startswith(prefix):
            _unlink(os.path.join(temp_dir, name))
            removed += 1
    return removed
