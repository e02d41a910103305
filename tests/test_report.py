"""``python -m job.report OUT_DIR``: the job-wide summary of every rank's manifest, locally.

Real ranks (``python -m job`` as emulated nodes) write the manifests; the
report is run as a user runs it.
"""

from __future__ import annotations

from conftest import read_manifest, run_job, run_module

from job import report as job_report


def write_inputs(folder, count=12, poisoned=()):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        text = b"alpha beta %d\tgamma\n" % i * (1 + i % 4)
        (folder / f"f{i:02d}.txt").write_bytes(text + (b" POISON" if i in poisoned else b""))
    return folder


def run_rank(inputs, out, node_count, node_rank, *extra, expect=0):
    result = run_job("--input_dir", str(inputs), "--out_dir", str(out), "--process_count", "1",
                     "--distribArgs.node_count", str(node_count),
                     "--distribArgs.node_rank", str(node_rank), *extra)
    assert result.returncode == expect, result.stderr
    return result


def run_report(out, *extra):
    return run_module("job.report", str(out), *extra, timeout=60)


def test_every_rank_finished_is_ok_with_totals_and_the_slowest_rank(tmp_path):
    inputs, out = write_inputs(tmp_path / "in"), tmp_path / "out"
    for rank in range(3):
        run_rank(inputs, out, 3, rank)
    result = run_report(out)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "ranks: 3 of 3 finished"
    assert [line.split(":")[0] for line in lines[1:4]] == [f"  rank {r}/3" for r in range(3)]
    manifests = [read_manifest(out, f"shard-{r:05d}-of-00003")
                 for r in range(3)]
    tokens = sum(m["totals"]["tokens"] for m in manifests)
    size = sum(m["totals"]["bytes_in"] for m in manifests)
    assert f"files: 12 (12 ok, 0 skipped, 0 failed); {size:,} bytes in, {tokens:,} tokens" in lines
    slowest = max(range(3), key=lambda r: (manifests[r]["wall_seconds"], -r))
    assert any(line.startswith(f"slowest rank: {slowest} (") for line in lines)
    assert lines[-1] == "OK: 3 rank(s) finished, no file failed"


def test_the_totals_are_the_counts_the_processor_declares(tmp_path):
    inputs, out = write_inputs(tmp_path / "in"), tmp_path / "out"
    for rank in range(2):
        run_rank(inputs, out, 2, rank, "--processor", "odd_processors:Counts")
    result = run_report(out)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    data = [path.read_bytes() for path in sorted(inputs.iterdir())]
    size, lines_in = sum(map(len, data)), sum(d.count(b"\n") for d in data)
    largest = sum(map(len, data))  # each file is one range: its largest is its size
    assert (f"files: 12 (12 ok, 0 skipped, 0 failed); {size:,} bytes in, {lines_in:,} lines, "
            f"{largest:,} largest") in lines, lines
    assert "tokens" not in result.stdout


def test_a_missing_rank_and_failed_files_are_named_and_exit_1(tmp_path):
    inputs = write_inputs(tmp_path / "in", poisoned={1, 2})
    out = tmp_path / "out"
    run_rank(inputs, out, 4, 0, "--processor", "fault_processors:Poisoned",
             "--error_threshold", "-1")
    run_rank(inputs, out, 4, 1)
    run_rank(inputs, out, 4, 3)  # rank 2 never ran
    result = run_report(out)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "ranks: 3 of 4 finished"
    assert "  rank 2/4: no manifest: has not run" in lines
    assert "files: 9 (7 ok, 0 skipped, 2 failed)" in result.stdout
    assert "failed files (2):" in lines
    assert any(line.startswith("  f01.txt (rank 0): ") and "poisoned input f01.txt" in line
               for line in lines)
    assert lines[-1] == ("FAILED: 1 rank(s) without a complete manifest: 2 (not run); "
                         "2 file(s) failed")


def test_the_newest_layout_is_summed_up_and_older_ones_named(tmp_path):
    inputs, out = write_inputs(tmp_path / "in"), tmp_path / "out"
    for rank in range(4):
        run_rank(inputs, out, 4, rank)
    for rank in range(2):
        run_rank(inputs, out, 2, rank)  # resumed with 2 ranks: everything skipped
    summary = job_report.summarize(str(out))
    assert (summary.count, summary.other_layouts, summary.exit_code) == (2, [4], 0)
    assert summary.totals["skipped"] == 12
    older = job_report.summarize(str(out), count=4)
    assert [rank.state for rank in older.ranks] == ["finished"] * 4


def test_a_killed_rank_and_unreadable_bookkeeping(tmp_path):
    inputs, out = write_inputs(tmp_path / "in"), tmp_path / "out"
    run_rank(inputs, out, 2, 0)
    run_rank(inputs, out, 2, 1)
    (out / "_manifest" / "shard-00001-of-00002.json").unlink()  # as if killed before the end
    summary = job_report.summarize(str(out))
    assert [rank.state for rank in summary.ranks] == ["finished", "killed?"]
    assert summary.exit_code == 1
    (out / "_manifest" / "shard-00000-of-00002.json").write_text("{not json")
    result = run_report(out)
    assert result.returncode == 1
    assert result.stdout.splitlines()[-1] == "FAILED: 1 journal(s) or manifest(s) cannot be read"


def test_no_bookkeeping_and_bad_usage(tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_report(tmp_path / "empty")
    assert result.returncode == 1
    assert "the job has not run into this out_dir" in result.stdout
    expected = job_report.summarize(str(tmp_path / "empty"), count=5, indices=[3])
    assert [(r.index, r.state) for r in expected.ranks] == [(3, "not run")]
    result = run_report(tmp_path / "absent")
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: out_dir {str(tmp_path / 'absent')!r} is not a folder"
