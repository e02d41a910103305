"""``python -m job.check`` on out_dirs that real runs of ``python -m job`` made (GitHub issue 9):
rank layouts that changed between runs, ranks that listed different inputs, outputs compared
by streaming with flat memory, bookkeeping that is not what it claims to be."""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading

import pytest

from conftest import ROOT, clean_environ, run_job, run_module

from job import check as job_check


def write_inputs(folder, count=27):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"f{i:02d}.txt").write_bytes(b"alpha beta %d\tgamma\n" % i * (1 + i % 4))
    return folder


def run_rank(inputs, out, node_count, node_rank, *extra, local_size=None, local_rank=None,
             expect=0, env=None):
    args = ["--input_dir", str(inputs), "--out_dir", str(out), "--process_count", "1",
            "--distribArgs.node_count", str(node_count), "--distribArgs.node_rank", str(node_rank)]
    if local_size is not None:
        args += ["--distribArgs.local_size", str(local_size),
                 "--distribArgs.local_rank", str(local_rank)]
    result = run_job(*args, *extra, env=env)
    assert expect is None or result.returncode == expect, result.stderr
    return result


def run_layout(inputs, out, node_count, *extra, local_size=None, expect=0, env=None):
    for node in range(node_count):
        for local in range(local_size or 1):
            run_rank(inputs, out, node_count, node, *extra, expect=expect, env=env,
                     local_size=local_size, local_rank=local if local_size else None)


def run_check(inputs, out, *extra, env=None):
    return run_module("job.check", "--input_dir", str(inputs), "--out_dir", str(out), *extra,
                      env=env)


def problems(result):
    return [line for line in result.stdout.splitlines() if line.startswith("problem: ")]


@pytest.fixture
def inputs(tmp_path):
    return write_inputs(tmp_path / "in")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """``made(tmp_path, 5, 3)``: the 27 inputs and the out_dir of a 5-shard then a 3-shard run,
    copied into ``tmp_path/in`` and ``tmp_path/out``; returns the out_dir.

    The runs are real, made once per module and layout sequence; a copy keeps every byte and
    modification time, and the bookkeeping names files relative to input_dir and out_dir:
    the copy is what the test's own runs would have made."""
    runs = {}

    def copy(tmp_path, *node_counts):
        if node_counts not in runs:
            root = tmp_path_factory.mktemp("made")
            inputs = write_inputs(root / "in")
            for node_count in node_counts:
                run_layout(inputs, root / "out", node_count)
            runs[node_counts] = root
        for name in ("in", "out"):
            shutil.copytree(runs[node_counts] / name, tmp_path / name, dirs_exist_ok=True)
        return tmp_path / "out"
    return copy


# --- issue 9, bug 2: resume after the rank layout changed ------------------------------------

@pytest.mark.slow
def test_layouts_5_then_3_then_3x2_check_out(inputs, made, tmp_path):
    out = made(tmp_path, 5, 3)
    run_layout(inputs, out, 3, local_size=2)
    result = run_check(inputs, out)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:6]] == [f"rank {i}/6" for i in range(6)]
    assert "older layouts: 3 shards, 5 shards" in result.stdout
    assert lines[-1].startswith("OK: 27 input files") and "byte-exact" in lines[-1]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_file_edited_between_layouts_is_judged_by_its_newest_record(inputs, made, tmp_path):
    out = made(tmp_path, 5)
    edited = b"edited between the runs, longer than it was before\n" * 3
    (inputs / "f03.txt").write_bytes(edited)
    run_layout(inputs, out, 3)  # redoes f03: the 5-shard record of the old size is older
    result = run_check(inputs, out)
    assert result.returncode == 0, result.stdout
    (inputs / "f03.txt").write_bytes(b"edited after the last run\n")
    result = run_check(inputs, out)
    assert result.returncode == 1
    assert problems(result)[-1] == (f"problem: f03.txt: changed since it was done ({len(edited)} "
                                    "bytes then, 26 now): run the job again")
    # the contiguous ranks' digests cover the paths alone (their plans depend on nothing
    # else: job.outline), and the paths are the same: the record tells, not the listing
    assert "check lists" not in result.stdout and len(problems(result)) == 1


