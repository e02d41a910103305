"""The worker pool on its own: results, exceptions, dead and hung workers, batches."""

import os
import signal
import time

import pytest

from conftest import end_processes
from job import forked, pool
from job.pool import Done, Outcome, WorkerPool


def work(value):
    if value == "raise":
        raise ValueError("bad value")
    if value == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    if value == "hang":
        time.sleep(60)
    if value == "slow":
        time.sleep(0.3)
        return "slow"
    return value * 2


def run(items, grouped=False, **options):
    """``{key: Outcome}`` of ``items`` and the keys of workers lost; ``grouped``: with the
    items that succeeded as :class:`job.pool.Done` (each once, never alone)."""
    batch_size = options.pop("batch_size", 1)
    lost, outcomes = [], {}
    with WorkerPool(work, options.pop("workers", 2), on_worker_lost=lambda pid, key: lost.append(key),
                    **options) as pool:
        for o in pool.imap(((i, (v,)) for i, v in enumerate(items)), batch_size=batch_size,
                           grouped=grouped):
            if type(o) is not Done:
                assert not (grouped and o.ok), "a success came alone"
                assert o.key not in outcomes
                outcomes[o.key] = o
                continue
            assert grouped and o.results
            for key, value, seconds, attempts in o.results:
                assert key not in outcomes
                outcomes[key] = Outcome(key, True, value, None, seconds, attempts)
    return outcomes, lost


@pytest.mark.parametrize("plain", [False, True], ids=["pickled-each", "plain"])
@pytest.mark.parametrize("grouped", [False, True], ids=["one-by-one", "grouped"])
def test_every_item_comes_back_once(plain, grouped):
    outcomes, lost = run(list(range(50)), grouped, batch_size=4, plain_results=plain)
    assert sorted(outcomes) == list(range(50)) and lost == []
    assert all(o.ok and o.value == 2 * o.key and o.attempts == 1 for o in outcomes.values())


@pytest.mark.parametrize("plain", [False, True], ids=["pickled-each", "plain"])
@pytest.mark.parametrize("grouped", [False, True], ids=["one-by-one", "grouped"])
def test_an_exception_fails_its_item_with_the_message_and_retries(plain, grouped):
    outcomes, _ = run([1, "raise", 3], grouped, max_retries=2, plain_results=plain, batch_size=3)
    failed = outcomes[1]
    assert not failed.ok and failed.attempts == 3
    assert failed.error.startswith("ValueError: bad value at test_pool.py:")
    assert outcomes[0].value == 2 and outcomes[2].value == 6


@pytest.mark.parametrize("batch_size", [1, 8])
@pytest.mark.parametrize("grouped", [False, True], ids=["one-by-one", "grouped"])
def test_a_killed_worker_is_named_and_only_its_item_is_charged(batch_size, grouped):
    started = time.monotonic()
    outcomes, lost = run([1, 2, "die", 4, 5, 6], grouped, max_retries=1, batch_size=batch_size)
    assert time.monotonic() - started < 30
    dead = outcomes[2]
    assert not dead.ok and dead.attempts == 2
    assert dead.error == "worker died (signal 9, SIGKILL)"
    assert lost == [2, 2]
    assert all(outcomes[k].ok and outcomes[k].attempts == 1 for k in (0, 1, 3, 4, 5))


def test_a_hung_item_is_timed_out_and_its_worker_replaced():
    started = time.monotonic()
    outcomes, lost = run(["hang", 1, 2, 3], timeout=0.5, workers=1)
    assert time.monotonic() - started < 10
    assert outcomes[0].error == "timed out after 0.5 s" and lost == [0]
    assert [outcomes[k].value for k in (1, 2, 3)] == [2, 4, 6]


def test_with_batches_queued_ahead_the_item_in_flight_is_the_one_charged():
    items = list(range(40))
    items[25] = "die"  # in a later batch, while the next one waits in the pipe
    outcomes, lost = run(items, workers=1, batch_size=8)
    assert lost == [25] and outcomes[25].error == "worker died (signal 9, SIGKILL)"
    assert all(outcomes[k].ok and outcomes[k].attempts == 1 for k in range(40) if k != 25)


def test_a_queued_batch_does_not_run_the_clock_of_its_items():
    items = ["slow", "slow", 1, 2, "slow", 3, "hang", 4, "slow", 5]
    outcomes, lost = run(items, workers=1, batch_size=2, timeout=0.5)
    assert lost == [6] and outcomes[6].error == "timed out after 0.5 s"
    assert all(outcomes[k].ok and outcomes[k].attempts == 1 for k in range(10) if k != 6)


