"""Forked worker processes and the pipes the pool talks to them over.

What :mod:`job.pool` needs of ``multiprocessing`` (fork a process, a duplex
pipe of pickled messages, two numbers shared with the parent, wait on many
descriptors), built on ``os.fork``, ``os.pipe``, ``mmap`` and ``poll``: the
``multiprocessing`` modules cost the job a fifth of its start-up (about 20 ms),
as long as ``dd`` takes for 30 MB.

The contract of each part:

- :func:`fork` runs ``target(*args)`` in a child process and returns a
  :class:`Child`; the child closes the descriptors it is told to (the parent's
  ends of other workers' pipes), reads its standard input from ``/dev/null``,
  and exits as ``multiprocessing.Process`` children exit: 0 when ``target``
  returns, a ``SystemExit``'s code, 1 (and a traceback on stderr) when it raises,
  after the threads it started (and their exit hooks, such as a
  ``concurrent.futures`` executor's) have ended. Where the process uses
  ``multiprocessing`` (a processor's ``Manager``, ``Pool`` or ``Process``), the
  child also does what a ``multiprocessing`` child does: it has none of the
  parent's children, runs the after-fork hooks (a manager's proxies reconnect),
  and at its end stops the processes it started. Buffered standard output is
  flushed before the fork, so nothing the parent printed is printed twice.
- :class:`Channel` is the parent's end: it never blocks. :meth:`Channel.send`
  queues a message and writes what the pipe takes; :meth:`Channel.flush`
  writes more once :func:`wait` finds the pipe writable; :meth:`Channel.receive`
  returns the messages that arrived whole. A worker that sends large results
  while the parent sends it large batches therefore cannot deadlock them.
- :func:`read_message` and :func:`write_message` are the worker's end: they
  block, as a worker has nothing else to do.

A message is an 8-byte little-endian length, then a pickle of that length.
"""

from __future__ import annotations

import ctypes
import fcntl
import itertools
import mmap
import os
import pickle
import select
import signal
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterable

HEADER = 8
READ_SIZE = 1 << 20
#: What a pipe to or from a worker holds, where the system allows it (Linux: up to
#: ``/proc/sys/fs/pipe-max-size``, 1 MiB by default); else the default 64 KiB.
PIPE_SIZE = 1 << 20


