"""Faults injected for real: shared output folders, a full disk, bad entries, Ctrl-C, progress."""

import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import (ROOT, assert_outputs_exact, clean_environ, journal_records, read_manifest,
                      require, run_job, temporary_files)


def all_records(out):
    return [record for _, record in journal_records(out)]


def job_command(*args):
    return [sys.executable, "-m", "job", *args]


def test_two_ranks_share_one_output_folder(inputs, tmp_path):
    out = tmp_path / "out"
    ranks = [subprocess.Popen(job_command("--input_dir", str(inputs), "--out_dir", str(out),
                                          "--processor", "fault_processors:Slow",
                                          "--process_count", "2",
                                          "--distribArgs.node_count", "2",
                                          "--distribArgs.node_rank", str(node)),
                              env=clean_environ(), cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for node in range(2)]
    for rank in ranks:
        _, stderr = rank.communicate(timeout=60)
        assert rank.returncode == 0, stderr
    check = subprocess.run([sys.executable, "-m", "job.check", "--input_dir", str(inputs),
                            "--out_dir", str(out)], env=clean_environ(), cwd=ROOT,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    assert sorted(p.name for p in (out / "_manifest").iterdir()) == [
        "shard-00000-of-00002.json", "shard-00000-of-00002.jsonl",
        "shard-00001-of-00002.json", "shard-00001-of-00002.jsonl"]


def mount_namespaces_work():
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True)
    return probe.returncode == 0


def test_disk_full_is_recorded_and_leaves_no_partial_output(inputs, tmp_path):
    require(mount_namespaces_work(), "root and a mount namespace, to mount a small tmpfs")
    (inputs / "huge.txt").write_bytes(b"word " * 200_000)  # 1 MB of output: more than the disk
    out, saved = tmp_path / "out", tmp_path / "saved"
    out.mkdir()
    script = (f"mount -t tmpfs -o size=256k tmpfs {out} && "
              f"{sys.executable} -m job --input_dir {inputs} --out_dir {out} --max_retries 0 "
              f"--process_count 1; "
              f"code=$?; cp -r {out} {saved}; exit $code")
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], env=clean_environ(), cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    records = {r["input"]: r for r in all_records(saved)}
    assert records["huge.txt"]["status"] == "failed"
    assert "No space left on device" in records["huge.txt"]["error"]
    assert "failed: huge.txt: OSError: [Errno 28] No space left on device" in result.stderr
    assert not (saved / "huge.txt").exists()
    assert temporary_files(saved) == []
    assert sum(r["status"] == "ok" for r in records.values()) == 8
    assert_outputs_exact(inputs, saved, [f"f{i}.txt" for i in range(8)])


def test_a_full_journal_disk_stops_the_rank_with_one_line(inputs, tmp_path):
    require(mount_namespaces_work(), "root and a mount namespace, to mount a small tmpfs")
    for i in range(300):  # ~40 KB of journal: more than the 8 KB disk it is on
        (inputs / f"many-{i:03d}.txt").write_bytes(b"one two three\n")
    out = tmp_path / "out"
    (out / "_manifest").mkdir(parents=True)
    script = (f"mount -t tmpfs -o size=8k tmpfs {out / '_manifest'} && "
              f"{sys.executable} -m job --input_dir {inputs} --out_dir {out} --process_count 2")
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], env=clean_environ(), cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert "cannot write the journal" in line and "No space left on device" in line
    assert temporary_files(out) == []
    done = [p for p in out.iterdir() if p.is_file()]
    assert done and len(done) < 308  # stopped early; what is there is whole
    assert_outputs_exact(inputs, out, [p.name for p in done])


def test_a_full_disk_before_the_first_file_leaves_nothing_behind(inputs, tmp_path):
    """The journals' folder is full from the start: one line, exit 2, no lock, no partial-*."""
    require(mount_namespaces_work(), "root and a mount namespace, to mount a small tmpfs")
    out = tmp_path / "out"
    (out / "_manifest").mkdir(parents=True)
    script = (f"mount -t tmpfs -o size=64k tmpfs {out / '_manifest'} && "
              f"(dd if=/dev/zero of={out / '_manifest' / 'filler'} bs=4k 2>/dev/null; true) && "
              f"{sys.executable} -m job --input_dir {inputs} --out_dir {out}; "
              f"code=$?; ls -a {out / '_manifest'}; exit $code")
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], env=clean_environ(), cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], result.stderr
    assert sorted(result.stdout.split()) == [".", "..", "filler"]
    assert not list(out.glob("*.txt"))


