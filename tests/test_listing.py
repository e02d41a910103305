"""The listing rule every rank applies: recursive, sorted, dotfiles and out_dir skipped."""

import os

import pytest

from job import DataInterface
from job.listing import InputDirError, list_inputs


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
