"""A rank's run end to end: journal, manifest, resume, failures, dead workers, signals."""

import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import (ROOT, assert_outputs_exact, clean_environ, newest_records, read_manifest,
                      run_job, temporary_files)


@pytest.fixture
def inputs(eight_files):
    (eight_files / "sub").mkdir()
    (eight_files / "sub" / "g.txt").write_bytes(b"delta\r\nepsilon")
    return eight_files


def journal(out):
    """The newest record of each input in the journal, which keeps every run's records."""
    [_] = (out / "_manifest").glob("*.jsonl")
    return list(newest_records(out).values())


def manifest(out):
    [path] = (out / "_manifest").glob("*.json")
    return read_manifest(out, path.stem)


def test_journal_and_manifest_records(inputs, tmp_path):
    out = tmp_path / "out"
    result = run_job("--input_dir", str(inputs), "--out_dir", str(out), "--process_count", "2")
    assert result.returncode == 0, result.stderr
    records = journal(out)
    assert len(records) == 9
    for record in records:
        assert set(record) >= {"input", "output", "status", "bytes_in", "tokens", "seconds",
                               "attempts", "error"}
        assert record["status"] == "ok" and record["attempts"] == 1 and record["error"] is None
        assert record["bytes_in"] == (inputs / record["input"]).stat().st_size
        assert record["tokens"] == len((inputs / record["input"]).read_bytes().split())
    final = manifest(out)
    assert [r["input"] for r in final["files"]] == sorted(r["input"] for r in records)
    assert final["totals"]["ok"] == 9 and final["totals"]["failed"] == 0
    assert final["complete"] is True
    assert temporary_files(out) == []
    assert "summary: 9 files: 9 done, 0 skipped" in result.stderr


def test_resume_skips_what_is_done_and_redoes_what_changed(inputs, tmp_path):
    out = tmp_path / "out"
    assert run_job("--input_dir", str(inputs), "--out_dir", str(out)).returncode == 0
    (inputs / "f1.txt").write_bytes(b"changed content\n")
    (out / "f2.txt").unlink()
    result = run_job("--input_dir", str(inputs), "--out_dir", str(out))
    assert result.returncode == 0, result.stderr
    status = {r["input"]: r["status"] for r in manifest(out)["files"]}
    assert status.pop("f1.txt") == "ok" and status.pop("f2.txt") == "ok"
    assert set(status.values()) == {"skipped"}
    assert_outputs_exact(inputs, out)
    rerun = run_job("--input_dir", str(inputs), "--out_dir", str(out), "--resume", "false")
    assert {r["status"] for r in manifest(out)["files"]} == {"ok"}, rerun.stderr
    assert {r["status"] for r in journal(out)} == {"ok"}


def test_a_same_size_edit_with_a_new_mtime_is_redone_on_resume(inputs, tmp_path):
    out = tmp_path / "out"
    assert run_job("--input_dir", str(inputs), "--out_dir", str(out)).returncode == 0
    edited = inputs / "f1.txt"
    before = edited.stat()
    data = edited.read_bytes()
    edited.write_bytes(data.replace(b"alpha", b"ALPHA", 1))
    os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns + 2_000_000_000))
    assert edited.stat().st_size == before.st_size
    result = run_job("--input_dir", str(inputs), "--out_dir", str(out))
    assert result.returncode == 0, result.stderr
    status = {r["input"]: r["status"] for r in manifest(out)["files"]}
    assert status.pop("f1.txt") == "ok"
    assert set(status.values()) == {"skipped"}
    assert (out / "f1.txt").read_bytes().startswith(b"ALPHA\n")
    assert_outputs_exact(inputs, out)


