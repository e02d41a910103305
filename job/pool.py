"""A small, honest process pool: batches of items per worker, nothing hangs.

The workers are forked, and the parent hands each worker batches of arguments
over its own pipe (:mod:`job.forked`, never blocking on a write), up to
:data:`BATCHES_AHEAD` at once so that a worker never waits for the parent to
book its last results, and while no more than :data:`MAX_QUEUED_BYTES` wait
for the pipes; the worker calls the function on each in turn and
sends the results back, in order (at the end of a batch, or every
:data:`REPORT_SECONDS` on a long one). Batches shrink as the work runs out, so
that the workers finish together. In shared memory the worker keeps how many
items it has started and when it started the last, so the parent always knows
the item in flight. The parent waits on every pipe and every worker's exit
at once, so:

- a worker that dies (the OOM killer's SIGKILL, a segfault) is seen at once,
  even while a child it forked still holds its pipes: on Linux the parent
  waits on a pidfd of each worker, which reports that process's own exit;
  elsewhere on the worker's sentinel, and it checks every
  :data:`POLL_SECONDS` with ``waitpid`` for a sentinel a child keeps open;
  the item it was on is retried in a fresh worker or reported as
  ``worker died (signal 9, SIGKILL)``, and the rest of its batch (including
  items done but not yet reported) is handed out again, uncharged;
- an item that runs past ``timeout`` seconds has its worker killed and
  replaced, and is retried or reported as timed out;
- an exception in the function (``SystemExit`` and ``KeyboardInterrupt``
  included) is caught in the worker and reported with its message and
  where it was raised; the worker goes on.

Workers ignore SIGINT (Ctrl-C reaches the whole process group; the parent
decides) and are killed when the pool closes, whatever the reason. If the
parent itself is killed (SIGKILL from the OOM killer or a preemption: no
code of its own runs), its workers die with it: on Linux the kernel kills
them (``PR_SET_PDEATHSIG``) when the *thread* that started them ends, which
is the thread iterating :meth:`WorkerPool.imap`; elsewhere each worker
checks its parent every :data:`WATCH_PARENT_SECONDS`.
Results come back as :class:`Outcome` objects in completion order.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import pickle
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from . import forked, interrupts

KILL_GRACE_SECONDS = 2.0
REPORT_SECONDS = 0.5
BATCHES_AHEAD = 2
#: No batch is handed out while the batches handed out wait in the parent's memory for
#: more than this, the pipes not having taken them yet: a large argument of every call
#: (the seed API's non-list arguments) is then held about twice, not once per batch.
MAX_QUEUED_BYTES = 8 << 20
WATCH_PARENT_SECONDS = 0.5
POLL_SECONDS = 0.25
#: Longest single wait: ``poll`` takes at most 2**31 - 1 ms (24.8 days), so a longer
#: ``timeout`` is waited for in steps (its deadline is checked after each).
MAX_WAIT_SECONDS = 86400.0
PR_SET_PDEATHSIG = 1

log = logging.getLogger("job")


class WorkersUnavailable(OSError):
    """Not one worker process could be started (out of processes, memory or descriptors)."""


class Outcome:
    """What became of one item: its value, or the error after the last attempt."""

    __slots__ = ("key", "ok", "value", "error", "seconds", "attempts")

    def __init__(self, key: object, ok: bool, value: object = None, error: str | None = None,
                 seconds: float = 0.0, attempts: int = 1):
        self.key, self.ok, self.value, self.error = key, ok, value, error
        self.seconds, self.attempts = seconds, attempts

    def __repr__(self) -> str:
        return (f"Outcome(key={self.key!r}, ok={self.ok!r}, value={self.value!r}, "
                f"error={self.error!r}, seconds={self.seconds!r}, attempts={self.attempts!r})")


class Done:
    """Items one worker reported finished well, in the order it did them: ``results`` holds
    ``(key, value, seconds, attempts)`` for each (what :meth:`WorkerPool.imap` yields for
    them when ``grouped``: one object per report instead of an :class:`Outcome` per item)."""

    __slots__ = ("results",)

    def __init__(self, results: list[tuple]):
        self.results = results


class _Item:
    __slots__ = ("key", "args", "weight", "attempts")

    def __init__(self, key: object, args: Iterable, weight: int = 0):
        self.key, self.args, self.weight, self.attempts = key, tuple(args), weight, 0


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown"
        return f"worker died (signal {-exitcode}, {name})"
    return f"worker died (exit code {exitcode})"


def _format_error(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    where = f" at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""
    message = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {message}{where}" if message else f"{type(error).__name__}{where}"


def _result(value: object, seconds: float) -> tuple:
    """The report of a call that returned ``value``. Each value travels pickled on its own
    inside the message of its batch: one that cannot be pickled here, or loaded in the
    parent (a class only the worker has), fails its own item alone."""
    try:
        return True, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), seconds
    except Exception as error:  # noqa: BLE001
        return False, f"result not sendable: {_format_error(error)}", seconds


def _unpickled(data: bytes) -> tuple[bool, object]:
    """``(True, value)``, or ``(False, why)`` for a value the parent cannot load."""
    try:
        return True, pickle.loads(data)
    except Exception as error:  # noqa: BLE001
        return False, f"result not receivable: {_format_error(error)}"


def _set_parent_death_signal(signum: int) -> bool:
    """Linux: have the kernel send ``signum`` to this process when its parent thread ends.

    False where ``prctl`` is not available (another system, or refused).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    return prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(signum), ctypes.c_ulong(0),
                 ctypes.c_ulong(0), ctypes.c_ulong(0)) == 0


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(WATCH_PARENT_SECONDS)
    os._exit(1)


