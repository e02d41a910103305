"""The compiled kernel: built once per cache, shared by ranks, and never required."""

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from job import native

from conftest import ROOT, assert_outputs_exact, clean_environ, require, run_job

BUILD = "from job import native; print(native.build())"


def cached(path):
    """What the cache holds for the library ``path``: it and its checksum, nothing else."""
    return sorted([path.name, native.checksum_path(path).name])


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty kernel cache, and ``native.kernel`` not yet decided in this process."""
    monkeypatch.setenv("AMLSHARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AMLSHARD_NATIVE", raising=False)
    monkeypatch.delenv("CC", raising=False)
    native.kernel.cache_clear()
    yield tmp_path / "cache"
    native.kernel.cache_clear()


def test_builds_once_into_the_cache(fresh):
    require(shutil.which("cc") is not None, "a C compiler (cc)")
    path = native.build()
    assert path.parent == fresh and path.name.startswith("squeeze-") and path.suffix == ".so"
    assert sorted(os.listdir(fresh)) == cached(path)  # no temporary file left
    stamp = path.stat().st_mtime_ns
    assert native.build() == path and path.stat().st_mtime_ns == stamp  # cached, not rebuilt
    assert native.kernel() is not None


def test_ranks_that_start_together_build_one_library(fresh):
    require(shutil.which("cc") is not None, "a C compiler (cc)")
    starts = [subprocess.Popen([sys.executable, "-c", BUILD], cwd=ROOT, stdout=subprocess.PIPE,
                               text=True, env=clean_environ(AMLSHARD_CACHE=str(fresh)))
              for _ in range(4)]
    paths = {start.communicate(timeout=120)[0].strip() for start in starts}
    assert all(start.returncode == 0 for start in starts)
    assert len(paths) == 1 and sorted(os.listdir(fresh)) == cached(Path(paths.pop()))


@pytest.mark.parametrize("setting, reason", [
    ({"CC": "/nonexistent/cc"}, "no C compiler '/nonexistent/cc' on PATH"),
    ({"CC": "false"}, "failed (exit 1)"),
    ({"AMLSHARD_CACHE": "/proc/amlshard-cache"}, "cannot write the cache folder"),
])
def test_without_a_usable_compiler_the_python_kernel_is_used(fresh, monkeypatch, caplog,
                                                             setting, reason):
    for name, value in setting.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(native.Unavailable, match=reason.replace("(", r"\(").replace(")", r"\)")):
        native.build()
    with caplog.at_level(logging.WARNING, logger="job"):
        assert native.kernel() is None
        assert native.kernel() is None  # decided once
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith("token kernel: pure Python")
    assert reason in caplog.records[0].getMessage()


def test_turned_off_quietly(fresh, monkeypatch, caplog):
    monkeypatch.setenv("AMLSHARD_NATIVE", "0")
    with caplog.at_level(logging.WARNING, logger="job"):
        assert native.kernel() is None
    assert caplog.records == [] and not fresh.exists()


@pytest.mark.parametrize("setting", [{"CC": "/nonexistent/cc"}, {"AMLSHARD_NATIVE": "0"}, {}])
def test_the_job_is_byte_exact_with_either_kernel(tmp_path, corpus, setting):
    require(bool(setting) or shutil.which("cc") is not None, "a C compiler (cc)")
    environ = clean_environ(AMLSHARD_CACHE=str(tmp_path / "cache"), **setting)
    result = run_job("--input_dir", str(corpus), "--out_dir", str(tmp_path / "out"),
                     "--process_count", "2", env=environ)
    assert result.returncode == 0, result.stderr
    assert_outputs_exact(corpus, tmp_path / "out")
    warned = [line for line in result.stderr.splitlines() if "token kernel" in line]
    if "CC" in setting:
        assert len(warned) == 1 and "no C compiler" in warned[0]  # once, not once per worker
    else:
        assert warned == []
    built = os.listdir(tmp_path / "cache") if (tmp_path / "cache").exists() else []
    assert len(built) == (0 if setting else 2)  # the library and its checksum


KERNEL = """
import ctypes
from job import native
from job.tokens import split_bytes
squeeze = native.kernel()
if squeeze is None:
    print("pure Python")
