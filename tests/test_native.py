"""The compiled kernel: built once per cache, shared by ranks, and never required."""

import ctypes
import io
import logging
import os
import platform
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from job import native, tokens
from job.tokens import split_bytes

from conftest import ROOT, assert_outputs_exact, clean_environ, reference, require, run_job

BUILD = "from job import native; print(native.build())"


def checksum_of(library: Path) -> Path:
    """Where ``native`` keeps the checksum of ``library``."""
    return Path(native.checksum_path(library))


def cached(path):
    """What the cache holds for the library ``path``: it and its checksum, nothing else."""
    return sorted([path.name, checksum_of(path).name])


@pytest.fixture(scope="session")
def prebuilt(tmp_path_factory):
    """The library as ``native.build()`` builds and names it here (``CC`` unset), compiled
    once for the session, with its checksum: the tests that need a cached library to spoil
    or to load copy it (:func:`cache_prebuilt`) rather than compile it each."""
    require(shutil.which("cc") is not None, "a C compiler (cc)")
    cache = tmp_path_factory.mktemp("prebuilt-kernel")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AMLSHARD_CACHE", str(cache))
        patch.delenv("AMLSHARD_NATIVE", raising=False)
        patch.delenv("CC", raising=False)
        path = Path(native.build())
    assert sorted(os.listdir(cache)) == cached(path)
    return path


def cache_prebuilt(prebuilt: Path, cache: Path) -> Path:
    """``cache`` as a build by ``native.build()`` leaves it: the session's library and its
    checksum, under the names it gives them (the cache's path is not part of the name).
    Returns the library's path."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / prebuilt.name
    shutil.copyfile(prebuilt, path)
    shutil.copymode(prebuilt, path)
    shutil.copyfile(checksum_of(prebuilt), checksum_of(path))
    return path


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty kernel cache, and ``native.kernel`` not yet decided in this process."""
    monkeypatch.setenv("AMLSHARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AMLSHARD_NATIVE", raising=False)
    monkeypatch.delenv("CC", raising=False)
    undecided()
    yield tmp_path / "cache"
    undecided()


def undecided() -> None:
    """Have ``native`` decide again, in this process, whether it has a compiled library."""
    native.kernel.cache_clear()
    native._decided.cache_clear()


@pytest.fixture
def cached_library(prebuilt, fresh) -> Path:
    """``fresh`` holding the library ``native.build()`` compiled (the session's, copied); its
    path, which ``native.build()`` gives and finds whole, compiling nothing."""
    path = cache_prebuilt(prebuilt, fresh)
    copied = path.stat()
    assert Path(native.build()) == path
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (copied.st_ino, copied.st_mtime_ns)
    return path


def test_builds_once_into_the_cache(fresh):
    require(shutil.which("cc") is not None, "a C compiler (cc)")
    path = Path(native.build())
    assert path.parent == fresh and path.name.startswith("squeeze-") and path.suffix == ".so"
    assert sorted(os.listdir(fresh)) == cached(path)  # no temporary file left
    stamp = path.stat().st_mtime_ns
    assert Path(native.build()) == path and path.stat().st_mtime_ns == stamp  # cached, not rebuilt
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
        Path(native.build())
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


# Every kind of corrupt library by one rank; four ranks that find one at once (each may
# compile it: the last rename wins, whole) once, as the kind does not change what they do.
@pytest.mark.parametrize("content, ranks", [(b"", 1), (b"\x7fELF\x02\x01garbage", 1),
                                            (b"not a library at all\n", 1),
                                            (b"\x7fELF\x02\x01garbage", 4)])
def test_a_corrupt_cached_kernel_is_built_again(fresh, cached_library, content, ranks):
    path = cached_library
    path.write_bytes(content)
    assert _kernel_in_a_fresh_process(fresh, ranks) == ["compiled True"] * ranks
    assert sorted(os.listdir(fresh)) == cached(path)  # rebuilt in place, no temporary left
    assert path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x7fELF"
    assert _kernel_in_a_fresh_process(fresh) == ["compiled True"]