def _die_with_parent(parent: int) -> None:
    """End this worker as soon as process ``parent`` (the pool's owner) dies, however it dies.

    On Linux the kernel SIGKILLs the worker when the thread that forked it
    ends (``PR_SET_PDEATHSIG``); elsewhere a daemon thread checks the parent
    every :data:`WATCH_PARENT_SECONDS`. Either way the worker exits at once
    if the parent died before the watch began (it has been reparented).
    """
    if not _set_parent_death_signal(signal.SIGKILL):
        threading.Thread(target=_watch_parent, args=(parent,), name="watch-parent",
                         daemon=True).start()
    if os.getppid() != parent:
        os._exit(1)


def _worker_main(inbox: int, outbox: int, function: Callable, initializer: Callable | None,
                 shared: forked.Shared, parent: int, plain: bool = False) -> None:
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if initializer is not None:
        initializer()
    me = os.getpid()
    started = 0
    while True:
        try:
            batch = forked.read_message(inbox)
        except (EOFError, OSError):
            return
        if batch is None:
            return
        results: list[tuple] = []
        reported = time.monotonic()
        last = len(batch) - 1
        for index, args in enumerate(batch):
            shared.position.value = started
            started += 1
            shared.since.value = start = time.monotonic()
            try:
                value = function(*args)
                now = time.monotonic()
                seconds = now - start
                results.append((True, value, seconds) if plain else _result(value, seconds))
            except BaseException as error:  # noqa: BLE001 - SystemExit too: reported, not fatal
                now = time.monotonic()
                results.append((False, _format_error(error), now - start))
            if os.getpid() != me:  # a process the function forked, returning here: it ends,
                os._exit(0)        # or it would take batches of its own from the worker's pipe
            if now - reported >= REPORT_SECONDS and index < last:
                forked.write_message(outbox, results)
                results, reported = [], now
        forked.write_message(outbox, results)


