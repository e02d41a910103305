"""Inputs with names as long as the file system allows (NAME_MAX, 255 bytes), run twice."""

import os

import pytest

from conftest import assert_outputs_exact, clean_environ, run_job, temporary_files

NAMES = [b"a" * 251 + b".txt",                      # ASCII, 255 bytes
         "é".encode() * 126 + b"abc",               # 2-byte UTF-8, 255 bytes
         "😀".encode() * 63 + b"end",               # 4-byte UTF-8, 255 bytes
         b"b" * 235,
         b"c" * 200,
         b"\xff\xfe" * 125 + b"x.txt"]             # not UTF-8, 255 bytes

NO_O_TMPFILE = '''
from job import TokenSplitter, atomic

atomic._O_TMPFILE = 0  # as on blobfuse: every output gets a temporary name


class Splitter(TokenSplitter):
    """The token splitter, in a process that never writes unnamed files."""
'''


@pytest.fixture
def long_inputs(tmp_path):
    source = os.fsencode(tmp_path / "in")
    os.makedirs(os.path.join(source, b"d" * 255))
    for number, name in enumerate(NAMES):
        for folder in (source, os.path.join(source, b"d" * 255)):
            with open(os.path.join(folder, name), "wb") as stream:
                stream.write(b"first run %d\n" % number)
    return tmp_path / "in"


@pytest.mark.parametrize("unnamed_files", [True, False], ids=["o_tmpfile", "no_o_tmpfile"])
def test_long_names_are_written_then_replaced(tmp_path, long_inputs, unnamed_files):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blobfuse_like.py").write_text(NO_O_TMPFILE)
    environ = clean_environ()
    environ["PYTHONPATH"] += os.pathsep + str(tmp_path / "lib")
    out = tmp_path / "out"
    command = ["--input_dir", str(long_inputs), "--out_dir", str(out), "--process_count", "2"]
    if not unnamed_files:
        command += ["--processor", "blobfuse_like:Splitter"]
    first = run_job(*command, env=environ)
    assert first.returncode == 0, first.stderr
    assert_outputs_exact(long_inputs, out)
    for path in long_inputs.rglob("*"):
        if path.is_file():
            path.write_bytes(b"second run, longer than the first\n")
    second = run_job(*command, env=environ)
    assert second.returncode == 0, second.stderr
    assert "12 done, 0 skipped" in second.stderr
    assert_outputs_exact(long_inputs, out)
    assert temporary_files(out) == []
