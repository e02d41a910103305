"""The compiled helpers of the rank's planning against their Python twins.

``job.native.size_shards`` (the ``size`` strategy's assignment) must give what
``job.sharding``'s Python balance gives, tie for tie, and refuse what it cannot
take; ``job.native.examine`` must report each entry of a folder as ``os.stat``
(or ``os.lstat``) does. The listing built on them is compared with
``list_inputs`` in ``test_outline.py``, with and without the library.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import require
from job import native, sharding
from job import outline as streamed
from job.listing import list_inputs


@pytest.fixture(scope="module")
def compiled():
    require(shutil.which("cc") is not None or native.library() is not None, "a C compiler (cc)")
    if native.library() is None:
        pytest.fail("the compiled library could not be had: see the log")


def python_balance(sizes, count) -> list[list[int]]:
    """Each shard's items, ascending, as the Python twin assigns them."""
    shards = [[] for _ in range(count)]
    for item, shard in sharding._largest_first(sizes, count):
        shards[shard].append(item)
    return [sorted(s) for s in shards]


@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.one_of(st.sampled_from([0, 1, 7, 7, 4096, 1 << 40]),
                                st.integers(0, 1 << 50)), max_size=120),
       count=st.integers(1, 40))
def test_the_compiled_size_strategy_is_the_python_one(compiled, sizes, count):
    expected = python_balance(sizes, count)
    shard_of = native.size_shards(sizes, count)
    assert [[k for k, s in enumerate(shard_of) if s == i] for i in range(count)] == expected
    for index in range(count):
        assert native.size_shards(sizes, count, index).tolist() == expected[index]
    assert sharding.size_balanced(sizes, count) == expected


def test_many_sizes_of_every_width(compiled):
    """Sizes from 0 to 2**48 (keys that differ in the six bytes the radix sort sorts on,
    and add up within 64 bits), many alike, for a thousand shards."""
    rng = random.Random(14)
    sizes = [rng.choice([rng.randrange(1 << rng.randrange(1, 49)), 123, 0]) for _ in range(30_000)]
    expected = python_balance(sizes, 1000)
    assert [native.size_shards(sizes, 1000, i).tolist() for i in (0, 7, 999)] == \
        [expected[0], expected[7], expected[999]]
    assert sharding.size_balanced(sizes, 1000) == expected


@pytest.mark.parametrize("sizes, count", [
    ([3, -1, 2], 2),                    # a negative size
    ([1 << 62, 1 << 62], 2),            # loads past 64 bits
    ([1 << 63], 1),                     # not a 64-bit signed integer
    ([1.5, 2], 2),                      # not integers
])
def test_what_the_compiled_balance_does_not_take_python_does(compiled, sizes, count):
    assert native.size_shards(sizes, count) is None
    assert native.size_shards(sizes, count, 0) is None
    assert sharding.size_balanced(sizes, count) == python_balance(sizes, count)
    assert sharding.size_shard(sizes, 0, count) == python_balance(sizes, count)[0]


def test_without_the_library_planning_is_done_in_python(monkeypatch):
    monkeypatch.setattr(native, "library", lambda: None)
    sizes = [5, 1, 4, 2, 2, 0]
    assert native.size_shards(sizes, 2) is None
    assert sharding.size_balanced(sizes, 2) == python_balance(sizes, 2) == [[0, 4, 5], [1, 2, 3]]
    # a billion ranks hold no billion loads: only the first len(sizes) ever take a file
    assert sharding.size_shard(sizes, 2**31 - 2, 2**31 - 1) == []
    assert sharding.size_shard(sizes, 5, 2**31 - 1) == [5]