else:
    sample = b" a\\vb\\tc\\x1c\\x85\\xa0d \\r\\n"
    out = ctypes.create_string_buffer(len(sample))
    state, count = ctypes.c_int(1), ctypes.c_size_t(0)
    size = squeeze(sample, len(sample), out, ctypes.byref(state), ctypes.byref(count))
    print("compiled", out.raw[:size] == split_bytes(sample))
"""


def _kernel_in_a_fresh_process(cache, count=1):
    starts = [subprocess.Popen([sys.executable, "-c", KERNEL], cwd=ROOT, stdout=subprocess.PIPE,
                               text=True, env=clean_environ(AMLSHARD_CACHE=str(cache)))
              for _ in range(count)]
    answers = [start.communicate(timeout=120)[0].strip() for start in starts]
    assert all(start.returncode == 0 for start in starts)
    return answers


@pytest.mark.parametrize("content", [b"", b"\x7fELF\x02\x01garbage", b"not a library at all\n"])
@pytest.mark.parametrize("ranks", [1, 4])
def test_a_corrupt_cached_kernel_is_built_again(fresh, content, ranks):
    require(shutil.which("cc") is not None, "a C compiler (cc)")
    path = native.build()
    path.write_bytes(content)
    assert _kernel_in_a_fresh_process(fresh, ranks) == ["compiled True"] * ranks
    assert sorted(os.listdir(fresh)) == cached(path)  # rebuilt in place, no temporary left
    assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x7fELF"
    assert _kernel_in_a_fresh_process(fresh) == ["compiled True"]


def test_a_cached_kernel_that_splits_wrongly_is_built_again(fresh, tmp_path):
    require(shutil.which("cc") is not None, "a C compiler (cc)")
    path = native.build()
    wrong = tmp_path / "wrong.c"  # a library that loads, but takes \v for a token byte
    wrong.write_text(native.SOURCE.read_text().replace("['\\v'] = 1, ", ""))
    assert wrong.read_text() != native.SOURCE.read_text()
    subprocess.run(["cc", *native.FLAGS, "-o", str(path), str(wrong)], check=True)
    built = path.read_bytes()
    assert _kernel_in_a_fresh_process(fresh, 2) == ["compiled True"] * 2
    assert path.read_bytes() != built and sorted(os.listdir(fresh)) == cached(path)


def test_the_self_test_expects_what_the_token_splitter_defines():
    from job.tokens import split_bytes
    assert native.SELF_TEST_OUTPUT == split_bytes(native.SELF_TEST_INPUT)
    assert set(b" \t\n\v\f\r") <= set(native.SELF_TEST_INPUT)


def test_a_cached_kernel_that_cannot_be_replaced_leaves_the_python_kernel(fresh, caplog):
    require(shutil.which("cc") is not None, "a C compiler (cc)")
    path = native.build()
    path.unlink()
    path.mkdir()  # neither loaded nor replaced by a rename
    with caplog.at_level(logging.WARNING, logger="job"):
        assert native.kernel() is None
    [warning] = caplog.records
    assert f"cannot write {str(path)!r}: Is a directory" in warning.getMessage()
    assert sorted(os.listdir(fresh)) == cached(path)  # no temporary file left


@pytest.mark.parametrize("size", [1000, 4000, 8000, 12000])
def test_a_truncated_cached_kernel_is_built_again(tmp_path, corpus, size):
    """Loading a library cut short can die of SIGBUS (exit 135, no message) on every later
    run: the checksum beside it is checked first, and a mismatch rebuilds it."""
    require(shutil.which("cc") is not None, "a C compiler (cc)")
    cache = tmp_path / "cache"
    environ = clean_environ(AMLSHARD_CACHE=str(cache))
    built = subprocess.run([sys.executable, "-c", BUILD], cwd=ROOT, env=environ,
                           capture_output=True, text=True, timeout=120, check=True)
    path = Path(built.stdout.strip())
    whole = path.read_bytes()
    assert len(whole) > size
    with open(path, "r+b") as library:
        library.truncate(size)
    for run in ("out1", "out2"):
        result = run_job("--input_dir", str(corpus), "--out_dir", str(tmp_path / run),
                         "--process_count", "2", env=environ)
        assert result.returncode == 0, (result.returncode, result.stderr)
        assert_outputs_exact(corpus, tmp_path / run)
        assert "token kernel: pure Python" not in result.stderr
    assert path.stat().st_size > size and sorted(os.listdir(cache)) == cached(path)
    assert native.checksum_path(path).read_text().strip() == native._sha256(path)
