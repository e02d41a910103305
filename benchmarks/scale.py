"""Rows 11 and 12: a million files per job (issue 14).

11. Listing + planning of rank 7 of 1,000 (``contiguous``) at 10k, 100k and 1M
    files: wall time and main-process peak memory of the real code
    (``job.run.prepare``, what ``python -m job`` runs before anything is
    written), in a fresh process each run; against the straightforward listing
    (``list_inputs`` + ``sharding.plan``, the code before issue 14). The
    ``size`` strategy, which needs every file's size, is measured the same way.
    The notes add the whole ``python -m job`` run of that rank when its files
    are already done and ``out_dir/_manifest`` holds the journals of all 1,000
    ranks (listing, planning, resume, lock, manifest: start to exit).
12. 1,000 ranks' plans of one 1,000,000-file listing, ms per rank: from the listing
    held in memory (``job.listing.list_inputs``, untimed), ``job.sharding.plan``
    for every rank, the real code that any holder of the listing (``submit``'s
    preview, the code before issue 14) plans with; and a rank's own way without
    the listing: one walk (``job.outline.outline``), then ``job.outline.shard``
    for every rank, in one process, which reads the rank's folders again and
    examines (``stat``) its files. Checked: the plans, in rank order, are the
    straightforward listing's (disjoint, complete, ordered).

Inputs: ``files-N``, N tiny files (``"%d\\n" % i``) in folders of 1,000
(``d0000/f0000000.txt``), created with ``os.open``/``os.write``/``os.close``
relative to the folder's descriptor; cached like the other sets (a stamp with
the parameters and the file count, checked by counting the folder entries).
A plot of time and memory against the number of files goes beside the report
(``scale.png``, matplotlib with the Agg backend, from the ``dev`` extra).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from . import rows
from .inputs import MB
from .measure import ROOT, CommandFailed, environ, peak_memory, timed
from .rows import Bench, Row, met

RANK, RANKS = 7, 1000
PER_FOLDER = 1000
TIME_GOAL, MEMORY_GOAL, PLAN_GOAL_MS = 3.0, 150 * MB, 1.0
#: The ``size`` rows have no time goal: issue 14's goals are for a plan that grows with the
#: rank's own shard, and a balance of sizes needs every file's size, whatever the listing.
SIZE_NO_GOAL = "no goal: a size balance examines and weighs every file"


# --- inputs -----------------------------------------------------------------------------------

class ManyFiles:
    """``count`` tiny files in folders of :data:`PER_FOLDER` under ``path``."""

    def __init__(self, path: Path, count: int):
        self.path, self.count = path, count

    def describe(self) -> str:
        return f"{self.count:,} files in {-(-self.count // PER_FOLDER):,} folders"


def _count_entries(folder: Path) -> int:
    total = 0
    with os.scandir(folder) as tops:
        for top in tops:
            if top.is_dir(follow_symlinks=False):
                total += len(os.listdir(top.path))
    return total


def _create(folder: Path, count: int) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    for number in range(-(-count // PER_FOLDER)):
        sub = folder / f"d{number:04d}"
        sub.mkdir()
        descriptor = os.open(sub, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for i in range(number * PER_FOLDER, min(count, (number + 1) * PER_FOLDER)):
                fd = os.open(f"f{i:07d}.txt", flags, 0o644, dir_fd=descriptor)
                os.write(fd, b"%d\n" % i)
                os.close(fd)
        finally:
            os.close(descriptor)


def many_files(cache: Path, count: int) -> ManyFiles:
    """The set ``files-COUNT``: reused when its stamp and its entry count match."""
    name = f"files-{count}"
    folder = cache / "inputs" / name
    stamp = folder.with_name(name + ".json")
    params = {"kind": "many", "count": count, "per_folder": PER_FOLDER, "content": "%d\\n"}
    try:
        if json.loads(stamp.read_text()) == params and _count_entries(folder) == count:
            return ManyFiles(folder, count)
    except (OSError, ValueError):
        pass
    rows.say(f"building inputs: {name} (inode creation: about 20 s a million files) ...")
    stamp.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    building = folder.with_name(name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    _create(building, count)
    building.rename(folder)
    stamp.write_text(json.dumps(params))
    return ManyFiles(folder, count)


# --- measured code, each in a fresh process ---------------------------------------------------

# Listing + planning of one rank, by the job's own code; prints seconds, files, VmHWM.
PREPARE = """\
import json, sys, time
from job import config, run
args = json.loads(sys.argv[1])
cfg = config.load(**args["config"])
env = {}  # no launcher: distribArgs decides the rank
started = time.perf_counter()
if args["reference"]:
    from job import sharding
    from job.listing import list_inputs
    listing = list_inputs(cfg.input_dir, cfg.out_dir, cfg.pattern, [], set())
    files = sharding.plan(listing, [f.size for f in listing], args["rank"], args["ranks"],
                          cfg.shard_strategy)
