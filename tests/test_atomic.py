"""Outputs appear whole or not at all, with an unnamed file or with a temporary name."""

import itertools
import os
import shutil
import signal

import pytest

from conftest import refuse_o_tmpfile
from job import atomic


@pytest.fixture(params=["unnamed", "named"])
def way(request, monkeypatch):
    """Both ways of writing: O_TMPFILE (Linux), and a temporary name (elsewhere)."""
    if request.param == "named":
        monkeypatch.setattr(atomic, "_O_TMPFILE", 0)
    else:
        assert atomic._O_TMPFILE, "Linux has O_TMPFILE"
    return request.param


def names(folder):
    return sorted(os.listdir(folder))


def test_nothing_shows_until_commit_then_the_whole_file(tmp_path, way):
    writer = atomic.AtomicWriter(tmp_path / "sub" / "out.txt", buffering=0)
    writer.stream.write(b"half")
    visible = names(tmp_path / "sub")
    assert "out.txt" not in visible
    assert visible == ([] if way == "unnamed" else [os.path.basename(writer.temp)])
    writer.stream.write(b" and the rest")
    writer.commit()
    assert names(tmp_path / "sub") == ["out.txt"]
    assert (tmp_path / "sub" / "out.txt").read_bytes() == b"half and the rest"
    assert oct((tmp_path / "sub" / "out.txt").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def test_an_existing_output_is_replaced_whole(tmp_path, way):
    (tmp_path / "out.txt").write_bytes(b"old")
    with atomic.atomic_output(tmp_path / "out.txt") as sink:
        sink.write(b"new")
        assert (tmp_path / "out.txt").read_bytes() == b"old"
    assert (tmp_path / "out.txt").read_bytes() == b"new"
    assert names(tmp_path) == ["out.txt"]


def test_a_failure_leaves_the_old_output_and_nothing_else(tmp_path, way):
    (tmp_path / "out.txt").write_bytes(b"old")
    with pytest.raises(ValueError):
        with atomic.atomic_output(tmp_path / "out.txt") as sink:
            sink.write(b"new")
            raise ValueError("processor failed")
    assert names(tmp_path) == ["out.txt"] and (tmp_path / "out.txt").read_bytes() == b"old"


def test_a_process_killed_mid_write_leaves_nothing_with_o_tmpfile(tmp_path):
    pid = os.fork()
    if pid == 0:  # the child: write half an output and die as the OOM killer would kill it
        writer = atomic.AtomicWriter(tmp_path / "out.txt", buffering=0)
        writer.stream.write(b"half")
        os.kill(os.getpid(), signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and names(tmp_path) == []


def test_a_file_system_that_refuses_o_tmpfile_gets_a_temporary_name(tmp_path, monkeypatch):
    refuse_o_tmpfile(monkeypatch)
    for name in ("a.txt", "b.txt"):
        with atomic.atomic_output(tmp_path / name) as sink:
            sink.write(name.encode())
            assert any(atomic.MARK in entry for entry in names(tmp_path))
    assert names(tmp_path) == ["a.txt", "b.txt"]
    assert atomic._no_tmpfile == {tmp_path.stat().st_dev}  # asked once per file system


@pytest.mark.parametrize("kernel_copy", [True, False])
def test_append_file_with_and_without_copy_file_range(tmp_path, monkeypatch, kernel_copy):
    if not kernel_copy:
        monkeypatch.delattr(atomic.os, "copy_file_range", raising=False)
    (tmp_path / "a").write_bytes(b"first\n" * 1000)
    (tmp_path / "b").write_bytes(b"second\n" * 1000)
    with atomic.atomic_output(tmp_path / "out", buffering=0) as sink:
        atomic.append_file(str(tmp_path / "a"), sink)
        atomic.append_file(str(tmp_path / "b"), sink)
    assert (tmp_path / "out").read_bytes() == b"first\n" * 1000 + b"second\n" * 1000


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Long names: the Linux NAME_MAX is 255 bytes, and a temporary name must fit it too.
LONG_NAMES = {
    "ascii-200": b"a" * 196 + b".txt",
    "ascii-235": b"b" * 231 + b".txt",
    "ascii-255": b"c" * 251 + b".txt",
    "utf8-2byte-255": "é".encode() * 126 + b"abc",       # a cut may fall inside a character
    "utf8-3byte-254": "語".encode() * 84 + b".tx",
    "utf8-4byte-255": "😀".encode() * 63 + b"end",
    "invalid-utf8-255": b"\xff\xfe" * 100 + b"\x80" * 50 + b"\xc3.txt",
    "invalid-utf8-201": b"\xe9t\xe9" * 67,
}


@pytest.fixture(params=sorted(LONG_NAMES))
def long_name(request) -> str:
    return os.fsdecode(LONG_NAMES[request.param])


def test_a_long_name_is_written_then_replaced(tmp_path, any_way, long_name, monkeypatch):
    monkeypatch.setattr(atomic, "_tag", atomic._tag)
    atomic.use_tag("12345of99999")
    final = os.path.join(tmp_path, long_name)
    for content in (b"first", b"second", b"third"):
        writer = atomic.AtomicWriter(final, buffering=0)
        writer.stream.write(content)
        if writer.temp is not None:  # the temporary name is there now, and fits NAME_MAX
            temp = os.path.basename(writer.temp)
            assert len(os.fsencode(temp)) <= 255 and temp in os.listdir(tmp_path)
        writer.commit()
        assert os.listdir(tmp_path) == [long_name]
        with open(final, "rb") as stream:
            assert stream.read() == content


def test_remove_temps_finds_the_temporary_files_of_a_long_name(tmp_path, long_name, monkeypatch):
    monkeypatch.setattr(atomic, "_O_TMPFILE", 0)
    monkeypatch.setattr(atomic, "_tag", atomic._tag)
    atomic.use_tag("3of5")
    neighbour = os.fsdecode(os.fsencode(long_name)[:-1] + b"_")  # differs in its last byte
    writers = [atomic.AtomicWriter(os.path.join(tmp_path, n)) for n in (long_name, neighbour)]
    assert atomic.remove_temps(str(tmp_path), name=long_name, tag="4of5") == 0
    assert atomic.remove_temps(str(tmp_path), name=long_name, pid=os.getpid() + 1) == 0
    assert atomic.remove_temps(str(tmp_path), name=long_name, tag="3of5", pid=os.getpid()) == 1
    assert os.listdir(tmp_path) == [os.path.basename(writers[1].temp)]
    assert atomic.remove_temps(str(tmp_path), tag="3of5") == 1
    assert os.listdir(tmp_path) == []


def test_temporary_names_fit_name_max_with_the_longest_tag_pid_and_count(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_O_TMPFILE", 0)
    monkeypatch.setattr(atomic, "_tag", atomic._tag)
    monkeypatch.setattr(atomic, "_pid", 4194304)  # the largest pid_max Linux allows
    monkeypatch.setattr(atomic, "_counter", itertools.count(10 ** 19))
    tag = "9" * 200  # tags longer than a temporary name can hold are shortened too
    atomic.use_tag(tag)
    base = b"x" * 240
    names = [os.fsdecode(base + end) for end in (b"a" * 15, b"b" * 15, b"\xff" * 15)]
    temps = set()
    for name in names:  # differ only past where a temporary name cuts them
        writer = atomic.AtomicWriter(os.path.join(tmp_path, name))
        temp = os.path.basename(writer.temp)
        assert len(os.fsencode(temp)) <= 255 and os.fsdecode(os.fsencode(temp)) == temp
        temps.add(temp.partition(atomic.MARK)[0])
    assert len(temps) == 3  # three outputs, three temporary names
    for name in names:
        assert atomic.remove_temps(str(tmp_path), name=name, tag=tag, pid=4194304) == 1
    assert os.listdir(tmp_path) == []


def test_a_shortened_name_never_stands_for_a_name_kept_whole(tmp_path, monkeypatch):
    """A name as long as a shortened one is shortened too, so no two outputs share one."""
    monkeypatch.setattr(atomic, "_O_TMPFILE", 0)
    long_name = "L" * 250
    writer = atomic.AtomicWriter(os.path.join(tmp_path, long_name))
    lookalike = os.path.basename(writer.temp).partition(atomic.MARK)[0][1:]  # whatever fits
    other = atomic.AtomicWriter(os.path.join(tmp_path, lookalike))
    assert atomic.remove_temps(str(tmp_path), name=lookalike) == 1
    assert os.listdir(tmp_path) == [os.path.basename(writer.temp)]
    other.abort()
    writer.abort()



@pytest.mark.parametrize("tag", ["", "a/b", "a\0b", "x.partial-y"])
def test_a_tag_that_would_break_temporary_names_is_refused(tag, monkeypatch):
    monkeypatch.setattr(atomic, "_tag", atomic._tag)
    with pytest.raises(ValueError, match="temporary-name tag"):
        atomic.use_tag(tag)


@pytest.mark.parametrize("removed", ["sub", "sub/deeper"])
def test_a_folder_removed_after_a_write_is_made_again(tmp_path, any_way, removed):
    final = tmp_path / "sub" / "deeper" / "out.txt"
    for content in (b"first", b"second"):
        with atomic.atomic_output(final) as sink:
            sink.write(content)
        assert final.read_bytes() == content
        assert names(final.parent) == ["out.txt"]
        shutil.rmtree(tmp_path / removed)


@pytest.mark.parametrize("unit", [b"a", "é".encode(), "語".encode(), "😀".encode(), b"\xff",
                                  b"\x80"])
def test_every_name_length_up_to_name_max_has_a_temporary_name(tmp_path, monkeypatch, unit):
    monkeypatch.setattr(atomic, "_O_TMPFILE", 0)
    monkeypatch.setattr(atomic, "_tag", atomic._tag)
    monkeypatch.setattr(atomic, "_pid", 4194304)
    monkeypatch.setattr(atomic, "_counter", itertools.count(10 ** 19))
    atomic.use_tag("t" * 31)  # the longest tag kept whole
    for length in range(170, 256):
        count = (length - 1) // len(unit)
        raw = unit * count + b"z" * (length - len(unit) * count)  # `length` bytes
        name = os.fsdecode(raw)
        writer = atomic.AtomicWriter(os.path.join(tmp_path, name))
        temp = os.fsencode(os.path.basename(writer.temp))
        assert len(temp) <= 255
        kept = temp.partition(os.fsencode(atomic.MARK))[0][1:]
        if length < atomic.NAME_KEPT:
            assert kept == raw
        else:
            assert len(kept) == atomic.NAME_KEPT
            if unit[0] < 0x80 or len(unit) > 1:  # the name is UTF-8: so is what is kept of it
                assert kept.decode().endswith(tuple("0123456789abcdef"))
        assert atomic.remove_temps(str(tmp_path), name=name, tag="t" * 31, pid=4194304) == 1
        writer.stream.close()
    assert os.listdir(tmp_path) == []


def test_remove_folder_removes_it_with_what_it_holds_and_ignores_a_missing_one(tmp_path):
    empty, full, link = tmp_path / "empty", tmp_path / "full", tmp_path / "link"
    empty.mkdir()
    (full / "a" / "b").mkdir(parents=True)
    (full / "a" / "b" / "part").write_bytes(b"x")
    (full / "top").write_bytes(b"y")
    link.symlink_to(full)  # as shutil.rmtree: a link is not followed, nor removed
    for folder in (empty, full, tmp_path / "missing", link):
        atomic.remove_folder(str(folder))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link"] and not full.exists()