def test_no_items_starts_no_worker():
    assert run([]) == ({}, [])


def orphan_then_die(folder, how):
    """Fork a child that keeps every descriptor (the worker's pipes) for 60 s, then die."""
    child = os.fork()
    if child == 0:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(60)
        os._exit(0)
    with open(os.path.join(folder, "orphans"), "a") as pids:
        pids.write(f"{child}\n")
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(3)


@pytest.mark.parametrize("exit_handle", ["pidfd", "sentinel, polled"])
def test_a_worker_is_seen_dead_while_its_child_holds_its_pipes(tmp_path, monkeypatch, exit_handle):
    if exit_handle == "pidfd" and not hasattr(os, "pidfd_open"):
        pytest.skip("no os.pidfd_open here")
    if exit_handle != "pidfd":
        monkeypatch.setattr(pool, "_open_pidfd", lambda process: None)
    started = time.monotonic()
    try:
        with WorkerPool(orphan_then_die, 2) as workers:
            outcomes = {o.key: o for o in workers.imap([(0, (str(tmp_path), "exit")),
                                                        (1, (str(tmp_path), "kill"))])}
    finally:
        orphans = tmp_path / "orphans"
        end_processes([int(pid) for pid in orphans.read_text().split()] if orphans.exists() else [])
    assert time.monotonic() - started < 10
    assert outcomes[0].error == "worker died (exit code 3)"
    assert outcomes[1].error == "worker died (signal 9, SIGKILL)"


def test_no_pidfd_is_kept_for_a_worker_already_reaped():
    process = forked.fork(os._exit, (0,))
    process.join()  # reaped: its pid is free for another process
    process.close()
    assert pool._open_pidfd(process) is None


def test_before_wait_can_end_a_long_wait_to_be_called_again():
    calls = []

    def before_wait():
        calls.append(time.monotonic())
        return 0.05 if len(calls) < 5 else None  # as a journal with records not yet synced

    with WorkerPool(work, 1) as workers:
        outcomes = list(workers.imap([(0, ("slow",))], before_wait=before_wait))
    assert [o.value for o in outcomes] == ["slow"]
    assert len(calls) >= 5  # called again while the 0.3 s item ran, not only when it ended
    assert calls[4] - calls[0] < 0.29


def test_a_worker_that_cannot_be_started_leaves_no_descriptor_open(monkeypatch):
    """Out of descriptors or processes (EMFILE, EAGAIN) as a worker starts: the error
    reaches the caller, and the pipes already made for it are closed again."""
    def no_fork(*args, **kwargs):
        raise BlockingIOError(11, "Resource temporarily unavailable")

    before = sorted(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "fork", no_fork)
    with pytest.raises(pool.WorkersUnavailable):
        with WorkerPool(work, 2) as workers:
            list(workers.imap([(0, (1,))]))
    assert sorted(os.listdir("/proc/self/fd")) == before


def fork_and_return(value):
    """Forks, and the child returns (or raises) instead of ending with os._exit."""
    if os.fork() == 0 and value % 2:
        raise SystemExit(0)
    return value


def test_a_process_the_function_forked_and_left_running_takes_no_batch():
    """A function whose child process returns into the worker's loop: the child ends there,
    so it neither reports results nor reads batches meant for the worker (before, it went on
    as a second worker on the same pipes: items came back twice or never)."""
    with WorkerPool(fork_and_return, 2) as workers:
        seen = [o.key for o in workers.imap(((i, (i,)) for i in range(40)), batch_size=4)]
    assert sorted(seen) == list(range(40)), seen


def test_a_pool_goes_on_with_the_workers_the_system_lets_it_start(monkeypatch):
    real_fork, forks = os.fork, []

    def one_fork():
        forks.append(1)
        if len(forks) > 1:
            raise OSError(24, "Too many open files")
        return real_fork()

    monkeypatch.setattr(os, "fork", one_fork)
    outcomes, _ = run(list(range(20)), workers=4, batch_size=2)
    assert sorted(outcomes) == list(range(20)) and all(o.ok for o in outcomes.values())


def test_a_pool_that_can_start_no_worker_says_why(monkeypatch):
    def no_fork():
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    with pytest.raises(pool.WorkersUnavailable, match="cannot start a worker process: "
                                                      r"Resource temporarily unavailable \(EAGAIN\)"):
        run([1, 2])