def test_journal_cut_mid_line_is_tolerated(inputs, tmp_path):
    out = tmp_path / "out"
    assert run_job("--input_dir", str(inputs), "--out_dir", str(out)).returncode == 0
    [path] = (out / "_manifest").glob("*.jsonl")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:5]) + lines[5][:20])
    result = run_job("--input_dir", str(inputs), "--out_dir", str(out))
    assert result.returncode == 0, result.stderr
    statuses = [r["status"] for r in manifest(out)["files"]]
    assert statuses.count("skipped") == 5 and statuses.count("ok") == 4
    assert len(journal(out)) == 9  # the cut line was dropped, every line parses


@pytest.mark.parametrize("threshold, code", [("0", 1), ("2", 0), ("1", 1), ("-1", 0)])
def test_error_threshold_decides_the_exit_code(inputs, tmp_path, threshold, code):
    (inputs / "f3.txt").write_bytes(b"POISON here\n")
    (inputs / "f5.txt").write_bytes(b"more POISON\n")
    out = tmp_path / "out"
    result = run_job("--input_dir", str(inputs), "--out_dir", str(out), "--processor",
                     "fault_processors:Poisoned", "--error_threshold", threshold)
    assert result.returncode == code, result.stderr
    failed = {r["input"]: r for r in journal(out) if r["status"] == "failed"}
    assert sorted(failed) == ["f3.txt", "f5.txt"]
    assert failed["f3.txt"]["error"].startswith("ValueError: poisoned input f3.txt")
    assert failed["f3.txt"]["attempts"] == 2  # max_retries 1
    assert not (out / "f3.txt").exists()
    assert "failed: f3.txt: ValueError: poisoned input f3.txt" in result.stderr
    assert "Traceback" not in result.stderr
    if code == 1:
        assert "more than error_threshold" in result.stderr and "f3.txt, f5.txt" in result.stderr


def test_killed_worker_is_retried_in_a_fresh_one(inputs, tmp_path):
    (inputs / "f4.txt").write_bytes(b"KILL me once\n")
    out = tmp_path / "out"
    result = run_job("--input_dir", str(inputs), "--out_dir", str(out), "--processor",
                     "fault_processors:KilledOnce", "--process_count", "2", timeout=60)
    assert result.returncode == 0, result.stderr
    record = next(r for r in journal(out) if r["input"] == "f4.txt")
    assert record["status"] == "ok" and record["attempts"] == 2
    assert_outputs_exact(inputs, out)
    assert temporary_files(out) == []


def test_worker_killed_every_time_is_recorded_and_never_hangs(inputs, tmp_path):
    (inputs / "f4.txt").write_bytes(b"KILL_ALWAYS\n")
    out = tmp_path / "out"
    result = run_job("--input_dir", str(inputs), "--out_dir", str(out), "--processor",
                     "fault_processors:KilledOnce", "--max_retries", "2", timeout=60)
    assert result.returncode == 1
    record = next(r for r in journal(out) if r["input"] == "f4.txt")
    assert record["status"] == "failed" and record["attempts"] == 3
    assert record["error"].startswith("worker died (signal 9")
    assert not (out / "f4.txt").exists() and temporary_files(out) == []
    assert sum(r["status"] == "ok" for r in journal(out)) == 8
    rerun = run_job("--input_dir", str(inputs), "--out_dir", str(out), timeout=60)
    assert rerun.returncode == 0, rerun.stderr
    assert next(r for r in journal(out) if r["input"] == "f4.txt")["status"] == "ok"
    assert_outputs_exact(inputs, out)


