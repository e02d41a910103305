"""The token splitter is byte-exact to ``bytes.split``, whatever the bytes and chunking."""

import io
import itertools
import os
import pathlib
import threading
from unittest import mock
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from job.listing import InputFile
from job import native, tokens
from job.tokens import TokenSplitter, split_bytes, split_stream

from conftest import (assert_outputs_exact, newest_records, read_manifest, reference, require,
                      run_job, temporary_files)

EDGE_CASES = {
    "crlf.txt": b"one two\r\nthree\r\n\r\nfour",
    "tabs.txt": b"\ta\t\tb\t",
    "vt_ff.txt": b"a\x0bb\x0cc\x0b\x0c",
    "invalid_utf8.txt": b"caf\xe9 \xff\xfe\x80 ok\n",
    "nul.txt": b"a\x00b \x00 \x00\x00\n",
    "empty.txt": b"",
    "blank.txt": b" \t\r\n\x0b\x0c \n",
    "no_newline.txt": b"last token",
    "leading.txt": b"\n\n  lead",
    "nbsp_is_not_ascii_space.txt": "a\u00a0b c\u2003d".encode(),
    "nested/deeper/file.txt": b"deep inside",
    "name with spaces.txt": b"spaced name",
    "ünïcødé/日本語.txt": "日本語 テキスト".encode(),
}


KERNELS = ["compiled", "big-integer", "split"]


def compiled_or_none(kernel: str):
    """What ``native.kernel()`` is to return for ``kernel``: the C function, or None."""
    if kernel != "compiled":
        return None
    compiled = native.kernel()
    require(compiled is not None, "the compiled kernel (a C compiler)")
    return compiled


def split_with(data: bytes, chunk_size: int, kernel: str = "compiled"):
    """Split ``data`` in chunks of ``chunk_size`` with one of the three kernels."""
    out = io.BytesIO()
    compiled = compiled_or_none(kernel)
    small_chunk = {"big-integer": 0, "split": 1 << 30}.get(kernel, tokens.SMALL_CHUNK)
    with mock.patch.object(native, "kernel", lambda: compiled), \
            mock.patch.object(tokens, "SMALL_CHUNK", small_chunk):
        count = split_stream(io.BytesIO(data), out.write, chunk_size)
    return out.getvalue(), count


@pytest.mark.parametrize("kernel", KERNELS)
@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=200) | st.lists(st.sampled_from(
    [b" ", b"\t", b"\n", b"\r", b"\x0b", b"\x0c", b"a", b"bc", b"\x00", b"\x01", b"\x8a", b"\xff"]),
    max_size=80).map(b"".join), chunk_size=st.integers(1, 17))
def test_stream_matches_reference_at_every_chunk_boundary(kernel, data, chunk_size):
    out, count = split_with(data, chunk_size, kernel)
    assert out == reference(data)
    assert count == len(data.split())


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernels_agree_on_every_byte_value_and_the_corpus(kernel, corpus):
    every_pair = bytes(b for pair in itertools.product(range(256), repeat=2) for b in pair)
    for data in [every_pair, b"".join(path.read_bytes() for path in sorted(corpus.iterdir()))]:
        out, count = split_with(data, 1 << 17, kernel)
        assert out == reference(data) and count == len(data.split())


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_cases_in_memory(name, kernel):
    data = EDGE_CASES[name]
    assert split_with(data, 3, kernel)[0] == split_bytes(data) == reference(data)


@pytest.mark.parametrize("kernel", KERNELS)
def test_multi_megabyte_single_token_streams(kernel):
    token = bytes(range(33, 127)) * 40_000  # ~3.8 MB, no whitespace
    data = b"  " + token + b"\n" + token
    out, count = split_with(data, 1 << 16, kernel)
    assert count == 2 and out == token + b"\n" + token + b"\n"


def test_processor_writes_the_mirror_path(tmp_path):
    (tmp_path / "in" / "a").mkdir(parents=True)
    (tmp_path / "in" / "a" / "x.txt").write_bytes(b"hello  world\n")
    splitter = TokenSplitter(str(tmp_path / "in"), str(tmp_path / "out"))
    assert splitter.process(str(tmp_path / "in" / "a" / "x.txt")) == {"tokens": 2}
    assert (tmp_path / "out" / "a" / "x.txt").read_bytes() == b"hello\nworld\n"
    assert sorted(p.name for p in (tmp_path / "out" / "a").iterdir()) == ["x.txt"]