def test_a_newer_failure_is_not_hidden_by_an_older_ok_record(inputs, made, tmp_path):
    out = made(tmp_path, 5)
    (inputs / "f03.txt").write_bytes(b"POISON\n")
    run_layout(inputs, out, 3, "--processor", "fault_processors:Poisoned", expect=None)
    result = run_check(inputs, out)
    assert result.returncode == 1, result.stdout
    [line] = problems(result)
    assert line.startswith("problem: f03.txt: failed on rank 0 of 3: ValueError: poisoned input")


def test_the_newest_layout_must_be_whole(inputs, made, tmp_path):
    out = made(tmp_path, 5)
    run_rank(inputs, out, 3, 0)
    run_rank(inputs, out, 3, 1)  # rank 2 of 3 never ran: its files' records are 5-shard ones
    result = run_check(inputs, out)
    assert result.returncode == 1
    assert "rank 2/3: no manifest" in result.stdout
    assert problems(result) == ["problem: shard 2 of 3 has no manifest: it has not run"]


def test_two_ranks_of_one_layout_that_took_the_same_file(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(9):  # sizes that the size strategy shards otherwise than contiguous blocks
        (inputs / f"f{i}.txt").write_bytes(b"word " * (10 * (9 - i) ** 2 + 1))
    out = tmp_path / "out"
    run_rank(inputs, out, 3, 1, "--shard_strategy", "size")  # misconfigured rank
    run_rank(inputs, out, 3, 0, "--resume", "false")  # so it does not skip what rank 1 made
    run_rank(inputs, out, 3, 2)
    result = run_check(inputs, out)
    assert result.returncode == 1
    assert any(p.endswith("done by 2 ranks of the 3-shard layout (0, 1): two ranks took it")
               for p in problems(result)), result.stdout


@pytest.mark.slow
def test_a_1_shard_layout_next_to_a_5_shard_one(inputs, made, tmp_path):
    out = made(tmp_path, 5, 1)
    result = run_check(inputs, out)
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("rank 0/1:   27 files")
    run_layout(inputs, out, 5)  # and back: the 5-shard layout is the newest again
    result = run_check(inputs, out)
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines()[4].startswith("rank 4/5:")


# --- issue 9, bug 6: each rank's listing ------------------------------------------------------

def test_a_rank_that_listed_fewer_inputs(inputs, tmp_path):
    out = tmp_path / "out"
    run_rank(inputs, out, 5, 0)
    run_rank(inputs, out, 5, 1)
    (inputs / "f26.txt").rename(tmp_path / "away.txt")
    run_rank(inputs, out, 5, 2)
    (tmp_path / "away.txt").rename(inputs / "f26.txt")
    run_rank(inputs, out, 5, 3)
    run_rank(inputs, out, 5, 4)
    result = run_check(inputs, out)
    assert result.returncode == 1
    [line] = [p for p in problems(result) if "listed" in p]
    assert line.startswith("problem: rank 2 of 5 listed 26 files (digest ")
    assert line.endswith(": ranks saw different inputs") and "the others 27 (digest " in line


@pytest.mark.parametrize("strategy", ["size", "contiguous"])
def test_a_rank_that_saw_other_sizes_is_found_by_the_digest_alone(inputs, tmp_path, strategy):
    """Every output is right, every record consistent: only the listings tell, where the
    plan depended on the sizes (``size``: its digest covers them). A ``contiguous``
    rank's plan does not, and its digest covers the paths alone (job.outline)."""
    out = tmp_path / "out"
    strategy_option = ("--shard_strategy", strategy)
    for node in range(4):
        run_rank(inputs, out, 5, node, *strategy_option)
    path = inputs / "f01.txt"
    before, info = path.read_bytes(), path.stat()
    path.write_bytes(before + b"more\n")
    run_rank(inputs, out, 5, 4, *strategy_option)
    path.write_bytes(before)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))
    result = run_check(inputs, out)
    if strategy == "contiguous":
        assert result.returncode == 0, result.stdout
        return
    assert result.returncode == 1, result.stdout
    # (rank 4 planned from other sizes, so its plan may overlap the others': more problems)
    [line] = [p for p in problems(result) if " listed " in p]
    assert line.startswith("problem: rank 4 of 5 listed 27 files (digest ")
    assert "the others 27 (digest " in line


