"""The token splitter is byte-exact to ``bytes.split``, whatever the bytes and chunking."""

import io
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from job.tokens import TokenSplitter, split_bytes, split_stream

from conftest import assert_outputs_exact, reference, run_job

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


def split_with(data: bytes, chunk_size: int) -> tuple[bytes, int]:
    out = io.BytesIO()
    count = split_stream(io.BytesIO(data).read, out.write, chunk_size)
    return out.getvalue(), count


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=200) | st.lists(st.sampled_from(
    [b" ", b"\t", b"\n", b"\r", b"\x0b", b"\x0c", b"a", b"bc", b"\x00", b"\xff"]),
    max_size=80).map(b"".join), chunk_size=st.integers(1, 17))
def test_stream_matches_reference_at_every_chunk_boundary(data, chunk_size):
    out, count = split_with(data, chunk_size)
    assert out == reference(data)
    assert count == len(data.split())


@pytest.mark.parametrize("name", sorted(EDGE_CASES))
def test_edge_cases_in_memory(name):
    data = EDGE_CASES[name]
    assert split_with(data, 3)[0] == split_bytes(data) == reference(data)


def test_multi_megabyte_single_token_streams():
    token = bytes(range(33, 127)) * 40_000  # ~3.8 MB, no whitespace
    data = b"  " + token + b"\n" + token
    out, count = split_with(data, 1 << 16)
    assert count == 2 and out == token + b"\n" + token + b"\n"


def test_processor_writes_the_mirror_path(tmp_path):
    (tmp_path / "in" / "a").mkdir(parents=True)
    (tmp_path / "in" / "a" / "x.txt").write_bytes(b"hello  world\n")
    splitter = TokenSplitter(str(tmp_path / "in"), str(tmp_path / "out"))
    assert splitter.process(str(tmp_path / "in" / "a" / "x.txt")) == {"tokens": 2, "bytes_in": 13}
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
        assert reference(data) == tr, path.name