def test_file_timeout_stops_a_hung_file(inputs, tmp_path):
    (inputs / "f6.txt").write_bytes(b"HANG forever\n")
    out = tmp_path / "out"
    started = time.monotonic()
    result = run_job("--input_dir", str(inputs), "--out_dir", str(out), "--processor",
                     "fault_processors:Hangs", "--file_timeout", "1", "--max_retries", "0",
                     "--error_threshold", "1", timeout=60)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 30
    record = next(r for r in journal(out) if r["input"] == "f6.txt")
    assert record["status"] == "failed" and record["error"] == "timed out after 1 s"
    assert sum(r["status"] == "ok" for r in journal(out)) == 8


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_stop_workers_and_leave_no_partial_output(inputs, tmp_path, signum, code):
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "job", "--input_dir", str(inputs), "--out_dir", str(out),
         "--processor", "fault_processors:Slow", "--process_count", "2"],
        env=clean_environ(), cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    workers = []
    while len(workers) < 2 and time.monotonic() < deadline:  # both mid-file (Slow takes 0.5 s)
        time.sleep(0.05)
        workers = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True,
                                 text=True).stdout.split()
    time.sleep(0.2)
    assert workers, "workers should be running"
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert temporary_files(out) == []
    for path in out.glob("*.txt"):
        assert path.read_bytes() != b"partial"
    assert manifest(out)["complete"] is False
    rerun = run_job("--input_dir", str(inputs), "--out_dir", str(out))
    assert rerun.returncode == 0, rerun.stderr
    assert_outputs_exact(inputs, out)


SIGNALLED_IN_A_FORK_HOOK = """
import os, signal
from job import TokenSplitter
# A SIGTERM whose handler runs inside an os.fork hook: Python prints the exception it
# raises as "ignored" and drops it, as happened (rarely) when Azure ML cancelled a rank
# that was starting its workers.
os.register_at_fork(after_in_parent=lambda: os.kill(os.getpid(), signal.SIGTERM))
class Splitter(TokenSplitter):
    pass
"""


def run_with_splitter_of(source: str, inputs, tmp_path):
    """The job on ``inputs`` with 2 workers and the ``Splitter`` class of the module
    ``source`` (written into ``tmp_path``); its result and its out_dir."""
    (tmp_path / "splitter_module.py").write_text(source)
    out = tmp_path / "out"
    env = clean_environ()
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    result = run_job("--input_dir", str(inputs), "--out_dir", str(out), "--process_count", "2",
                     "--processor", "splitter_module:Splitter", env=env, fresh=True)
    return result, out


def test_a_sigterm_whose_exception_python_drops_still_stops_the_run(inputs, tmp_path):
    result, out = run_with_splitter_of(SIGNALLED_IN_A_FORK_HOOK, inputs, tmp_path)
    assert result.returncode == 143, result.stderr
    assert "interrupted by SIGTERM" in result.stderr
    assert "Traceback" not in result.stderr and "ignored" not in result.stderr, result.stderr
    assert temporary_files(out) == [] and manifest(out)["complete"] is False


SIGNALLED_AS_THE_RUN_TAKES_ITS_SIGNALS = """
import signal as _signal
import types
import job.run as run
from job import TokenSplitter
# SIGTERM comes the moment the rank has installed the handler that turns it into an
# exception (the run's SIGTERM handler, raising Interrupted), as Azure ML may cancel a job
# at any moment: the run must stop as for any other SIGTERM.
def _installed(signum, handler):
    previous = _signal.signal(signum, handler)
    if handler is run._raise_interrupted and signum == _signal.SIGTERM:
        _signal.raise_signal(_signal.SIGTERM)
    return previous
run.signal = types.SimpleNamespace(**{name: getattr(_signal, name) for name in dir(_signal)
                                      if not name.startswith("__")})
run.signal.signal = _installed
class Splitter(TokenSplitter):
    pass
"""


def test_a_sigterm_as_the_run_takes_its_signals_stops_it_cleanly(inputs, tmp_path):
    """(An attack found a SIGTERM or SIGINT that came after the run installed its handlers
    and before it was ready to catch what they raise, while it set up its progress count
    (summing 40,000 sizes): a traceback and exit 1.)"""
    result, out = run_with_splitter_of(SIGNALLED_AS_THE_RUN_TAKES_ITS_SIGNALS, inputs, tmp_path)
    assert result.returncode == 143, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert "interrupted by SIGTERM" in result.stderr
    assert temporary_files(out) == [] and manifest(out)["complete"] is False
    rerun = run_job("--input_dir", str(inputs), "--out_dir", str(out))
    assert rerun.returncode == 0, rerun.stderr
    assert_outputs_exact(inputs, out)