def test_an_entry_that_cannot_be_read_names_its_path_and_error(inputs, tmp_path):
    (inputs / "gone.txt").symlink_to(tmp_path / "nowhere")
    out = tmp_path / "out"
    run_layout(inputs, out, 5, expect=None)
    run_layout(inputs, out, 3, expect=None)
    result = run_check(inputs, out)
    assert result.returncode == 1
    assert problems(result) == ["problem: gone.txt: broken symbolic link: No such file or "
                                "directory (recorded failed by rank 2 of 3)"]


# --- issue 9, bug 14: flat memory, streaming comparison, processors, bad bookkeeping ---------

PEAK_RSS = """
import resource, subprocess, sys
result = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(result.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(result.stdout + result.stderr)
"""


def test_check_memory_is_flat_on_a_90_mb_file(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    letters = bytes.maketrans(bytes(range(256)), (b"abcdefghijklmnopqrstuvwxyz" * 9)[:230]
                              + b" " * 20 + b"\n" * 6)
    with open(inputs / "big.txt", "wb") as stream:
        for _ in range(9):
            stream.write(os.urandom(10 << 20).translate(letters))
    out = tmp_path / "out"
    assert run_job("--input_dir", str(inputs), "--out_dir", str(out),
                   "--process_count", "2").returncode == 0
    measured = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "job.check", "--input_dir",
         str(inputs), "--out_dir", str(out)],
        env=clean_environ(), cwd=ROOT, capture_output=True, text=True, timeout=300)
    first, rest = measured.stdout.split("\n", 1)
    code, peak_kb = map(int, first.split())
    assert code == 0, rest
    assert peak_kb < 100 * 1024, f"check's peak RSS was {peak_kb / 1024:.0f} MB"


def test_outputs_are_compared_byte_for_byte(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "empty.txt").write_bytes(b"")
    (inputs / "spaces.txt").write_bytes(b" \t\n")
    for name in ("differs", "longer", "shorter", "linked", "exact"):
        (inputs / f"{name}.txt").write_bytes(b"one two\nthree\r\n" * 30_000)
    out = tmp_path / "out"
    assert run_job("--input_dir", str(inputs), "--out_dir", str(out)).returncode == 0
    assert run_check(inputs, out).returncode == 0
    reference = (out / "exact.txt").read_bytes()
    (out / "differs.txt").write_bytes(reference[:200_001] + b"X" + reference[200_002:])
    (out / "longer.txt").write_bytes(reference + b"extra\n")
    (out / "shorter.txt").write_bytes(reference[:-1])
    (out / "linked.txt").unlink()
    (out / "linked.txt").symlink_to(out / "exact.txt")
    result = run_check(inputs, out)
    assert result.returncode == 1
    assert problems(result) == [
        "problem: differs.txt: output differs from the reference at byte 200,001",
        "problem: linked.txt: output is a symbolic link, not a file the job wrote",
        f"problem: longer.txt: output is longer than the reference ({len(reference):,} bytes)",
        "problem: shorter.txt: output is shorter than the reference: it ends at byte "
        f"{len(reference) - 1:,}"]
    no_content = run_check(inputs, out, "--no-content")
    assert problems(no_content) == [
        "problem: linked.txt: output is a symbolic link, not a file the job wrote"]


