"""Outputs that appear only when complete.

Where the file system allows it (Linux ``O_TMPFILE``: ext4, xfs, btrfs,
tmpfs), the output is written as an unnamed file in its folder and linked
to its name when complete: one change to the folder per output instead of
two, and a process killed meanwhile leaves nothing behind. On a file
system without it (network and FUSE mounts such as blobfuse), and to
replace an existing output, it is written to a temporary name and renamed.

The temporary file sits beside its final name, as the dotfile
``.NAME.partial-TAG-PID-N``: a rename within one folder is atomic and takes no
file-system-wide lock (a rename across folders does, and serializes the
workers). Dotfiles are never listed as inputs. ``TAG`` names the rank (set by
the runner with :func:`use_tag`) and ``PID`` the writing process, so that
:func:`remove_temps` can clear what a killed worker or rank left behind.

A temporary name always fits ``NAME_MAX`` (255 bytes), whatever the output's
name: a ``NAME`` of :data:`NAME_KEPT` bytes or more is cut to its first bytes
(never inside a UTF-8 character), ``~`` and a hash of the whole name,
:data:`NAME_KEPT` bytes in all, and so is a ``TAG`` of :data:`TAG_KEPT` bytes
or more. Names shorter than that are kept whole, so no two names share a
temporary name (short of a 128-bit hash collision).
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import BufferedIOBase, RawIOBase

#: A binary file object: buffered (``open(path, "rb")``, ``io.BytesIO``), or raw (``buffering=0``).
BinaryFile = BufferedIOBase | RawIOBase

MARK = ".partial-"
NAME_MAX = 255  # bytes in one file name: Linux's NAME_MAX
#: Longest tag kept whole is one byte less; longer tags are shortened to this many bytes.
TAG_KEPT = 32
_PID_DIGITS = 10  # Linux pids have at most 7
_COUNT_DIGITS = 20  # writes by one process: fewer than 2**64
#: Longest output name kept whole in a temporary name is one byte less (180 bytes).
NAME_KEPT = NAME_MAX - len(f".{MARK}--") - TAG_KEPT - _PID_DIGITS - _COUNT_DIGITS
_tag = "x"
_counter = itertools.count()
_pid = os.getpid()
_O_TMPFILE = getattr(os, "O_TMPFILE", 0)
_no_tmpfile: set[int] = set()  # devices whose file system refused O_TMPFILE
_own_fds: int | None = None  # this process's /proc/self/fd, opened on first use


def _forked() -> None:
    global _pid, _own_fds
    _pid = os.getpid()
    if _own_fds is not None:  # the parent's: /proc/self was resolved when it was opened
        os.close(_own_fds)
        _own_fds = None


if hasattr(os, "register_at_fork"):  # a spawned child imports this module afresh
    os.register_at_fork(after_in_child=_forked)


def use_tag(tag: str) -> None:
    """Tag this process's temporary names (and its workers') with ``tag``, e.g. the rank.

    ``tag`` is not empty and holds no ``/``, NUL or ``.partial-``; raises ``ValueError``.
    """
    global _tag
    if not tag or os.sep in tag or "\0" in tag or MARK in tag:
        raise ValueError(f"a temporary-name tag must be a non-empty name without {os.sep!r}, "
                         f"NUL or {MARK!r}; got {tag!r}")
    _tag = _short_tag(tag)


def _fit(name: str, kept: int, digits: int) -> str:
    """``name`` if shorter than ``kept`` bytes; else ``kept`` bytes: its start, ``~``, a hash.

    The hash (``digits`` hex digits or a few more) is of all of ``name``'s
    bytes, so names that differ only past the cut stay apart; the cut backs
    off to the start of a UTF-8 character. Bytes that are not UTF-8 come and
    go as ``os.fsdecode`` / ``os.fsencode`` map them, so the result round-trips.
    """
    if len(name) * 4 < kept:  # at most 4 bytes per character: short, whatever it holds
        return name
    raw = os.fsencode(name)
    if len(raw) < kept:
        return name
    cut = kept - 1 - digits
    for _ in range(3):
        if raw[cut] & 0xC0 != 0x80:  # not a UTF-8 continuation byte
            break
        cut -= 1
    digest = hashlib.sha256(raw).hexdigest()[:kept - 1 - cut]
    return os.fsdecode(raw[:cut] + b"~" + digest.encode())


def _short_name(name: str) -> str:
    return _fit(name, NAME_KEPT, 32)


def _short_tag(tag: str) -> str:
    return _fit(tag, TAG_KEPT, 16)


def _temp_name(final: str) -> str:
    cut = final.rfind(os.sep) + 1
    return f"{final[:cut]}.{_short_name(final[cut:])}{MARK}{_tag}-{_pid}-{next(_counter)}"


def make_folders(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)`` in a loop, not by recursion: an input tree
    of any depth gets its output folders. :class:`FileExistsError` if ``path`` or a
    folder above it is something else than a folder."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent in ("", path):
            break
        path = parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except FileExistsError:
            if not os.path.isdir(folder):
                raise


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _proc_fds() -> int | None:
    global _own_fds
    if _own_fds is None:
        try:
            _own_fds = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            _own_fds = -1
    return _own_fds if _own_fds >= 0 else None


def unnamed_files_fd() -> int | None:
    """An open ``/proc/self/fd`` through which an unnamed file is linked to its name, or
    None where unnamed files are not used: no ``O_TMPFILE`` or ``/proc`` here, or a file
    system that refused one (then every output takes a temporary name, for simplicity)."""
    if not _O_TMPFILE or _no_tmpfile:
        return None
    return _proc_fds()


def _open_unnamed(folder: str) -> int | None:
    """An unnamed file open for writing in ``folder``, or ``None`` where there is none."""
    if not _O_TMPFILE or _proc_fds() is None:
        return None
    try:
        device = os.stat(folder or ".").st_dev if _no_tmpfile else None
        if device in _no_tmpfile:
            return None
        return os.open(folder or ".", _O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o666)
    except OSError as error:
        if error.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOSYS):
            _no_tmpfile.add(os.stat(folder or ".").st_dev)
            return None
        raise


class AtomicWriter:
    """A binary file that appears at ``final`` only when :meth:`commit` is called.

    ``stream`` is the open file. :meth:`abort` (or any failure of ``commit``)
    removes what was written and leaves ``final`` untouched. The parent
    folders of ``final`` are created when missing, also when they were
    removed after an earlier output of this process.
    """

    def __init__(self, final: str | bytes | os.PathLike, buffering: int = -1):
        self.final = os.fsdecode(final)
        fd, self.temp = _create(self.final)
        try:
            self.stream: BinaryFile = open(fd, "wb", buffering=buffering)
        except BaseException:
            os.close(fd)
            if self.temp is not None:
                _unlink(self.temp)
            raise

    def commit(self) -> None:
        try:
            if self.temp is None:
                self.stream.flush()
                self._link()
            self.stream.close()
            if self.temp is not None:
                os.replace(self.temp, self.final)
        except BaseException:
            self.abort()
            raise

    def _link(self) -> None:
        """Give the unnamed file its final name (through a temporary one if it exists)."""
        self.temp = _link(self.stream.fileno(), self.final)

    def abort(self) -> None:
        try:
            self.stream.close()
        except OSError:
            pass
        if self.temp is not None:
            _unlink(self.temp)


def write_bytes(final: str | bytes | os.PathLike, data) -> None:
    """Write ``data`` (bytes-like) to ``final`` as :class:`AtomicWriter` does: ``final``
    appears only complete (an unnamed file linked to its name, or a temporary name
    renamed; an existing ``final`` is replaced whole), and on any failure nothing is left
    but what ``final`` held before. Missing parent folders are created.

    For an output held whole in memory: file descriptors and ``os.write`` only, no
    file object, no context manager. On files of 100-200 B (benchmark row 10) those
    cost more than the bytes: this takes 4 system calls (open, write, link, close),
    :func:`atomic_output` 5 (and an ``fstat``) and 3 Python objects.
    """
    final = os.fsdecode(final)  # a path object, or bytes, as a str: cut as text below
    fd, temp = _create(final)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if temp is None:
            temp = _link(fd, final)
        fd, closing = -1, fd
        os.close(closing)  # on a mount that uploads on close, this stores the file
        if temp is not None:
            os.replace(temp, final)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        if temp is not None:
            _unlink(temp)
        raise


def _create(final: str) -> tuple[int, str | None]:
    """A new file open for writing that will become ``final``, and its temporary name
    (None: an unnamed file, linked to ``final`` when complete). Missing parent folders
    are created, also when they were removed after an earlier output."""
    try:
        return _open_new(final)
    except FileNotFoundError:  # the folder is new, or was removed since the last output
        make_folders(os.path.dirname(final) or ".")
        return _open_new(final)


def _open_new(final: str) -> tuple[int, str | None]:
    unnamed = _open_unnamed(final[:final.rfind("/") + 1])  # its folder ("" for the current)
    if unnamed is not None:
        return unnamed, None
    temp = _temp_name(final)
    return os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666), temp


def _link(fd: int, final: str) -> str | None:
    """Give the unnamed file ``fd`` the name ``final``; if ``final`` exists (an earlier
    output), a temporary name beside it instead, returned: it is to replace ``final``."""
    try:
        os.link(str(fd), final, src_dir_fd=_proc_fds())
        return None
    except FileExistsError:
        temp = _temp_name(final)
        os.link(str(fd), temp, src_dir_fd=_proc_fds())
        return temp


@contextmanager
def atomic_output(final: str | os.PathLike, buffering: int = -1) -> Iterator[BinaryFile]:
    """Open a binary file that appears at ``final`` only if the block completes.

    On any exception the temporary file is removed and ``final`` is untouched.
    The parent folders of ``final`` are created when missing.
    """
    writer = AtomicWriter(final, buffering)
    try:
        yield writer.stream
    except BaseException:
        writer.abort()
        raise
    writer.commit()


def remove_temps(folder: str, name: str | None = None, tag: str | None = None,
                 pid: int | None = None) -> int:
    """Remove temporary files in ``folder``: of output ``name``, rank ``tag``, process ``pid``.

    Each filter applies only when given; ``name`` and ``tag`` are the output's
    name and the tag as given to :func:`use_tag`, before any shortening.
    Returns how many were removed.
    """
    base_wanted = None if name is None else "." + _short_name(name)
    tag_wanted = None if tag is None else _short_tag(tag)
    return remove_temps_if(folder, lambda base, owner_tag, owner_pid: (
        (base_wanted is None or base == base_wanted)
        and (tag_wanted is None or owner_tag == tag_wanted)
        and (pid is None or owner_pid == str(pid))))


def temp_base(name: str) -> str:
    """The part before :data:`MARK` of the temporary names of output ``name``: ``.NAME``."""
    return "." + _short_name(name)


def remove_temps_if(folder: str, wanted: Callable[[str, str, str], bool]) -> int:
    """Remove the temporary files in ``folder`` for which ``wanted(base, tag, pid)`` is true.

    ``base`` is :func:`temp_base` of the output's name, ``tag`` the writer's
    tag as it stands in the name (shortened when long), ``pid`` its process
    id as text. Returns how many were removed.
    """
    try:
        entries = os.listdir(folder or ".")
    except OSError:
        return 0
    removed = 0
    for entry in entries:
        base, mark, owner = entry.rpartition(MARK)
        if not mark or not base.startswith("."):
            continue
        owner_tag, _, owner_pid = owner.rpartition("-")[0].rpartition("-")
        if wanted(base, owner_tag, owner_pid):
            _unlink(os.path.join(folder, entry))
            removed += 1
    return removed


def remove_folder(path: str) -> None:
    """Remove the folder ``path`` with what it holds, if it is there; errors are ignored
    (as ``shutil.rmtree(path, ignore_errors=True)``). An empty one, the common case, is
    removed without importing ``shutil`` (3 ms of every start)."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return
    except OSError:
        import shutil

        shutil.rmtree(path, ignore_errors=True)


def append_file(path: str, sink: BinaryFile) -> None:
    """Append the file ``path`` to the open file ``sink`` (in the kernel where possible)."""
    sink.flush()
    target = sink.fileno()
    copy_range = getattr(os, "copy_file_range", None)  # Linux only
    with open(path, "rb") as source:
        size = os.fstat(source.fileno()).st_size
        copied = 0
        try:
            while copy_range is not None and copied < size:
                step = copy_range(source.fileno(), target, size - copied)
                if step == 0:
                    break
                copied += step
        except OSError as error:
            if error.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        if copied < size:
            import shutil  # here: only where the kernel cannot copy (3 ms of every start)

            source.seek(copied)
            os.lseek(target, 0, os.SEEK_END)
            shutil.copyfileobj(source, sink)
            sink.flush()