def test_a_cached_kernel_that_splits_wrongly_is_built_again(fresh, cached_library, tmp_path):
    path = cached_library
    wrong = tmp_path / "wrong.c"  # a library that loads, but takes \v for a token byte
    wrong.write_text(Path(native.SOURCE).read_text().replace("['\\v'] = 1, ", ""))
    assert wrong.read_text() != Path(native.SOURCE).read_text()
    subprocess.run(["cc", *native.FLAGS, "-o", str(path), str(wrong)], check=True)
    checksum_of(path).write_text(native._sha256(path) + "\n")  # not caught by it
    native._check(path)
    with pytest.raises(native.Unavailable, match="fails its self-test"):
        native._load(path)  # (closed again)
    built = path.read_bytes()
    assert _kernel_in_a_fresh_process(fresh, 2) == ["compiled True"] * 2
    assert path.read_bytes() != built and sorted(os.listdir(fresh)) == cached(path)


def test_a_cached_kernel_without_the_path_functions_is_built_again(fresh, cached_library, tmp_path):
    """A library that has amlshard_squeeze but not amlshard_select & co (an older
    squeeze.c's, say), even with a matching checksum, is compiled again."""
    path = cached_library
    older = tmp_path / "older.c"
    source = Path(native.SOURCE).read_text()
    older.write_text(source[:source.index("struct path {")] + """
size_t amlshard_squeeze(const unsigned char *in, size_t n, unsigned char *out,
                        int *after_whitespace, size_t *newlines)
{
    unsigned previous = *after_whitespace != 0;
    size_t kept = 0;
    unsigned char *end = squeeze_bytes(in, n, out, &previous, &kept);
    *after_whitespace = (int)previous;
    *newlines += kept;
    return (size_t)(end - out);
}
""")
    subprocess.run(["cc", *native.FLAGS, "-o", str(path), str(older)], check=True)
    checksum_of(path).write_text(native._sha256(path) + "\n")
    built = path.read_bytes()
    assert _kernel_in_a_fresh_process(fresh) == ["compiled True"]
    assert path.read_bytes() != built and sorted(os.listdir(fresh)) == cached(path)


def test_the_self_test_expects_what_the_token_splitter_defines():
    from job.tokens import split_bytes
    assert native.SELF_TEST_OUTPUT == split_bytes(native.SELF_TEST_INPUT)
    assert set(b" \t\n\v\f\r") <= set(native.SELF_TEST_INPUT)


def test_a_cached_kernel_that_cannot_be_replaced_leaves_the_python_kernel(fresh, cached_library,
                                                                        caplog):
    path = cached_library
    path.unlink()
    path.mkdir()  # neither loaded nor replaced by a rename
    with caplog.at_level(logging.WARNING, logger="job"):
        assert native.kernel() is None
    [warning] = caplog.records
    assert f"cannot write {str(path)!r}: Is a directory" in warning.getMessage()
    assert sorted(os.listdir(fresh)) == cached(path)  # no temporary file left


@pytest.mark.parametrize("size", [1000, 4000, 8000, 12000])
def test_a_truncated_cached_kernel_is_built_again(tmp_path, corpus, prebuilt, size):
    """Loading a library cut short can die of SIGBUS (exit 135, no message) on every later
    run: the checksum beside it is checked first, and a mismatch rebuilds it."""
    cache = tmp_path / "cache"
    environ = clean_environ(AMLSHARD_CACHE=str(cache))
    environ.pop("CC", None)  # the compiler the library was built with, so its name
    path = cache_prebuilt(prebuilt, cache)  # under another name, the last asserts fail
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
    assert checksum_of(path).read_text().strip() == native._sha256(path)


