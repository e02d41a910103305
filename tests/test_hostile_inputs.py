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

from conftest import ROOT, clean_environ, run_job
from job import journal


#: Python's recursion limit in the deep-tree runs: a tree DEPTH folders deep (more than the
#: limit) proves the job and check take no stack frame per folder level, without the
#: seconds that a thousand-deep tree costs every path look-up.
RECURSION_LIMIT, DEPTH = 250, 300


def _limited(module: str, *args: str) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` (and the workers it forks) under :data:`RECURSION_LIMIT`."""
    code = (f"import runpy, sys; sys.setrecursionlimit({RECURSION_LIMIT}); "
            f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)")
    return subprocess.run([sys.executable, "-c", code, *args], env=clean_environ(), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _run_job(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_job(*args, timeout=timeout)


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


def test_a_tree_deeper_than_the_recursion_limit_is_done_and_checked(tmp_path):
    """The streamed walk once took two stack frames per folder level (walk -> _runs ->
    walk): every rank died of RecursionError, before any file, at about 490 levels, where
    the listing before it reached about 990 (one frame a level). The full listing, the
    creation of the output's folders (os.makedirs) and so job.check recursed too. Each
    now loops: a tree deeper than the recursion limit is done and checked."""
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    _nested(source, DEPTH)
    run = _limited("job", "--input_dir", str(source), "--out_dir", str(out),
                   "--process_count", "1")
    assert "RecursionError" not in run.stderr and run.returncode == 0, run.stderr[-600:]
    manifest = json.loads((out / "_manifest" / "shard-00000-of-00001.json").read_text())
    assert manifest["totals"]["ok"] == 2
    check = _limited("job.check", "--input_dir", str(source), "--out_dir", str(out))
    assert check.returncode == 0, (check.stdout + check.stderr)[-600:]


def test_a_rank_that_listed_again_records_what_its_peers_record(tmp_path, monkeypatch, caplog):
    """A file lands in input_dir while rank 0 of 2 walks it (an upstream stage still
    writing): rank 0's re-read finds its folder changed and lists again, whole
    (job.run.list_shard's fallback); rank 1 walks the new listing afterwards. The fallback
    once recorded a digest of "paths, sizes, errors" where its contiguous peers record one
    of "paths", and job.check failed the right run: "ranks saw different inputs"."""
    from job import config as config_module, listing, outline, ranks, run
    source = tmp_path / "in"
    (source / "a").mkdir(parents=True)
    for k in range(10):
        (source / "a" / str(k)).write_bytes(b"token %d\n" % k)
    job_config = config_module.load(input_dir=str(source), out_dir=str(tmp_path / "out"))
    walk = outline.outline
    monkeypatch.setattr(outline, "KEPT_NAMES", 0)  # as in a tree too large to keep its names

    def walk_then_a_file_lands(*args, **kwargs):
        walked = walk(*args, **kwargs)
        (source / "a" / "new").write_bytes(b"new token\n")
        return walked

    monkeypatch.setattr(outline, "outline", walk_then_a_file_lands)
    first, files0 = run.list_shard(job_config, ranks.Rank(node_rank=0, node_count=2), [], set())
    assert "listing it again, whole" in caplog.text
    monkeypatch.setattr(outline, "outline", walk)
    second, files1 = run.list_shard(job_config, ranks.Rank(node_rank=1, node_count=2), [], set())
    assert first == second and first.digest_of == listing.PATHS_DIGEST
    assert [f.rel for f in files0 + files1] == sorted(
        f"a/{name}" for name in [*map(str, range(10)), "new"])


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