def _frame(message: object) -> tuple[bytes, bytes]:
    """The header and the pickle of ``message`` (two pieces: a large pickle is not copied)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(data).to_bytes(HEADER, "little"), data


def _read_exactly(fd: int, size: int) -> bytes | None:
    """``size`` bytes from the blocking ``fd``; ``None`` at the end of the stream."""
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, READ_SIZE))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_message(fd: int) -> object:
    """The next message on the blocking ``fd``; :class:`EOFError` when the writer is gone."""
    header = _read_exactly(fd, HEADER)
    body = None if header is None else _read_exactly(fd, int.from_bytes(header, "little"))
    if body is None:
        raise EOFError("the pipe was closed")
    return pickle.loads(body)


def write_message(fd: int, message: object) -> None:
    """Write ``message`` whole to the blocking ``fd``; one that cannot be pickled raises
    before anything is written."""
    for piece in _frame(message):
        view = memoryview(piece)
        while view:
            view = view[os.write(fd, view):]


class Channel:
    """The parent's end of a worker's two pipes; no call blocks."""

    def __init__(self, to_worker: int, from_worker: int):
        self.to_worker, self.from_worker = to_worker, from_worker
        os.set_blocking(to_worker, False)
        os.set_blocking(from_worker, False)
        self._outbox: deque[memoryview] = deque()  # what the pipe has not taken yet
        self.queued = 0  # bytes in the outbox
        self._inbox = bytearray()
        self.closed_by_worker = False  # its end is closed: nothing more will come

    @property
    def pending(self) -> bool:
        """Whether queued bytes wait for the pipe to take them."""
        return bool(self._outbox)

    def send(self, message: object) -> None:
        """Queue ``message`` and write as much as the pipe takes (:meth:`flush`)."""
        for piece in _frame(message):
            self._outbox.append(memoryview(piece))
            self.queued += len(piece)
        self.flush()

    def flush(self) -> None:
        while self._outbox:
            try:
                written = os.write(self.to_worker, self._outbox[0])
            except BlockingIOError:
                return
            except OSError:  # the worker is gone: its exit is seen while waiting
                self._outbox.clear()
                self.queued = 0
                return
            self.queued -= written
            if written == len(self._outbox[0]):
                self._outbox.popleft()
            else:
                self._outbox[0] = self._outbox[0][written:]

    def receive(self) -> list[object]:
        """The messages that arrived whole since the last call, in order."""
        while not self.closed_by_worker:
            try:
                chunk = os.read(self.from_worker, READ_SIZE)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.closed_by_worker = True
            self._inbox += chunk
        messages = []
        while len(self._inbox) >= HEADER:
            end = HEADER + int.from_bytes(self._inbox[:HEADER], "little")
            if len(self._inbox) < end:
                break
            messages.append(pickle.loads(self._inbox[HEADER:end]))
            del self._inbox[:end]
        return messages

    def close(self) -> None:
        for fd in (self.to_worker, self.from_worker):
            try:
                os.close(fd)
            except OSError:
                pass


class Shared:
    """Two numbers the parent and a forked worker both see, in a shared anonymous mapping:
    ``position.value`` (an integer) and ``since.value`` (a float), as
    ``multiprocessing.RawValue`` gives them."""

    def __init__(self):
        self._memory = mmap.mmap(-1, 16)
        self.position = ctypes.c_int64.from_buffer(self._memory, 0)
        self.since = ctypes.c_double.from_buffer(self._memory, 8)


class Child:
    """A forked process: :attr:`pid`, and :attr:`exitcode` once reaped (negative: the
    signal that ended it), as ``multiprocessing.Process`` has them."""

    def __init__(self, pid: int, sentinel: int):
        self.pid = pid
        self.sentinel = sentinel  # readable (at its end) once the child has exited
        self.exitcode: int | None = None

    def _reap(self, flags: int) -> None:
        if self.exitcode is not None:
            return
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:  # reaped elsewhere: its status is lost
            self.exitcode = 255
            return
        if pid:
            self.exitcode = os.waitstatus_to_exitcode(status)

    def is_alive(self) -> bool:
        self._reap(os.WNOHANG)
        return self.exitcode is None

    def join(self) -> None:
        """Wait for the child to exit and reap it."""
        self._reap(0)

    def kill(self) -> None:
        """SIGKILL the child, unless it has been reaped (its pid may be another's)."""
        if self.exitcode is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        try:
            os.close(self.sentinel)
        except OSError:
            pass


def pipe() -> tuple[int, int]:
    """``os.pipe()``, holding :data:`PIPE_SIZE` bytes where the system allows: a large
    message then wakes the parent once per MiB rather than per 64 KiB."""
    read_end, write_end = os.pipe()
    resize = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
    if resize is not None:
        try:
            fcntl.fcntl(write_end, resize, PIPE_SIZE)
        except OSError:
            pass
    return read_end, write_end


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass


def fork(target: Callable[..., object], args: tuple, close_in_child: Iterable[int] = ()) -> Child:
    """Run ``target(*args)`` in a forked child (see the module's notes)."""
    sentinel, child_end = os.pipe()
    try:
        identity = _multiprocessing_identity()
        _flush_std_streams()
        pid = os.fork()
    except BaseException:
        os.close(sentinel)
        os.close(child_end)
        raise
    if pid:
        os.close(child_end)
        return Child(pid, sentinel)
    code = 1
    try:
        os.close(sentinel)
        for fd in close_in_child:
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            sys.stdin.close()
            sys.stdin = open(os.devnull, encoding="utf-8")
        except (AttributeError, OSError, ValueError):
            pass
        _start_as_multiprocessing_child(identity)
        target(*args)
        code = 0
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - the child must end here, whatever happened
        traceback.print_exc()
    finally:
        try:
            # as at any exit: the threads the child started end, and their exit hooks run
            # (a concurrent.futures executor stops its processes), then multiprocessing's
            threading._shutdown()
            _end_as_multiprocessing_child()
        finally:
            _flush_std_streams()
            os._exit(code)


def _multiprocessing_identity():
    """Where this process uses ``multiprocessing``, the process object a child forked now
    is to be for it (``ForkProcess-N``, as ``multiprocessing.Process`` names its children):
    made in the parent, which numbers them."""
    context = sys.modules.get("multiprocessing.context")
    maker = getattr(context, "ForkProcess", None)
    return None if maker is None else maker()


def _start_as_multiprocessing_child(identity) -> None:
    """Where this process uses ``multiprocessing``, begin as a child of its own begins
    (``BaseProcess._bootstrap``): a process of its own (``current_process()`` is
    ``identity``), none of the parent's children, finalizers or connections (its after-fork
    hooks make, e.g., a manager's proxies connect anew)."""
    process, util = (sys.modules.get(f"multiprocessing.{name}") for name in ("process", "util"))
    if process is not None:
        if identity is not None:
            process._current_process = identity
            process._process_counter = itertools.count(1)
        process._children = set()
    if util is not None:
        util._finalizer_registry.clear()
        util._run_after_forkers()


def _end_as_multiprocessing_child() -> None:
    """Where this process uses ``multiprocessing``, end as a child of its own ends: its
    finalizers run and the processes it started are stopped (daemonic) or waited for."""
    util = sys.modules.get("multiprocessing.util")
    if util is not None:
        util._exit_function()


def wait(readable: Iterable[int], writable: Iterable[int] = (),
         timeout: float | None = None) -> set[int]:
    """The descriptors of ``readable`` that are readable or closed and of ``writable``
    that are writable, waiting ``timeout`` seconds at most (``None``: until one is)."""
    poller = select.poll()
    for fd in readable:
        poller.register(fd, select.POLLIN)
    for fd in writable:
        poller.register(fd, select.POLLOUT)
    milliseconds = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
    return {fd for fd, _ in poller.poll(milliseconds)}
