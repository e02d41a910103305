"""``DataProcessor``: the class users subclass, with the seed's ``multi_process_data``."""

from __future__ import annotations

import operator
import os
from collections.abc import Mapping, Sequence

from . import ranks, sharding
from .config import DISTRIB_KEYS, usable_cpus
from .cpus import widen_affinity
from .pool import WorkerPool


#: The seed's value of each field of :class:`DistributedPreprocessArguments` not given.
SEED_DEFAULTS = {"local_rank": 0, "global_rank": 0, "world_size": 1, "node_count": 1,
                 "local_size": 1, "node_rank": None}


class DistributedPreprocessArguments:
    """The seed's rank description, as ``distribArgs`` gives it (``None``: not given).

    With no field given, a processor takes its rank from the launcher's
    environment, as with ``distrib_args=None``; ``DistributedPreprocessArguments(
    **config["distribArgs"])`` means that when the config has no ``distribArgs``.
    With some given, the others take the seed's defaults (:data:`SEED_DEFAULTS`);
    ``node_rank=None`` then means ``global_rank // local_size``. Two are equal when
    their six fields are; ``repr`` shows the six.
    """

    def __init__(self, local_rank: int | None = None, global_rank: int | None = None,
                 world_size: int | None = None, node_count: int | None = None,
                 local_size: int | None = None, node_rank: int | None = None) -> None:
        self.local_rank = local_rank
        self.global_rank = global_rank
        self.world_size = world_size
        self.node_count = node_count
        self.local_size = local_size
        self.node_rank = node_rank
        if any(getattr(self, key) is not None for key in SEED_DEFAULTS):
            for key, default in SEED_DEFAULTS.items():
                if getattr(self, key) is None:
                    setattr(self, key, default)

    def _values(self) -> tuple:
        return tuple(getattr(self, key) for key in DISTRIB_KEYS)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None  # compared by its fields, which may change: not hashable

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={getattr(self, key)!r}" for key in DISTRIB_KEYS)
        return f"{type(self).__qualname__}({fields})"

    @classmethod
    def of_rank(cls, rank: ranks.Rank) -> "DistributedPreprocessArguments":
        """The arguments ``python -m job`` builds its processor with, for ``rank``.

        They carry ``rank`` itself as ``resolved_rank``, which
        :meth:`DataProcessor.rank` returns: under a launcher, fields given are
        otherwise a contradiction.
        """
        arguments = cls(local_rank=rank.local_rank, global_rank=rank.shard_index,
                        world_size=rank.shard_count, node_count=rank.node_count,
                        local_size=rank.local_size, node_rank=rank.node_rank)
        arguments.resolved_rank = rank
        return arguments


class ProcessingFailed(RuntimeError):
    """Some calls of ``multi_process_data`` failed after their retries.

    ``failures`` maps the index of each failed call (in this rank's shard)
    to its error; ``results`` holds the flat results of the calls that worked.
    """

    def __init__(self, failures: dict[int, str], results: list):
        self.failures = failures
        self.results = results
        first = next(iter(failures.items()))
        super().__init__(f"{len(failures)} call(s) failed; first: call {first[0]}: {first[1]}")


