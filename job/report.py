"""One job-wide summary of an out_dir: ``python -m job.report OUT_DIR [--shards N]``.

Reads ``OUT_DIR/_manifest`` as ``python -m job.check`` does
(:func:`job.check.read_bookkeeping`: every journal and manifest, whatever rank
layouts wrote them) and sums up the ranks of one layout: by default the newest
(the most recent run's), or ``--shards N``. It prints:

- ranks finished / expected, and which ranks have no manifest (not run,
  still running, or killed) or were interrupted;
- files ok / failed / skipped, bytes in, tokens, over the layout's manifests;
- the slowest rank (by its manifest's ``wall_seconds``);
- the failed files by name, with their rank and error (at most 20, then a count).

It does not read inputs or compare outputs (``python -m job.check`` does):
it needs only ``_manifest/``, which is what ``python -m submit report NAME``
downloads from a job's output.

Exit codes: 0 every expected rank wrote a complete manifest and no file
failed; 1 a rank's manifest is missing or interrupted, a file failed, or a
journal or manifest cannot be read; 2 bad usage (OUT_DIR is not a folder).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Iterable, TextIO

from . import journal
from .check import Shard, newest_layout, read_bookkeeping
from .tokens import TokenSplitter

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
SHOWN = 20  # failed files printed by name; the rest are counted
TOTAL_KEYS = ("files", "ok", "skipped", "failed", "bytes_in")  # then the processor's counts


@dataclass(frozen=True)
class RankSummary:
    """What one expected rank left: its manifest's totals, or why there are none."""

    index: int
    count: int
    totals: dict[str, Any] | None  # None: no manifest
    wall_seconds: float | None = None
    interrupted_by: str | None = None
    complete: bool = False
    running: str | None = None  # who holds its lock, while alive
    started: bool = False  # a journal exists

    @property
    def state(self) -> str:
        """``finished``, ``interrupted``, ``running``, ``killed?`` or ``not run``."""
        if self.totals is not None:
            return "finished" if self.complete else "interrupted"
        return "running" if self.running else "killed?" if self.started else "not run"


@dataclass
class JobSummary:
    """The ranks of one layout of an out_dir, summed up (see the module docstring)."""

    out_dir: str
    count: int  # shards of the layout
    ranks: list[RankSummary] = field(default_factory=list)  # the expected ones, in order
    failed: list[tuple[str, int, str | None]] = field(default_factory=list)  # input, rank, error
    bad: list[str] = field(default_factory=list)  # journals or manifests that are not
    other_layouts: list[int] = field(default_factory=list)

    @property
    def finished(self) -> list[RankSummary]:
        return [rank for rank in self.ranks if rank.state == "finished"]

    @property
    def missing(self) -> list[RankSummary]:
        """Expected ranks without a complete manifest."""
        return [rank for rank in self.ranks if rank.state != "finished"]

    @property
    def totals(self) -> dict[str, int]:
        """Sums of the manifests' totals (``files``, ``ok``, ``failed``, ``bytes_in``, then the
        processor's counts; before any manifest, the default processor's: 0 ``tokens``)."""
        manifests = [rank.totals for rank in self.ranks if rank.totals is not None]
        names = {} if manifests else dict.fromkeys(TokenSplitter.counts)
        for totals in manifests:
            names.update(dict.fromkeys(journal.count_names(totals)))
        sums = dict.fromkeys([*TOTAL_KEYS, *names], 0)
        for totals in manifests:
            for key in sums:
                sums[key] += totals.get(key) or 0
        return sums

    @property
    def slowest(self) -> RankSummary | None:
        timed = [rank for rank in self.ranks if rank.wall_seconds is not None]
        return max(timed, key=lambda rank: (rank.wall_seconds, -rank.index)) if timed else None

    @property
    def exit_code(self) -> int:
        """0 all expected ranks finished and nothing failed; 1 otherwise."""
        problems = self.bad or self.missing or self.failed or not self.ranks
        return EXIT_PROBLEMS if problems else EXIT_OK

    def lines(self) -> list[str]:
        """The summary as printed: ranks, totals, slowest rank, failed files, verdict."""
        if self.bad:
            return ([f"cannot read the bookkeeping: {problem}" for problem in self.bad[:SHOWN]]
                    + [f"FAILED: {len(self.bad)} journal(s) or manifest(s) cannot be read"])
        if not self.ranks:
            folder = os.path.join(self.out_dir, journal.MANIFEST_DIR)
            return [f"no journals or manifests in {folder}: the job has not run into this "
                    "out_dir", "FAILED: no rank finished"]
        out = [f"ranks: {len(self.finished)} of {len(self.ranks)} finished"
               + (f" (of {self.count} shards)" if len(self.ranks) != self.count else "")]
        out += [_rank_line(rank) for rank in self.ranks]
        if self.other_layouts:
            out.append("older layouts in _manifest: " + ", ".join(
                f"{count} shard{'s' * (count != 1)}" for count in self.other_layouts))
        sums = self.totals
        out.append(f"files: {sums['files']:,} ({sums['ok']:,} ok, {sums['skipped']:,} skipped, "
                   f"{sums['failed']:,} failed); {sums['bytes_in']:,} bytes in"
                   + _counts(sums))
        slowest = self.slowest
        if slowest is not None:
            out.append(f"slowest rank: {slowest.index} ({slowest.wall_seconds:.1f} s, "
                       f"{slowest.totals['files']:,} files)")
        if self.failed:
            out.append(f"failed files ({len(self.failed)}):")
            out += [f"  {name} (rank {rank}): {error or 'no error recorded'}"
                    for name, rank, error in self.failed[:SHOWN]]
            if len(self.failed) > SHOWN:
                out.append(f"  ... {len(self.failed) - SHOWN} more (the manifests list them all)")
        out.append(self.verdict())
        return out

    def verdict(self) -> str:
        reasons = []
        if self.missing:
            shown = ", ".join(f"{rank.index} ({rank.state})" for rank in self.missing[:SHOWN])
            reasons.append(f"{len(self.missing)} rank(s) without a complete manifest: {shown}")
        if self.failed:
            reasons.append(f"{len(self.failed)} file(s) failed")
        if reasons:
            return "FAILED: " + "; ".join(reasons)
        return f"OK: {len(self.ranks)} rank(s) finished, no file failed"


