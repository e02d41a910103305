"""The input listing every rank computes identically.

Files are listed recursively under ``input_dir``: regular files and symbolic
links to them; names beginning with ``.`` (files or folders) and anything under
``out_dir`` are skipped; the result is sorted by relative POSIX path.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from pathlib import Path, PurePosixPath
from typing import NamedTuple


class InputFile(NamedTuple):
    """One planned input: its path relative to ``input_dir`` (POSIX), size and modification time."""

    rel: str
    size: int
    mtime_ns: int | None = None


class InputDirError(ValueError):
    """The input folder is missing, not a folder, or unreadable."""


def _matches(rel: str, pattern: str) -> bool:
    return PurePosixPath(rel).match(pattern) or fnmatch.fnmatchcase(rel, pattern)


def list_inputs(input_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                pattern: str | None = None) -> list[InputFile]:
    """Every input file under ``input_dir`` with its size, sorted by relative path.

    ``pattern`` is a glob on the relative POSIX path (``*.txt``, ``part1/**``);
    ``None`` takes every file. A broken link is listed with size 0, so that
    the rank that takes it records it as failed rather than losing it quietly.
    """
    root = Path(input_dir)
    try:
        if not root.is_dir():
            raise InputDirError(f"input_dir {str(root)!r} is not a folder" if root.exists()
                                else f"input_dir {str(root)!r} does not exist")
        os.listdir(root)
    except PermissionError as error:
        raise InputDirError(f"input_dir {str(root)!r} cannot be read: {error.strerror}") from None
    skip = os.path.realpath(out_dir) if out_dir is not None else None
    found: list[InputFile] = []
    _scan(os.fspath(root), "", skip, pattern, found)
    found.sort()
    return found


def _scan(folder: str, prefix: str, skip: str | None, pattern: str | None,
          found: list[InputFile]) -> None:
    """Add the inputs under ``folder`` (whose relative path is ``prefix``) to ``found``."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return  # a folder that vanished or cannot be read, as os.walk does
    try:
        with os.scandir(fd) as entries:  # stat() of an entry is then relative to fd: cheaper
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue
                rel = prefix + name
                try:
                    is_folder = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_folder:
                    path = os.path.join(folder, name)
                    if skip is None or os.path.realpath(path) != skip:
                        _scan(path, rel + "/", skip, pattern, found)
                    continue
                if pattern is not None and not _matches(rel, pattern):
                    continue
                try:
                    info = entry.stat()  # follows a link to its target
                except OSError:
                    # A broken link is listed so that processing records it as failed.
                    if entry.is_symlink():
                        found.append(InputFile(rel, 0))
                    continue
                if stat.S_ISREG(info.st_mode):
                    found.append(InputFile(rel, info.st_size, info.st_mtime_ns))
    except OSError:
        pass  # the folder went away while being read
    finally:
        os.close(fd)