class DataProcessor:
    """Processes data, one call of :meth:`process` per item.

    Subclass it and implement :meth:`process`. Instances are built in the
    rank's main process and copied into each worker process, so keep
    ``__init__`` light and do heavy set-up (models, connections) lazily in
    ``process``. Write outputs with :func:`job.atomic_output` so that a crash
    never leaves a partial file under its final name.
    """

    #: The names of what :meth:`process` counts, as keys of the dict it returns (each a
    #: whole number from 0 to 2**63 - 1, or None): ``python -m job`` records each as a
    #: field of the file's journal record and sums each in the manifest's totals.
    counts: tuple[str, ...] = ()

    def __init__(self, distrib_args=None):
        self.distrib_args = distrib_args

    def combine_counts(self, parts: Sequence[Mapping[str, int | None]]) -> dict[str, int | None]:
        """The counts of a file processed in byte ranges, from the counts of its ranges (in
        order): by default each count summed, None where no range gave it."""
        combined = {}
        for name in self.counts:
            values = [part.get(name) for part in parts]
            combined[name] = None if all(v is None for v in values) else sum(v or 0 for v in values)
        return combined

    def process(self, *args) -> object:
        """Process one item; the return value is collected by ``multi_process_data``."""
        raise NotImplementedError(f"{type(self).__name__} must implement process()")

    def analyze(self, *args) -> object:
        """Optional: called once with the flat list of results (the seed's hook)."""

    def output_path(self, path: str) -> str | None:
        """Where ``process(path)`` writes, if one file; lets resume check the output exists."""
        return None

    def rank(self) -> ranks.Rank:
        """This process's rank: from ``distrib_args``, else from the launcher's environment.

        ``distrib_args`` is a mapping or an object with the seed's fields
        (``DistributedPreprocessArguments``); a field that is ``None`` or
        absent is not given, and with none given the environment decides.
        Resolved as ``python -m job`` resolves it (:func:`job.ranks.resolve`):
        fields given under a launcher that started more than one process are
        a contradiction, a :class:`job.ranks.RankError` naming both (every
        process would take the same shard). The arguments ``python -m job``
        builds its processor with carry the rank it resolved
        (``resolved_rank``), which is returned as it is.
        """
        resolved = getattr(self.distrib_args, "resolved_rank", None)
        if isinstance(resolved, ranks.Rank):
            return resolved
        return ranks.resolve(_given(self.distrib_args) or None, os.environ)

    def multi_process_data(self, *args, process_count: int | str | None = 1) -> list:
        """Call :meth:`process` over this rank's share of the list arguments.

        List arguments (all of one length) are sharded across ranks
        (contiguous blocks, as ``shard_strategy: contiguous``), then spread
        over ``process_count`` worker processes (an integer, or the text of
        one; ``None``: this rank's share of the usable CPUs, as for the job's
        ``process_count: null``; anything else is a ``ValueError``); a
        list of length 1 and any non-list argument go to every call. Each
        call's result is flattened into one list (lists and tuples are
        extended, anything else appended), in the order of the calls.
        Raises :class:`ProcessingFailed` if any call raised or its worker
        died, after every other call finished.
        """
        rank = self.rank()
        widen_affinity(os.environ)  # as the job does: the workers get the node's CPUs
        wanted = _worker_count(process_count, rank.local_size)
        calls = _shard_calls(args, rank)
        results: dict[int, object] = {}
        failures: dict[int, str] = {}
        workers = min(wanted, max(1, len(calls)))
        with WorkerPool(self.process, workers) as pool:
            for outcome in pool.imap(enumerate(calls)):
                if outcome.ok:
                    results[outcome.key] = outcome.value
                else:
                    failures[outcome.key] = outcome.error
        flat: list = []
        for index in sorted(results):
            value = results[index]
            flat.extend(value) if isinstance(value, (list, tuple)) else flat.append(value)
        if failures:
            raise ProcessingFailed(dict(sorted(failures.items())), flat)
        self.analyze(flat)
        return flat


def _worker_count(process_count: object, ranks_on_this_node: int = 1) -> int:
    """``process_count`` as a number of workers: an integer >= 1 or its text; ``None``: this
    rank's share of the usable CPUs (at least one)."""
    if process_count is None:
        return max(1, usable_cpus() // max(1, ranks_on_this_node))
    count = 0
    if isinstance(process_count, str):
        text = process_count.strip()
        if text.isascii() and text.isdigit():
            count = int(text)
    elif not isinstance(process_count, bool):
        try:
            count = operator.index(process_count)  # int, or an integer type such as numpy's
        except TypeError:
            pass
    if count < 1:
        raise ValueError(f"process_count must be a positive integer (or None: the usable CPUs), "
                         f"got {process_count!r}")
    return count


def _given(distrib_args) -> dict:
    """The fields of ``distrib_args`` (a mapping, an object or ``None``) that are not ``None``."""
    if distrib_args is None:
        return {}
    if isinstance(distrib_args, Mapping):
        fields = distrib_args.items()
    else:
        fields = ((key, getattr(distrib_args, key, None)) for key in DISTRIB_KEYS)
    return {key: value for key, value in fields if value is not None}


def _shard_calls(args: Sequence[object], rank: ranks.Rank) -> list[tuple]:
    lengths = {len(a) for a in args if isinstance(a, list) and len(a) != 1}
    if not any(isinstance(a, list) for a in args):
        raise ValueError("multi_process_data needs at least one list argument to shard")
    if len(lengths) > 1:
        raise ValueError(f"list arguments must have one length (or length 1); got {sorted(lengths)}")
    length = lengths.pop() if lengths else 1
    block = sharding.contiguous_range(length, rank.shard_index, rank.shard_count)
    columns = []
    for arg in args:
        if isinstance(arg, list) and len(arg) == length:
            columns.append([arg[i] for i in block])
        elif isinstance(arg, list):
            columns.append(arg * len(block))
        else:
            columns.append([arg] * len(block))
    return list(zip(*columns))