# --- every path of the kernel is byte-exact to bytes.split -------------------------------
#
# The library holds several paths (avx2, sse2, scalar; see squeeze.c), and the x86 vector
# paths do not run elsewhere: each is tested here on this machine, selected with
# native.select, and so are the two builds other CPUs and compilers get (-DAMLSHARD_NO_SIMD:
# the scalar path alone; with -DAMLSHARD_NO_WORDS too: byte by byte, as on big-endian CPUs).

WHITESPACE = b" \t\n\v\f\r"
BLOCK = 32  # the widest path's block; the others' (16, 8) divide it
GUARD = 64  # bytes past the output buffer that must stay untouched


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as stream:
            for line in stream:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def expected_paths() -> list[str]:
    """The paths the library must offer on this machine, fastest first."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return ["scalar"]
    flags = cpu_flags()
    return (["avx2"] if {"avx2", "popcnt"} <= flags else []) + ["sse2", "scalar"]


@pytest.fixture(scope="module")
def library_build(prebuilt):
    """The library as the job builds it (the session's), loaded."""
    return native._load(prebuilt)


def portable_build(folder: Path, *defines: str):
    """The library built with ``defines`` (as other CPUs or compilers build it), loaded."""
    require(shutil.which("cc") is not None, "a C compiler (cc)")
    library = folder / "squeeze.so"
    subprocess.run(["cc", *native.FLAGS, *defines, "-o", str(library), native.SOURCE],
                   check=True)
    return native._load(library)


PATHS = ["avx2", "sse2", "scalar", "scalar built without SIMD", "bytes built without words"]


@pytest.fixture(scope="module")
def portable_builds(tmp_path_factory):
    """The two builds other CPUs and compilers get, compiled once for this module."""
    return {"scalar built without SIMD": portable_build(tmp_path_factory.mktemp("no-simd"),
                                                        "-DAMLSHARD_NO_SIMD"),
            "bytes built without words": portable_build(tmp_path_factory.mktemp("no-words"),
                                                        "-DAMLSHARD_NO_SIMD",
                                                        "-DAMLSHARD_NO_WORDS")}


@pytest.fixture(params=PATHS)
def squeeze(request, library_build, portable_builds):
    """One path of the kernel, selected (a path this CPU cannot run is skipped)."""
    name = request.param
    if name in portable_builds:
        built = portable_builds[name]
        assert native.paths(built) == ["scalar"]
    else:
        if name not in expected_paths():
            pytest.skip(f"this CPU does not run the {name} path")
        built = library_build
        native.select(built, name)
        assert native.selected(built) == name
    yield built
    native.select(built, None)


def run(squeeze, pieces, after_whitespace=True):
    """Feed ``pieces`` to ``squeeze`` in order, as one stream; the output, ended as
    split_stream ends it, and the newlines counted. Checks that no call writes past
    its piece's length."""
    state, count, written = ctypes.c_int(after_whitespace), ctypes.c_size_t(0), []
    for piece in pieces:
        out = ctypes.create_string_buffer(b"\xa5" * (len(piece) + GUARD), len(piece) + GUARD)
        size = squeeze(piece, len(piece), out, ctypes.byref(state), ctypes.byref(count))
        assert size <= len(piece) and out.raw[len(piece):] == b"\xa5" * GUARD
        written.append(out.raw[:size])
    ending = b"\n" if not state.value else b""
    return b"".join(written) + ending, count.value + len(ending)


def assert_exact(squeeze, data, pieces=None, after_whitespace=True):
    """``squeeze`` gives ``data``'s reference output, fed as ``pieces`` (default: whole).

    Without ``after_whitespace`` the stream follows a token, as a byte range that starts
    inside a file may: its output is the reference output of ``b"x" + data`` less the x.
    """
    before = b"" if after_whitespace else b"x"
    output, count = run(squeeze, [data] if pieces is None else pieces, after_whitespace)
    assert output == reference(before + data)[len(before):], data
    assert count == len((before + data).split())


def test_the_library_offers_the_paths_this_cpu_runs(library_build):
    assert native.paths(library_build) == expected_paths()
    native.select(library_build, None)
    assert native.selected(library_build) == expected_paths()[0]
    with pytest.raises(ValueError, match="no compiled path 'neon' on this CPU"):
        native.select(library_build, "neon")
    assert native.selected(library_build) == expected_paths()[0]


@pytest.mark.parametrize("background", [b"x", b" ", b"\n\t", b"ab c"])
@pytest.mark.parametrize("after_whitespace", [True, False])
def test_every_byte_value_in_every_position_of_a_block(squeeze, background, after_whitespace):
    """Each of the 256 byte values at each of the 64 positions of two 32-byte blocks."""
    window = (background * (2 * BLOCK))[:2 * BLOCK]
    for value in range(256):
        cases = [window[:at] + bytes([value]) + window[at + 1:] for at in range(2 * BLOCK)]
        # one call: each case starts on a block boundary, after the case before it
        assert_exact(squeeze, b"".join(cases), after_whitespace=after_whitespace)


@pytest.mark.parametrize("filler", [b"x", b"\xff", b"\x00"])
def test_runs_of_whitespace_across_block_boundaries(squeeze, filler):
    """Runs of every length 1-70 starting at every offset 0-70: they straddle the 8-,
    16- and 32-byte blocks' boundaries, one or several of them."""
    for length in range(1, 71):
        run_bytes = (WHITESPACE * 12)[length % 6:length % 6 + length]
        for start in range(71):
            data = filler * start + run_bytes + filler * (3 * BLOCK)
            assert_exact(squeeze, data)
            assert_exact(squeeze, data[start:])  # the run first: dropped whole


def test_lengths_around_the_block_sizes_cut_anywhere(squeeze):
    """Every length 0-100 (below, at and across 8, 16, 32, 64 and 96 bytes), each input
    cut in two at every point, as chunk boundaries cut it."""
    rng = random.Random(14)
    alphabet = [b" ", b"\n", b"\t", b"\r", b"\v", b"\f", b"a", b"z", b"\x00", b"\xff", b"\x85",
                b"\x1c", b"\x19", b"\x29"]
    for length in range(101):
        for _ in range(3):
            data = b"".join(rng.choice(alphabet) for _ in range(length))
            for cut in range(length + 1):
                assert_exact(squeeze, data, [data[:cut], data[cut:]], after_whitespace=cut % 2 == 0)


def test_random_inputs_in_random_pieces(squeeze):
    """Fuzz with a fixed seed: whitespace-heavy and uniform bytes, prose, in 1-5 pieces."""
    rng = random.Random(1414)
    prose = native.SELF_TEST_INPUT + b"word " * 20 + b"  double  spaced\n\n"
    for case in range(1500):
        kind = case % 3
        length = rng.randrange(0, 700)
        if kind == 0:
            data = bytes(rng.choice(WHITESPACE + b"ab\x00\xff") for _ in range(length))
        elif kind == 1:
            data = bytes(rng.randrange(256) for _ in range(length))
        else:
            data = bytes(rng.choice(prose) for _ in range(length))
        cuts = sorted(rng.randrange(0, length + 1) for _ in range(rng.randrange(0, 5)))
        edges = [0, *cuts, length]
        assert_exact(squeeze, data, [data[a:b] for a, b in zip(edges, edges[1:])],
                     after_whitespace=rng.random() < 0.8)


def test_the_corpus_and_long_runs(squeeze, corpus):
    text = b"".join(path.read_bytes() for path in sorted(corpus.iterdir()))
    assert_exact(squeeze, text)
    assert_exact(squeeze, b" " * 1000 + b"x" + b"\t" * 999 + b"y" + b"z" * 1000)
    assert_exact(squeeze, bytes(range(256)) * 40)


def test_chunk_boundaries_of_split_stream(squeeze, monkeypatch):
    """Through split_stream with its real CHUNK_SIZE: runs of whitespace and tokens that
    end, start or straddle each chunk boundary."""
    size = tokens.CHUNK_SIZE
    pieces = []
    for offset in range(-40, 41, 3):  # where a run of 5 whitespace bytes starts, near a boundary
        body = b"t" * (size - len(b"".join(pieces)) % size + offset)
        pieces += [body, b" \n\t\r\v"]
    data = b"".join(pieces) + b"tail"
    monkeypatch.setattr(native, "kernel", lambda: squeeze)
    out = io.BytesIO()
    assert tokens.split_stream(io.BytesIO(data), out.write) == len(data.split())
    assert out.getvalue() == reference(data)


def test_byte_ranges_cut_anywhere_join_to_the_file_output(squeeze, tmp_path, corpus,
                                                          monkeypatch):
    """A large file cut into byte ranges, as workers split it: cuts inside runs of
    whitespace, at and around block and chunk boundaries, and at random places."""
    text = b"".join(path.read_bytes() for path in sorted(corpus.iterdir()))[:600_000]
    runs = [i for i in range(1, len(text)) if text[i] in WHITESPACE and text[i - 1] in WHITESPACE]
    rng = random.Random(7)
    cuts = sorted({*rng.sample(runs, 20), *(rng.randrange(len(text)) for _ in range(20)),
                   tokens.CHUNK_SIZE, tokens.CHUNK_SIZE + 1, 2 * tokens.CHUNK_SIZE - 1,
                   BLOCK, BLOCK + 1, 3 * BLOCK - 1})
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "big.txt").write_bytes(text)
    monkeypatch.setattr(native, "kernel", lambda: squeeze)
    splitter = tokens.TokenSplitter(str(tmp_path / "in"), str(tmp_path / "out"))
    edges = [0, *cuts, len(text)]
    counted, parts = 0, []
    for k, (start, end) in enumerate(zip(edges, edges[1:])):
        parts.append(tmp_path / f"part{k}")
        counted += splitter.process_range(str(tmp_path / "in" / "big.txt"), start, end,
                                          str(parts[-1]))["tokens"]
    assert b"".join(part.read_bytes() for part in parts) == reference(text)
    assert counted == len(text.split())


