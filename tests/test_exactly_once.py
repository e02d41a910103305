"""Every file exactly once, nothing lost, in the workflows users really run (issue 9).

Real runs of ``python -m job`` in subprocesses on real files: rank layouts that
change between runs, chained stages, a changed processor, names that are not
UTF-8, processors that return odd values, folders that cannot be read.
"""

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import (ROOT, clean_environ, journal_records, newest_records, read_manifest,
                      reference, run_job)


def make_inputs(folder, count=15):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"f{i:02d}.txt").write_bytes(b"word%d  other\tthird\n" % i * (i + 1))
    return folder


records, newest = journal_records, newest_records


def manifest_statuses(out, shard="shard-00000-of-00001"):
    """The statuses of the last run of ``shard``, per input."""
    return {r["input"]: r["status"] for r in read_manifest(out, shard)["files"]}


def statuses(out, shard):
    return {r["input"]: r["status"] for name, r in records(out) if name.startswith(shard)}


def run_layout(source, out, nodes, local_size=1, *extra):
    for node in range(nodes):
        for local in range(local_size):
            result = run_job("--input_dir", str(source), "--out_dir", str(out),
                             "--process_count", "1", "--distribArgs.node_count", str(nodes),
                             "--distribArgs.node_rank", str(node),
                             "--distribArgs.local_size", str(local_size),
                             "--distribArgs.local_rank", str(local), *extra)
            assert result.returncode == 0, result.stderr


def assert_exact(source, out):
    for path in sorted(source.iterdir()):
        assert (out / path.name).read_bytes() == reference(path.read_bytes()), path.name


def all_statuses(out, count):
    """The statuses of the newest run's ``count`` manifests, per input."""
    found = {}
    for path in sorted((out / "_manifest").glob(f"shard-*-of-{count:05d}.json")):
        for record in json.loads(path.read_bytes())["files"]:
            assert record["input"] not in found, "a file in two manifests of one layout"
            found[record["input"]] = record["status"]
    return found


@pytest.mark.slow
def test_the_newest_record_wins_when_the_rank_layout_changes(tmp_path):
    source, out = make_inputs(tmp_path / "in"), tmp_path / "out"
    run_layout(source, out, 5)
    assert set(all_statuses(out, 5).values()) == {"ok"}
    run_layout(source, out, 3)
    assert set(all_statuses(out, 3).values()) == {"skipped"}
    # f13 belongs to shard 4 of 5 and to shard 2 of 3: edit it, redo it in the 3-rank layout
    time.sleep(0.01)
    (source / "f13.txt").write_bytes(b"edited  text\n")
    run_layout(source, out, 3)
    assert all_statuses(out, 3)["f13.txt"] == "ok"
    # the stale 5-rank record (old size) must not beat the newer 3-rank one
    run_layout(source, out, 3, 2)
    after = all_statuses(out, 6)
    assert len(after) == 15 and set(after.values()) == {"skipped"}, after
    run_layout(source, out, 3)
    assert set(all_statuses(out, 3).values()) == {"skipped"}
    assert_exact(source, out)


def test_a_stale_ok_record_does_not_keep_an_old_output(tmp_path):
    """5 ranks do f13; 3 ranks redo it after an edit; the edit is undone: the 5-rank record
    matches the input again, but the newest record (3 ranks, other size) wins: redo."""
    source, out = make_inputs(tmp_path / "in"), tmp_path / "out"
    original = (source / "f13.txt").read_bytes()
    stamp = (source / "f13.txt").stat().st_mtime_ns
    run_layout(source, out, 5)
    (source / "f13.txt").write_bytes(b"edited\n")
    run_layout(source, out, 3)
    (source / "f13.txt").write_bytes(original)
    os.utime(source / "f13.txt", ns=(stamp, stamp))  # exactly as the 5-rank record says
    run_layout(source, out, 5)
    assert all_statuses(out, 5)["f13.txt"] == "ok"
    assert_exact(source, out)


def test_another_processor_redoes_every_file(tmp_path):
    source, out = make_inputs(tmp_path / "in", 4), tmp_path / "out"
    assert run_job("--input_dir", str(source), "--out_dir", str(out)).returncode == 0
    upper = run_job("--input_dir", str(source), "--out_dir", str(out),
                    "--processor", "odd_processors:Upper")
    assert upper.returncode == 0, upper.stderr
    assert set(statuses(out, "shard-00000").values()) == {"ok"}
    assert (out / "f00.txt").read_bytes() == reference((source / "f00.txt").read_bytes()).upper()
    assert {r["processor"] for r in newest(out).values()} == {"odd_processors:Upper@1"}  # inherited
    again = run_job("--input_dir", str(source), "--out_dir", str(out))
    assert again.returncode == 0
    assert set(statuses(out, "shard-00000").values()) == {"ok"}
    assert {r["processor"] for r in newest(out).values()} == {"job.tokens:TokenSplitter@1"}
    assert_exact(source, out)


