"""Workers live and die with their rank, for real: SIGKILL of the rank, orphaned pipes, FIFOs.

Each test runs ``python -m job`` (or the processor) on real files, with real
signals, and finds processes through ``/proc``.
"""

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from conftest import (ROOT, children, clean_environ, command_line, end_processes, running,
                      temporary_files)
from job import TokenSplitter
from job.tasks import Runner, counts_of


def job_command(*args):
    return [sys.executable, "-m", "job", *args]


def journal_records(out):
    records = []
    for path in sorted((out / "_manifest").glob("*.jsonl")):
        records += [json.loads(line) for line in path.read_text().splitlines()]
    return records


def tree(folder):
    """Every file under ``folder`` with its size and modification time."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def stop(rank):
    """Kill ``rank`` and its workers, if still running (the test failed)."""
    if rank.poll() is None:
        workers = children(rank.pid)
        rank.kill()
        rank.wait()
        end_processes(workers)


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_workers_exit_within_5_s_when_the_rank_is_sigkilled(tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for i in range(60):
        (inputs / f"f{i:02d}.txt").write_bytes(b"alpha beta\n" * (i + 1))
    rank = subprocess.Popen(job_command("--input_dir", str(inputs), "--out_dir", str(out),
                                        "--processor", "fault_processors:Slow",
                                        "--process_count", "3"),
                            env=clean_environ(), cwd=ROOT, stderr=subprocess.DEVNULL)
    workers = []
    try:
        wait_for(lambda: (out / "_manifest").is_dir() and journal_records(out)
                 and len(children(rank.pid)) == 3, 30, "the workers never got going")
        workers = children(rank.pid)
        rank.kill()  # as the OOM killer or a preemption does: no handler runs
        rank.wait()
        killed = time.monotonic()
        while any(running(pid) for pid in workers) and time.monotonic() - killed < 5:
            time.sleep(0.02)
        alive = [f"{pid}: {command_line(pid)}" for pid in workers if running(pid)]
        assert not alive, f"workers still running 5 s after their rank was killed: {alive}"
        after = tree(out)
        time.sleep(1)  # three workers of Slow would finish several files meanwhile
        assert tree(out) == after, "outputs changed after the workers were gone"
        assert len(journal_records(out)) < 60
    finally:
        stop(rank)
        end_processes(workers)


POOL_OWNER = """
import sys, time
from job import pool
if sys.argv[1] == "watchdog":  # as where prctl is missing
    pool._set_parent_death_signal = lambda signum: False
with pool.WorkerPool(time.sleep, 2) as workers:
    for _ in workers.imap((i, (60,)) for i in range(4)):
        pass