def _open_pidfd(process) -> int | None:
    """A descriptor that becomes readable when ``process`` exits (Linux 5.3+), else None."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # not on this system, or refused
        return None
    if process.exitcode is not None:  # reaped before it was opened: the pid may be another's now
        os.close(pidfd)
        return None
    return pidfd


class _Worker:
    def __init__(self, function: Callable, initializer: Callable | None,
                 others: Iterable[_Worker] = (), plain: bool = False):
        opened: list[int] = []  # closed again if the worker cannot be started (EMFILE...)
        try:
            inbox, to_worker = forked.pipe()
            opened += [inbox, to_worker]
            from_worker, outbox = forked.pipe()
            opened += [from_worker, outbox]
            # position: items started before the one in flight; since: time.monotonic()
            # when that item started
            self._shared = forked.Shared()
            parent_ends = [to_worker, from_worker]
            for other in others:
                parent_ends += other.descriptors
            self.process = forked.fork(
                _worker_main, (inbox, outbox, function, initializer, self._shared, os.getpid(),
                               plain),
                close_in_child=parent_ends)
        except BaseException:
            for fd in opened:
                os.close(fd)
            raise
        os.close(inbox)
        os.close(outbox)
        self.conn = forked.Channel(to_worker, from_worker)
        self._pidfd = _open_pidfd(self.process)
        self.hung_up = False  # its pipe is closed: it will never report again
        self.batch: deque[_Item] = deque()  # handed out, not yet reported (all batches)
        self._reported = 0  # results received since the worker started
        self._ends: deque[int] = deque()  # where each batch handed out ends, in items

    @property
    def busy(self) -> bool:
        return bool(self.batch)

    @property
    def descriptors(self) -> list[int]:
        """The parent's descriptors of this worker (for a worker forked later to close)."""
        ends = [self.conn.to_worker, self.conn.from_worker, self.process.sentinel]
        return ends if self._pidfd is None else ends + [self._pidfd]

    @property
    def batches(self) -> int:
        """Batches handed out and not yet wholly reported."""
        return len(self._ends)

    @property
    def exit_handle(self):
        """What :func:`wait` finds ready when the worker exits: its pidfd, else its sentinel."""
        return self.process.sentinel if self._pidfd is None else self._pidfd

    @property
    def polled(self) -> bool:
        """Without a pidfd, a child the worker forked can hold its sentinel: poll its exit."""
        return self._pidfd is None

    def exited(self, ready) -> bool:
        """Whether the worker has ended, given the handles :func:`wait` found ``ready``."""
        if self._pidfd is not None:
            return self._pidfd in ready
        return self.process.sentinel in ready or not self.process.is_alive()

    @property
    def started(self) -> float:
        """When the item in flight started."""
        return self._shared.since.value

    def in_flight(self) -> int:
        """Index in :attr:`batch` of the item the worker is on (items before it are done)."""
        return min(max(self._shared.position.value - self._reported, 0), len(self.batch) - 1)

    def give(self, batch: list[_Item]) -> None:
        if not self.batch:  # idle: the clock of its next item starts now
            self._shared.since.value = time.monotonic()
        self.batch.extend(batch)
        self._ends.append(self._reported + len(self.batch))
        self.conn.send([item.args for item in batch])

    def reported(self) -> list[tuple[_Item, tuple]]:
        """Items with the results the worker has sent so far, in order."""
        done = []
        for results in self.conn.receive():
            self._reported += len(results)
            while self._ends and self._ends[0] <= self._reported:
                self._ends.popleft()
            done += [(self.batch.popleft(), result) for result in results]
        self.hung_up = self.conn.closed_by_worker
        return done

    def stop(self, patience: float = 0.0) -> None:
        """Let the worker exit within ``patience`` s, else SIGKILL it; reap it, close its ends."""
        if not self._wait_exit(patience):
            self.process.kill()
            self._wait_exit(KILL_GRACE_SECONDS)
        self.conn.close()
        self.process.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def _wait_exit(self, timeout: float) -> bool:
        """Whether the worker exits within ``timeout`` seconds; if so it is reaped."""
        if self._pidfd is not None:
            if not forked.wait([self._pidfd], timeout=timeout):
                return False
            self.process.join()  # it has exited: waitpid returns at once
            return True
        deadline = time.monotonic() + timeout
        while self.process.is_alive():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True