UPPER = '''
from job import DataProcessor, atomic_output
import os

class Upper(DataProcessor):
    def __init__(self, input_dir, out_dir, distrib_args=None):
        super().__init__(distrib_args)
        self.input_dir, self.out_dir = input_dir, out_dir

    def output_path(self, path):
        return os.path.join(self.out_dir, os.path.relpath(path, self.input_dir)) + ".upper"

    def process(self, path):
        with open(path, "rb") as source, atomic_output(self.output_path(path)) as sink:
            sink.write(source.read().upper())
'''


def test_outputs_of_another_processor_are_only_checked_to_exist(inputs, tmp_path):
    (tmp_path / "upper.py").write_text(UPPER)
    env = clean_environ()
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    out = tmp_path / "out"
    run_layout(inputs, out, 2, "--processor", "upper:Upper", env=env)
    result = run_check(inputs, out)
    assert result.returncode == 0, result.stdout
    assert result.stdout.splitlines()[-1] == (
        "OK: 27 input files, each done (its newest record ok or skipped); "
        "27 made by upper:Upper: outputs only checked to exist")
    (out / "f05.txt.upper").unlink()
    result = run_check(inputs, out)
    assert problems(result) == ["problem: f05.txt: output f05.txt.upper is missing"]


def shard_files(out):
    return sorted((out / "_manifest").glob("shard-*"))


@pytest.mark.parametrize("name, content, said", [
    ("shard-00000-of-00002.json", b'{"files": [{"input": "f00.txt", "sta', "not JSON"),
    ("shard-00000-of-00002.json", b"[1, 2]\n", "an array, not an object"),
    ("shard-00000-of-00002.json", b'{"files": []}\n', "'totals' is missing or not a dict"),
    ("shard-00000-of-00002.json", b'{"files": [{"input": "f00.txt", "status": "done"}], '
     b'"totals": {}}', "status 'done' is not ok, failed or skipped"),
    ("shard-00000-of-00002.json", b'{"files": [{"input": "f00.txt", "status": "ok", '
     b'"bytes_in": "12"}], "totals": {}}', "bytes_in '12' is not an integer"),
    ("shard-00001-of-00002.jsonl", b'{"input": "f00.txt", "status": "ok"}\nnot json\n{}\n',
     "line 2 is not JSON: not a journal"),
    ("shard-00001-of-00002.jsonl", b'{"input": "f00.txt", "status": "ok"}\n[]\n',
     "line 2: an array where a record (an object) belongs"),
    ("shard-00007-of-00002.json", b'{"files": [], "totals": {}}', "shard 7 of 2 cannot be"),
])
def test_bookkeeping_that_is_not_a_journal_or_manifest(inputs, made, tmp_path, name, content,
                                                     said):
    out = made(tmp_path, 2)
    (out / "_manifest" / name).write_bytes(content)
    result = run_check(inputs, out)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = problems(result)
    assert line.startswith(f"problem: {out / '_manifest' / name}: ") and said in line, line
    assert result.stdout.splitlines()[-1] == "FAILED: 1 problem(s)"


def test_a_journal_cut_mid_line(inputs, made, tmp_path):
    out = made(tmp_path, 5, 3)
    older = out / "_manifest" / "shard-00001-of-00005.jsonl"
    older.write_bytes(older.read_bytes()[:-20])  # as a killed rank leaves it
    result = run_check(inputs, out)
    assert result.returncode == 0, result.stdout
    assert "note: 1 journal(s) of older layouts end in a cut line" in result.stdout
    newest = out / "_manifest" / "shard-00002-of-00003.jsonl"
    newest.write_bytes(newest.read_bytes()[:-20])
    result = run_check(inputs, out)
    assert result.returncode == 1
    assert problems(result) == [f"problem: {newest}: its last line is cut short (the rank was "
                                "killed while writing it)"]


