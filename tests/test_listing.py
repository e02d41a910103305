"""The listing rule every rank applies: recursive, sorted, dotfiles and out_dir skipped."""

import os
import re

import pytest

from job import DataInterface
from job.listing import InputDirError, InputFile, digested, digested_many, list_inputs


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "in"
    for rel in ["b.txt", "a/z.txt", "a/b/c.txt", "A.txt", "sp ace.txt", ".hidden", ".dir/x.txt",
                "out/old.txt"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    os.symlink(root / "b.txt", root / "link.txt")
    os.symlink(root / "a", root / "linkdir")
    return root


def test_listing_rule(tree):
    rels = [f.rel for f in list_inputs(tree, tree / "out")]
    assert rels == ["A.txt", "a/b/c.txt", "a/z.txt", "b.txt", "link.txt", "sp ace.txt"]


def test_sizes_are_those_of_the_targets(tree):
    sizes = {f.rel: f.size for f in list_inputs(tree, tree / "out")}
    assert sizes["link.txt"] == len("b.txt") and sizes["a/b/c.txt"] == len("a/b/c.txt")


def test_pattern_filters_relative_paths(tree):
    assert [f.rel for f in list_inputs(tree, tree / "out", "a/**")] == ["a/b/c.txt", "a/z.txt"]
    assert [f.rel for f in list_inputs(tree, tree / "out", "*.txt")][:2] == ["A.txt", "a/b/c.txt"]


def test_broken_link_is_listed_so_it_can_be_recorded(tree):
    os.symlink(tree / "gone", tree / "broken.txt")
    assert "broken.txt" in [f.rel for f in list_inputs(tree, tree / "out")]


def test_missing_or_file_input_dir(tmp_path):
    with pytest.raises(InputDirError, match="does not exist"):
        list_inputs(tmp_path / "nope")
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputDirError, match="is not a folder"):
        list_inputs(tmp_path / "f")


def test_seed_get_file_names_joins_input_dir(tree):
    names = DataInterface().get_file_names(str(tree))
    assert names[0] == os.path.join(str(tree), "A.txt")
    assert os.path.join(str(tree), "out/old.txt") in names  # no out_dir given: nothing to skip


@pytest.mark.parametrize("pattern, expected", [
    ("**/*.txt", ["A.txt", "a/b/c.txt", "a/z.txt", "b.txt", "link.txt", "sp ace.txt"]),
    ("a/**/*.txt", ["a/b/c.txt", "a/z.txt"]),
    ("a/*.txt", ["a/z.txt"]),
    ("*.txt", ["A.txt", "a/b/c.txt", "a/z.txt", "b.txt", "link.txt", "sp ace.txt"]),
    ("a/", ["a/b/c.txt", "a/z.txt"]),
    ("[ab].txt", ["b.txt"]),
    ("[!ab].txt", ["A.txt", "a/b/c.txt", "a/z.txt"]),
    ("?.txt", ["A.txt", "a/b/c.txt", "a/z.txt", "b.txt"]),
    ("**", ["A.txt", "a/b/c.txt", "a/z.txt", "b.txt", "link.txt", "sp ace.txt"]),
    ("[]b].txt", ["b.txt"]),
    ("[!]ab].txt", ["A.txt", "a/b/c.txt", "a/z.txt"]),
    ("./*.txt", ["A.txt", "b.txt", "link.txt", "sp ace.txt"]),  # the top level, as in a shell
    ("././a/*.txt", ["a/z.txt"]),
    ("./a/", ["a/b/c.txt", "a/z.txt"]),
    ("./", ["A.txt", "a/b/c.txt", "a/z.txt", "b.txt", "link.txt", "sp ace.txt"]),
])
def test_double_star_matches_zero_or_more_folders(tree, pattern, expected):
    assert [f.rel for f in list_inputs(tree, tree / "out", pattern)] == expected


@pytest.mark.parametrize("pattern, message", [
    ("", "pattern is empty"), ("/abs/*.txt", "relative to input_dir"),
    ("a**.txt", "'**' must be a whole folder name"), ("[ab.txt", "without its closing"),
    ("a//b", "empty folder name"),
])
def test_unusable_globs_are_refused(tree, pattern, message):
    with pytest.raises(InputDirError, match=re.escape(message)):
        list_inputs(tree, tree / "out", pattern)


def test_a_top_level_manifest_folder_is_reserved(tree):
    (tree / "_manifest").mkdir()
    (tree / "_manifest" / "shard-00000-of-00001.jsonl").write_text("{}\n")
    (tree / "a" / "_manifest").mkdir()
    (tree / "a" / "_manifest" / "kept.txt").write_text("an ordinary folder below the top")
    rels = [f.rel for f in list_inputs(tree, tree / "out")]
    assert not any(rel.startswith("_manifest") for rel in rels)
    assert "a/_manifest/kept.txt" in rels


def test_entries_that_cannot_be_examined_carry_their_error(tree):
    os.symlink(tree / "gone", tree / "broken.txt")
    os.symlink("loop.txt", tree / "loop.txt")
    failed = {f.rel: f.error for f in list_inputs(tree, tree / "out") if f.error}
    assert failed == {"broken.txt": "broken symbolic link: No such file or directory",
                      "loop.txt": "broken symbolic link: Too many levels of symbolic links"}


def test_any_name_the_file_system_allows_is_listed(tmp_path):
    root = os.fsencode(tmp_path)
    for name in (b"caf\xe9.txt", b"\xff.txt", b"ok.txt"):
        with open(os.path.join(root, name), "wb") as stream:
            stream.write(b"x")
    rels = {os.fsencode(f.rel) for f in list_inputs(tmp_path)}
    assert rels == {b"caf\xe9.txt", b"\xff.txt", b"ok.txt"}


def test_the_digest_tells_listings_apart(tree):
    from job.listing import digest
    first = list_inputs(tree, tree / "out")
    assert digest(first) == digest(list_inputs(tree, tree / "out"))
    (tree / "new.txt").write_text("n")
    assert digest(list_inputs(tree, tree / "out")) != digest(first)


def test_links_to_folders_are_named_not_followed(tree):
    linked = []
    rels = [f.rel for f in list_inputs(tree, tree / "out", None, linked)]
    assert not any(rel.startswith("linkdir/") for rel in rels)
    assert linked == ["linkdir"]


def test_a_pattern_that_matches_nothing_is_warned_about(tree, tmp_path):
    from conftest import run_job
    result = run_job("--input_dir", str(tree), "--out_dir", str(tmp_path / "o"),
                     "--pattern", "*.nope")
    assert result.returncode == 0, result.stderr
    assert "pattern '*.nope' matches no file under input_dir" in result.stderr
    result = run_job("--input_dir", str(tree), "--out_dir", str(tmp_path / "o2"),
                     "--pattern", "./*.txt")
    assert result.returncode == 0 and "matches no file" not in result.stderr, result.stderr
    assert (tmp_path / "o2" / "b.txt").exists() and not (tmp_path / "o2" / "a").exists()


@pytest.mark.parametrize("items", [
    [],
    [InputFile("a", 0, 1), InputFile("d\u00e9/f\nx", 12, 2), InputFile("caf\udce9", 3, None)],
    [InputFile("a", 5, 1), InputFile("gone/", 0, None, "cannot list the folder: Permission denied")],
], ids=["none", "odd names", "a failure"])
def test_the_digest_of_many_inputs_is_theirs_one_by_one(items):
    assert digested_many(items) == b"".join(map(digested, items))