def test_bad_entries_are_recorded_never_a_crash(inputs, tmp_path):
    os.symlink(inputs / "missing-target", inputs / "broken_link.txt")
    os.symlink("loop.txt", inputs / "loop.txt")
    out = tmp_path / "out"
    result = run_job("--input_dir", str(inputs), "--out_dir", str(out), "--process_count", "1",
                     "--processor", "fault_processors:Vanishes", "--error_threshold", "-1")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    records = {r["input"]: r for r in all_records(out)}
    assert records["broken_link.txt"]["status"] == "failed"
    assert "No such file or directory" in records["broken_link.txt"]["error"]
    assert "Too many levels of symbolic links" in records["loop.txt"]["error"]
    assert records["f7.txt"]["status"] == "failed"
    assert records["f7.txt"]["error"].startswith("FileNotFoundError")
    assert sum(r["status"] == "ok" for r in records.values()) == 7
    for name in ("broken_link.txt", "loop.txt", "f7.txt"):
        assert f"failed: {name}: " in result.stderr  # named in the final summary


def test_ctrl_c_to_the_process_group(inputs, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(job_command("--input_dir", str(inputs), "--out_dir", str(out),
                                           "--processor", "fault_processors:Slow",
                                           "--process_count", "2"),
                               env=clean_environ(), cwd=ROOT, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    deadline = time.monotonic() + 30
    while len(all_records(out) if (out / "_manifest").is_dir() else []) < 2:
        assert time.monotonic() < deadline, "no file finished"
        time.sleep(0.05)
    started = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 130, stderr
    assert time.monotonic() - started < 5
    assert "interrupted by SIGINT" in stderr and "Traceback" not in stderr
    assert subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True).stdout == b""
    records = all_records(out)  # every line parses: the journal stays valid
    assert 2 <= len(records) < 8 and {r["status"] for r in records} == {"ok"}
    rerun = run_job("--input_dir", str(inputs), "--out_dir", str(out),
                    "--processor", "fault_processors:Slow")  # the same processor: it resumes
    assert rerun.returncode == 0
    manifest = read_manifest(out)
    statuses = [r["status"] for r in manifest["files"]]
    assert statuses.count("skipped") == len(records) and statuses.count("ok") == 8 - len(records)
    assert len(all_records(out)) == 8  # this run's records after the first run's
    assert_outputs_exact(inputs, out)


def test_progress_lines_in_a_log(inputs, tmp_path):
    result = run_job("--input_dir", str(inputs), "--out_dir", str(tmp_path / "out"),
                     "--processor", "fault_processors:Slow", "--process_count", "2",
                     "--progress_interval", "0.2")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "progress: " in line]
    assert lines, result.stderr
    assert all(" files, " in line and "MB/s" in line and "ETA" in line for line in lines)
    assert "\r" not in result.stderr


def test_progress_bar_on_a_terminal(inputs, tmp_path):
    controller, terminal = pty.openpty()
    process = subprocess.Popen(job_command("--input_dir", str(inputs), "--out_dir",
                                           str(tmp_path / "out"), "--processor",
                                           "fault_processors:Slow", "--process_count", "2"),
                               env=clean_environ(), cwd=ROOT, stderr=terminal,
                               stdout=subprocess.DEVNULL)
    os.close(terminal)
    screen = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the job closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    assert process.wait(timeout=30) == 0
    os.close(controller)
    text = screen.decode()
    assert "\r\x1b[Krank 0/1 [" in text and "8/8 files" in text and "100%" in text
    assert "progress: " not in text


LOW_DESCRIPTOR_LIMIT = """
import resource, runpy, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), int(sys.argv[1])))
sys.argv = ["job", *sys.argv[2:]]
runpy.run_module("job", run_name="__main__", alter_sys=True)
"""


def test_a_rank_short_of_descriptors_for_its_workers_goes_on_with_fewer(tmp_path):
    """``ulimit -n`` too low for 16 workers' pipes: one line says how many started, every
    file is done, no traceback (before: a traceback and exit 1)."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for i in range(64):
        (inputs / f"f{i:02d}.txt").write_bytes(b"alpha beta\tgamma\n" * (i + 1))
    result = subprocess.run([sys.executable, "-c", LOW_DESCRIPTOR_LIMIT, "40", "--input_dir",
                             str(inputs), "--out_dir", str(out), "--process_count", "16"],
                            env=clean_environ(), cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "worker processes: Too many open files (EMFILE); going on with" in result.stderr
    assert_outputs_exact(inputs, out)
