"""Which kind of file system a path is on, from ``/proc/self/mountinfo`` (Linux).

A FUSE mount of blob storage (blobfuse on Azure ML, rclone) stores a file
only when it is closed: what a process appends to a file it keeps open is not
in storage, however often it is flushed or synced, until the file is closed
(and on rclone, not while the file is open again for writing). Elsewhere
(local disks, NFS) the answer is ``False`` and the journal stays open.
"""

from __future__ import annotations

import os

MOUNTINFO = "/proc/self/mountinfo"


def _unescape(field: str) -> str:
    """A mountinfo path field: spaces, tabs, newlines and backslashes are octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def filesystem_type(path: str | os.PathLike) -> str | None:
    """The type of the file system ``path`` (links followed) is on, as mountinfo names it
    (``ext4``, ``tmpfs``, ``fuse.rclone``, ``fuse.blobfuse2``...), or ``None`` if unknown."""
    target = os.path.realpath(path)
    best, kind = "", None
    try:
        with open(MOUNTINFO, encoding="utf-8", errors="surrogateescape") as info:
            for line in info:
                fields = line.split()
                try:
                    point = _unescape(fields[4])
                    fstype = fields[fields.index("-") + 1]
                except (IndexError, ValueError):
                    continue
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):  # the last of equal ones is on top
                    best, kind = point, fstype
    except OSError:
        return None
    return kind


def uploads_on_close(path: str | os.PathLike) -> bool:
    """Whether ``path`` is on a FUSE mount, where blob storage mounts store files on close."""
    kind = filesystem_type(path)
    return kind is not None and (kind == "fuse" or kind.startswith("fuse."))