def _counts(totals: dict[str, Any]) -> str:
    """``, 1,234 tokens``: each count of the processor in ``totals``."""
    return "".join(f", {totals[name]:,} {name}" for name in journal.count_names(totals))


def _rank_line(rank: RankSummary) -> str:
    head = f"  rank {rank.index}/{rank.count}: "
    if rank.totals is None:
        why = {"running": f"running ({rank.running})", "killed?":
               "started, no manifest (killed, or still running)", "not run": "has not run"}
        return head + "no manifest: " + why[rank.state]
    totals = rank.totals
    timing = f", {rank.wall_seconds:.1f} s" if rank.wall_seconds is not None else ""
    line = (f"{head}{totals['files']:,} files ({totals['ok']:,} ok, {totals['skipped']:,} "
            f"skipped, {totals['failed']:,} failed), {totals['bytes_in']:,} bytes"
            f"{_counts(totals)}{timing}")
    if rank.state == "interrupted":
        line += f"; interrupted{' by ' + rank.interrupted_by if rank.interrupted_by else ''}"
    return line


def _summary_of(shard: Shard) -> RankSummary:
    manifest = shard.manifest
    if manifest is None:
        return RankSummary(shard.index, shard.count, None, running=shard.running,
                           started=shard.journal is not None)
    return RankSummary(shard.index, shard.count, manifest.totals, manifest.wall_seconds,
                       manifest.interrupted_by, manifest.complete is not False, shard.running,
                       shard.journal is not None)


def summarize(out_dir: str, count: int | None = None,
              indices: Iterable[int] | None = None) -> JobSummary:
    """The summary of the ranks ``indices`` (default: all) of the ``count``-shard layout
    (default: the newest in ``out_dir/_manifest``). An out_dir without bookkeeping gives
    a summary of expected ranks that have not run (none when ``count`` is not given)."""
    shards, bad = read_bookkeeping(out_dir)
    if bad:
        return JobSummary(out_dir, count or 0, bad=bad)
    if count is None:
        count = newest_layout(shards.values()) if shards else 0
    wanted = sorted(set(indices)) if indices is not None else range(count)
    summary = JobSummary(out_dir, count,
                         other_layouts=sorted({c for _, c in shards} - {count}))
    for index in wanted:
        shard = shards.get((index, count), Shard(index, count))
        summary.ranks.append(_summary_of(shard))
        if shard.manifest is not None:
            summary.failed += [(name, index, error) for name, error in shard.manifest.failed]
    return summary


def print_summary(summary: JobSummary, stream: TextIO) -> int:
    """Print ``summary`` (names that are not UTF-8 escaped); return its exit code."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    for line in summary.lines():
        stream.write(line.encode(encoding, "backslashreplace").decode(encoding) + "\n")
    return summary.exit_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m job.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", metavar="OUT_DIR", help="the job's out_dir")
    parser.add_argument("--shards", type=int, metavar="N",
                        help="the rank layout to sum up: N shards (default: the newest run's)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.out_dir):
        print(f"error: out_dir {args.out_dir!r} is not a folder", file=sys.stderr)
        return EXIT_USAGE
    if args.shards is not None and args.shards < 1:
        print(f"error: --shards must be >= 1, got {args.shards}", file=sys.stderr)
        return EXIT_USAGE
    return print_summary(summarize(args.out_dir, args.shards), sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