else:
    files = run.prepare(cfg, env).files
seconds = time.perf_counter() - started
peak = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"seconds": seconds, "files": len(files), "peak": peak}))
"""

# Every rank's plan of one listing; prints the walk's and the plans' seconds, and the paths.
PLANS = """\
import json, sys, time
from job import outline
args = json.loads(sys.argv[1])
started = time.perf_counter()
walked = outline.outline(args["input_dir"], args["out_dir"], sizes=args["strategy"] == "size")
walk = time.perf_counter() - started
seconds = 0.0
with open(args["paths"], "w", encoding="utf-8", errors="surrogateescape") as out:
    for i in args["which"]:  # each plan written out (untimed) and let go, as a rank would
        started = time.perf_counter()
        plan = outline.shard(walked, i, args["ranks"], args["strategy"])
        seconds += time.perf_counter() - started
        out.write("".join(f.rel + "\\n" for f in plan))
peak = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM"))
print(json.dumps({"walk": walk, "seconds": seconds, "plans": len(args["which"]), "peak": peak}))
"""


def _run_snippet(code: str, args: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", code, json.dumps(args)], cwd=ROOT,
                          env=environ(), capture_output=True, text=True)
    if done.returncode != 0:
        raise CommandFailed([sys.executable, "-c", "..."], done.returncode, done.stderr)
    return json.loads(done.stdout)


def _prepare_args(files: ManyFiles, out_dir: Path, strategy: str, reference: bool) -> dict:
    distrib = {"node_count": RANKS, "node_rank": RANK}
    return {"config": {"input_dir": str(files.path), "out_dir": str(out_dir),
                       "shard_strategy": strategy, "distribArgs": distrib},
            "reference": reference, "rank": RANK, "ranks": RANKS}


def _job_command(files: ManyFiles, out_dir: Path) -> list[str]:
    return [sys.executable, "-m", "job", "--input_dir", str(files.path), "--out_dir",
            str(out_dir), "--process_count", "1", "--log_level", "WARNING",
            "--distribArgs.node_count", str(RANKS), "--distribArgs.node_rank", str(RANK)]


def _other_journals(files: ManyFiles, out_dir: Path) -> None:
    """The journals of the 999 other ranks: a record per file of theirs (as they would
    write it, older than rank 7's), so that rank 7's resume reads them all."""
    from job import journal, sharding
    folder = out_dir / journal.MANIFEST_DIR
    for index in range(RANKS):
        if index == RANK:
            continue
        lines = []
        for i in sharding.contiguous_range(files.count, index, RANKS):
            rel = f"d{i // PER_FOLDER:04d}/f{i:07d}.txt"
            lines.append(f'{{"input":"{rel}","output":"{rel}","status":"ok","bytes_in":'
                         f'{len(str(i)) + 1},"tokens":1,"seconds":0.0001,"attempts":1,'
                         f'"error":null,"mtime_ns":0,"processor":"job.tokens:TokenSplitter@1",'
                         f'"time":1000000000.0}}\n')
        (folder / f"{journal.shard_name(index, RANKS)}.jsonl").write_text("".join(lines))


def _whole_run(bench: Bench, files: ManyFiles) -> tuple[list, int]:
    """``python -m job`` as rank 7 with its files done and 1,000 journals: runs, files done."""
    out_dir = bench.fresh(f"scale-{files.count}")
    timed(_job_command(files, out_dir))  # untimed: does rank 7's files
    _other_journals(files, out_dir)
    runs = [peak_memory(_job_command(files, out_dir)) for _ in range(bench.reps)]
    manifest = json.loads((out_dir / "_manifest" / f"shard-{RANK:05d}-of-{RANKS:05d}.json")
                          .read_text())
    shutil.rmtree(out_dir, ignore_errors=True)
    return runs, manifest["totals"]["skipped"]


# --- the rows ---------------------------------------------------------------------------------

def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def listing_rows(bench: Bench, sets: list[ManyFiles], quick: bool = False
                 ) -> tuple[list[Row], dict]:
    """Row 11: one line per size (contiguous) and one per size (size strategy); ``quick``
    leaves out the size strategy and the whole run (a fresh process costs 0.2-1 s here)."""
    found: list[Row] = []
    series: dict = {"files": [], "ours": [], "reference": [], "size": [], "whole": []}
    out_dir = bench.fresh("scale-out")  # never created: nothing to resume
    for files in sets:
        measured = {}
        kinds = (("ours", "contiguous", False), ("reference", "contiguous", True),
                 ("size", "size", False))
        for label, strategy, reference in kinds[:2] if quick else kinds:
            measured[label] = [_run_snippet(PREPARE, _prepare_args(files, out_dir, strategy,
                                                                   reference))
                               for _ in range(bench.reps)]
        expected = len(range(*_bounds(files.count)))
        series["files"].append(files.count)
        for label in measured:
            series[label].append((_median(measured[label], "seconds"),
                                  _median(measured[label], "peak")))
        ours, reference, size = (measured.get(k, []) for k in ("ours", "reference", "size"))
        seconds, peak = series["ours"][-1]
        row = Row(f"11 ({files.count:,})",
                  f"11. listing + planning, rank {RANK} of {RANKS:,} (contiguous), "
                  f"{files.describe()}: time; main-process peak",
                  f"list_inputs + plan: {series['reference'][-1][0]:.2f} s; "
                  f"{series['reference'][-1][1] / MB:.0f} MB",
                  f"{seconds:.2f} s; {peak / MB:.0f} MB",
                  f"{seconds / series['reference'][-1][0]:.2f}×; "
                  f"{peak / series['reference'][-1][1]:.2f}×",
                  f"≤ {TIME_GOAL:.0f} s; ≤ {MEMORY_GOAL // MB} MB",
                  met(seconds <= TIME_GOAL and peak <= MEMORY_GOAL))
        row.notes.append(f"runs: ours {_walls(ours)} s; reference {_walls(reference)} s")
        row.checked, row.check = 1, f"rank {RANK}'s plan holds its {expected} files"
        if {r["files"] for r in ours + reference} != {expected}:
            row.mismatch = f"plans of {sorted({r['files'] for r in ours + reference})} files"
        found.append(row)
        if quick:
            continue
        size_seconds, size_peak = series["size"][-1]
        found.append(Row(f"11 size ({files.count:,})",
                         f"11. the same, `shard_strategy: size` (every size needed), "
                         f"{files.describe()}", "—", f"{size_seconds:.2f} s; "
                         f"{size_peak / MB:.0f} MB", "—",
                         f"≤ {MEMORY_GOAL // MB} MB (time: {SIZE_NO_GOAL})",
                         met(size_peak <= MEMORY_GOAL)))
        found[-1].notes.append(f"runs: {_walls(size)} s, peaks "
                               f"{', '.join(_mb(r['peak']) for r in size)} MB; no time goal: "
                               "the ≤ 3 s is for listing and planning that grow with the "
                               "rank's own shard, and a size balance needs every file's size")
        runs, skipped = _whole_run(bench, files)
        wall = statistics.median(r.timing.seconds for r in runs)
        main = statistics.median(r.main_peak for r in runs)
        series["whole"].append((files.count, wall, main))
        row.notes.append(
            f"the whole `python -m job` run of rank {RANK} with its {skipped} files done "
            f"and {RANKS:,} ranks' journals in out_dir ({files.count:,} records), start to "
            f"exit: {'/'.join(f'{r.timing.seconds:.2f}' for r in runs)} s, main process "
            f"peak {main / MB:.0f} MB")
        rows._contention(row, {"whole run": [r.timing for r in runs]})
        if skipped != expected:
            row.mismatch = f"the rerun skipped {skipped} files, not {expected}"
    return found, series


def _bounds(count: int) -> tuple[int, int]:
    from job.sharding import contiguous_range
    span = contiguous_range(count, RANK, RANKS)
    return span.start, span.stop


def _walls(runs: list[dict], key: str = "seconds") -> str:
    return "/".join(f"{r[key]:.2f}" for r in runs)


def _mb(value: float) -> str:
    return f"{value / MB:.0f}"


def plans_row(bench: Bench, files: ManyFiles, quick: bool = False) -> list[Row]:
    """Row 12: every rank's contiguous plan of one listing (``quick``: every tenth rank's),
    and a few size plans."""
    paths = bench.fresh("scale-plans.txt")
    paths.parent.mkdir(parents=True, exist_ok=True)
    args = {"input_dir": str(files.path), "out_dir": None, "ranks": RANKS,
            "strategy": "contiguous", "which": list(range(0, RANKS, 10 if quick else 1)),
            "paths": str(paths)}
    runs = [_run_snippet(PLANS, args) for _ in range(bench.reps)]
    own_ms = _median(runs, "seconds") / len(args["which"]) * 1000
    from job import sharding
    from job.listing import list_inputs
    listing = list_inputs(files.path)
    held_runs = []
    for _ in range(bench.reps):
        started = time.perf_counter()
        held = [sharding.plan(listing, None, i, RANKS) for i in args["which"]]
        held_runs.append((time.perf_counter() - started) / len(args["which"]) * 1000)
    per_rank = statistics.median(held_runs)
    row = Row("12", f"12. {len(args['which']):,} ranks' plans (contiguous, ranks of {RANKS:,}) "
              f"of one {files.count:,}-file listing, after the listing: per rank", "—",
              f"{per_rank * 1000:.1f} µs", "—",
              f"≤ {PLAN_GOAL_MS:.0f} ms", met(per_rank <= PLAN_GOAL_MS))
    row.notes.append(f"runs: {'/'.join(f'{r * 1000:.1f}' for r in held_runs)} µs per plan, "
                     "job.sharding.plan of the listing held in memory")
    own = Row("12 rank", f"12. the same, each rank its own way, without the listing "
              "(job.outline): per rank", "—", f"{own_ms:.2f} ms", "—", "(no goal: it reads "
              "and examines the rank's own inputs)", "—")
    own.notes.append(f"runs: {_walls(runs)} s for {len(args['which'])} plans; "
                     f"the walk first: {_walls(runs, 'walk')} s; peak of "
                     f"the process {_median(runs, 'peak') / MB:.0f} MB. Each plan reads its "
                     "folder(s) again (about 1,000 entries classified and sorted) and examines "
                     f"(stat) its {files.count // RANKS:,} files: about 3 µs a file on this "
                     "machine")
    listed = [f.rel for plan in held for f in plan]
    planned = paths.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    row.checked, row.check = 2, ("the plans in rank order are sharding.plan's of the listing "
                                 "(disjoint, whole, ordered), each rank's own way too; a size "
                                 "plan is too")
    if planned != listed:
        row.mismatch = f"{len(planned)} planned paths, {len(listed)} listed; they differ"
    size_args = {**args, "strategy": "size", "which": [RANK, 0, RANKS - 1][:1 if quick else 3]}
    size = _run_snippet(PLANS, size_args)
    size_expected = sharding.plan(listing, [f.size for f in listing], RANK, RANKS, "size")
    size_planned = paths.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
    if size_planned[:len(size_expected)] != [f.rel for f in size_expected]:
        row.mismatch = f"rank {RANK}'s size plan differs from sharding.plan's"
    size_ms = size["seconds"] / size["plans"] * 1000
    size_row = Row("12 size", f"12. the same, `shard_strategy: size`: per rank ({size['plans']} "
                   "ranks timed)", "—", f"{size_ms:.0f} ms", "—", f"({SIZE_NO_GOAL})", "—")
    size_row.notes.append(f"the walk that examines every file: {size['walk']:.2f} s; each plan "
                          "balances every file's size again (largest first), then examines its "
                          f"own; peak {size['peak'] / MB:.0f} MB")
    paths.unlink(missing_ok=True)
    return [row, own, size_row]


def plot(series: dict, path: Path) -> str:
    """Time and memory against the number of files (log x) to ``path``; what it wrote."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed (pip install -e '.[dev]')"
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = {"ours": f"rank {RANK}/{RANKS}, contiguous (job.outline)",
              "size": f"rank {RANK}/{RANKS}, size strategy",
              "reference": "list_inputs + plan (before)"}
    for key, label in labels.items():
        if not series[key]:
            continue
        left.plot(series["files"], [s for s, _ in series[key]], marker="o", label=label)
        right.plot(series["files"], [m / MB for _, m in series[key]], marker="o", label=label)
    if series["whole"]:
        left.plot([n for n, _, _ in series["whole"]], [w for _, w, _ in series["whole"]],
                  marker="s", linestyle="--", label="whole `python -m job`, files done")
        right.plot([n for n, _, _ in series["whole"]], [m / MB for _, _, m in series["whole"]],
                   marker="s", linestyle="--", label="whole `python -m job`, files done")
    left.axhline(TIME_GOAL, color="grey", linewidth=0.8)
    right.axhline(MEMORY_GOAL / MB, color="grey", linewidth=0.8)
    for axes, title, unit in ((left, "listing + planning time", "seconds"),
                              (right, "main-process peak memory", "MB")):
        axes.set_xscale("log")
        axes.set_xlabel("input files")
        axes.set_ylabel(unit)
        axes.set_title(title)
        axes.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return f"plot: {path}"


def rows_of(bench: Bench, cache: Path, counts: list[int], wanted: list[int],
            plot_path: Path, quick: bool = False) -> list[Row]:
    """Rows 11 and/or 12 (``wanted``) over sets of ``counts`` files; the plot beside the
    report."""
    sets = [many_files(cache, count) for count in counts]
    found: list[Row] = []
    if 11 in wanted:
        listed, series = listing_rows(bench, sets, quick)
        found.extend(listed)
        listed[0].notes.append(plot(series, plot_path))
    if 12 in wanted:
        found.extend(plans_row(bench, sets[-1], quick))
    return found
