"""The small-file path: files read whole, outputs written in one piece (row 10's fast path).

Byte-exact outputs and token counts at every edge (empty, whitespace only, the size
limits), outputs that appear only complete (:func:`job.atomic.write_bytes`), and real
runs of many tiny files: one journal record per file, also when a worker is killed in
the middle of a batch.
"""

import errno
import json
import math
import os

import pytest

from conftest import (assert_outputs_exact, journal_records, read_manifest, reference,
                      run_job, temporary_files)
from job import atomic, journal, native, tokens
from job.tokens import TokenSplitter

WHITESPACE = b" \t\n\v\f\r"
EDGES = {
    "empty": b"",
    "one space": b" ",
    "whitespace only": WHITESPACE * 3,
    "one token": b"word",
    "token then newline": b"word\n",
    "leading whitespace": b"\n\t  word other",
    "every whitespace between": b"a" + b"b".join(bytes([c]) for c in WHITESPACE) + b"c",
    "not UTF-8": b"\xff\xfe caf\xe9 \x00nul\x00 \x80",
    "one byte": b"x",
}


def sized(size: int, seed: int = 0) -> bytes:
    """``size`` bytes of words and runs of whitespace, ending mid-token."""
    words = b"alpha\tbeta  gamma\r\ndelta\x0bepsilon\x0c zeta "
    data = (words[seed % len(words):] + words) * (size // len(words) + 2)
    return data[:size]


def edge_cases() -> dict[str, bytes]:
    cases = dict(EDGES)
    for size in (tokens.PYTHON_SPLIT_BYTES, tokens.PYTHON_SPLIT_BYTES + 1,
                 tokens.WHOLE_FILE_BYTES, tokens.WHOLE_FILE_BYTES + 1):
        cases[f"{size} B"] = sized(size)
        cases[f"{size} B, whitespace last"] = sized(size - 1) + b" "
    return cases


@pytest.fixture(params=["compiled", "pure Python"])
def kernel(request, monkeypatch):
    """Both kernels behind the files that are not split with ``bytes.split``."""
    if request.param == "pure Python":
        monkeypatch.setattr(native, "kernel", lambda: None)
    elif native.kernel() is None:
        pytest.fail("no compiled kernel here: `make test` installs a C compiler", pytrace=False)
    return request.param


@pytest.mark.parametrize("name", sorted(edge_cases()))
def test_a_small_file_gives_the_reference_output_and_token_count(tmp_path, kernel, name):
    data = edge_cases()[name]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "f.txt").write_bytes(data)
    splitter = TokenSplitter(str(tmp_path / "in"), str(tmp_path / "out"))
    value = splitter.process(str(tmp_path / "in" / "f.txt"))
    assert (tmp_path / "out" / "f.txt").read_bytes() == reference(data)
    assert value == {"tokens": len(data.split())}
    assert os.listdir(tmp_path / "out") == ["f.txt"]


def test_a_file_grown_past_the_limit_after_its_size_was_taken_is_streamed(tmp_path, monkeypatch):
    data = sized(tokens.WHOLE_FILE_BYTES * 3, seed=5)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "f.txt").write_bytes(data)
    opened = tokens._open_regular
    monkeypatch.setattr(tokens, "_open_regular", lambda path: (opened(path)[0], 10))
    splitter = TokenSplitter(str(tmp_path / "in"), str(tmp_path / "out"))
    assert splitter.process(str(tmp_path / "in" / "f.txt")) == {"tokens": len(data.split())}
    assert (tmp_path / "out" / "f.txt").read_bytes() == reference(data)


def test_a_small_file_replaces_an_earlier_output_whole(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "in" / "f.txt").write_bytes(b"new words")
    (tmp_path / "out" / "f.txt").write_bytes(b"an old output, longer than the new one\n")
    TokenSplitter(str(tmp_path / "in"), str(tmp_path / "out")).process(
        str(tmp_path / "in" / "f.txt"))
    assert (tmp_path / "out" / "f.txt").read_bytes() == b"new\nwords\n"
    assert os.listdir(tmp_path / "out") == ["f.txt"]


@pytest.mark.parametrize("data", [b"", b"x", b"tokens\n" * 10_000], ids=["empty", "1 B", "70 KB"])
def test_write_bytes_makes_the_whole_file_and_its_folders(tmp_path, any_way, data):
    final = str(tmp_path / "a" / "b" / "out.txt")
    atomic.write_bytes(final, data)
    assert (tmp_path / "a" / "b" / "out.txt").read_bytes() == data
    assert os.listdir(tmp_path / "a" / "b") == ["out.txt"]
    atomic.write_bytes(final, bytearray(b"again"))  # replaces it whole
    assert (tmp_path / "a" / "b" / "out.txt").read_bytes() == b"again"
    assert os.listdir(tmp_path / "a" / "b") == ["out.txt"]