@pytest.mark.parametrize("path", ["avx2", "sse2", "scalar"])
def test_amlshard_native_forces_a_path_in_the_job(tmp_path, corpus, prebuilt, path):
    """``AMLSHARD_NATIVE=PATH``: the job uses that path (byte-exact); one this CPU lacks
    is one warning, and the fastest path."""
    environ = clean_environ(AMLSHARD_CACHE=str(tmp_path / "cache"), AMLSHARD_NATIVE=path)
    environ.pop("CC", None)
    library = cache_prebuilt(prebuilt, tmp_path / "cache")
    copied = library.stat().st_ino
    chosen = subprocess.run(
        [sys.executable, "-c", "from job import native; print(native.selected(native.kernel()))"],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120)
    if path in expected_paths():
        assert chosen.stdout.strip() == path and chosen.stderr == ""
    else:
        assert chosen.stdout.strip() == expected_paths()[0]
        assert f"no compiled path {path!r} on this CPU" in chosen.stderr
    result = run_job("--input_dir", str(corpus), "--out_dir", str(tmp_path / "out"),
                     "--process_count", "2", env=environ)
    assert result.returncode == 0, result.stderr
    assert_outputs_exact(corpus, tmp_path / "out")
    assert sorted(os.listdir(tmp_path / "cache")) == cached(library)
    assert library.stat().st_ino == copied  # loaded from the cache, not compiled again