"""


@pytest.mark.parametrize("watch", ["prctl", "watchdog"])
def test_pool_workers_die_with_their_sigkilled_owner(watch):
    owner = subprocess.Popen([sys.executable, "-c", POOL_OWNER, watch], env=clean_environ(),
                             cwd=ROOT)
    workers = []
    try:
        wait_for(lambda: len(children(owner.pid)) == 2, 30, "the workers never started")
        workers = children(owner.pid)
        owner.kill()
        owner.wait()
        killed = time.monotonic()
        while any(running(pid) for pid in workers) and time.monotonic() - killed < 5:
            time.sleep(0.02)
        assert not [pid for pid in workers if running(pid)]
    finally:
        stop(owner)
        end_processes(workers)


def test_a_worker_whose_parent_is_already_gone_exits_at_once():
    from job.pool import _die_with_parent
    child = os.fork()
    if child == 0:  # as if the pool's owner died between the fork and the watch
        _die_with_parent(os.getppid() + 1)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 1


@pytest.mark.parametrize("marker, error", [(b"ORPHAN_EXIT", "worker died (exit code 1)"),
                                           (b"ORPHAN_KILL", "worker died (signal 9, SIGKILL)")])
def test_a_worker_whose_child_holds_its_pipes_is_seen_dead_at_once(tmp_path, marker, error):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for i in range(6):
        (inputs / f"f{i}.txt").write_bytes(b"alpha beta\n" * (i + 1))
    (inputs / "orphan.txt").write_bytes(marker + b"\n")
    with open(tmp_path / "stderr", "w") as stderr:  # the orphans inherit it: no pipe to wait on
        rank = subprocess.Popen(job_command("--input_dir", str(inputs), "--out_dir", str(out),
                                            "--processor", "fault_processors:Orphans",
                                            "--process_count", "2"),
                                env=clean_environ(), cwd=ROOT, stderr=stderr)
    started = time.monotonic()
    try:
        rank.wait(timeout=20)
        seconds = time.monotonic() - started
    finally:
        stop(rank)
        orphans_file = out / "_manifest" / "orphans"  # they ignore SIGTERM and sleep a minute
        orphans = orphans_file.read_text().split() if orphans_file.exists() else []
        end_processes([int(pid) for pid in orphans])
    log = (tmp_path / "stderr").read_text()
    assert rank.returncode == 1, log
    assert seconds < 10, log
    assert len(orphans) == 2  # the first attempt and its retry
    records = {r["input"]: r for r in journal_records(out)}
    assert records["orphan.txt"]["status"] == "failed"
    assert records["orphan.txt"]["error"] == error and records["orphan.txt"]["attempts"] == 2
    assert all(records[f"f{i}.txt"]["status"] == "ok" for i in range(6))
    assert f"failed: orphan.txt: {error}" in log


@pytest.mark.parametrize("threshold, code", [("0", 1), ("-1", 0)])
def test_an_input_swapped_for_a_fifo_fails_that_file_and_the_run_ends(tmp_path, threshold, code):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for i in range(8):
        (inputs / f"f{i}.txt").write_bytes(b"alpha beta\n" * (i + 1))
    started = time.monotonic()
    with open(tmp_path / "stderr", "w") as stderr:
        rank = subprocess.Popen(job_command("--input_dir", str(inputs), "--out_dir", str(out),
                                            "--processor", "fault_processors:BecomesFifo",
                                            "--process_count", "1", "--error_threshold", threshold),
                                env=clean_environ(), cwd=ROOT, stderr=stderr)
    try:
        rank.wait(timeout=20)
    finally:
        stop(rank)
    log = (tmp_path / "stderr").read_text()
    assert time.monotonic() - started < 15
    assert rank.returncode == code, log
    assert "Traceback" not in log
    records = {r["input"]: r for r in journal_records(out)}
    assert records["f5.txt"]["status"] == "failed"
    assert "not a regular file (FIFO)" in records["f5.txt"]["error"]
    assert sum(r["status"] == "ok" for r in records.values()) == 7
    assert not (out / "f5.txt").exists() and temporary_files(out) == []


def call_with_a_fifo(tmp_path, call):
    """``call(fifo_path)`` in a thread; its exception (the FIFO is unblocked if it hung there)."""
    fifo = tmp_path / "in" / "pipe.txt"
    fifo.parent.mkdir(exist_ok=True)
    os.mkfifo(fifo)
    caught = []

    def target():
        try:
            call(str(fifo))
        except Exception as error:  # noqa: BLE001 - what the test looks at
            caught.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(5)
    blocked = thread.is_alive()
    if blocked:  # a writer that opens and closes releases the reader with an empty file
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
    assert not blocked, "blocked on opening a FIFO"
    assert len(caught) == 1, "a FIFO was processed as a file"
    return caught[0]


def test_the_token_splitter_refuses_a_fifo_without_blocking(tmp_path):
    splitter = TokenSplitter(str(tmp_path / "in"), str(tmp_path / "out"))
    error = call_with_a_fifo(tmp_path, splitter.process)
    assert isinstance(error, OSError) and "not a regular file (FIFO)" in str(error)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_token_splitter_refuses_a_fifo_for_a_range_without_blocking(tmp_path):
    splitter = TokenSplitter(str(tmp_path / "in"), str(tmp_path / "out"))
    part = tmp_path / "part"
    error = call_with_a_fifo(tmp_path, lambda path: splitter.process_range(path, 0, 10, str(part)))
    assert isinstance(error, OSError) and "not a regular file (FIFO)" in str(error)
    assert not part.exists()


@pytest.mark.parametrize("fields", [(0,), (0, 0, 2, 0, 10)], ids=["whole", "range"])
def test_a_task_on_a_fifo_fails_before_the_processor_opens_it(tmp_path, fields):
    class Opens(TokenSplitter):
        def process(self, *args):
            raise AssertionError("the processor was called")

        process_range = process

    processor = Opens(str(tmp_path / "in"), str(tmp_path / "out"))
    runner = Runner(processor, str(tmp_path / "in"), str(tmp_path / "out"), str(tmp_path))
    error = call_with_a_fifo(tmp_path, lambda path: runner.run("pipe.txt", *fields))
    assert isinstance(error, OSError) and "not a regular file (FIFO)" in str(error)



def _blocking_lower(splitter, path):
    with open(path, "rb") as stream:  # an ordinary, blocking open
        return {"tokens": len(stream.read().split())}


class _ProcessSetOnTheInstance(TokenSplitter):
    def __init__(self, *args):
        super().__init__(*args)
        self.process = functools.partial(_blocking_lower, self)


class _ProcessWrappingTheSplitters(TokenSplitter):
    @functools.wraps(TokenSplitter.process)  # keeps the splitter's docstring and attributes
    def process(self, path):
        return _blocking_lower(self, path)


@pytest.mark.parametrize("kind", [TokenSplitter, _ProcessSetOnTheInstance,
                                  _ProcessWrappingTheSplitters])
def test_every_whole_file_is_examined_before_any_process_opens_it(tmp_path, kind):
    """Whatever ``process`` the runner ends up calling (the splitter's, one set on the
    instance, one that copied the splitter's attributes), a FIFO swapped in after the
    listing fails at once, and a socket is named as one: no open, which could block
    or act on a device. (An attack found both ways past a mark that let the splitter
    skip this examination.)"""
    processor = kind(str(tmp_path / "in"), str(tmp_path / "out"))
    runner = Runner(processor, str(tmp_path / "in"), str(tmp_path / "out"), str(tmp_path))
    error = call_with_a_fifo(tmp_path, lambda path: runner.run("pipe.txt", 0))
    assert isinstance(error, OSError) and "not a regular file (FIFO)" in str(error)
    listener = socket.socket(socket.AF_UNIX)
    try:
        listener.bind(str(tmp_path / "in" / "sock"))
        with pytest.raises(OSError, match=r"not a regular file \(socket\)"):
            runner.run("sock", 0)
    finally:
        listener.close()


@pytest.mark.parametrize("names", [("tokens",), ("lines", "tokens")])
@pytest.mark.parametrize("count", [None, 0, 7, (1 << 63) - 1, 1 << 63, -1, True, 1.5, "3"])
def test_a_count_is_taken_only_when_it_is_a_whole_number_in_range(names, count):
    """The runner takes a declared count that is None or an integer from 0 to 2**63 - 1 (the
    usual one-count dict has a shortcut: it must take and refuse exactly the same)."""
    value = {name: count for name in names}
    if count is None or (type(count) is int and 0 <= count < 1 << 63):
        assert counts_of(value, names) == (count,) * len(names)
        assert counts_of({**value, "other": "x"}, names) == (count,) * len(names)
    else:
        with pytest.raises(TypeError, match=f"returned {names[0]}=.*not a count"):
            counts_of(value, names)
    assert counts_of({}, names) == counts_of(None, names) == (None,) * len(names)