class WorkerPool:
    """Run ``function(*args)`` for many items in ``workers`` processes.

    ``on_worker_lost(pid, key)`` is called in the parent after a worker died
    or was killed on item ``key``, before that item is retried (e.g. to
    remove the worker's temporary files). ``max_retries`` extra attempts are made after a failure, of any
    kind. Use as a context manager: leaving it kills every worker.

    Iterate :meth:`imap` from one thread that outlives the pool: workers are
    started from that thread, and on Linux they are killed when it ends
    (see the module's notes); a worker lost that way counts as a worker died.

    ``plain_results``: the function only ever returns values that the parent can
    always load (built of ``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``
    and tuples, lists and dicts of them), which then travel with their batch's
    message instead of each pickled on its own (about 1.5 µs less per item).
    """

    def __init__(self, function: Callable, workers: int, *, max_retries: int = 0,
                 timeout: float | None = None, initializer: Callable | None = None,
                 on_worker_lost: Callable[[int, object], None] | None = None,
                 plain_results: bool = False):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._function = function
        self._initializer = initializer
        self._size = workers
        self._max_retries = max_retries
        self._timeout = timeout
        self._on_worker_lost = on_worker_lost
        self._plain = plain_results
        self._workers: list[_Worker] = []

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop every worker now (SIGKILL for the ones still busy)."""
        with interrupts.held():
            self._close()

    def _close(self) -> None:
        for worker in self._workers:
            if worker.busy:
                worker.process.kill()
            else:
                worker.conn.send(None)
        deadline = time.monotonic() + 0.5
        for worker in self._workers:
            worker.stop(max(0.0, deadline - time.monotonic()))
            if worker.busy and self._on_worker_lost is not None:
                self._on_worker_lost(worker.process.pid, worker.batch[worker.in_flight()].key)
        self._workers.clear()

    def _spawn(self) -> _Worker | None:
        """A new worker; ``None`` if the system refuses one while others run: the pool goes
        on with those (and says so once). :class:`WorkersUnavailable` if none runs."""
        try:
            with interrupts.held():
                worker = _Worker(self._function, self._initializer, self._workers, self._plain)
                self._workers.append(worker)
        except OSError as error:
            reason = f"{error.strerror or error} ({errno.errorcode.get(error.errno, '?')})"
            if not self._workers:
                raise WorkersUnavailable(error.errno, "cannot start a worker process: "
                                         f"{reason}") from None
            log.warning("started %d of %d worker processes: %s; going on with %d",
                        len(self._workers), self._size, reason, len(self._workers))
            self._size = len(self._workers)
            return None
        return worker

    def imap(self, items: Iterable[tuple], batch_size: int = 1,
             batch_weight: float = float("inf"),
             before_wait: Callable[[], float | None] | None = None,
             grouped: bool = False) -> Iterator[Outcome | Done]:
        """Yield an :class:`Outcome` for every ``(key, args)`` item as it completes.

        Items may carry a weight, ``(key, args, weight)``: a worker is handed
        up to ``batch_size`` items at once, fewer if their weights add up to
        ``batch_weight``. An item that failed before is always sent alone.
        ``before_wait()`` is called each time the caller has taken every
        outcome that arrived and the pool is about to wait for more; when it
        returns a number of seconds, the wait ends after that long at the
        latest (with nothing new) and ``before_wait()`` is called again.
        ``grouped``: the items that succeeded come as one :class:`Done` per
        report of a worker (failures still as an :class:`Outcome` each), so that
        the caller may book them together.
        """
        pending: deque[_Item] = deque(_Item(*item) for item in items)
        total = len(pending)
        done = 0
        while done < total:
            for worker in [w for w in self._workers if not w.busy and not w.process.is_alive()]:
                self._workers.remove(worker)  # died while idle: nothing to charge
                worker.stop()
            for ahead in range(1, BATCHES_AHEAD + 1):
                ready = [w for w in self._workers if w.batches < ahead]
                while pending and (ready or len(self._workers) < self._size):
                    if sum(w.conn.queued for w in self._workers) > MAX_QUEUED_BYTES:
                        break  # handed out when the pipes have taken what waits
                    worker = ready.pop() if ready else self._spawn()
                    if worker is None:
                        break
                    # guided: no worker holds more than its share of what is left
                    share = -(-len(pending) // (BATCHES_AHEAD * self._size))
                    worker.give(self._batch(pending, min(batch_size, share), batch_weight))
            wake = before_wait() if before_wait is not None else None
            yield from self._collect(pending, wake, grouped)
            done = total - len(pending) - sum(len(w.batch) for w in self._workers)

    @staticmethod
    def _batch(pending: deque[_Item], size: int, weight: float) -> list[_Item]:
        first = pending.popleft()
        batch, total = [first], first.weight
        if first.attempts:
            return batch
        take, add = pending.popleft, batch.append
        for _ in range(min(size - 1, len(pending))):
            total += pending[0].weight
            if pending[0].attempts or total > weight:
                break
            add(take())
        return batch

    def _collect(self, pending: deque[_Item], wake: float | None = None,
                 grouped: bool = False) -> Iterator[Outcome | Done]:
        """Wait for the next events (``wake`` seconds at most); yield finished outcomes,
        requeue retries."""
        busy = [w for w in self._workers if w.busy]
        timeout = wake
        if self._timeout is not None:
            now = time.monotonic()
            limit = max(0.0, min(w.started + self._timeout for w in busy) - now)
            timeout = limit if timeout is None else min(timeout, limit)
        if any(w.polled for w in busy):
            timeout = POLL_SECONDS if timeout is None else min(timeout, POLL_SECONDS)
        if timeout is not None:
            timeout = min(timeout, MAX_WAIT_SECONDS)
        ready = forked.wait([w.conn.from_worker for w in busy] + [w.exit_handle for w in busy],
                            [w.conn.to_worker for w in busy if w.conn.pending], timeout)
        for worker in busy:
            if worker.conn.to_worker in ready:
                worker.conn.flush()
            if worker.conn.from_worker in ready:
                yield from self._receive(worker, pending, grouped)
        for worker in busy:
            if not worker.busy:
                continue
            if worker.exited(ready) or worker.hung_up:
                yield from self._receive(worker, pending, grouped)  # results sent before dying
                if worker.busy:
                    yield from self._lose(worker, pending, patience=KILL_GRACE_SECONDS)
            elif (self._timeout is not None
                  and time.monotonic() - worker.started >= self._timeout):
                yield from self._lose(worker, pending, f"timed out after {self._timeout:g} s")

    def _receive(self, worker: _Worker, pending: deque[_Item],
                 grouped: bool) -> Iterator[Outcome | Done]:
        plain, done = self._plain, [] if grouped else None
        for item, (ok, payload, seconds) in worker.reported():
            item.attempts += 1
            if ok and not plain:
                ok, payload = _unpickled(payload)
            if not ok:
                yield from self._failed(item, payload, seconds, pending)
            elif done is None:
                yield Outcome(item.key, True, payload, None, seconds, item.attempts)
            else:
                done.append((item.key, payload, seconds, item.attempts))
        if done:
            yield Done(done)

    def _failed(self, item: _Item, error: str, seconds: float,
                pending: deque[_Item]) -> Iterator[Outcome]:
        if item.attempts <= self._max_retries:
            pending.appendleft(item)
        else:
            yield Outcome(item.key, False, error=error, seconds=seconds, attempts=item.attempts)

    def _lose(self, worker: _Worker, pending: deque[_Item], reason: str | None = None,
              patience: float = 0.0) -> Iterator[Outcome]:
        """The worker died or hung: stop it, charge its item in flight, requeue the rest.

        ``reason`` defaults to how the worker ended, given ``patience``
        seconds to end by itself. A fresh worker takes its place when there
        is work to hand out.
        """
        pid = worker.process.pid
        seconds = time.monotonic() - worker.started
        flight = worker.in_flight()
        worker.stop(patience)
        reason = reason or _describe_exit(worker.process.exitcode)
        self._workers.remove(worker)
        batch = list(worker.batch)
        worker.batch.clear()
        culprit = batch.pop(flight)
        if self._on_worker_lost is not None:
            self._on_worker_lost(pid, culprit.key)
        pending.extendleft(reversed(batch))
        culprit.attempts += 1
        yield from self._failed(culprit, reason, seconds, pending)
