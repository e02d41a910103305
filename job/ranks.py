"""Which shard am I? Rank resolution from the config or the launcher's environment.

This module is the one place that reads launcher variables. Sources, in order:

1. ``distribArgs`` from the config or command line ("selective node": emulate
   node 3 of 5 on one machine). Keys: ``node_count``, ``node_rank``,
   ``local_size``, ``local_rank``, ``global_rank``, ``world_size``. Refused
   when a launcher reports a world of more than one process
   (``OMPI_COMM_WORLD_SIZE``, ``WORLD_SIZE`` or ``AZUREML_NODE_COUNT`` > 1).
2. OpenMPI, as ``mpirun`` and Azure ML's MPI distribution set it:
   ``OMPI_COMM_WORLD_RANK``, ``OMPI_COMM_WORLD_SIZE``,
   ``OMPI_COMM_WORLD_LOCAL_RANK``, ``OMPI_COMM_WORLD_LOCAL_SIZE``.
3. torchrun and Azure ML's PyTorch distribution: ``RANK``, ``WORLD_SIZE``,
   ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``NODE_RANK`` (or ``GROUP_RANK``).
   Set together with OpenMPI's, ``RANK`` and ``WORLD_SIZE`` must agree with it.
   Only ``RANK`` and ``WORLD_SIZE`` decide the shard. Without ``LOCAL_WORLD_SIZE``
   the ranks per node are ``(RANK - LOCAL_RANK) / NODE_RANK`` where that fits
   (node 1 or later of equal nodes), else unknown (the log says so).
4. Azure ML node variables, where a multi-node job runs without a launcher:
   ``AZUREML_NODE_COUNT`` with ``AZ_BATCHAI_TASK_INDEX`` (one rank per node;
   a node count above 1 without the index is an error).
5. Otherwise a single rank that takes every file.

``run_type: local`` skips 2-4. The unit of sharding is the rank:
``shard_count = node_count * local_size`` and
``shard_index = node_rank * local_size + local_rank``; for a launcher that is
the global rank of the world size.

Where each variable is documented (this module reads no other launcher variable;
:mod:`job.cpus` only asks, through :func:`launched`, whether 2 or 3 are set):

- ``OMPI_COMM_WORLD_RANK``, ``_SIZE``, ``_LOCAL_RANK``, ``_LOCAL_SIZE``: Open MPI,
  "Environment variables set for MPI applications",
  https://docs.open-mpi.org/en/v5.0.x/tuning-apps/environment-var.html ; Azure ML
  lists the same four for its MPI jobs ("Environment variables from Open MPI",
  https://learn.microsoft.com/azure/machine-learning/how-to-train-distributed-gpu?view=azureml-api-1
  ).
  ``OMPI_COMM_WORLD_NODE_RANK`` is not read: it is not the node's index (both pages).
- ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``GROUP_RANK``:
  torchrun, the "Environment Variables" section of ``torch/distributed/run.py``'s
  docstring, https://pytorch.org/docs/stable/elastic/run.html#environment-variables .
- ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``NODE_RANK``: Azure ML's PyTorch
  distribution sets these (with ``MASTER_ADDR``, ``MASTER_PORT``), "Distributed GPU
  training guide (SDK v2)",
  https://learn.microsoft.com/azure/machine-learning/how-to-train-distributed-gpu .
  That page does not list ``LOCAL_WORLD_SIZE``, which torchrun sets.
- ``AZ_BATCHAI_TASK_INDEX``: no current documentation. Azure ML's SDK v1 PyTorch
  guide once listed it as "the global rank of the worker process" (since removed),
  as did the retired Batch AI ("rank of each worker process":
  https://github.com/microsoftarchive/BatchAI, file
  recipes/PyTorch/PyTorch-GPU-Distributed-Gloo/Readme.md). UNDOCUMENTED TODAY.
- ``AZUREML_NODE_COUNT``: UNDOCUMENTED, found in no Azure ML documentation, only in
  users' scripts.

  Both are read only where no launcher ran (4), where one process per node makes
  the worker's rank the node's index, and ``AZUREML_NODE_COUNT`` also in 1, to
  refuse ``distribArgs`` on a multi-node job. A launcher's variables always win.
  They are kept because ``submit --distribution none`` on several nodes has
  nothing else: a count above 1 without the index, or an index out of range, is
  exit 2; with neither set every node would take every file, so multi-node jobs
  should use the MPI distribution (``submit``'s default).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping

OMPI_VARS = ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
             "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE")
TORCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
AZUREML_NODE_VARS = ("AZUREML_NODE_COUNT", "AZ_BATCHAI_TASK_INDEX")


class RankError(ValueError):
    """A rank or size that is missing, not an integer, negative or out of range."""


class Rank(namedtuple("Rank", "node_rank node_count local_rank local_size source",
                      defaults=(0, 1, 0, 1, "single rank (no launcher variables found)"))):
    """Where this process sits in the job, and which shard it takes (immutable).

    ``node_rank`` of ``node_count`` nodes, ``local_rank`` of the ``local_size`` ranks of
    each node (integers); ``source`` says what decided it, e.g.
    ``"OpenMPI (OMPI_COMM_WORLD_*)"``.
    """

    __slots__ = ()

    @property
    def shard_index(self) -> int:
        return self.node_rank * self.local_size + self.local_rank

    @property
    def shard_count(self) -> int:
        return self.node_count * self.local_size

    def describe(self) -> str:
        return (f"rank {self.shard_index} of {self.shard_count} "
                f"(node {self.node_rank} of {self.node_count}, "
                f"local rank {self.local_rank} of {self.local_size}) from {self.source}")


def _integer(name: str, value: object, minimum: int = 0) -> int:
    if isinstance(value, bool):
        raise RankError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if not text.lstrip("+-").isdigit():
            raise RankError(f"{name} must be an integer, got {value!r}")
        value = int(text)
    if not isinstance(value, int):
        raise RankError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise RankError(f"{name} must be >= {minimum}, got {value}")
    return value


def _below(name: str, value: int, bound_name: str, bound: int) -> None:
    if value >= bound:
        raise RankError(f"{name}={value} is out of range: it must be < {bound_name}={bound}")


def from_distrib_args(args: Mapping[str, object], source: str = "distribArgs") -> Rank:
    """Rank from the seed's ``distribArgs`` mapping (missing keys take the seed's defaults).

    >>> from_distrib_args({"node_count": 5, "node_rank": 3}).shard_index
    3
    """
    def key(name: str) -> str:
        return f"{source}.{name}"

    node_count = _integer(key("node_count"), args.get("node_count", 1), 1)
    local_size = _integer(key("local_size"), args.get("local_size", 1), 1)
    if node_count > 1 and args.get("node_rank") is None and args.get("global_rank") is None:
        raise RankError(f"{key('node_count')}={node_count} is set without {key('node_rank')}: "
                        f"say which node this is ({key('node_rank')} 0..{node_count - 1})")
    local_rank = _integer(key("local_rank"), args.get("local_rank", 0))
    global_rank = _integer(key("global_rank"), args.get("global_rank", 0))
    _integer(key("world_size"), args.get("world_size", 1), 1)
    _below(key("local_rank"), local_rank, key("local_size"), local_size)
    if args.get("node_rank") is None:
        node_rank = global_rank // local_size
        if node_rank >= node_count:
            raise RankError(f"{key('global_rank')}={global_rank} is out of range: with "
                            f"{key('local_size')}={local_size} it must be < "
                            f"{node_count * local_size} ({key('node_count')} x {key('local_size')})")
    else:
        node_rank = _integer(key("node_rank"), args["node_rank"])
        _below(key("node_rank"), node_rank, key("node_count"), node_count)
    return Rank(node_rank, node_count, local_rank, local_size, source)


def _from_world(environ: Mapping[str, str], rank_var: str, size_var: str,
                local_rank_var: str, local_size_var: str, source: str,
                node_rank_vars: tuple[str, ...] = ()) -> Rank:
    """Rank from a launcher that numbers ranks globally (MPI, torchrun).

    The shard is the global rank of the world size. Without ``local_size_var``
    (Azure ML's PyTorch distribution does not document ``LOCAL_WORLD_SIZE``) the
    ranks per node are derived where ``local_rank_var`` and a node rank allow
    it (:func:`_derived_local_size`), else taken as unknown: one per node as
    far as the worker count goes, the shard unchanged.
    """
    for name in (rank_var, size_var):
        if name not in environ:
            raise RankError(f"{name} is not set, but other {source} variables are")
    rank = _integer(rank_var, environ[rank_var])
    size = _integer(size_var, environ[size_var], 1)
    _below(rank_var, rank, size_var, size)
    if local_size_var not in environ and local_rank_var in environ:
        local_rank = _integer(local_rank_var, environ[local_rank_var])
        if local_rank > rank:
            raise RankError(f"{local_rank_var}={local_rank} is out of range: it must be <= "
                            f"{rank_var}={rank} (a process's rank on its node cannot exceed "
                            "its rank in the job)")
        local_size = _derived_local_size(environ, rank, size, local_rank, node_rank_vars)
        if local_size is None:
            return Rank(rank, size, 0, 1, f"{source}; ranks per node unknown, "
                                          f"{local_size_var} is not set")
    else:
        local_size = _integer(local_size_var, environ.get(local_size_var, "1"), 1)
        local_rank = _integer(local_rank_var, environ.get(local_rank_var, str(rank % local_size)))
        _below(local_rank_var, local_rank, local_size_var, local_size)
    if size % local_size:
        # Uneven process counts per node: shard by global rank alone.
        return Rank(rank, size, 0, 1, source)
    return Rank(rank // local_size, size // local_size, rank % local_size, local_size, source)


def _derived_local_size(environ: Mapping[str, str], rank: int, size: int, local_rank: int,
                        node_rank_vars: tuple[str, ...]) -> int | None:
    """Ranks per node, from the first of ``node_rank_vars`` set, where it says; else ``None``.

    On node ``n > 0`` of equal nodes, ``rank = n * local_size + local_rank``,
    so ``local_size = (rank - local_rank) / n`` when that is a whole number
    above ``local_rank`` that divides ``size``. Node 0 (or no node rank) says
    nothing about it.

    >>> _derived_local_size({"NODE_RANK": "1"}, 3, 4, 1, ("NODE_RANK",))
    2
    """
    for name in node_rank_vars:
        if name in environ:
            node_rank = _integer(name, environ[name])
            if node_rank == 0:
                return None
            local_size, rest = divmod(rank - local_rank, node_rank)
            if rest or local_size <= local_rank or size % local_size:
                return None
            return local_size
    return None


def _agree(environ: Mapping[str, str], ours: str, theirs: str) -> None:
    """Both launchers' variables set: they must say the same."""
    if theirs in environ and environ[theirs].strip() != environ[ours].strip():
        raise RankError(f"{ours}={environ[ours]} and {theirs}={environ[theirs]} disagree: "
                        "two launchers' variables are set; unset the stale ones")


def from_environment(environ: Mapping[str, str]) -> Rank:
    """Rank from the launcher's environment variables; a single rank where none are set."""
    if any(name in environ for name in OMPI_VARS):
        rank = _from_world(environ, *OMPI_VARS, source="OpenMPI (OMPI_COMM_WORLD_*)")
        _agree(environ, "OMPI_COMM_WORLD_RANK", "RANK")
        _agree(environ, "OMPI_COMM_WORLD_SIZE", "WORLD_SIZE")
        return rank
    if "RANK" in environ or "WORLD_SIZE" in environ:
        rank = _from_world(environ, *TORCH_VARS, source="torchrun (RANK, WORLD_SIZE, ...)",
                           node_rank_vars=("NODE_RANK", "GROUP_RANK"))
        for name in ("NODE_RANK", "GROUP_RANK"):
            if name in environ:
                _below(name, _integer(name, environ[name]), "node count", rank.node_count)
        return rank
    if any(name in environ for name in AZUREML_NODE_VARS):
        node_count = _integer("AZUREML_NODE_COUNT", environ.get("AZUREML_NODE_COUNT", "1"), 1)
        if "AZ_BATCHAI_TASK_INDEX" not in environ:
            if node_count > 1:
                raise RankError(f"AZUREML_NODE_COUNT={node_count} is set without "
                                "AZ_BATCHAI_TASK_INDEX: which node this is cannot be known; "
                                "run under a launcher (MPI or PyTorch distribution)")
            return Rank()
        node_rank = _integer("AZ_BATCHAI_TASK_INDEX", environ["AZ_BATCHAI_TASK_INDEX"])
        _below("AZ_BATCHAI_TASK_INDEX", node_rank, "AZUREML_NODE_COUNT", node_count)
        return Rank(node_rank, node_count, 0, 1, "Azure ML node variables (AZ_BATCHAI_TASK_INDEX)")
    return Rank()


def launched(environ: Mapping[str, str]) -> bool:
    """Whether a launcher started this process: OpenMPI's or torchrun's variables are set."""
    return any(name in environ for name in OMPI_VARS + TORCH_VARS)


def launcher_world_size(environ: Mapping[str, str]) -> tuple[str, int] | None:
    """The first launcher variable that reports a world of more than one process, and its value."""
    for name in ("OMPI_COMM_WORLD_SIZE", "WORLD_SIZE", "AZUREML_NODE_COUNT"):
        try:
            size = int(environ.get(name, "").strip())
        except ValueError:
            continue
        if size > 1:
            return name, size
    return None


def resolve(distrib_args: Mapping[str, object] | None, environ: Mapping[str, str],
            run_type: str = "") -> Rank:
    """The rank of this process: ``distribArgs`` > launcher variables > single rank.

    ``distribArgs`` under a launcher that started more than one process is a
    contradiction (every process would take the same shard): a
    :class:`RankError` naming both. With ``run_type: local`` the launcher's
    variables are not read at all.
    """
    if distrib_args is not None:
        world = launcher_world_size(environ) if run_type != "local" else None
        if world is not None:
            raise RankError(f"distribArgs is set, but {world[0]}={world[1]} says a launcher "
                            f"started {world[1]} processes, which would all take the same shard: "
                            "remove distribArgs to shard by the launcher's ranks, or run one "
                            "process per selective node")
        return from_distrib_args(distrib_args)
    if run_type == "local":
        return Rank(source="single rank (run_type: local)")
    return from_environment(environ)
