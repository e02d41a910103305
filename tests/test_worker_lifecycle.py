"""Workers live and die with their rank, for real: SIGKILL of the rank, orphaned pipes.

Each test runs ``python -m job`` (or the processor) on real files, with real
signals, and finds processes through ``/proc``.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, children, clean_environ, command_line, end_processes, running


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
        time.sleep(1.5)  # three workers of Slow would finish several files meanwhile
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
        orphans_file = out / "_manifest" / "orphans"
        orphans = orphans_file.read_text().split() if orphans_file.exists() else []
        end_processes([int(pid) for pid in orphans])  # they ignore SIGTERM and would sleep for a minute
    log = (tmp_path / "stderr").read_text()
    assert rank.returncode == 1, log
    assert seconds < 10, log
    assert len(orphans) == 2  # the first attempt and its retry
    records = {r["input"]: r for r in journal_records(out)}
    assert records["orphan.txt"]["status"] == "failed"
    assert records["orphan.txt"]["error"] == error and records["orphan.txt"]["attempts"] == 2
    assert all(records[f"f{i}.txt"]["status"] == "ok" for i in range(6))
    assert f"failed: orphan.txt: {error}" in log
