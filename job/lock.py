"""One run of a rank at a time per out_dir: ``_manifest/shard-IIIII-of-NNNNN.lock``.

A second run of the same rank into the same ``out_dir`` (a job resubmitted
while the first still runs) would replace the first's journal and remove its
temporary files, so it is refused at once with :class:`RankBusy`, whose
message names the holder: host, pid and since when.

On one host the lock is an ``flock`` on the file, which the kernel releases
when the holder and the worker processes it forked (they share the open
file) are all gone, however they died (SIGKILL included): a holder that is
provably dead is taken over, never one whose workers still write. The file also says who holds it (JSON: ``host``,
``pid``, ``since``, ``heartbeat``), rewritten every :data:`HEARTBEAT_SECONDS`
by a thread of the holder, because a holder on another host (another node
with the same blob container mounted) cannot be seen through ``flock``: its
lock is taken over only when its heartbeat is older than
:data:`STALE_SECONDS` (a preempted node), and refused otherwise. The file is
removed when the run ends. A run is also refused while a rank of another
layout (another shard count) holds its lock in the same ``out_dir``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
import time

HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 120.0


class RankBusy(Exception):
    """Another live run holds this rank's lock; the message names it."""


def _describe(holder: dict, now: float) -> str:
    since, beat = holder.get("since"), holder.get("heartbeat")
    try:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
    except (TypeError, ValueError, OverflowError, OSError):
        when = "an unknown time"
    age = ""
    if isinstance(beat, (int, float)) and not isinstance(beat, bool) and abs(now - beat) < 1e9:
        age = (f", last heard of {now - beat:.0f} s ago" if beat <= now else
               f", last heard of {beat - now:.0f} s in the future (its clock is ahead)")
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} since {when}{age}"


def this_host() -> str:
    """This machine's host name, as ``socket.gethostname()`` gives it (without importing
    ``socket``, 3 ms of the job's start-up)."""
    return os.uname().nodename


class RankLock:
    """The lock of one rank in ``folder`` (``out_dir/_manifest``), named ``name``.

    :meth:`acquire` takes it or raises :class:`RankBusy`; :meth:`release`
    removes it. ``OSError`` when the folder cannot be written.
    """

    def __init__(self, folder: str, name: str, rank: str):
        self.path = os.path.join(folder, name + ".lock")
        self.rank = rank
        self._fd: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._info = {"host": this_host(), "pid": os.getpid(), "since": time.time()}
        self.took_over: str | None = None  # the dead holder this run replaced, described

    def acquire(self) -> None:
        for _ in range(10):  # the file may be removed or replaced while we lock it
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                holder = _read(fd)
                os.close(fd)
                if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
                    orphans = ""
                    if holder.get("host") == self._info["host"] and not _alive(holder.get("pid")):
                        orphans = ("; that pid is gone, but processes it started still hold "
                                   "the lock: they stop within seconds")
                    raise RankBusy(f"{self.rank} is already running into this out_dir: held by "
                                   f"{_describe(holder, time.time())}{orphans} "
                                   f"(lock {self.path})") from None
                raise
            if not _same_file(fd, self.path):
                os.close(fd)
                continue
            holder = _read(fd)
            now = time.time()
            if holder and holder.get("host") != self._info["host"]:
                beat = holder.get("heartbeat", holder.get("since"))
                if isinstance(beat, (int, float)) and now - beat < STALE_SECONDS:
                    os.close(fd)
                    raise RankBusy(f"{self.rank} is held by {_describe(holder, now)} (lock "
                                   f"{self.path}); a holder on another host is presumed dead "
                                   f"{STALE_SECONDS:.0f} s after it was last heard of: run "
                                   "again then if that run is gone")
            if holder:
                self.took_over = _describe(holder, now)
            self._fd = fd
            try:
                self._write()
            except BaseException:
                self.release()
                raise
            self._thread = threading.Thread(target=self._beat, name="rank-lock", daemon=True)
            self._thread.start()
            return
        raise OSError(errno.EAGAIN, f"cannot settle the lock {self.path}")

    def refuse_other_layouts(self) -> None:
        """:class:`RankBusy` if a rank of another layout (shard count) runs into this out_dir.

        Two layouts at once would both take files the other one takes.
        """
        folder, own = os.path.split(self.path)
        count = own.rpartition("-of-")[2]
        for name in sorted(os.listdir(folder)):
            if not (name.startswith("shard-") and name.endswith(".lock")) \
                    or name.rpartition("-of-")[2] == count:
                continue
            holder = _live_holder(os.path.join(folder, name), self._info["host"])
            if holder is not None:
                raise RankBusy(f"a run of another rank layout is writing into this out_dir "
                               f"({name[:-5]}, held by {_describe(holder, time.time())}): "
                               f"two layouts at once would both take the same files; wait for "
                               f"it to end, or use another out_dir")

    def _write(self) -> None:
        """Say who holds the lock; written through a fresh descriptor, so that a mount that
        uploads on close (blobfuse) shows it to other hosts."""
        data = json.dumps({**self._info, "heartbeat": time.time()}).encode() + b"\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                self._write()
            except OSError:
                pass  # a full disk or a vanished mount: the run itself reports it

    def release(self) -> None:
        """Stop the heartbeat, remove the lock file and unlock."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._fd is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None


def _live_holder(path: str, host: str) -> dict | None:
    """Who holds the lock ``path``, if anyone alive does (as :meth:`RankLock.acquire` judges)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        holder = _read(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return holder or {}
        if holder and holder.get("host") != host:
            beat = holder.get("heartbeat", holder.get("since"))
            if isinstance(beat, (int, float)) and time.time() - beat < STALE_SECONDS:
                return holder
        return None
    finally:
        os.close(fd)


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _same_file(fd: int, path: str) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _read(fd: int) -> dict:
    try:
        data = os.pread(fd, 4096, 0)
        holder = json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}