def test_a_new_processor_version_redoes_every_file(tmp_path):
    source, out = make_inputs(tmp_path / "in", 3), tmp_path / "out"
    first = run_job("--input_dir", str(source), "--out_dir", str(out),
                    "--processor", "odd_processors:Versioned")
    assert first.returncode == 0, first.stderr
    second = run_job("--input_dir", str(source), "--out_dir", str(out),
                     "--processor", "odd_processors:Versioned",
                     env=clean_environ(FAULT_PROCESSOR_VERSION="2"))
    assert second.returncode == 0, second.stderr
    assert set(statuses(out, "shard-00000").values()) == {"ok"}
    assert {r["processor"] for r in newest(out).values()} == {"odd_processors:Versioned@2"}


def test_chained_stages_leave_the_earlier_stage_alone(tmp_path):
    source = make_inputs(tmp_path / "raw", 5)
    stage1, stage2 = tmp_path / "stage1", tmp_path / "stage2"
    assert run_job("--input_dir", str(source), "--out_dir", str(stage1)).returncode == 0
    (stage1 / "_manifest" / "partial-00000-of-00001").mkdir()
    (stage1 / "_manifest" / "partial-00000-of-00001" / "note.txt").write_bytes(b"keep")
    before = {p: p.read_bytes() for p in (stage1 / "_manifest").rglob("*") if p.is_file()}
    result = run_job("--input_dir", str(stage1), "--out_dir", str(stage2), "--process_count", "2")
    assert result.returncode == 0, result.stderr
    assert {p: p.read_bytes() for p in (stage1 / "_manifest").rglob("*") if p.is_file()} == before
    journal = [r for _, r in records(stage2)]
    assert sorted(r["input"] for r in journal) == [f"f{i:02d}.txt" for i in range(5)]
    assert not (stage2 / "_manifest" / "shard-00000-of-00001.jsonl.jsonl").exists()
    manifest = json.loads((stage2 / "_manifest" / "shard-00000-of-00001.json").read_bytes())
    assert manifest["totals"]["ok"] == 5 and manifest["listing"]["files"] == 5
    again = run_job("--input_dir", str(stage1), "--out_dir", str(stage2))
    assert again.returncode == 0
    assert set(manifest_statuses(stage2).values()) == {"skipped"}


