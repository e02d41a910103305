"""The benchmark harness works end to end (tiny inputs, one rep): ``python -m benchmarks --quick``."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, require


@pytest.mark.slow
def test_quick_run_prints_every_row_and_checks_outputs(tmp_path, corpus):
    missing = [t for t in ("sh", "find", "xargs", "tr", "od", "head", "tail") if not shutil.which(t)]
    require(not missing, f"the tr reference's tools {', '.join(missing)}")
    cache = tmp_path / "bench"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--cache", str(cache),
                           "--corpus", str(corpus), "--tmpfs", str(tmp_path / "memory"),
                           "--blob-files", "40"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = (cache / "results.md").read_text()
    assert results in done.stdout
    assert "| metric | reference | ours | ratio | goal | met? |" in results
    for row in ("1.", "2.", "3.", "4.", "5.", "6.", "7.", "8.", "9.", "10."):
        assert f"\n| {row} " in results, row
    assert "\n| 4. 200 small files (0.4 MB) on tmpfs, " in results
    assert "\n| 10. 200 tiny files (0.0 MB, 100-200 B) on tmpfs, " in results
    # rows 1, 2, twice 3 (two sizes), twice 4 and twice 10 (the cache's file system and "tmpfs")
    assert results.count("byte-identical to the reference's: yes") == 8
    # rows 8 and 9 (vs dd), checked against bytes.split
    assert results.count("byte-identical to the reference splitter's (bytes.split): yes") == 2
    # row 7 (blob mount, 40 files): Azurite and rclone, which `make test` installs, ran it
    assert "n/a (blob mount not available)" not in results
    assert "in the container after the unmount, no temporary blob: yes" in results
    assert "FAILED" not in results
    assert not (cache / "scratch").exists()  # outputs are cleaned up
    assert not (tmp_path / "memory" / "scratch").exists()


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