def test_custom_processor_from_config_key(inputs, tmp_path):
    (tmp_path / "myproc.py").write_text(
        "import os\n"
        "from job import DataProcessor, atomic_output\n"
        "class Upper(DataProcessor):\n"
        "    def __init__(self, input_dir, out_dir, distrib_args=None):\n"
        "        super().__init__(distrib_args)\n"
        "        self.input_dir, self.out_dir = input_dir, out_dir\n"
        "        assert distrib_args.node_count == 2 and distrib_args.node_rank == 1\n"
        "    def output_path(self, path):\n"
        "        return os.path.join(self.out_dir, os.path.relpath(path, self.input_dir) + '.up')\n"
        "    def process(self, path):\n"
        "        with atomic_output(self.output_path(path)) as sink:\n"
        "            sink.write(open(path, 'rb').read().upper())\n")
    out = tmp_path / "out"
    environ = clean_environ()
    environ["PYTHONPATH"] += os.pathsep + str(tmp_path)
    result = run_job("--input_dir", str(inputs), "--out_dir", str(out), "--processor",
                     "myproc:Upper", "--distribArgs.node_count", "2", "--distribArgs.node_rank", "1",
                     env=environ)
    assert result.returncode == 0, result.stderr
    outputs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.up"))
    assert outputs == ["f5.txt.up", "f6.txt.up", "f7.txt.up", "sub/g.txt.up"]
    assert (out / "sub/g.txt.up").read_bytes() == b"DELTA\r\nEPSILON"
    assert {r["output"] for r in journal(out)} == set(outputs)


def test_zero_files_is_a_clean_run(tmp_path):
    (tmp_path / "in").mkdir()
    result = run_job("--input_dir", str(tmp_path / "in"), "--out_dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert manifest(tmp_path / "out")["totals"]["files"] == 0


def test_rerun_after_a_killed_rank_removes_its_temporary_files(inputs, tmp_path):
    out = tmp_path / "out"
    assert run_job("--input_dir", str(inputs), "--out_dir", str(out)).returncode == 0
    (out / "_manifest" / "shard-00000-of-00001.json").unlink()  # as if SIGKILLed before the end
    mine = out / ".f1.txt.partial-0of1-99999-0"
    others = out / ".f1.txt.partial-1of2-99999-0"  # another rank, maybe writing right now
    mine.write_bytes(b"half")
    others.write_bytes(b"half")
    result = run_job("--input_dir", str(inputs), "--out_dir", str(out))
    assert result.returncode == 0, result.stderr
    assert not mine.exists() and others.exists()
    assert "removed 1 temporary file(s) left by an interrupted run" in result.stderr


def test_a_killed_rank_has_journaled_the_files_it_finished(inputs, tmp_path):
    """Results are flushed whenever the rank has booked what arrived, not only at the end."""
    out = tmp_path / "out"
    (inputs / "z_last.txt").write_bytes(b"HANG")  # listed last: the rank is stuck on it
    rank = subprocess.Popen([sys.executable, "-m", "job", "--input_dir", str(inputs),
                             "--out_dir", str(out), "--process_count", "1",
                             "--processor", "fault_processors:Hangs"],
                            cwd=ROOT, env=clean_environ(), stderr=subprocess.DEVNULL)
    path = out / "_manifest" / "shard-00000-of-00001.jsonl"
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            if path.exists() and path.read_text().count("\n") == 9:
                break
            time.sleep(0.05)
        time.sleep(0.3)  # the hung file is being worked on, nothing more will come
    finally:
        rank.kill()
        rank.wait()
    assert sorted(r["input"] for r in journal(out)) == [f"f{i}.txt" for i in range(8)] + ["sub/g.txt"]