def test_lock_files_are_not_bookkeeping(inputs, made, tmp_path):
    out = made(tmp_path, 2)
    lock = out / "_manifest" / "shard-00001-of-00002.lock"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead), "since": 1.0}))
    result = run_check(inputs, out)
    assert result.returncode == 0 and "running" not in result.stdout, result.stdout
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": 1.0}))
    result = run_check(inputs, out)
    assert result.returncode == 0
    assert result.stdout.splitlines()[1].startswith("rank 1/2:   13 files")
    assert f"(running: pid {os.getpid()} on host {socket.gethostname()})" in result.stdout


def test_names_that_are_not_utf8_print_escaped(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    name = os.fsdecode(b"caf\xe9.txt")
    (inputs / name).write_bytes(b"un deux\n")
    out = tmp_path / "out"
    assert run_job("--input_dir", str(inputs), "--out_dir", str(out)).returncode == 0
    strict = clean_environ(PYTHONIOENCODING="ascii:strict")
    assert run_check(inputs, out, env=strict).returncode == 0
    (out / name).write_bytes(b"un\n")
    result = run_check(inputs, out, env=strict)
    assert result.returncode == 1, result.stderr
    assert problems(result) == ["problem: caf\\udce9.txt: output is shorter than the reference: "
                                "it ends at byte 3"]


def test_problems_are_capped_at_20_lines(inputs, made, tmp_path):
    out = made(tmp_path, 1)
    for path in sorted(out.glob("f*.txt"))[:25]:
        path.unlink()
    result = run_check(inputs, out)
    assert result.returncode == 1
    assert len(problems(result)) == 20
    assert result.stdout.splitlines()[-2:] == ["... 5 more", "FAILED: 25 problem(s)"]


def test_usage_and_an_out_dir_that_never_saw_a_run(inputs, tmp_path):
    result = run_check(tmp_path / "missing", tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [f"error: input_dir '{tmp_path / 'missing'}' does "
                                          "not exist"]
    result = run_check(inputs, tmp_path / "missing")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"error: out_dir '{tmp_path / 'missing'}' does not "
                                          "exist"]
    (tmp_path / "empty").mkdir()
    result = run_check(inputs, tmp_path / "empty")
    assert result.returncode == 1
    assert problems(result) == ["problem: no journals or manifests in "
                                f"{tmp_path / 'empty' / '_manifest'}: the job has not run into "
                                "this out_dir"]


def test_an_input_that_became_a_fifo_does_not_block(tmp_path):
    fifo, output = tmp_path / "fifo", tmp_path / "output"
    os.mkfifo(fifo)
    output.write_bytes(b"")
    found = []
    worker = threading.Thread(target=lambda: found.append(job_check.compare_file(str(fifo),
                                                                               str(output))),
                              daemon=True)
    worker.start()
    worker.join(10)
    assert found == [("input cannot be read: not a regular file", None)]


def test_bookkeeping_that_is_no_file_or_too_deep(inputs, made, tmp_path):
    out = made(tmp_path, 1)
    folder = out / "_manifest"
    os.mkfifo(folder / "shard-00000-of-00002.jsonl")  # would block a plain open()
    (folder / "shard-00001-of-00002.json").mkdir()
    (folder / "shard-00000-of-00001.json").write_text("[" * 100_000 + "]" * 100_000)
    result = run_check(inputs, out)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    deep, *rest = problems(result)
    assert deep.startswith(f"problem: {folder / 'shard-00000-of-00001.json'}: not JSON (")
    assert deep.endswith("): a truncated or foreign manifest")
    assert rest == [
        f"problem: {folder / 'shard-00000-of-00002.jsonl'}: cannot be read: not a regular file",
        f"problem: {folder / 'shard-00001-of-00002.json'}: cannot be read: not a regular file"]


def test_an_output_that_is_a_folder(inputs, made, tmp_path):
    out = made(tmp_path, 1)
    (out / "f02.txt").unlink()
    (out / "f02.txt").mkdir()
    for extra in ((), ("--no-content",)):
        result = run_check(inputs, out, *extra)
        assert problems(result) == ["problem: f02.txt: output is not a regular file"]