def test_names_that_are_not_utf8_are_processed_and_journaled(tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    names = [b"caf\xe9.txt", b"\xff\xfe.txt", "日本語.txt".encode(), b"plain.txt"]
    for name in names:
        with open(os.path.join(os.fsencode(source), name), "wb") as stream:
            stream.write(b"some  words\there " + name + b"\n")
    for attempt in ("ok", "skipped"):  # the rerun reads the journal back
        result = run_job("--input_dir", str(source), "--out_dir", str(out), "--process_count", "2")
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert set(manifest_statuses(out).values()) == {attempt}
    for name in names:
        data = open(os.path.join(os.fsencode(source), name), "rb").read()
        assert open(os.path.join(os.fsencode(out), name), "rb").read() == reference(data)
    journaled = {os.fsencode(r["input"]) for r in newest(out).values()}
    assert journaled == set(names)
    manifest = (out / "_manifest" / "shard-00000-of-00001.json").read_bytes()
    manifest.decode("utf-8")  # the manifest is valid UTF-8 JSON
    assert {os.fsencode(r["input"]) for r in json.loads(manifest)["files"]} == set(names)


@pytest.mark.parametrize("value, error", [
    ("{'tokens': 'many'}", "tokens='many'"),
    ("{'tokens': float('nan')}", "tokens=nan"),
    ("{'tokens': -1}", "tokens=-1"),
    ("{'tokens': True}", "tokens=True"),
    ("[1, 2]", "returned list"),
    ("{1, 2}", "returned set"),
    ("'done'", "returned str"),
    ("object()", "returned object"),
    ("{'tokens': 10**5000}", "tokens=a number too large"),
    ("{'tokens': 2**63}", "tokens=9223372036854775808"),
])
def test_whatever_a_processor_returns_the_rank_finishes(tmp_path, value, error):
    source, out = make_inputs(tmp_path / "in", 3), tmp_path / "out"
    result = run_job("--input_dir", str(source), "--out_dir", str(out), "--process_count", "2",
                     "--processor", "odd_processors:Returns", "--max_retries", "0",
                     env=clean_environ(FAULT_RETURN=value))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    manifest = read_manifest(out)
    assert manifest["totals"]["failed"] == 3
    assert all(error in r["error"] for r in manifest["files"]), manifest["files"]


@pytest.mark.parametrize("value", ["None", "{'tokens': 3, 'mine': [1, {2}]}", "{}"])
def test_usable_return_values_are_recorded(tmp_path, value):
    source, out = make_inputs(tmp_path / "in", 3), tmp_path / "out"
    result = run_job("--input_dir", str(source), "--out_dir", str(out),
                     "--processor", "odd_processors:Returns",
                     env=clean_environ(FAULT_RETURN=value))
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(out)
    tokens = 3 if "3" in value else None
    assert [r["tokens"] for r in manifest["files"]] == [tokens] * 3


def test_a_path_object_from_output_path_is_a_path(tmp_path):
    source, out = make_inputs(tmp_path / "in", 3), tmp_path / "out"
    result = run_job("--input_dir", str(source), "--out_dir", str(out),
                     "--processor", "odd_processors:PathOutput")
    assert result.returncode == 0, result.stderr
    assert sorted(r["output"] for _, r in records(out)) == ["f00.txt", "f01.txt", "f02.txt"]
    again = run_job("--input_dir", str(source), "--out_dir", str(out),
                    "--processor", "odd_processors:PathOutput")
    assert set(manifest_statuses(out).values()) == {"skipped"}, again.stderr


def test_an_output_path_onto_an_input_fails_that_file(tmp_path):
    source, out = make_inputs(tmp_path / "in", 2), tmp_path / "out"
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    result = run_job("--input_dir", str(source), "--out_dir", str(out),
                     "--processor", "odd_processors:InPlace", "--error_threshold", "-1")
    assert result.returncode == 0, result.stderr
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before
    assert all("inside input_dir" in r["error"] for _, r in records(out))


def test_a_linked_output_folder_onto_the_inputs_fails_its_files(tmp_path):
    source, out = make_inputs(tmp_path / "in", 1), tmp_path / "out"
    (source / "sub").mkdir()
    (source / "sub" / "x.txt").write_bytes(b"keep  me\n")
    out.mkdir()
    os.symlink(source / "sub", out / "sub")  # out/sub/x.txt is the input sub/x.txt
    result = run_job("--input_dir", str(source), "--out_dir", str(out), "--error_threshold", "-1")
    assert result.returncode == 0, result.stderr
    assert (source / "sub" / "x.txt").read_bytes() == b"keep  me\n"
    assert statuses(out, "shard-00000") == {"f00.txt": "ok", "sub/x.txt": "failed"}


def test_many_failures_are_counted_not_each_logged(tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for i in range(300):
        (source / f"bad{i:03d}.txt").write_bytes(b"x")
    result = run_job("--input_dir", str(source), "--out_dir", str(out),
                     "--processor", "odd_processors:Raises", "--max_retries", "0",
                     "--process_count", "2", "--error_threshold", "-1")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) < 40, f"{len(lines)} log lines"
    assert "290 more failed files" in result.stderr
    manifest = read_manifest(out)
    assert manifest["totals"]["failed"] == 300


def _without_root_file_access():
    """In the child: drop root's power to read any file (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH)
    from the capability bounding set, so that the program it execs obeys permission bits."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_an_unreadable_folder_is_recorded_as_failed(tmp_path):
    """Recorded against error_threshold, never skipped in silence."""
    source, out = make_inputs(tmp_path / "in", 3), tmp_path / "out"
    (source / "locked").mkdir()
    (source / "locked" / "hidden.txt").write_bytes(b"never seen\n")
    (source / "locked").chmod(0)
    drop = _without_root_file_access if os.geteuid() == 0 else None
    command = [sys.executable, "-m", "job", "--input_dir", str(source), "--out_dir", str(out)]
    try:
        run = subprocess.run(command, env=clean_environ(), cwd=ROOT, capture_output=True,
                             text=True, timeout=60, preexec_fn=drop)
        assert run.returncode == 1, run.stderr
        assert "locked/: cannot list the folder: Permission denied" in run.stderr
        manifest = read_manifest(out)
        failed = [r for r in manifest["files"] if r["status"] == "failed"]
        assert [r["input"] for r in failed] == ["locked/"]
        assert manifest["listing"]["unlisted"] == 1 and manifest["listing"]["files"] == 4
        tolerated = subprocess.run(command + ["--error_threshold", "1"], env=clean_environ(),
                                   cwd=ROOT, capture_output=True, text=True, timeout=60,
                                   preexec_fn=drop)
        assert tolerated.returncode == 0, tolerated.stderr
        assert "locked/" in tolerated.stderr  # a failure again: never skipped
    finally:
        (source / "locked").chmod(0o755)


def test_a_shard_that_moves_keeps_the_newest_records_of_the_files_it_left(tmp_path):
    """Version 2 redoes files in shard 0 of 2; the shard then moves (other files listed); a
    version 1 run must redo them again, not take an older version 1 record for the newest."""
    source, out = make_inputs(tmp_path / "in", 6), tmp_path / "out"
    one = clean_environ(FAULT_PROCESSOR_VERSION="1")
    two = clean_environ(FAULT_PROCESSOR_VERSION="2")
    common = ["--input_dir", str(source), "--out_dir", str(out), "--process_count", "1",
              "--processor", "odd_processors:Versioned"]
    assert run_job(*common, env=one).returncode == 0
    node0 = ["--distribArgs.node_count", "2", "--distribArgs.node_rank", "0"]
    assert run_job(*common, *node0, env=two).returncode == 0  # f00..f02 made by version 2
    moved = run_job(*common, *node0, "--pattern", "f0[345].txt", env=two)
    assert moved.returncode == 0, moved.stderr
    last = run_job(*common, env=one)
    assert last.returncode == 0, last.stderr
    # f00..f04 were last made by version 2 (f03, f04 by the moved shard): redone; f05 not
    assert manifest_statuses(out) == {"f00.txt": "ok", "f01.txt": "ok", "f02.txt": "ok",
                                      "f03.txt": "ok", "f04.txt": "ok", "f05.txt": "skipped"}


def test_files_added_between_runs_are_not_done_twice(tmp_path):
    source, out = make_inputs(tmp_path / "in", 6), tmp_path / "out"
    run_layout(source, out, 2)
    (source / "a0.txt").write_bytes(b"new  file\n")
    (source / "a1.txt").write_bytes(b"another\tnew file\n")
    run_layout(source, out, 2)  # f02 moves from rank 0 to rank 1 unchanged: skipped there
    shard1 = manifest_statuses(out, "shard-00001-of-00002")
    assert shard1 == {"f02.txt": "skipped", "f03.txt": "skipped", "f04.txt": "skipped",
                      "f05.txt": "skipped"}
    check = subprocess.run([sys.executable, "-m", "job.check", "--input_dir", str(source),
                            "--out_dir", str(out)], env=clean_environ(), cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout


@pytest.mark.parametrize("exception", ["SystemExit(3)", "KeyboardInterrupt()",
                                       "BaseException('odd')"])
def test_a_processor_that_raises_a_base_exception_fails_its_file(tmp_path, exception):
    source, out = make_inputs(tmp_path / "in", 2), tmp_path / "out"
    result = run_job("--input_dir", str(source), "--out_dir", str(out), "--max_retries", "0",
                     "--processor", "odd_processors:RaisesBase",
                     env=clean_environ(FAULT_RAISE=exception))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    name = exception.partition("(")[0]
    errors = {r["error"] for r in newest(out).values()}
    assert len(errors) == 1 and errors.pop().startswith(name), result.stderr


def test_an_empty_output_path_fails_its_file(tmp_path):
    source, out = make_inputs(tmp_path / "in", 2), tmp_path / "out"
    result = run_job("--input_dir", str(source), "--out_dir", str(out), "--max_retries", "0",
                     "--processor", "odd_processors:EmptyOutput")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert all("output_path() returned an empty path" in r["error"]
               for r in newest(out).values())


def test_a_top_level_input_named_like_the_journals_folder_fails_clearly(tmp_path):
    source, out = make_inputs(tmp_path / "in", 2), tmp_path / "out"
    (source / "_manifest").write_bytes(b"a file, not the folder\n")
    result = run_job("--input_dir", str(source), "--out_dir", str(out), "--error_threshold", "1")
    assert result.returncode == 0, result.stderr
    record = newest(out)["_manifest"]
    assert record["status"] == "failed" and "the name _manifest is reserved" in record["error"]
    assert (out / "_manifest").is_dir()


def test_ctrl_c_while_the_run_is_being_prepared_is_one_line(tmp_path):
    source, out = make_inputs(tmp_path / "in", 2), tmp_path / "out"
    marker = tmp_path / "building"
    process = subprocess.Popen([sys.executable, "-m", "job", "--input_dir", str(source),
                                "--out_dir", str(out), "--processor", "odd_processors:SlowStart"],
                               env=clean_environ(SLOW_START_MARKER=str(marker)), cwd=ROOT,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)  # until the processor is being built, which takes 30 s
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == [
        "error: interrupted by SIGINT before any file was processed"], stderr


def test_a_manifest_left_half_written_is_removed_by_the_next_run_of_its_rank(tmp_path):
    """A rank killed while writing its manifest leaves ``shard-….json.PID.partial``."""
    source, out = make_inputs(tmp_path / "in", 4), tmp_path / "out"
    assert run_job("--input_dir", str(source), "--out_dir", str(out)).returncode == 0
    own = out / "_manifest" / "shard-00000-of-00001.json.424242.partial"
    other = out / "_manifest" / "shard-00001-of-00002.json.424243.partial"
    for left in (own, other):
        left.write_bytes(b'{"files":[{"input":"f0')
    result = run_job("--input_dir", str(source), "--out_dir", str(out))
    assert result.returncode == 0, result.stderr
    assert not own.exists() and other.exists()  # another shard's is its own rank's business
    assert "removed the temporary manifest" in result.stderr
    assert_exact(source, out)


def test_temporary_outputs_of_a_killed_run_of_another_layout_are_removed(tmp_path):
    """Rank 2 of 5 was killed writing f06; no rank of 5 runs again, the 3-rank layout takes
    f06 (rank 1 of 3) and removes what the dead writer left. Other tags are not its own."""
    source, out = make_inputs(tmp_path / "in"), tmp_path / "out"
    run_layout(source, out, 5)
    (source / "f06.txt").write_bytes(b"changed since\n")  # so that f06 is done again
    journal = out / "_manifest" / "shard-00002-of-00005.jsonl"
    with open(journal, "ab") as stream:  # the killed run's: newer than its manifest
        stream.write(journal.read_bytes().splitlines(keepends=True)[0])
    os.utime(out / "_manifest" / "shard-00002-of-00005.json", (1, 1))
    orphan = out / ".f06.txt.partial-2of5-999999-0"
    foreign = out / ".f06.txt.partial-mine-999999-0"  # not a rank's tag: not provably dead
    for left in (orphan, foreign):
        left.write_bytes(b"half")
    run_layout(source, out, 3)
    assert not orphan.exists() and foreign.exists()
    assert (out / "f06.txt").read_bytes() == reference(b"changed since\n")
    assert_exact(source, out)


def test_range_parts_of_a_killed_run_of_another_layout_are_removed(tmp_path):
    """A rank killed while it split a large file in byte ranges leaves its parts folder
    ``_manifest/partial-IIIII-of-NNNNN`` (hundreds of MB for a large file); the next run
    of the same rank removes it, but when the out_dir is resumed with another layout no
    run of that rank comes. (An attack found a SIGKILLed 1-rank run's 184 MB of parts left
    for good after a 2-rank run finished, job.check saying OK.) This layout's other ranks'
    parts are theirs: they may be running."""
    source, out = make_inputs(tmp_path / "in"), tmp_path / "out"
    run_layout(source, out, 1)
    os.utime(out / "_manifest" / "shard-00000-of-00001.json", (1, 1))  # killed: journal newer
    dead = out / "_manifest" / "partial-00000-of-00001"
    sibling = out / "_manifest" / "partial-00001-of-00002"  # rank 1 of 2: maybe running
    for folder in (dead, sibling):
        folder.mkdir()
        (folder / "range-0-1-of-3.part").write_bytes(b"tokens\n" * 1000)
    half = out / "_manifest" / "shard-00000-of-00001.json.424242.partial"  # so with a manifest
    half.write_bytes(b'{"files":[{"input":"f0')
    result = run_job("--input_dir", str(source), "--out_dir", str(out),
                     "--distribArgs.node_count", "2", "--distribArgs.node_rank", "0")
    assert result.returncode == 0, result.stderr
    assert not dead.exists() and sibling.exists() and not half.exists()