def test_an_unknown_amlshard_native_warns_once_and_uses_the_fastest(tmp_path, corpus, prebuilt):
    environ = clean_environ(AMLSHARD_CACHE=str(tmp_path / "cache"), AMLSHARD_NATIVE="avx9000")
    environ.pop("CC", None)
    cache_prebuilt(prebuilt, tmp_path / "cache")  # loaded, not compiled again
    result = run_job("--input_dir", str(corpus), "--out_dir", str(tmp_path / "out"),
                     "--process_count", "2", env=environ)
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if "token kernel" in line]
    assert len(warned) == 1 and "no compiled path 'avx9000'" in warned[0]
    assert f"using {expected_paths()[0]}" in warned[0]
    assert_outputs_exact(corpus, tmp_path / "out")


def split_small_file(squeeze, source: Path, output: Path) -> int:
    """``amlshard_split_small_file`` of ``squeeze``'s library, with buffers of its own."""
    capacity = tokens.WHOLE_FILE_BYTES + 1
    into, out = ctypes.create_string_buffer(capacity), ctypes.create_string_buffer(capacity)
    proc_fds = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY)
    try:
        return squeeze.split_small_file(os.fsencode(source), os.fsencode(output.parent),
                                        os.fsencode(output), proc_fds, ctypes.addressof(into),
                                        ctypes.addressof(out), capacity)
    finally:
        os.close(proc_fds)


