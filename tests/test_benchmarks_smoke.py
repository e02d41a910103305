"""The benchmark harness works end to end (tiny inputs, one rep): ``python -m benchmarks --quick``.

Every row runs, in four ``--quick --rows ...`` runs that pytest-xdist can hand to
different workers: rows 6 (the SDK's import) and 7 (Azurite and rclone) take
seconds each, the others a second or less.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest

from benchmarks.run import ALL_ROWS

from conftest import ROOT, require

# The rows of each run. Rows 1-2 and 8-9 share the large corpus; 4 and 10 run on tmpfs too.
GROUPS = {"corpus": "1,2,8,9", "files": "3,4,5,10,11,12", "submit": "6", "blob": "7"}


def quick_run(tmp_path, corpus, rows: str, *options: str) -> str:
    """``python -m benchmarks --quick --rows ROWS``: its report, once checked that the run
    exits 0, prints the report it writes, compares nothing that FAILED, and cleans up."""
    missing = [t for t in ("sh", "find", "xargs", "tr", "od", "head", "tail") if not shutil.which(t)]
    require(not missing, f"the tr reference's tools {', '.join(missing)}")
    cache = tmp_path / "bench"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--rows", rows,
                           "--cache", str(cache), "--corpus", str(corpus),
                           "--tmpfs", str(tmp_path / "memory"), *options],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = (cache / "results.md").read_text()
    assert results in done.stdout
    assert "| metric | reference | ours | ratio | goal | met? |" in results
    for row in ALL_ROWS:  # this run's rows, and no other
        assert (f"\n| {row}. " in results) == (str(row) in rows.split(",")), row
    assert "FAILED" not in results
    assert not (cache / "scratch").exists()  # outputs are cleaned up
    assert not (tmp_path / "memory").exists()  # the tmpfs folder too, inputs and all
    return results


def test_the_runs_cover_every_row():
    rows = [int(row) for group in GROUPS.values() for row in group.split(",")]
    assert sorted(rows) == list(ALL_ROWS)


def test_quick_rows_on_the_large_corpus(tmp_path, corpus):
    results = quick_run(tmp_path, corpus, GROUPS["corpus"])
    # rows 1 and 2, against tr
    assert results.count("byte-identical to the reference's: yes") == 2
    # rows 8 and 9 (vs dd), checked against bytes.split
    assert results.count("byte-identical to the reference splitter's (bytes.split): yes") == 2


@pytest.mark.slow
def test_quick_rows_on_sets_of_files(tmp_path, corpus):
    results = quick_run(tmp_path, corpus, GROUPS["files"])
    assert "\n| 4. 200 small files (0.4 MB) on tmpfs, " in results
    assert "\n| 10. 200 tiny files (0.0 MB, 100-200 B) on tmpfs, " in results
    # twice 3 (two sizes), twice 4 and twice 10 (the cache's file system and "tmpfs")
    assert results.count("byte-identical to the reference's: yes") == 6
    assert "plans disjoint, their union the whole listing: yes" in results  # row 5
    assert "rank 7's plan holds its 2 files: yes" in results  # row 11, on 2,000 files
    assert "a size plan is too: yes" in results  # row 12


@pytest.mark.slow
def test_quick_row_of_the_submission(tmp_path, corpus):
    results = quick_run(tmp_path, corpus, GROUPS["submit"])
    assert "n/a (submit not available)" not in results  # the dry run and the SDK's import ran


@pytest.mark.slow
def test_quick_row_of_the_blob_mount(tmp_path, corpus):
    results = quick_run(tmp_path, corpus, GROUPS["blob"], "--blob-files", "40")
    # row 7 (blob mount, 40 files): Azurite and rclone, which `make test` installs, ran it
    assert "n/a (blob mount not available)" not in results
    assert "in the container after the unmount, no temporary blob: yes" in results


def test_the_copy_floor_rows_reference_is_the_reference_splitter():
    """Rows 8-9 check the job against ``benchmarks.floor.reference_output``, a faster
    spelling of ``job.tokens.split_bytes``: the same bytes."""
    import random

    from benchmarks.floor import reference_output
    from job.tokens import split_bytes
    rng = random.Random(8)
    cases = [b"", b" ", b"a", b" a", b"a ", b"\t\na  b\r\n", bytes(range(256))]
    cases += [bytes(rng.choice(b" \t\n\v\f\rab\x00\xff") for _ in range(rng.randrange(40)))
              for _ in range(500)]
    for data in cases:
        assert reference_output(data) == split_bytes(data), data


def test_what_a_user_keeps_in_the_tmpfs_folder_stays(tmp_path, corpus):
    """``--tmpfs DIR`` is the user's folder (and other runs'): a run works in its own
    ``DIR/run-PID`` and removes that, whichever rows it ran and however it ended, even
    with its cache inside ``DIR``."""
    keep = tmp_path / "keep"
    mine = [keep / "scratch" / "thesis.txt", keep / "inputs" / "small-200" / "a.txt",
            keep / "inputs" / "small-200.json", keep / "inputs" / "tiny-200.txt"]
    for path in mine:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("mine\n")
    for rows, corpus_folder in (("4,10", corpus), ("6", tmp_path / "no-corpus")):
        subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--rows", rows,
                        "--corpus", str(corpus_folder), "--cache", str(keep / "cache"),
                        "--tmpfs", str(keep)], cwd=ROOT, capture_output=True, timeout=180)
        assert all(path.read_text() == "mine\n" for path in mine), rows
        assert sorted(p.name for p in keep.iterdir()) == ["cache", "inputs", "scratch"], rows
    # the cache (here inside DIR) keeps its sets: only the run's own folder went
    assert sorted(p.name for p in (keep / "cache" / "inputs").iterdir()) == [
        "small-200", "small-200.json", "tiny-200", "tiny-200.json"]


def test_a_terminated_run_releases_its_tmpfs_folder(tmp_path, corpus):
    memory = tmp_path / "memory"
    run = subprocess.Popen([sys.executable, "-m", "benchmarks", "--quick", "--rows", "4,10",
                            "--corpus", str(corpus), "--cache", str(tmp_path / "cache"),
                            "--tmpfs", str(memory)], cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(memory.glob("run-*/inputs")) and time.monotonic() < deadline:
        time.sleep(0.01)
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 143
    assert not memory.exists()
