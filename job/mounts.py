"""Which kind of file system a path is on, from ``/proc/self/mountinfo`` (Linux).

A FUSE mount of blob storage (blobfuse on Azure ML, rclone) stores a file
only when it is closed: what a process appends to a file it keeps open is not
in storage, however often it is flushed or synced, until the file is closed
(and on rclone, not while the file is open again for writing). Elsewhere
(local disks, NFS) the answer is ``False`` and the journal stays open.
"""

from __future__ import annotations

import os
import posixpath
from collections import namedtuple

MOUNTINFO = "/proc/self/mountinfo"


def _unescape(field: str) -> str:
    """A mountinfo path field: spaces, tabs, newlines and backslashes are octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


class _Mount(namedtuple("_Mount", "device root point kind")):
    """A line of mountinfo: ``device`` (``major:minor``), ``root`` (the folder of its file
    system that is mounted), ``point`` (where) and ``kind`` (the file system type), as text."""

    __slots__ = ()


def _mount_of(path: str | os.PathLike) -> tuple[_Mount, str] | None:
    """The mount ``path`` (links followed) is on, and its resolved path; ``None`` if unknown."""
    target = os.path.realpath(path)
    best: _Mount | None = None
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as info:
            for line in info:
                fields = line.split()
                try:
                    mount = _Mount(fields[2], _unescape(fields[3]), _unescape(fields[4]),
                                   fields[fields.index("-") + 1])
                except (IndexError, ValueError):
                    continue
                inside = target == mount.point or target.startswith(mount.point.rstrip("/") + "/")
                if inside and (best is None or len(mount.point) >= len(best.point)):
                    best = mount  # the last of equal mount points is the one on top
    except OSError:
        return None
    return None if best is None else (best, target)


def filesystem_type(path: str | os.PathLike) -> str | None:
    """The type of the file system ``path`` (links followed) is on, as mountinfo names it
    (``ext4``, ``tmpfs``, ``fuse.rclone``, ``fuse.blobfuse2``...), or ``None`` if unknown."""
    found = _mount_of(path)
    return None if found is None else found[0].kind


def location(path: str | os.PathLike) -> tuple[str, str] | None:
    """``(device, path within that file system)`` of ``path``: the same for every name a
    folder has, through links and bind mounts (``None`` if unknown). One folder is inside
    another when, on the same device, its path starts with the other's."""
    found = _mount_of(path)
    if found is None:
        return None
    mount, target = found
    rest = target[len(mount.point.rstrip("/")):]
    return mount.device, posixpath.normpath(mount.root.rstrip("/") + "/" + rest.lstrip("/"))


def uploads_on_close(path: str | os.PathLike) -> bool:
    """Whether ``path`` is on a FUSE mount, where blob storage mounts store files on close."""
    kind = filesystem_type(path)
    return kind is not None and (kind == "fuse" or kind.startswith("fuse."))
