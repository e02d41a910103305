"""The streamed listing (job.outline) against the straightforward one (job.listing.list_inputs).

For every rank of several layouts, both strategies, on trees whose names sort
tricky around '/' ('a', 'a.b', 'a-b', 'a0', 'a/b'), names that are not UTF-8,
names beginning with '.', empty and unreadable folders, patterns, out_dir
inside input_dir, a top-level _manifest, links, and more ranks than files:
the same files, in the same order, with the same sizes and errors, the same
links to folders and folder identities; each layout's plans a partition.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, clean_environ
from job import native, sharding
from job import outline as streamed
from job.listing import PATHS_DIGEST, digest, list_inputs, paths_digest

LAYOUTS = (1, 2, 3, 5, 7, 40)  # 40: more ranks than files in most trees
PATTERNS = (None, "*.txt", "a/**", "**/b*", "x/*")

TRICKY = [b"new\nline", b"a/b", b"a.b", b"a-b", b"a0", b"a b", b"a!", b"a~", b"ab/c", b"a.b.c/d",
          b"a-/e",
          b"y/a", b"y/a.b/c", b"y/a-b", b"y/a0/f", b"x/a/b/c.txt", b"x/a/b.txt", b"x/a/b-c",
          b"x/a/b0", b"x/a/b!", b"b.txt", b"\xff", b"a\xff", b"d\xe9/f.txt", b"d\xe9/\xfe.txt",
          b"d/\xe9", b".hidden", b".dir/x.txt", b"x/.h.txt", b"deep/1/2/3/4/5.txt",
          b"sub/_manifest/kept.txt", b"_manifest/shard-00000-of-00001.jsonl", b"out/old.txt",
          b"\xc3\xa9t\xc3\xa9.txt", b"Z", b"_", b"a/\xff"]


def make_tree(root: bytes, paths, empty_folders=(b"empty", b"e1/e2/e3", b"x/a/empty")) -> None:
    for number, rel in enumerate(paths):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as stream:
            stream.write(b"x" * (number * 37 % 101))  # sizes differ: the size strategy works
    for rel in empty_folders:
        os.makedirs(os.path.join(root, rel), exist_ok=True)


def tricky_tree(tmp_path) -> bytes:
    root = os.path.join(os.fsencode(tmp_path), b"in")
    make_tree(root, TRICKY)
    os.symlink(os.path.join(root, b"b.txt"), os.path.join(root, b"x/link.txt"))
    os.symlink(os.path.join(root, b"x"), os.path.join(root, b"linkdir"))
    os.symlink(os.path.join(root, b"gone"), os.path.join(root, b"x/a/broken"))
    os.symlink(b"loop", os.path.join(root, b"loop"))
    os.mkfifo(os.path.join(root, b"x/fifo"))
    return root


def compare(root, out=None, pattern=None, layouts=LAYOUTS) -> int:
    """Assert that the outline gives what list_inputs and sharding.plan give; the listing's
    length."""
    root, out = os.fsdecode(root), None if out is None else os.fsdecode(out)
    linked, ids = [], set()
    listing = list_inputs(root, out, pattern, linked, ids)
    sizes = [f.size for f in listing]
    for strategy in sharding.STRATEGIES:
        streamed_linked, streamed_ids = [], set()
        walked = streamed.outline(root, out, pattern, streamed_linked, streamed_ids,
                                  sizes=strategy == "size")
        assert sorted(streamed_linked) == sorted(linked) and streamed_ids == ids
        assert walked.count == len(listing)
        if strategy == "size":
            assert walked.summary() == streamed.Summary.of(listing)
            assert list(walked.sizes) == sizes
        else:
            assert walked.digest == paths_digest(f.rel for f in listing)
            assert walked.digest_of == "paths"
        assert streamed.take(walked, range(len(listing))) == listing
        for start in range(0, len(listing), 3):  # blocks across runs and folders
            for stop in range(start + 1, len(listing) + 1, 4):
                block = streamed.take(walked, range(start, stop))
                assert block == streamed.take(walked, list(range(start, stop)))
                assert block == listing[start:stop]
        for count in layouts:
            plans = [streamed.shard(walked, index, count, strategy) for index in range(count)]
            expected = [sharding.plan(listing, sizes, index, count, strategy)
                        for index in range(count)]
            assert plans == expected, (strategy, count)
            assert_partition(plans, listing, strategy)
    return len(listing)


def assert_partition(plans, listing, strategy) -> None:
    """Disjoint, their union the listing; in order, and for contiguous the listing itself."""
    taken = [item for plan in plans for item in plan]
    assert len(taken) == len(listing) and sorted(taken) == sorted(listing)
    assert len({item.rel for item in taken}) == len(taken)
    for plan in plans:
        assert plan == sorted(plan)
    if strategy == "contiguous":
        assert taken == listing


@pytest.fixture(params=["compiled", "python"])
def planning(request, monkeypatch):
    """The outline's files examined, and the size strategy balanced, by the compiled
    library (job.native: where it can be had), then by their Python twins."""
    if request.param == "python":
        monkeypatch.setattr(native, "library", lambda: None)
    return request.param


@pytest.mark.parametrize("pattern", PATTERNS)
def test_the_streamed_listing_is_the_full_one(tmp_path, pattern, planning):
    root = tricky_tree(tmp_path)
    assert compare(root, os.path.join(root, b"out"), pattern) > 0 or pattern == "x/*"


def test_the_order_around_the_slash(tmp_path):
    """'a-b' < 'a.b' < 'a/...' < 'a0': a folder sorts as its name and '/'."""
    root = tricky_tree(tmp_path)
    rels = [os.fsencode(f.rel) for f in streamed.take(*whole(root))]
    assert rels.index(b"a!") < rels.index(b"a-b") < rels.index(b"a.b") < rels.index(b"a/b") \
        < rels.index(b"a/\xff") < rels.index(b"a0") < rels.index(b"ab/c")
    # a byte that is not UTF-8 is a code point U+DC80-U+DCFF: it sorts after 'b', as text does
    assert rels.index(b"ab/c") < rels.index(b"a\xff") < rels.index(b"b.txt")
    assert rels.index(b"x/a/b!") < rels.index(b"x/a/b-c") < rels.index(b"x/a/b.txt") \
        < rels.index(b"x/a/b/c.txt") < rels.index(b"x/a/b0")
    assert rels.index(b"y/a") < rels.index(b"y/a-b") < rels.index(b"y/a.b/c") < rels.index(b"y/a0/f")
    assert b".hidden" not in rels and not any(r.startswith((b"out/", b"_manifest/")) for r in rels)
    assert b"sub/_manifest/kept.txt" in rels


def whole(root):
    walked = streamed.outline(os.fsdecode(root), os.fsdecode(os.path.join(root, b"out")))
    return walked, range(walked.count)


def test_no_file_at_all_and_more_ranks_than_files(tmp_path):
    root = os.fsencode(tmp_path / "in")
    make_tree(root, [])
    assert compare(root, layouts=(1, 3)) == 0
    make_tree(root, [b"only"])
    assert compare(root, layouts=(1, 2, 9)) == 1


def test_a_flat_folder(tmp_path):
    root = os.fsencode(tmp_path / "in")
    make_tree(root, [b"f%04d" % i for i in range(300)] + [b"a", b"a.b", b"z-"], ())
    assert compare(root, layouts=(1, 7, 1000)) == 303


def test_out_dir_under_another_name_is_skipped(tmp_path):
    root = tricky_tree(tmp_path)
    os.symlink(os.path.join(root, b"out"), os.path.join(os.fsencode(tmp_path), b"alias"))
    compare(root, os.path.join(os.fsencode(tmp_path), b"alias"))
    compare(root, os.path.join(root, b"x", b"a"))  # a folder inside the tree as out_dir


def test_an_unreadable_folder_is_one_failed_input_in_its_place(tmp_path):
    """As root, CAP_DAC_* are dropped in the child that compares (see test_exactly_once)."""
    root = tricky_tree(tmp_path)
    for locked in (b"x/a/b", b"d\xe9", b"e1"):
        os.chmod(os.path.join(root, locked), 0)
    script = ("import sys, test_outline; from job.listing import list_inputs; "
              "root = sys.argv[1].encode('utf-8', 'surrogateescape'); "
              "test_outline.compare(root, None, None); test_outline.compare(root, None, '*.txt');"
              "print([f.rel for f in list_inputs(sys.argv[1]) if f.error])")
    from test_exactly_once import _without_root_file_access
    drop = _without_root_file_access if os.geteuid() == 0 else None
    try:
        done = subprocess.run([sys.executable, "-c", script, os.fsdecode(root)],
                              env={**clean_environ(),
                                   "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"},
                              cwd=ROOT, capture_output=True, text=True, timeout=120,
                              preexec_fn=drop)
    finally:
        for locked in (b"x/a/b", b"d\xe9", b"e1"):
            os.chmod(os.path.join(root, locked), 0o755)
    assert done.returncode == 0, done.stderr
    assert "'d\\udce9/'" in done.stdout and "'e1/'" in done.stdout and "'x/a/b/'" in done.stdout


def test_a_folder_that_changed_is_found_and_the_rank_lists_again(tmp_path, monkeypatch):
    monkeypatch.setattr(streamed, "KEPT_NAMES", 0)  # a large tree: its folders are read again
    root = os.fsencode(tmp_path / "in")
    make_tree(root, [b"a/%03d" % i for i in range(50)] + [b"b/%03d" % i for i in range(50)], ())
    walked = streamed.outline(os.fsdecode(root))
    with open(os.path.join(root, b"a/new"), "wb"):
        pass
    with pytest.raises(streamed.ListingChanged):
        streamed.shard(walked, 0, 4)  # its files are in a/, which holds one input more
    assert len(streamed.shard(walked, 3, 4)) == 25  # b/ is as it was
    os.unlink(os.path.join(root, b"a/new"))
    os.unlink(os.path.join(root, b"a/007"))
    with open(os.path.join(root, b"a/0070"), "wb"):
        pass  # as many inputs as before, other names
    with pytest.raises(streamed.ListingChanged):
        streamed.shard(walked, 0, 4)


def test_the_run_lists_again_when_the_folder_changed(tmp_path, monkeypatch, caplog):
    from job import config as config_module, ranks, run
    monkeypatch.setattr(streamed, "KEPT_NAMES", 0)
    root = tmp_path / "in"
    make_tree(os.fsencode(root), [b"a/%03d" % i for i in range(20)], ())
    job_config = config_module.load(input_dir=str(root), out_dir=str(tmp_path / "o"))
    rank = ranks.Rank(node_rank=1, node_count=2, source="test")
    original = streamed.outline

    def outline_then_change(*args, **kwargs):
        walked = original(*args, **kwargs)
        (root / "a" / "000").unlink()
        return walked

    monkeypatch.setattr(streamed, "outline", outline_then_change)
    summary, files = run.list_shard(job_config, rank, [], set())
    assert [f.rel for f in files] == [f"a/{i:03d}" for i in range(11, 20)]
    assert summary == streamed.Summary.of(list_inputs(root, tmp_path / "o"), PATHS_DIGEST)
    assert "changed while it was listed" in caplog.text


_NAME = st.sampled_from(["a", "a.b", "a-b", "a0", "b", "a b", "\udcff", "a\udcfe", ".h", "Z",
                         "_manifest", "é"])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(paths=st.lists(st.lists(_NAME, min_size=1, max_size=4), max_size=25),
       pattern=st.sampled_from([None, "a*", "**/a.b", "a/**"]))
def test_random_trees(tmp_path_factory, paths, pattern):
    root = os.fsencode(tmp_path_factory.mktemp("tree"))
    taken: set[bytes] = set()
    for parts in paths:
        rel = os.fsencode("/".join(parts))
        # a path whose folder is a file already taken, or the other way round, cannot be made
        if any(rel.startswith(t + b"/") or t.startswith(rel + b"/") or t == rel for t in taken):
            continue
        taken.add(rel)
    make_tree(root, sorted(taken), (b"a/empty",) if b"a" not in taken else ())
    compare(root, None, pattern, layouts=(1, 2, 3, 30))


def test_size_shard_is_size_balanced_one_shard_at_a_time():
    sizes = [5, 1, 4, 2, 2, 2, 0, 9, 9, 3] * 7
    for count in (1, 2, 3, 8, 100):
        assert [sharding.size_shard(sizes, i, count) for i in range(count)] == \
            sharding.size_balanced(sizes, count)


def test_a_newline_in_a_name_does_not_make_two_listings_alike():
    assert paths_digest(["a\nb", "c"]) != paths_digest(["a", "b\nc"])


def test_a_contiguous_digest_ignores_sizes_a_size_one_does_not(tmp_path):
    make_tree(os.fsencode(tmp_path / "in"), [b"a", b"b"], ())
    root = str(tmp_path / "in")
    before = (streamed.outline(root).digest, streamed.outline(root, sizes=True).digest)
    with open(os.path.join(root, "a"), "ab") as stream:
        stream.write(b"more")
    assert streamed.outline(root).digest == before[0]
    assert streamed.outline(root, sizes=True).digest != before[1]
    assert streamed.outline(root, sizes=True).digest == digest(list_inputs(root))


@pytest.mark.parametrize("folder", [b"x/a", b"."])
def test_a_folder_whose_reading_fails_part_way(tmp_path, monkeypatch, folder):
    """An I/O error after a few entries: the folder is an input 'NAME/' ('' for input_dir)
    with the error, first among its own, and the entries read before it are listed, by both
    listings."""
    root = tricky_tree(tmp_path)
    failing = {os.path.normpath(os.path.join(root, folder))}
    real_scandir = os.scandir

    class PartWay:
        def __init__(self, fd):
            self.entries = real_scandir(fd)
            where = os.readlink(f"/proc/self/fd/{fd}") if isinstance(fd, int) else fd
            self.left = 2 if os.fsencode(os.path.normpath(where)) in failing else None

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.entries.close()

        def __iter__(self):
            for entry in self.entries:
                if self.left == 0:
                    raise OSError(5, "Input/output error")
                if self.left is not None:
                    self.left -= 1
                yield entry

    monkeypatch.setattr(os, "scandir", PartWay)
    compare(root, None, None, layouts=(1, 3, 40))
    failed = [f.rel for f in list_inputs(os.fsdecode(root)) if f.error]
    assert ("x/a/" if folder == b"x/a" else "") in failed


def test_a_small_tree_is_read_once_and_planned_from_that_one_reading(tmp_path, monkeypatch):
    """Up to KEPT_NAMES inputs, the walk keeps each folder's names: the rank's files are
    examined without reading their folders again, so the plan is of one consistent
    reading (a file landing afterwards is not in it); a file of it deleted since is still
    found (ListingChanged). A larger tree keeps none."""
    root = os.fsencode(tmp_path / "in")
    make_tree(root, [b"a/%03d" % i for i in range(6)] + [b"b/%03d" % i for i in range(6)], ())
    walked = streamed.outline(os.fsdecode(root))
    assert sorted(walked.kept) == [0, 1, 2]
    scans = []
    real_scandir = os.scandir
    monkeypatch.setattr(streamed.os, "scandir", lambda fd: scans.append(fd) or real_scandir(fd))
    with open(os.path.join(root, b"a/new"), "wb"):
        pass
    assert [f.rel for f in streamed.shard(walked, 0, 2)] == ["a/%03d" % i for i in range(6)]
    assert scans == []
    os.unlink(os.path.join(root, b"b/003"))
    with pytest.raises(streamed.ListingChanged):
        streamed.shard(walked, 1, 2)
    monkeypatch.setattr(streamed, "KEPT_NAMES", 5)
    assert streamed.outline(os.fsdecode(root)).kept is None


def _odd_tree(root):
    """Names that sort around "/", a newline, non-UTF-8 bytes, nested folders, links to a
    file and to a folder, an unreadable folder (readable to root all the same)."""
    for folder in ("a/b", "a-b.d", "deep/x/y", "locked"):
        os.makedirs(root / folder)
    for name in ("a-b", "a0", "b\nc", "\u00e9", "z", "a-b.d/q", "locked/in"):
        (root / name).write_bytes(b"t u\n")
    for k in range(7):
        (root / "a" / f"f{k}").write_bytes(b"x " * k)
        (root / "a" / "b" / f"g{k}").write_bytes(b"y")
        (root / "deep" / "x" / "y" / f"h{k}").write_bytes(b"zz " * k)
    os.symlink("a/f1", root / "link-file")
    os.symlink("a", root / "link-folder")
    with open(os.path.join(os.fsencode(str(root)), b"bad\xff"), "wb") as stream:
        stream.write(b"n o")
    os.chmod(root / "locked", 0)


@pytest.mark.parametrize("kept", [0, 5, 31, 10**6])
@pytest.mark.parametrize("strategy", ["contiguous", "size"])
@pytest.mark.parametrize("pattern", [None, "**/f*", "a/**/*"])
def test_every_rank_takes_its_plan_of_the_whole_listing_whatever_names_are_kept(
        tmp_path, monkeypatch, kept, strategy, pattern, planning):
    """With no names kept, some, or all (KEPT_NAMES around the tree's 31 inputs), each rank's
    files are those job.sharding.plan gives it from the whole listing, and the summary is
    the listing's."""
    root = tmp_path / "in"
    root.mkdir()
    _odd_tree(root)
    monkeypatch.setattr(streamed, "KEPT_NAMES", kept)
    try:
        whole = list_inputs(str(root), None, pattern)
        for count in (1, 3, 40):
            for index in range(count):
                walked = streamed.outline(str(root), None, pattern, [], sizes=strategy == "size")
                assert walked.summary() == streamed.Summary.of(whole, walked.digest_of)
                assert streamed.shard(walked, index, count, strategy) == sharding.plan(
                    whole, [f.size for f in whole], index, count, strategy)
    finally:
        os.chmod(root / "locked", 0o755)


def test_files_that_change_before_the_size_walk_examines_them(tmp_path, monkeypatch, planning):
    """A file deleted, or replaced by a folder, between the reading of its folder and its
    examination (the ``size`` strategy's walk examines them in a batch): left out, as
    ``list_inputs`` leaves out a file gone before its examination."""
    root = tmp_path / "in"
    root.mkdir()
    for name in "abcd":
        (root / name).write_bytes(name.encode() * 3)
    real = streamed._examine_files

    def changing(fd, prefix, names, examined, linked):
        (root / "b").unlink()
        (root / "c").unlink()
        (root / "c").mkdir()
        return real(fd, prefix, names, examined, linked)

    monkeypatch.setattr(streamed, "_examine_files", changing)
    walked = streamed.outline(str(root), None, None, [], sizes=True)
    assert walked.count == 2 and list(walked.sizes) == [3, 3]
    assert [f.rel for f in streamed.shard(walked, 0, 1, "size")] == ["a", "d"]


def test_a_file_that_becomes_a_link_before_the_size_walk_examines_it(tmp_path, monkeypatch,
                                                                      planning):
    """A file replaced by a link to a file is an input still (the listing follows links);
    by a broken link, a failed one."""
    root = tmp_path / "in"
    root.mkdir()
    for name in "abc":
        (root / name).write_bytes(name.encode() * 3)
    (root / ".elsewhere").write_bytes(b"12345")
    real = streamed._examine_files

    def changing(fd, prefix, names, examined, linked):
        for name, target in (("b", ".elsewhere"), ("c", "gone")):
            (root / name).unlink()
            (root / name).symlink_to(target)
        return real(fd, prefix, names, examined, linked)

    monkeypatch.setattr(streamed, "_examine_files", changing)
    walked = streamed.outline(str(root), None, None, [], sizes=True)
    assert list(walked.sizes) == [3, 5, 0]
    taken = streamed.shard(walked, 0, 1, "size")
    assert [(f.rel, f.size) for f in taken[:2]] == [("a", 3), ("b", 5)]
    assert taken[2].rel == "c" and taken[2].error.startswith("broken symbolic link")
