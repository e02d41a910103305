"""The rows of the benchmark table, each measured against its reference in the same run."""

from __future__ import annotations

import os
import shutil
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from job import sharding
from job.listing import list_inputs

from . import references
from .inputs import MB, InputSet
from .measure import ROOT, CommandFailed, Timing, compare, digests, peak_memory, timed

MEMORY_LIMIT = 200 * MB
FLAT_RATIO = 1.10
SHARDS = 5


@dataclass
class Row:
    """One line of the table, with what backs it."""

    key: str                         # "1", "3 (1.00 GB)", "5 size", ...: names it in notes
    metric: str
    reference: str
    ours: str
    ratio: str = "—"
    goal: str = "—"
    met: str = "—"
    notes: list[str] = field(default_factory=list)
    checked: int = 0                 # runs whose output was compared with the reference
    mismatch: str | None = None      # what differed, if anything did (a correctness failure)
    check: str = "output byte-identical to the reference's"
    others: float = 0.0              # the most other processes used of the CPUs during a run


@dataclass
class Bench:
    """What every row needs: repetitions and a scratch folder for outputs."""

    reps: int
    scratch: Path

    def fresh(self, name: str) -> Path:
        path = self.scratch / name
        shutil.rmtree(path, ignore_errors=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def clean(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ratio(value: float, reference: float) -> float:
    return value / reference if reference else float("inf")


def met(ok: bool) -> str:
    return "yes" if ok else "**no**"


NOISY = 0.10  # other processes used more than this share of the CPUs: say so


def _runs(name: str, timings: list[Timing]) -> str:
    walls = "/".join(f"{t.seconds:.2f}" for t in timings)
    return f"{name} {walls} s (CPU {statistics.median(t.cpu for t in timings):.2f} s)"


def _paired(row: Row, reference: str, refs: list[Timing], ours: list[Timing],
            goal: float, work: tuple[float, str] | None = None) -> None:
    """Fill ``row`` from the reference's and our timings: medians, ratio, notes."""
    ref_median = statistics.median(t.seconds for t in refs)
    our_median = statistics.median(t.seconds for t in ours)
    value = ratio(our_median, ref_median)
    row.reference = f"{reference}: {ref_median:.2f} s"
    row.ours = f"{our_median:.2f} s"
    row.ratio = f"{value:.2f}×"
    row.met = met(value <= goal)
    ref_best, our_best = min(t.seconds for t in refs), min(t.seconds for t in ours)
    note = (f"runs: {_runs('reference', refs)}; {_runs('ours', ours)}; fastest runs' ratio "
            f"{ratio(our_best, ref_best):.2f}×")
    if work is not None:
        amount, unit = work
        note += (f"; {unit}/s (medians): reference {amount / ref_median:,.0f}, "
                 f"ours {amount / our_median:,.0f}")
    row.notes.append(note)
    _contention(row, {"reference": refs, "ours": ours})


def _contention(row: Row, runs: dict[str, list[Timing]]) -> None:
    row.others = max(t.others for timings in runs.values() for t in timings)
    if row.others > NOISY:
        shares = "; ".join(f"{name} " + "/".join(f"{t.others:.0%}" for t in timings)
                           for name, timings in runs.items())
        row.notes.append(f"**noisy**: share of the machine's CPUs that other processes used "
                         f"during each run: {shares}")


def _verify(row: Row, expected: dict[str, str], actual: dict[str, str], run: str) -> None:
    problem = compare(expected, actual)
    row.checked += 1
    if problem and row.mismatch is None:
        row.mismatch = f"{run}: {problem}"


def throughput(bench: Bench, large: InputSet, processes: int, pin: bool) -> Row:
    """Rows 1 and 2: the job vs tr over the large corpus, same parallelism, same CPUs."""
    cpus = {min(os.sched_getaffinity(0))} if pin else None
    label = "1" if processes > 1 else "2"
    plural = "es" if processes > 1 else ""
    row = Row(label, f"{label}. token splitter wall time, {processes} process{plural}"
              f"{' (pinned to 1 CPU)' if pin else ''}, {large.describe()}", "", "",
              goal="≤ 1.00×")
    plain_times, tr_times, job_times, python_times = [], [], [], []
    for rep in range(bench.reps):
        plain_dir, expected_dir = bench.fresh("plain"), bench.fresh("tr")
        plain_dir.mkdir()
        expected_dir.mkdir()
        plain_times.append(timed(references.plain_tr_command(large.path, plain_dir, processes),
                                 cpus))
        tr_times.append(timed(references.tr_command(large.path, expected_dir, processes), cpus))
        for pure_python, times in ((False, job_times), (True, python_times)):
            actual_dir = bench.fresh("job")
            times.append(timed(references.job_command(large.path, actual_dir, processes,
                                                      pure_python), cpus))
            _verify(row, digests(expected_dir), digests(actual_dir),
                    f"rep {rep + 1}{' (pure Python)' if pure_python else ''}")
        say(f"  rep {rep + 1}/{bench.reps}: plain tr {plain_times[-1].seconds:.2f} s, "
            f"exact tr {tr_times[-1].seconds:.2f} s, job {job_times[-1].seconds:.2f} s, "
            f"job in pure Python {python_times[-1].seconds:.2f} s")
    _paired(row, f"`xargs -P{processes}` plain tr", plain_times, job_times, 1.0,
            (large.bytes / MB, "MB"))
    exact = statistics.median(t.seconds for t in tr_times)
    row.notes.append(f"byte-exact tr (tr_exact.sh, the outputs compared): {exact:.2f} s, "
                     f"ours {ratio(statistics.median(t.seconds for t in job_times), exact):.2f}× "
                     f"of it")
    plain = statistics.median(t.seconds for t in plain_times)
    pure = statistics.median(t.seconds for t in python_times)
    row.notes.append(f"the job with its pure-Python kernel (`AMLSHARD_NATIVE=0`, used where "
                     f"no C compiler is found): {pure:.2f} s, {ratio(pure, plain):.2f}× plain tr")
    bench.clean()
    return row


def memory(bench: Bench, bigs: list[InputSet], processes: int = 2) -> list[Row]:
    """Row 3: the peak RSS of any process of the job on one big file, and as the file grows."""
    rows, first_peak = [], None
    for big in bigs:
        size = f"{big.bytes / 1e9:.2f} GB" if big.bytes >= 1e8 else f"{big.bytes / MB:.1f} MB"
        row = Row(f"3 ({size})", f"3. peak RSS of any process, one {size} file, "
                  f"{processes} processes", "—", "")
        expected_dir = bench.fresh("tr")
        expected_dir.mkdir()
        tr_seconds = timed(references.tr_command(big.path, expected_dir, 1)).seconds
        expected = digests(expected_dir)
        bench.clean()
        runs = []
        for rep in range(bench.reps):
            actual_dir = bench.fresh("job")
            runs.append(peak_memory(references.job_command(big.path, actual_dir, processes)))
            _verify(row, expected, digests(actual_dir), f"{size}, rep {rep + 1}")
            bench.clean()
            say(f"  {size} rep {rep + 1}/{bench.reps}: peak {runs[-1].peak / MB:.0f} MB, "
                f"{runs[-1].timing.seconds:.1f} s")
        peak = statistics.median(r.peak for r in runs)
        seconds = statistics.median(r.timing.seconds for r in runs)
        row.ours = f"{peak / MB:.0f} MB"
        if first_peak is None:
            first_peak = peak
            row.goal = f"< {MEMORY_LIMIT // MB} MB"
            row.met = met(peak < MEMORY_LIMIT)
        else:
            grown = ratio(peak, first_peak)
            row.reference = f"{first_peak / MB:.0f} MB on the smallest file"
            row.ratio = f"{grown:.2f}×"
            row.goal = f"< {MEMORY_LIMIT // MB} MB, ≤ {FLAT_RATIO:.2f}× (flat)"
            row.met = met(peak < MEMORY_LIMIT and grown <= FLAT_RATIO)
        last = runs[-1]
        row.notes.append(
            f"peaks {', '.join(f'{r.peak / MB:.0f}' for r in runs)} MB "
            f"(wait4 ru_maxrss of the tree); "
            f"/proc VmHWM, last run: main {last.main_peak / MB:.0f} MB, busiest worker "
            f"{last.worker_peak / MB:.0f} MB, worker processes seen: {last.processes - 1}; "
            f"wall time: job {seconds:.1f} s ({big.bytes / MB / seconds:.0f} MB/s), "
            f"tr on one core {tr_seconds:.1f} s ({big.bytes / MB / tr_seconds:.0f} MB/s)")
        _contention(row, {"job": [r.timing for r in runs]})
        rows.append(row)
    return rows


def small_files(bench: Bench, small: InputSet, processes: int = 2, where: str = "") -> Row:
    """Row 4: many small files, the job (journal, atomic writes) vs the seed's Pool.starmap.

    ``where`` names the file system when it is not the cache's (e.g. ``tmpfs``).
    """
    on = f" on {where}" if where else ""
    return against_seed(bench, small, processes, 1.0, f"4{' (' + where + ')' if where else ''}",
                        f"4. {small.files:,} small files ({small.bytes / MB:.1f} MB){on}, "
                        f"{processes} processes")


def against_seed(bench: Bench, files: InputSet, processes: int, goal: float, key: str,
                 metric: str) -> Row:
    """A row of the job's wall time on ``files`` against the seed's ``Pool.starmap`` design,
    outputs compared every rep."""
    row = Row(key, metric, "", "", goal=f"≤ {goal:.2f}×")
    seed_times, job_times = [], []
    for rep in range(bench.reps):
        expected_dir, actual_dir = bench.fresh("seed"), bench.fresh("job")
        seed_times.append(timed(references.seed_command(files.path, expected_dir, processes)))
        job_times.append(timed(references.job_command(files.path, actual_dir, processes)))
        _verify(row, digests(expected_dir), digests(actual_dir), f"rep {rep + 1}")
        say(f"  rep {rep + 1}/{bench.reps}: seed {seed_times[-1].seconds:.2f} s, "
            f"job {job_times[-1].seconds:.2f} s")
    _paired(row, "seed `Pool.starmap`", seed_times, job_times, goal, (files.files, "files"))
    bench.clean()
    return row


def balance(skewed: InputSet, shards: int = SHARDS) -> list[Row]:
    """Row 5: the busiest rank's bytes vs the optimum, computed with the job's own planner."""
    listing = list_inputs(skewed.path)
    sizes = [f.size for f in listing]
    optimum = references.optimum_busiest(sizes, shards)
    rows = []
    for strategy in ("size", "contiguous"):
        plans = [sharding.plan(listing, sizes, i, shards, strategy) for i in range(shards)]
        loads = [sum(f.size for f in plan) for plan in plans]
        busiest = max(loads)
        value = ratio(busiest, optimum)
        contrast = strategy != "size"
        row = Row(f"5 {strategy}", f"5. busiest of {shards} ranks, `shard_strategy: {strategy}`"
                  f"{' (for contrast)' if contrast else ''}, {skewed.describe()}",
                  f"optimum: {optimum / MB:.2f} MB", f"{busiest / MB:.2f} MB", f"{value:.3f}×",
                  "—" if contrast else "≤ 1.05×", "—" if contrast else met(value <= 1.05))
        row.notes.append(f"loads {', '.join(f'{x / MB:.2f}' for x in loads)} MB; "
                         f"total {sum(sizes) / MB:.2f} MB, largest file {max(sizes) / MB:.2f} MB")
        rels = sorted(f.rel for plan in plans for f in plan)
        row.checked, row.check = 1, "plans disjoint, their union the whole listing"
        if rels != sorted(f.rel for f in listing):
            row.mismatch = f"{strategy}: the plans are not a partition of the listing"
        rows.append(row)
    return rows


def submit(bench: Bench, warm_up: bool = True) -> Row:
    """Row 6: the dry run of a 5-node submission vs a bare import of the SDK.

    The first run of each is a warm-up (.pyc files, page cache), not timed; without
    ``warm_up`` (``--quick``) it is timed as the first rep.
    """
    row = Row("6", "6. `python -m submit --nodes 5 --dry-run` wall time", "", "", goal="≤ 1.30×")
    yaml_path = bench.fresh("submit") / "x.yml"
    yaml_path.parent.mkdir(parents=True)

    def unavailable(why: str) -> Row:
        row.reference, row.ours = "n/a", "n/a (submit not available)"
        row.notes.append(f"n/a (submit not available): {why}")
        return row

    if not (ROOT / "submit" / "__main__.py").is_file():
        return unavailable("there is no submit/__main__.py yet")
    try:
        first = timed(references.import_sdk_command()), timed(references.submit_command(yaml_path))
    except CommandFailed as error:
        return unavailable(str(error))
    if not yaml_path.is_file():
        return unavailable(f"it exited 0 but wrote no {yaml_path.name}")
    import_times, submit_times = [], []
    for rep in range(bench.reps):
        if rep == 0 and not warm_up:
            imported, submitted = first
        else:
            imported = timed(references.import_sdk_command())
            submitted = timed(references.submit_command(yaml_path))
        import_times.append(imported)
        submit_times.append(submitted)
        say(f"  rep {rep + 1}/{bench.reps}: import {imported.seconds:.2f} s, "
            f"submit {submitted.seconds:.2f} s")
    _paired(row, '`python -c "import azure.ai.ml"`', import_times, submit_times, 1.3)
    bench.clean()
    return row
