"""One folder under two names (bind mounts, as two mounts of one blob container give):
no output may land on an input, and no output is listed as an input.

Each test runs the job inside its own mount namespace (``unshare -m``), so its bind
mounts vanish with it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from conftest import ROOT, clean_environ, read_manifest, reference, require


def bind_mounts_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind / /mnt"],
                           capture_output=True)
    return probe.returncode == 0


def run_with_binds(binds, *args) -> subprocess.CompletedProcess:
    """``python -m job ARGS`` in a mount namespace where each ``(source, target)`` is bound."""
    require(bind_mounts_work(), "root and a mount namespace, for bind mounts")
    mounts = " && ".join(f"mount --bind '{source}' '{target}'" for source, target in binds)
    job = " ".join([sys.executable, "-m", "job", *(f"'{a}'" for a in args)])
    return subprocess.run(["unshare", "-m", "sh", "-c", f"{mounts} && {job}"],
                          env=clean_environ(), cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


manifest = read_manifest


def test_an_input_folder_bound_inside_out_dir_is_never_written(tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    (source / "sub").mkdir(parents=True)
    (source / "top.txt").write_bytes(b"top words\n")
    (source / "sub" / "a.txt").write_bytes(b"x y\n")
    (out / "sub").mkdir(parents=True)
    result = run_with_binds([(source / "sub", out / "sub")],
                            "--input_dir", source, "--out_dir", out, "--max_retries", "0")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert (source / "sub" / "a.txt").read_bytes() == b"x y\n"  # the input, untouched
    records = {r["input"]: r for r in manifest(out)["files"]}
    assert records["sub/a.txt"]["status"] == "failed"
    assert "reached through a mount or link" in records["sub/a.txt"]["error"]
    assert (out / "top.txt").read_bytes() == reference(b"top words\n")


def test_input_dir_inside_out_dir_under_another_name_is_refused(tmp_path):
    out, alias = tmp_path / "o", tmp_path / "alias"
    (out / "data").mkdir(parents=True)
    (out / "data" / "b.txt").write_bytes(b"keep me\n")
    alias.mkdir()
    result = run_with_binds([(out, alias)],
                            "--input_dir", alias / "data", "--out_dir", out)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is inside out_dir" in lines[0], result.stderr
    assert (out / "data" / "b.txt").read_bytes() == b"keep me\n"
    assert not (out / "_manifest").exists()


def test_out_dir_bound_inside_input_dir_is_not_listed(tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    (source / "mirror").mkdir(parents=True)
    (source / "a.txt").write_bytes(b"alpha beta\n")
    out.mkdir()
    (out / "old.txt").write_bytes(b"an output of an earlier run\n")
    result = run_with_binds([(out, source / "mirror")],
                            "--input_dir", source, "--out_dir", out)
    assert result.returncode == 0, result.stderr
    assert [r["input"] for r in manifest(out)["files"]] == ["a.txt"]
    assert not (out / "mirror").exists()


def test_an_input_folder_bound_where_an_output_folder_will_be_made_is_refused(tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    (source / "a").mkdir(parents=True)
    (source / "b" / "new").mkdir(parents=True)
    (source / "a" / "1.txt").write_bytes(b"a1\n")
    (source / "b" / "new" / "x.txt").write_bytes(b"x y\n")
    (out / "b").mkdir(parents=True)
    result = run_with_binds([(source / "a", out / "b")],
                            "--input_dir", source, "--out_dir", out, "--max_retries", "0")
    assert result.returncode == 1, result.stderr
    assert sorted(p.name for p in (source / "a").iterdir()) == ["1.txt"]  # nothing made there
    records = {r["input"]: r for r in manifest(out)["files"]}
    assert records["b/new/x.txt"]["status"] == "failed"
    assert "reached through a mount or link" in records["b/new/x.txt"]["error"]


def test_input_dir_bound_from_inside_out_dir_is_refused(tmp_path):
    out, view = tmp_path / "out", tmp_path / "view"
    (out / "data" / "data" / "zz").mkdir(parents=True)
    (out / "data" / "data" / "zz" / "f.txt").write_bytes(b"q w\n")
    view.mkdir()
    result = run_with_binds([(out / "data", view)], "--input_dir", view, "--out_dir", out)
    assert result.returncode == 2, result.stderr
    assert "is inside out_dir" in result.stderr and "Traceback" not in result.stderr
    assert not (out / "_manifest").exists()  # nothing written
    assert not (out / "data" / "zz").exists()  # where the output would have gone: in the inputs
    assert (out / "data" / "data" / "zz" / "f.txt").read_bytes() == b"q w\n"


def test_a_journals_folder_bound_to_an_input_folder_is_refused(tmp_path):
    source, out = tmp_path / "in", tmp_path / "out"
    (source / "sub" / "partial-00000-of-00001").mkdir(parents=True)
    (source / "sub" / "partial-00000-of-00001" / "data.txt").write_bytes(b"keep\n")
    (source / "sub" / "shard-00000-of-00001.json").write_bytes(b"precious\n")
    (source / "top.txt").write_bytes(b"x\n")
    (out / "_manifest").mkdir(parents=True)
    result = run_with_binds([(source / "sub", out / "_manifest")],
                            "--input_dir", source, "--out_dir", out)
    assert result.returncode == 2, result.stderr
    assert "under another name" in result.stderr and "Traceback" not in result.stderr
    assert (source / "sub" / "partial-00000-of-00001" / "data.txt").read_bytes() == b"keep\n"
    assert (source / "sub" / "shard-00000-of-00001.json").read_bytes() == b"precious\n"
    assert sorted(p.name for p in (source / "sub").iterdir()) == [
        "partial-00000-of-00001", "shard-00000-of-00001.json"]