def test_job_is_byte_exact_on_edge_cases(tmp_path):
    source = tmp_path / "in"
    for rel, data in EDGE_CASES.items():
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_bytes(data)
    (source / "big_token.bin").write_bytes(b"x" * (3 << 20) + b" y")
    (source / ".hidden").write_bytes(b"dotfile")
    (source / ".git").mkdir()
    (source / ".git" / "config").write_bytes(b"dot folder")
    result = run_job("--input_dir", str(source), "--out_dir", str(tmp_path / "out"),
                     "--process_count", "2")
    assert result.returncode == 0, result.stderr
    assert_outputs_exact(source, tmp_path / "out", [*EDGE_CASES, "big_token.bin"])
    assert not (tmp_path / "out" / ".hidden").exists()
    assert not (tmp_path / "out" / ".git").exists()


def test_job_is_byte_exact_on_the_wikipedia_corpus(tmp_path, corpus):
    result = run_job("--input_dir", str(corpus), "--out_dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert_outputs_exact(corpus, tmp_path / "out")


def test_reference_agrees_with_tr_on_the_corpus(corpus):
    for path in sorted(corpus.iterdir())[:5]:
        data = path.read_bytes()
        tr = subprocess.run("LC_ALL=C tr -s '[:space:]' '\\n' | sed '/^$/d'", shell=True,
                            input=data, capture_output=True, check=True).stdout
        if data and data[-1:] not in b" \t\n\v\f\r":
            tr += b"\n"  # tr leaves a last token unended; the SPEC's output ends every token
        assert reference(data) == tr, path.name


@pytest.mark.parametrize("kernel", ["compiled", "python"])
@settings(max_examples=150, deadline=None)
@given(data=st.lists(st.sampled_from([b" ", b"\n", b"\t\r", b"ab", b"c", b"\xff\x00"]),
                     max_size=120).map(b"".join),
       cuts=st.lists(st.integers(0, 300), max_size=5))
def test_byte_ranges_joined_in_order_are_the_file_output(tmp_path_factory, kernel, data, cuts):
    compiled = compiled_or_none(kernel)
    folder = tmp_path_factory.mktemp("ranges")
    (folder / "in").mkdir()
    (folder / "in" / "f.txt").write_bytes(data)
    splitter = TokenSplitter(str(folder / "in"), str(folder / "out"))
    edges = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    parts, tokens = [], 0
    for k, (start, end) in enumerate(zip(edges, edges[1:])):
        parts.append(str(folder / f"part{k}"))
        with mock.patch.object(native, "kernel", lambda: compiled):
            tokens += splitter.process_range(str(folder / "in" / "f.txt"), start, end,
                                             parts[-1])["tokens"]
    joined = b"".join(open(part, "rb").read() for part in parts)
    assert joined == reference(data)
    assert tokens == len(data.split())


@pytest.fixture
def ranged_inputs(tmp_path, corpus, monkeypatch):
    """A 1.1 MB file (the corpus concatenated) and a small one, with 50 KB byte ranges."""
    from job import tasks
    monkeypatch.setattr(tasks, "MIN_RANGE_BYTES", 50_000)
    source = tmp_path / "in"
    source.mkdir()
    (source / "big.txt").write_bytes(b"".join(p.read_bytes() for p in sorted(corpus.iterdir())))
    (source / "small.txt").write_bytes(b"a few words\n")
    return source


def journal_of(out):
    return newest_records(out, "shard-00000-of-00001.")


def test_job_splits_a_large_file_into_ranges(tmp_path, ranged_inputs):
    from job import cli, tasks
    source = ranged_inputs
    planned = tasks.plan_tasks([InputFile("big.txt", 1_100_000)], 2, True)
    assert len(planned) > 2
    code = cli.main(["--input_dir", str(source), "--out_dir", str(tmp_path / "out"),
                     "--process_count", "2", "--log_level", "WARNING"])
    assert code == 0
    assert_outputs_exact(source, tmp_path / "out")
    records = journal_of(tmp_path / "out")
    assert sorted(records) == ["big.txt", "small.txt"]
    big = records["big.txt"]
    assert big["tokens"] == len((source / "big.txt").read_bytes().split())
    assert temporary_files(tmp_path / "out") == []


def test_a_failed_range_fails_its_file_and_leaves_nothing(tmp_path, ranged_inputs):
    from job import cli
    out = tmp_path / "out"
    code = cli.main(["--input_dir", str(ranged_inputs), "--out_dir", str(out), "--process_count",
                     "2", "--processor", "fault_processors:RangeFails", "--max_retries", "0",
                     "--log_level", "WARNING"])
    assert code == 1
    records = journal_of(out)
    assert records["big.txt"]["status"] == "failed"
    assert records["big.txt"]["error"].startswith("ValueError: bad range at")
    assert records["small.txt"]["status"] == "ok"
    assert not (out / "big.txt").exists() and temporary_files(out) == []


def test_the_runner_records_and_sums_what_a_processor_declares_it_counts(tmp_path, ranged_inputs):
    """The runner knows no token: a processor's ``counts`` become record fields and totals, and
    its ``combine_counts`` joins the counts of a file's byte ranges."""
    from job import cli, tasks
    out = tmp_path / "out"
    code = cli.main(["--input_dir", str(ranged_inputs), "--out_dir", str(out), "--process_count",
                     "2", "--processor", "odd_processors:Counts", "--log_level", "WARNING"])
    assert code == 0
    big = (ranged_inputs / "big.txt").read_bytes()
    planned = tasks.plan_tasks([InputFile("big.txt", len(big)), InputFile("small.txt", 12)], 2,
                               True)
    ranges = [task for task in planned if task.index == 0]
    assert len(ranges) > 2
    records = journal_of(out)
    assert records["big.txt"]["lines"] == big.count(b"\n")
    assert records["big.txt"]["largest"] == max(t.end - t.start for t in ranges) < len(big)
    assert records["small.txt"]["lines"] == 1 and records["small.txt"]["largest"] == 12
    assert all("tokens" not in record for record in records.values())
    assert list(records["big.txt"])[3:6] == ["bytes_in", "lines", "largest"]
    manifest = read_manifest(out)
    totals = manifest["totals"]
    assert (totals["lines"], totals["largest"]) == (big.count(b"\n") + 1,
                                                    records["big.txt"]["largest"] + 12)
    assert "tokens" not in totals


def test_a_whole_file_read_once_when_it_holds_the_size_it_was_opened_with(tmp_path, monkeypatch):
    path = tmp_path / "f"
    path.write_bytes(b"one two\n")
    reads = []
    real_read = os.read
    monkeypatch.setattr(tokens.os, "read", lambda fd, n: reads.append(n) or real_read(fd, n))
    fd, size = tokens._open_regular(str(path))
    try:
        assert tokens._read_whole(fd, size, 1 << 16) == b"one two\n" and reads == [9]
        os.lseek(fd, 0, os.SEEK_SET)  # the file grew after it was examined: read to the end
        assert tokens._read_whole(fd, 3, 1 << 16) == b"one two\n"
        os.lseek(fd, 0, os.SEEK_SET)
        assert tokens._read_whole(fd, 3, 5) is None  # grew past the limit
    finally:
        os.close(fd)


def test_a_read_that_would_wait_waits_instead_of_ending_the_file_early():
    """Where a read heeds O_NONBLOCK (EAGAIN), the flag is cleared and the read waits."""
    readable, writable = os.pipe()
    os.set_blocking(readable, False)
    writer = threading.Timer(0.2, lambda: (os.write(writable, b"abc"), os.close(writable)))
    writer.start()
    try:
        assert tokens._read_whole(readable, 3, 100) == b"abc"
        assert os.get_blocking(readable)
    finally:
        writer.join()
        os.close(readable)


class _NulOutput(TokenSplitter):
    def output_path(self, path: str) -> str:
        return super().output_path(path) + "\0.bad"


class _OutputElsewhere(TokenSplitter):
    kind = "str"

    def output_path(self, path):
        name = os.path.join(self.out_dir, "elsewhere", os.path.basename(path) + ".tok")
        return {"str": name, "path": pathlib.Path(name), "bytes": os.fsencode(name)}[self.kind]


@pytest.mark.parametrize("how", ["input", "output"])
def test_a_path_holding_a_nul_is_refused_not_cut_short(tmp_path, how):
    """C would read a path only up to a NUL (and write out/f for out/f\\0.bad): such a
    path is left to the Python way, which refuses it. (Found by an attack.)"""
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    outputs.mkdir()
    (inputs / "f").write_bytes(b"a b c")
    kind, suffix = (_NulOutput, "") if how == "output" else (TokenSplitter, "\0x")
    with pytest.raises(ValueError, match="null"):
        kind(str(inputs), str(outputs)).process(str(inputs / "f") + suffix)
    assert list(outputs.iterdir()) == []


@pytest.mark.parametrize("kind", ["str", "path", "bytes"])
def test_an_output_named_by_a_path_object_or_bytes_is_replaced_whole(tmp_path, kind):
    """An output_path giving a pathlib.Path or bytes: the output is written, and written
    again over the first (it failed when replaced: found by an attack)."""
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    splitter = _OutputElsewhere(str(inputs), str(outputs))
    splitter.kind = kind
    for content in (b"x y\n", b"z"):
        (inputs / "f").write_bytes(content)
        assert splitter.process(str(inputs / "f")) == {"tokens": len(content.split())}
        assert (outputs / "elsewhere" / "f.tok").read_bytes() == split_bytes(content)