@pytest.mark.parametrize("existing", [None, b"old"], ids=["new", "existing"])
def test_write_bytes_cut_short_leaves_nothing_but_the_old_output(tmp_path, monkeypatch, any_way,
                                                                existing):
    """A write that fails halfway (a full disk) leaves no file under the final name, or the
    old one untouched, and no temporary file."""
    if existing is not None:
        (tmp_path / "out.txt").write_bytes(existing)
    real_write = os.write
    writes = []

    def failing_write(fd, data):
        if writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        writes.append(fd)
        return real_write(fd, bytes(data)[:3])  # a short write: the rest comes next

    monkeypatch.setattr(atomic.os, "write", failing_write)
    with pytest.raises(OSError, match="No space left"):
        atomic.write_bytes(str(tmp_path / "out.txt"), b"a long output")
    assert os.listdir(tmp_path) == ([] if existing is None else ["out.txt"])
    if existing is not None:
        assert (tmp_path / "out.txt").read_bytes() == existing


def test_write_bytes_that_cannot_link_leaves_nothing(tmp_path, monkeypatch, any_way):
    def failing(*args, **kwargs):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(atomic.os, "link", failing)
    monkeypatch.setattr(atomic.os, "replace", failing)
    with pytest.raises(OSError, match="Input/output error"):
        atomic.write_bytes(str(tmp_path / "out.txt"), b"words")
    assert os.listdir(tmp_path) == []


def tiny_inputs(folder, count: int, killed: int | None = None):
    """``count`` files of 0 to 200 bytes: empty and whitespace-only ones among them; file
    ``killed`` holds the marker ``KILL`` (see ``fault_processors.KilledOnce``)."""
    folder.mkdir()
    for i in range(count):
        if i % 50 == 0:
            data = b""
        elif i % 50 == 1:
            data = WHITESPACE * (i % 7)
        else:
            data = sized(i % 201, seed=i)
        if i == killed:
            data = b"KILL " + data
        (folder / f"t{i:04d}.txt").write_bytes(data)
    return folder


def test_many_tiny_files_one_record_each_and_byte_exact_outputs(tmp_path):
    source = tiny_inputs(tmp_path / "in", 600)
    out = tmp_path / "out"
    result = run_job("--input_dir", str(source), "--out_dir", str(out), "--process_count", "2")
    assert result.returncode == 0, result.stderr
    assert_outputs_exact(source, out)
    records = [r for _, r in journal_records(out)]
    assert sorted(r["input"] for r in records) == sorted(os.listdir(source))
    for record in records:
        data = (source / record["input"]).read_bytes()
        assert record["status"] == "ok" and record["attempts"] == 1, record
        assert record["tokens"] == len(data.split()) and record["bytes_in"] == len(data)
        assert record["output"] == record["input"] and record["error"] is None
        assert tuple(record) == journal.HEAD_FIELDS + ("tokens",) + journal.TAIL_FIELDS
    assert read_manifest(out)["totals"]["ok"] == 600
    assert temporary_files(out) == []


def test_a_worker_killed_in_a_batch_of_tiny_files_charges_only_its_file(tmp_path):
    """The worker dies on file 100 of its batch (as from the OOM killer, half an output
    written): that file is retried once and done; the files of its batch it had done but
    not reported are done again, uncharged; every file has one record."""
    source = tiny_inputs(tmp_path / "in", 600, killed=100)
    out = tmp_path / "out"
    result = run_job("--input_dir", str(source), "--out_dir", str(out), "--process_count", "2",
                     "--processor", "fault_processors:KilledOnce", "--max_retries", "1")
    assert result.returncode == 0, result.stderr
    assert (out / "_manifest" / "t0100.txt.killed").exists()  # it did die
    assert_outputs_exact(source, out)
    records = [r for _, r in journal_records(out)]
    assert sorted(r["input"] for r in records) == sorted(os.listdir(source))
    attempts = {r["input"]: r["attempts"] for r in records}
    assert attempts.pop("t0100.txt") == 2
    assert set(attempts.values()) == {1}
    assert all(r["status"] == "ok" for r in records)
    assert temporary_files(out) == []


@pytest.mark.parametrize("value", [
    {"input": "a/b.txt", "output": "a/b.txt", "status": "ok", "bytes_in": 150, "tokens": 25,
     "seconds": 2.1e-05, "attempts": 1, "error": None, "mtime_ns": 1764480000123456789,
     "processor": "job.tokens:TokenSplitter@1", "time": 1764480000.1234567},
    {"input": "caf\u00e9 \u65e5\u672c \"quoted\"\n\t\\", "big": 2 ** 70, "neg": -1.5e300,
     "nan": math.nan, "inf": -math.inf, "flags": [True, False, None], "nested": {"k": [1, {}]}},
    {"input": os.fsdecode(b"not \xff UTF-8"), "error": "x"},
], ids=["record", "odd values", "not UTF-8"])
def test_the_journal_encoder_writes_what_json_writes(value):
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        expected.encode("utf-8")
    except UnicodeEncodeError:  # a name that is not UTF-8: escaped, as before
        expected = json.dumps(value, separators=(",", ":"))
    assert journal.encode_record(value) == expected
    with pytest.raises(TypeError, match="not JSON serializable"):
        journal.encode_record({**value, "odd": object()})
