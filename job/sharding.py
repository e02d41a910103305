"""Which files each shard takes: pure functions of (sorted list, sizes, index, count).

Every shard's plan is disjoint from every other's and their union is the whole
list, whatever the strategy.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence

from . import native

STRATEGIES = ("contiguous", "size")


def _check(index: int, count: int) -> None:
    if count < 1:
        raise ValueError(f"shard count must be >= 1, got {count}")
    if not 0 <= index < count:
        raise ValueError(f"shard index must be in [0, {count}), got {index}")


def contiguous_range(length: int, index: int, count: int) -> range:
    """The block of ``range(length)`` that shard ``index`` of ``count`` takes.

    The first ``length % count`` shards take one item more; the shards in
    order, concatenated, give back ``range(length)``. The seed's example,
    30 files, node 3 of 5:

    >>> contiguous_range(30, 3, 5)
    range(18, 24)
    >>> [len(contiguous_range(7, i, 3)) for i in range(3)]
    [3, 2, 2]
    """
    _check(index, count)
    div, mod = divmod(length, count)
    start = index * div + min(index, mod)
    return range(start, start + div + (1 if index < mod else 0))


def size_balanced(sizes: Sequence[int], count: int) -> list[list[int]]:
    """Indices of ``sizes`` assigned to each of ``count`` shards, balancing total bytes.

    Largest item first to the least loaded shard (ties: the lower item index
    first, then the lower shard index), so every rank computes the same
    assignment. Each shard's indices come back in ascending order.

    >>> size_balanced([5, 1, 4, 2], 2)
    [[0, 1], [2, 3]]
    """
    _check(0, count)
    shards: list[list[int]] = [[] for _ in range(count)]
    compiled = native.size_shards(sizes, count)
    if compiled is not None:
        for item, shard in enumerate(compiled):
            shards[shard].append(item)
        return shards
    for item, shard in _largest_first(sizes, count):
        shards[shard].append(item)
    return [sorted(s) for s in shards]


def size_shard(sizes: Sequence[int], index: int, count: int) -> list[int]:
    """The indices :func:`size_balanced` gives shard ``index``, in ascending order, without
    keeping the other shards' (a million sizes: one list of a million indices, not two).

    >>> size_shard([5, 1, 4, 2], 1, 2)
    [2, 3]
    """
    _check(index, count)
    compiled = native.size_shards(sizes, count, index)
    if compiled is not None:
        return compiled.tolist()
    return sorted(item for item, shard in _largest_first(sizes, count) if shard == index)


def _largest_first(sizes: Sequence[int], count: int) -> Iterator[tuple[int, int]]:
    """``(item, shard)``: each item, largest first (the lower index on a tie), given to the
    least loaded of ``count`` shards (the lower shard on a tie). The compiled library
    does the same (:func:`job.native.size_shards`), 15 times faster; this is where it
    is not at hand."""
    # sorted() keeps equal keys in their order even when reversed: (-size, index) order
    order = sorted(range(len(sizes)), key=sizes.__getitem__, reverse=True)
    # the first len(sizes) shards are the least loaded while any item is left: no other
    # ever takes one, so a count of a billion ranks holds no billion loads
    loads = [(0, shard) for shard in range(min(count, len(sizes)))]  # a heap already
    for item in order:
        load, shard = loads[0]  # the least loaded, the lower shard on a tie, as heappop gives
        yield item, shard
        heapq.heapreplace(loads, (load + sizes[item], shard))


def plan(items: Sequence, sizes: Sequence[int] | None, index: int, count: int,
         strategy: str = "contiguous") -> list:
    """The elements of ``items`` that shard ``index`` of ``count`` takes, in listing order."""
    _check(index, count)
    if strategy == "contiguous":
        return [items[i] for i in contiguous_range(len(items), index, count)]
    _check_strategy(items, sizes, strategy)
    return [items[i] for i in size_shard(sizes, index, count)]


def plans(items: Sequence, sizes: Sequence[int] | None, count: int,
          strategy: str = "contiguous") -> list[list]:
    """Every shard's :func:`plan`, in shard order, the sizes balanced once (not once per
    shard, as ``count`` calls of :func:`plan` would)."""
    _check(0, count)
    if strategy == "contiguous":
        return [plan(items, sizes, index, count) for index in range(count)]
    _check_strategy(items, sizes, strategy)
    return [[items[i] for i in shard] for shard in size_balanced(sizes, count)]


def _check_strategy(items: Sequence, sizes: Sequence[int] | None, strategy: str) -> None:
    if strategy != "size":
        raise ValueError(f"unknown shard strategy {strategy!r}; expected one of {STRATEGIES}")
    if sizes is None or len(sizes) != len(items):
        raise ValueError("the size strategy needs one size per item")
