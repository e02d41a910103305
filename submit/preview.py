"""Which files each node of a job will take, computed by the job's own listing and sharding.

For a local input folder the dry run shows the plan every rank of the job will
compute on Azure ML: :func:`job.listing.list_inputs` and
:func:`job.sharding.plan`, with the rank numbering of :class:`job.ranks.Rank`
(``shard_index = node_rank * local_size + local_rank``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Collection

from job.config import JobConfig
from job.listing import InputDirError, InputFile, list_inputs
from job.ranks import Rank
from job.sharding import plan, plans

from .build import Layout

NAMES_SHOWN = 6


class PreviewError(ValueError):
    """The input folder cannot be listed; the message is one line."""


@dataclass(frozen=True)
class RankPlan:
    """The files one rank of the job takes."""

    rank: Rank
    files: list[InputFile]

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class Preview:
    """The listing of a local input folder and every rank's share of it."""

    input_dir: str
    job_config: JobConfig
    listing: list[InputFile]
    plans: list[RankPlan]

    def describe(self) -> str:
        return describe(self)


def preview(input_dir: str | os.PathLike, job_config: JobConfig, layout: Layout,
            uploaded: Collection[str] | None = None) -> Preview:
    """Every rank's files for a job of ``layout`` on the local folder ``input_dir``.

    A selective node yields only its own rank, numbered within the emulated
    ``node_count`` nodes. ``uploaded``, if given, are the files (relative POSIX
    paths) that reach Azure ML: the job cannot take the others, which the plan
    leaves out (a folder's ``.gitignore`` keeps files from the upload).
    """
    try:
        listing = list_inputs(input_dir, None, job_config.pattern)
    except InputDirError as error:
        raise PreviewError(str(error)) from None
    if uploaded is not None:
        kept = set(uploaded)
        listing = [f for f in listing if f.rel in kept]
    sizes = [f.size for f in listing]
    strategy = job_config.shard_strategy
    if layout.selective:
        rank = Rank(layout.node_rank, layout.node_count, 0, 1, "selective node")
        found = [RankPlan(rank, plan(listing, sizes, rank.shard_index, rank.shard_count,
                                     strategy))]
    else:  # every rank, in shard order; the sizes balanced once for all of them
        ranks = [Rank(node, layout.nodes, local, layout.processes_per_node, layout.distribution)
                 for node in range(layout.nodes) for local in range(layout.processes_per_node)]
        found = [RankPlan(rank, files) for rank, files in
                 zip(ranks, plans(listing, sizes, len(ranks), strategy), strict=True)]
    return Preview(str(input_dir), job_config, listing, found)


def size_text(count: int) -> str:
    """A byte count for people, in powers of 1000: ``512 B``, ``1.2 KB``, ``3.4 MB``."""
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} B"


def describe(result: Preview) -> str:
    """The plan as text: one line per rank (files, bytes, the first names)."""
    config = result.job_config
    lines = [f"plan for local input {result.input_dir!r}: {len(result.listing)} file(s), "
             f"{size_text(sum(f.size for f in result.listing))}, {config.shard_strategy} sharding"
             + (f", pattern {config.pattern!r}" if config.pattern else "")]
    for rank_plan in result.plans:
        rank = rank_plan.rank
        names = [f.rel for f in rank_plan.files]
        shown = ", ".join(names[:NAMES_SHOWN])
        more = f", ... (+{len(names) - NAMES_SHOWN} more)" if len(names) > NAMES_SHOWN else ""
        where = f"node {rank.node_rank}" + (f" rank {rank.local_rank}" if rank.local_size > 1 else "")
        lines.append(f"  {where} (shard {rank.shard_index} of {rank.shard_count}): "
                     f"{len(names)} file(s), {size_text(rank_plan.size)}"
                     + (f": {shown}{more}" if names else ""))
    return "\n".join(lines)