SMALL_FILES = {
    "empty": b"", "only whitespace": b" \t\n\v\f\r \n", "one token": b"x", "every byte value":
    bytes(range(256)) * 3, "no whitespace at the end": b"a b\tc\r\nd", "whitespace at both ends":
    b"\n\n  a  b  \n\n", "the largest taken whole": (b"word \t" * 13_000 + b"z" * 65_536)[:65_536],
    "random bytes": bytes(random.Random(14).getrandbits(8) for _ in range(5_000)),
}


@pytest.mark.parametrize("content", SMALL_FILES.values(), ids=SMALL_FILES.keys())
def test_a_small_file_split_in_one_call_is_bytes_split_s(squeeze, tmp_path, content):
    """Each path of the kernel, each build: the whole file in one call gives exactly
    bytes.split's output and count, and the output appears under its name."""
    source, output = tmp_path / "in.txt", tmp_path / "out" / "o\xe9 \udcff.txt"
    source.write_bytes(content)
    output.parent.mkdir()
    assert split_small_file(squeeze, source, output) == len(content.split())
    assert output.read_bytes() == split_bytes(content)
    assert sorted(output.parent.iterdir()) == [output]


def test_what_the_one_call_does_not_take_it_leaves_untouched(library_build, tmp_path):
    """A file larger than the whole-file limit, a FIFO (not waited on), a missing input,
    an output that exists (it is replaced the Python way) or whose folder is missing:
    -1, and nothing written."""
    folder = tmp_path / "out"
    folder.mkdir()
    large = tmp_path / "large"
    large.write_bytes(b"a " * (tokens.WHOLE_FILE_BYTES // 2 + 1))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    small = tmp_path / "small"
    small.write_bytes(b"a b")
    existing = folder / "existing"
    existing.write_bytes(b"earlier\n")
    for source, output in ((large, folder / "large"), (fifo, folder / "fifo"),
                           (tmp_path / "missing", folder / "missing"), (small, existing),
                           (small, tmp_path / "no-such-folder" / "small")):
        assert split_small_file(library_build, source, output) == -1, source
    assert sorted(p.name for p in folder.iterdir()) == ["existing"]
    assert existing.read_bytes() == b"earlier\n"


def test_the_token_splitter_does_what_the_one_call_leaves_its_own_way(tmp_path):
    """An existing output is replaced whole, a missing folder made, a large file
    streamed: the same bytes as bytes.split either way."""
    inputs, outputs = tmp_path / "in", tmp_path / "out"
    (inputs / "sub").mkdir(parents=True)
    contents = {"new": b"a b c", "sub/deep": b"d\te", "large": b"f g " * 20_000,
                "existing": b"h i"}
    for rel, content in contents.items():
        (inputs / rel).write_bytes(content)
    outputs.mkdir()
    (outputs / "existing").write_bytes(b"earlier output\n")
    splitter = tokens.TokenSplitter(str(inputs), str(outputs))
    for rel, content in contents.items():
        assert splitter.process(str(inputs / rel)) == {"tokens": len(content.split())}
        assert (outputs / rel).read_bytes() == split_bytes(content), rel
