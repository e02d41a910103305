"""Hostile inputs to the fast paths (the streamed listing, resume's journal filter, the
manifests' digests, command-line integers): each test a bug found by attacking them, and
failing until it was fixed.

Real processes and real files, no mocks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT, clean_environ
from job import journal


def _run_job(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "job", *args], env=clean_environ(), cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _nested(root, depth: int) -> str:
    """input_dir/a/a/.../a/f (``depth`` folders): a path of about 2 * depth bytes."""
    path = os.fspath(root)
    for _ in range(depth):
        path = os.path.join(path, "a")
        os.mkdir(path)
    with open(os.path.join(path, "f"), "wb") as stream:
        stream.write(b"deep token\n")
    with open(os.path.join(os.fspath(root), "top"), "wb") as stream:
        stream.write(b"top token\n")
    return path


def test_a_tree_500_folders_deep_is_listed_as_list_inputs_lists_it(tmp_path):
    """job.outline walks recursively with two frames per folder (walk -> _runs -> walk), so it
    hits Python's recursion limit at about 490 levels where list_inputs (one frame per folder,
    what the job used before issue 14) reaches about 990. A 500-deep tree (a path of ~1 KB,
    far below PATH_MAX) worked before and now kills every rank with a RecursionError
    traceback (exit 1) before any file is processed. (Fixed on main by 036ea75.)"""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    _nested(source, 500)
    run = _run_job("--input_dir", str(source), "--out_dir", str(out), "--process_count", "1")
    assert "RecursionError" not in run.stderr, run.stderr[-600:]
    assert run.returncode == 0, run.stderr[-600:]
    manifest = json.loads((out / "_manifest" / "shard-00000-of-00001.json").read_text())
    assert manifest["totals"]["ok"] == 2


def _rank(source, out, index: int, count: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "job", "--input_dir", str(source), "--out_dir",
                             str(out), "--distribArgs.node_rank", str(index),
                             "--distribArgs.node_count", str(count), "--process_count", "1",
                             *extra],
                            env=clean_environ(), cwd=ROOT, stderr=subprocess.PIPE, text=True)


def _when_open(process: subprocess.Popen, folder: str) -> bool:
    """Wait until ``process`` holds a descriptor of ``folder`` (its walk is reading it)."""
    while process.poll() is None:
        try:
            for fd in os.listdir(f"/proc/{process.pid}/fd"):
                try:
                    if os.readlink(f"/proc/{process.pid}/fd/{fd}") == folder:
                        return True
                except OSError:
                    pass
        except OSError:
            pass
    return False


def test_a_rank_that_listed_again_and_its_peers_agree_and_check_passes(tmp_path):
    """A file lands in input_dir while rank 0 of 2 walks it (an upstream stage still writing):
    rank 0's re-read finds its folder changed and lists again, whole (job.run.list_shard's
    fallback); rank 1 starts afterwards and walks the same new listing. Each of the 11 files
    is done exactly once, by the ranks' one common listing. But the fallback records
    Summary.of(listing): a digest of "paths, sizes, errors", while rank 1 (contiguous)
    records a digest of "paths". job.check compares the two tuples, kinds and all, and fails
    the run: "rank 0 of 2 listed 11 files (digest ...), the others 11 (digest ...): ranks saw
    different inputs". A false alarm on a run that is right."""
    source, out = tmp_path / "in", tmp_path / "out"
    (source / "a").mkdir(parents=True)
    (source / "b").mkdir()
    for k in range(10):
        (source / "a" / str(k)).write_bytes(b"token %d\n" % k)
    for k in range(150_000):  # not inputs (the pattern): only a long walk of b, after a
        os.close(os.open(source / "b" / str(k), os.O_CREAT | os.O_WRONLY, 0o644))
    first = _rank(source, out, 0, 2, "--pattern", "a/*")
    try:
        seen = _when_open(first, os.path.realpath(source / "b"))
        (source / "a" / "new").write_bytes(b"new token\n")
        _, log0 = first.communicate(timeout=120)
    finally:
        first.kill()
        first.wait()
    assert seen and "listing it again, whole" in log0, log0  # the race was won: rank 0 fell back
    second = _rank(source, out, 1, 2, "--pattern", "a/*")
    _, log1 = second.communicate(timeout=120)
    assert first.returncode == second.returncode == 0, log0 + log1
    done = []
    for index in range(2):
        manifest = json.loads((out / "_manifest" / f"shard-0000{index}-of-00002.json").read_text())
        done += [record["input"] for record in manifest["files"] if record["status"] == "ok"]
    assert sorted(done) == sorted(f"a/{name}" for name in [*map(str, range(10)), "new"])
    check = subprocess.run([sys.executable, "-m", "job.check", "--input_dir", str(source),
                            "--out_dir", str(out), "--pattern", "a/*"], env=clean_environ(),
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout


def test_a_newer_record_whose_input_key_is_escaped_is_not_skipped_unparsed(tmp_path):
    """journal.Wanted skips a journal whole (none_in) when every line begins '{"input":"'
    with an unwanted name and b'"input"' appears once per line, "a second key would win in
    json.loads" being its stated worry. But a second key may be written escaped,
    "\\u0069nput": json.loads reads it as "input" (the later key wins) while the bytes
    '"input"' appear once. Such a newer record (here: the file failed since) is then unseen
    by resume, which carries the older ok record over as done ("skipped"); job.check, which
    parses every line, says the newest record is failed. Only a journal the job did not
    write holds such a line (low severity), but resume and check then disagree."""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    (source / "f.txt").write_bytes(b"a b\n")
    first = _run_job("--input_dir", str(source), "--out_dir", str(out))
    assert first.returncode == 0, first.stderr
    done = json.loads((out / "_manifest" / "shard-00000-of-00001.jsonl").read_text())
    later = dict(done, input="other.txt", status="failed", error="it failed since",
                 time=done["time"] + 10)
    line = journal.encode_record(later)[:-1] + ',"\\u0069nput":"f.txt"}'
    assert json.loads(line)["input"] == "f.txt" and json.loads(line)["status"] == "failed"
    (out / "_manifest" / "shard-00000-of-00002.jsonl").write_text(line + "\n")
    newest = journal.newest_records(str(out))["f.txt"][0]
    assert newest["status"] == "failed"  # what check (and resume before issue 14) reads
    again = _run_job("--input_dir", str(source), "--out_dir", str(out))
    assert again.returncode == 0, again.stderr
    manifest = json.loads((out / "_manifest" / "shard-00000-of-00001.json").read_text())
    assert [r["status"] for r in manifest["files"]] == ["ok"]  # done again, not "skipped"


def test_check_passes_a_layout_whose_ranks_ran_before_and_after_the_paths_digest(tmp_path):
    """Same root as the test above, another way in: rank 1 of 2 is rerun with today's code
    after rank 0 ran with the code of before issue 14 (a failed node run again), whose
    manifest records the full digest without "digest_of" (what check still reads, as
    "paths, sizes, errors"). Both listed the same 4 files; check fails the run."""
    from job.listing import digest, list_inputs
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for k in range(4):
        (source / f"f{k}").write_bytes(b"token %d\n" % k)
    for index in range(2):
        run = _run_job("--input_dir", str(source), "--out_dir", str(out),
                       "--distribArgs.node_rank", str(index), "--distribArgs.node_count", "2")
        assert run.returncode == 0, run.stderr
    path = out / "_manifest" / "shard-00000-of-00002.json"
    manifest = json.loads(path.read_text())
    listing = list_inputs(str(source), str(out))
    manifest["listing"] = {"files": len(listing), "digest": digest(listing), "unlisted": 0}
    path.write_text(json.dumps(manifest))  # as the job wrote it before issue 14
    check = subprocess.run([sys.executable, "-m", "job.check", "--input_dir", str(source),
                            "--out_dir", str(out)], env=clean_environ(), cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout


def test_an_integer_of_more_than_4300_digits_is_a_usage_error_not_a_traceback(tmp_path):
    """SPEC §3: a wrong value exits 2 with one clear line, no traceback. parse_scalar's fast
    path (int(text)) raises ValueError past CPython's 4,300-digit limit, as yaml.safe_load
    did before it (pre-existing; the fast path kept it): exit 1 and a traceback."""
    source = tmp_path / "in"
    source.mkdir()
    (source / "f").write_bytes(b"a\n")
    run = _run_job("--input_dir", str(source), "--out_dir", str(tmp_path / "out"),
                   "--process_count", "9" * 4301)
    assert "Traceback" not in run.stderr, run.stderr[-300:]
    assert run.returncode == 2


def test_a_tree_1100_folders_deep_is_done_and_checked(tmp_path):
    """After 036ea75 the streamed listing walks any depth, but three recursive helpers
    remain, each about 990 levels deep at most (a path of ~2.2 KB here, below PATH_MAX):
    the worker's os.makedirs of the output's folders (write_bytes, AtomicWriter: the file
    fails with "RecursionError ... posixpath:104", after its retries: loud, exit 1),
    job.listing.list_inputs (job.check: a RecursionError traceback, exit 1; and the job's
    own fallback when a folder changed while it was listed)."""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    try:
        _nested(source, 1100)
        run = _run_job("--input_dir", str(source), "--out_dir", str(out), "--process_count", "1")
        assert "RecursionError" not in run.stderr and run.returncode == 0, run.stderr[-400:]
        check = subprocess.run([sys.executable, "-m", "job.check", "--input_dir", str(source),
                                "--out_dir", str(out)], env=clean_environ(), cwd=ROOT,
                               capture_output=True, text=True, timeout=120)
        assert check.returncode == 0, (check.stdout + check.stderr)[-400:]
    finally:  # pytest's own clean-up (shutil.rmtree) recurses, once per folder
        subprocess.run(["rm", "-rf", "--", str(source), str(out)], check=True)
