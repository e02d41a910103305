"""One run of a rank at a time per out_dir: a second is refused, a dead holder taken over."""

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import (ROOT, assert_outputs_exact, clean_environ, journal_records, read_manifest,
                      run_job)

LOCK = "shard-00000-of-00001.lock"


def start_slow(inputs, out, hold_after, release):
    """A run of ``fault_processors:Slow`` that does ``hold_after`` files, then holds on in the
    next one (its lock held, its output partly written) until ``release`` exists."""
    return subprocess.Popen([sys.executable, "-m", "job", "--input_dir", str(inputs),
                             "--out_dir", str(out), "--processor", "fault_processors:Slow",
                             "--process_count", "1"],
                            env=clean_environ(SLOW_SECONDS="0", SLOW_HOLD_AFTER=str(hold_after),
                                              SLOW_RELEASE=str(release)),
                            cwd=ROOT, stderr=subprocess.PIPE, text=True)


def wait_for_records(out, count, timeout=30):
    journal = out / "_manifest" / "shard-00000-of-00001.jsonl"
    deadline = time.monotonic() + timeout
    while not journal.exists() or len(journal.read_bytes().splitlines()) < count:
        assert time.monotonic() < deadline, "the first run never got going"
        time.sleep(0.05)


def wait_until_unlocked(path, seconds):
    deadline = time.monotonic() + seconds
    with open(path, "rb") as stream:
        while True:
            try:
                fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(stream, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                assert time.monotonic() < deadline, f"still locked after {seconds} s"
                time.sleep(0.05)


def journal_statuses(out):
    return [record["status"] for _, record in journal_records(out, "shard-00000-of-00001.")]


@pytest.mark.slow
def test_a_second_run_of_the_same_rank_is_refused_at_once(inputs, tmp_path):
    out, release = tmp_path / "out", tmp_path / "release"
    first = start_slow(inputs, out, 1, release)
    try:
        wait_for_records(out, 1)
        started = time.monotonic()
        second = run_job("--input_dir", str(inputs), "--out_dir", str(out),
                         "--processor", "fault_processors:Slow")
        assert time.monotonic() - started < 10  # (the first run holds on until released)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), second.stderr
        assert f"pid {first.pid} on host {socket.gethostname()} since " in lines[0]
        assert first.poll() is None and len(journal_statuses(out)) == 1  # still mid-run
        release.touch()
        _, stderr = first.communicate(timeout=60)
        assert first.returncode == 0, stderr
    finally:
        first.kill()
        first.wait()
    assert journal_statuses(out) == ["ok"] * 8  # the first run's journal was left alone
    assert_outputs_exact(inputs, out)
    assert not (out / "_manifest" / LOCK).exists()


@pytest.mark.slow
def test_the_lock_of_a_killed_run_is_taken_over(inputs, tmp_path):
    out = tmp_path / "out"
    first = start_slow(inputs, out, 2, tmp_path / "never")
    try:
        wait_for_records(out, 2)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        first.kill()
        first.wait()
    assert (out / "_manifest" / LOCK).exists()
    wait_until_unlocked(out / "_manifest" / LOCK, 5)  # its workers exit within 5 s of its death
    rerun = run_job("--input_dir", str(inputs), "--out_dir", str(out),
                    "--processor", "fault_processors:Slow", env=clean_environ(SLOW_SECONDS="0"))
    assert rerun.returncode == 0, rerun.stderr
    assert f"took over the lock of a run that is gone: pid {first.pid}" in rerun.stderr
    manifest = read_manifest(out)
    statuses = [r["status"] for r in manifest["files"]]
    assert len(statuses) == 8 and statuses.count("skipped") >= 2
    assert_outputs_exact(inputs, out)
    assert not (out / "_manifest" / LOCK).exists()


@pytest.mark.parametrize("age, refused", [(5, True), (3600, False)])
def test_a_holder_on_another_host_is_refused_until_its_heartbeat_is_stale(inputs, tmp_path,
                                                                         age, refused):
    out = tmp_path / "out"
    (out / "_manifest").mkdir(parents=True)
    now = time.time()
    (out / "_manifest" / LOCK).write_text(json.dumps(
        {"host": "node-7-that-was-preempted", "pid": 4242, "since": now - age - 60,
         "heartbeat": now - age}))
    result = run_job("--input_dir", str(inputs), "--out_dir", str(out))
    if refused:
        assert result.returncode == 2, result.stderr
        assert "pid 4242 on host node-7-that-was-preempted" in result.stderr
        assert not list(out.glob("*.txt"))
    else:
        assert result.returncode == 0, result.stderr
        assert "took over the lock of a run that is gone: pid 4242" in result.stderr
        assert_outputs_exact(inputs, out)
        assert not (out / "_manifest" / LOCK).exists()


def test_ranks_of_one_layout_do_not_block_each_other(inputs, tmp_path):
    out = tmp_path / "out"
    ranks = [subprocess.Popen([sys.executable, "-m", "job", "--input_dir", str(inputs),
                               "--out_dir", str(out), "--distribArgs.node_count", "2",
                               "--distribArgs.node_rank", str(node)],
                              env=clean_environ(), cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for node in range(2)]
    for rank in ranks:
        _, stderr = rank.communicate(timeout=60)
        assert rank.returncode == 0, stderr
    assert not list((out / "_manifest").glob("*.lock"))
    assert os.listdir(out / "_manifest")


@pytest.mark.slow
def test_a_run_of_another_layout_is_refused_while_one_runs(inputs, tmp_path):
    out, release = tmp_path / "out", tmp_path / "release"
    first = start_slow(inputs, out, 1, release)
    try:
        wait_for_records(out, 1)
        other = run_job("--input_dir", str(inputs), "--out_dir", str(out),
                        "--processor", "fault_processors:Slow",
                        "--distribArgs.node_count", "2", "--distribArgs.node_rank", "1")
        assert other.returncode == 2, other.stderr
        lines = other.stderr.strip().splitlines()
        assert len(lines) == 1 and "a run of another rank layout" in lines[0], other.stderr
        assert f"pid {first.pid}" in lines[0]
        assert not (out / "_manifest" / "shard-00001-of-00002.lock").exists()
        assert first.poll() is None and len(journal_statuses(out)) == 1  # still mid-run
        release.touch()
        _, stderr = first.communicate(timeout=60)
        assert first.returncode == 0, stderr
    finally:
        first.kill()
        first.wait()
    after = run_job("--input_dir", str(inputs), "--out_dir", str(out),
                    "--processor", "fault_processors:Slow",
                    "--distribArgs.node_count", "2", "--distribArgs.node_rank", "1")
    assert after.returncode == 0, after.stderr
    assert "4 skipped" in after.stderr


def test_a_lock_that_is_a_link_is_never_written_through(inputs, tmp_path):
    out = tmp_path / "out"
    (out / "_manifest").mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n")
    os.symlink(victim, out / "_manifest" / LOCK)
    result = run_job("--input_dir", str(inputs), "--out_dir", str(out))
    assert result.returncode == 2, result.stderr
    assert victim.read_bytes() == b"precious\n"


def test_a_lock_with_impossible_times_is_described_not_a_crash(inputs, tmp_path):
    out = tmp_path / "out"
    (out / "_manifest").mkdir(parents=True)
    (out / "_manifest" / LOCK).write_text(json.dumps(
        {"host": "node7", "pid": 42, "since": 1e300, "heartbeat": time.time() + 3600}))
    result = run_job("--input_dir", str(inputs), "--out_dir", str(out))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "since an unknown time" in lines[0], result.stderr
    assert "in the future (its clock is ahead)" in lines[0]