@pytest.mark.parametrize("in_two", [10**6, 2, 5], ids=["one-call", "two-threads", "uneven"])
def test_examine_reports_what_stat_reports(compiled, tmp_path, monkeypatch, in_two):
    monkeypatch.setattr(native, "EXAMINED_IN_TWO", in_two)  # halves from this many names on
    folder = tmp_path / "folder"
    folder.mkdir()
    names = {"empty": b"", "small": b"a b c", "larger": b"x" * 70_000,
             "new\nline": b"n", "caf\udce9": b"not UTF-8"}
    for name, content in names.items():
        (folder / name).write_bytes(content)
    os.symlink("small", folder / "link")
    os.symlink("gone", folder / "broken")
    os.symlink(tmp_path, folder / "to-folder")
    (folder / "sub").mkdir()
    os.mkfifo(folder / "fifo")
    asked = [*names, "link", "broken", "to-folder", "sub", "fifo", "missing", "sub/../small"]
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for follow in (True, False):
            kinds, sizes, mtimes = native.examine(fd, asked, follow)
            for k, name in enumerate(asked):
                try:
                    info = os.stat(name, dir_fd=fd, follow_symlinks=follow)
                except OSError as error:
                    assert kinds[k] == -error.errno, name
                    continue
                assert kinds[k] == stat.S_IFMT(info.st_mode), name
                if stat.S_ISREG(info.st_mode):
                    assert (sizes[k], mtimes[k]) == (info.st_size, info.st_mtime_ns), name
        assert native.examine(fd, []) is None  # nothing to ask: the caller's loop does nothing
    finally:
        os.close(fd)


FUTURE = 10_413_792_000  # 2300-01-01 (ext4 keeps times to 2446): its nanoseconds pass 2**63


@pytest.mark.parametrize("sizes", [False, True], ids=["contiguous", "size"])
def test_a_file_dated_after_2262_keeps_its_modification_time(compiled, tmp_path, sizes):
    root = tmp_path / "in"
    root.mkdir()
    (root / "future.txt").write_bytes(b"a b\n")
    os.utime(root / "future.txt", (FUTURE, FUTURE))
    if os.stat(root / "future.txt").st_mtime_ns != FUTURE * 10**9:
        pytest.skip("this file system does not keep a time past 2262")
    expected = list_inputs(str(root))
    walked = streamed.outline(str(root), sizes=sizes)
    assert streamed.take(walked, range(walked.count)) == expected
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert native.examine(fd, ["future.txt"])[0][0] == -errno.EOVERFLOW  # left to Python
    finally:
        os.close(fd)


def test_odd_arguments_are_refused_or_taken_item_by_item(compiled, tmp_path):
    sizes = bytes([5, 1, 4, 2, 0, 0, 0, 0])  # eight sizes, not one 64-bit word
    assert sharding.size_balanced(sizes, 2) == python_balance(sizes, 2)
    assert native.size_shards([3, 1, 2], 2, 1 << 64).tolist() == []  # a shard past the items
    assert native.size_shards([3, 1, 2], 2, -1) is None
    assert native.size_shards([3, 1, 2], 10**12).tolist() == [0, 2, 1]  # as many as items
    assert sharding.size_shard([3, 1, 2], 7, 2**31 - 1) == []
    assert sharding.size_shard([3, 1, 2], 2, 2**31 - 1) == [1]
    (tmp_path / "b").write_bytes(b"")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert native.examine(fd, ["a\0b", "b"]) is None  # a NUL: os.stat's ValueError
        assert native.examine(1 << 40, ["b"]) is None  # no descriptor that large
    finally:
        os.close(fd)


def test_without_a_second_thread_one_call_examines_every_name(compiled, tmp_path, monkeypatch):
    for size in range(600):
        (tmp_path / f"f{size:03d}").write_bytes(b"x" * size)

    def refused(thread):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(native, "EXAMINED_IN_TWO", 2)
    monkeypatch.setattr(native.threading.Thread, "start", refused)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        kinds, sizes, _ = native.examine(fd, sorted(os.listdir(tmp_path)))
    finally:
        os.close(fd)
    assert set(kinds) == {stat.S_IFREG} and list(sizes) == list(range(600))
