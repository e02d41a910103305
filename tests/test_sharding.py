"""Sharding as the contract states it: a table of cases, then properties over many."""

import doctest
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from job import sharding


@pytest.mark.parametrize("length, index, count, expected", [
    (30, 3, 5, range(18, 24)),          # the seed's example: node 3 of 5 takes files 18..23
    (30, 0, 5, range(0, 6)),
    (30, 4, 5, range(24, 30)),
    (7, 0, 3, range(0, 3)),             # the first len % n shards take one more
    (7, 1, 3, range(3, 5)),
    (7, 2, 3, range(5, 7)),
    (3, 4, 5, range(3, 3)),             # more ranks than files: the last ones are empty
    (3, 2, 5, range(2, 3)),
    (0, 0, 1, range(0, 0)),             # zero files
    (0, 2, 3, range(0, 0)),
    (1, 0, 1, range(0, 1)),
])
def test_contiguous_table(length, index, count, expected):
    assert sharding.contiguous_range(length, index, count) == expected


@pytest.mark.parametrize("index, count", [(-1, 3), (3, 3), (0, 0)])
def test_out_of_range_shard_is_refused(index, count):
    with pytest.raises(ValueError):
        sharding.contiguous_range(10, index, count)


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="unknown shard strategy"):
        sharding.plan([1, 2], [1, 2], 0, 1, "random")


@pytest.mark.parametrize("strategy", sharding.STRATEGIES)
@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.integers(0, 10**6), max_size=60), count=st.integers(1, 12))
def test_plans_are_disjoint_complete_and_ordered(strategy, sizes, count):
    items = [f"f{i:03d}" for i in range(len(sizes))]
    plans = [sharding.plan(items, sizes, i, count, strategy) for i in range(count)]
    flat = [item for plan in plans for item in plan]
    assert sorted(flat) == items and len(set(flat)) == len(flat)
    for plan in plans:
        assert plan == sorted(plan)
    if strategy == "contiguous":
        assert flat == items
        assert max(map(len, plans)) - min(map(len, plans)) <= 1


@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.integers(1, 10**6), min_size=1, max_size=200), count=st.integers(1, 8))
def test_size_strategy_is_balanced(sizes, count):
    loads = [sum(sizes[i] for i in shard) for shard in sharding.size_balanced(sizes, count)]
    # Greedy to the least loaded shard: the busiest one was at most average before its last file.
    assert max(loads) <= sum(sizes) / count + max(sizes)


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(1, 1000), min_size=1, max_size=7), count=st.integers(1, 3))
def test_size_strategy_is_within_grahams_bound_of_the_optimum(sizes, count):
    optimum = min(max(sum(s for s, shard in zip(sizes, assignment) if shard == k)
                      for k in range(count))
                  for assignment in itertools.product(range(count), repeat=len(sizes)))
    loads = [sum(sizes[i] for i in shard) for shard in sharding.size_balanced(sizes, count)]
    assert max(loads) <= optimum * (4 / 3 - 1 / (3 * count)) + 1e-9


def test_size_strategy_is_deterministic_with_ties():
    sizes = [5, 5, 5, 5, 1, 1]
    assert sharding.size_balanced(sizes, 3) == sharding.size_balanced(list(sizes), 3)
    assert sharding.size_balanced(sizes, 3) == [[0, 3], [1, 4], [2, 5]]


def test_docstring_examples():
    assert doctest.testmod(sharding).failed == 0


@pytest.mark.parametrize("strategy", ["contiguous", "size"])
def test_every_shard_s_plan_at_once_is_each_shard_s_plan(strategy):
    items = [f"f{i:03d}" for i in range(97)]
    sizes = [(i * 7919) % 101 for i in range(97)]
    assert sharding.plans(items, sizes, 7, strategy) == [
        sharding.plan(items, sizes, index, 7, strategy) for index in range(7)]
    with pytest.raises(ValueError, match="unknown shard strategy"):
        sharding.plans(items, sizes, 7, "random")
    with pytest.raises(ValueError, match="one size per item"):
        sharding.plans(items, sizes[:-1], 7, "size")
