"""Outputs appear whole or not at all, with an unnamed file or with a temporary name."""

import errno
import os
import signal

import pytest

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
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):  # as blobfuse and NFS answer
        if flags & atomic._O_TMPFILE == atomic._O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(atomic, "_no_tmpfile", set())
    monkeypatch.setattr(atomic.os, "open", refusing_open)
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
