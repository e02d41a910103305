"""The command line: build the inputs, run the rows, print and write the report.

Exit 0 when every output matched its reference, whether or not the goals
were met (this is a report); 1 when an output differed or a measured run
failed (a correctness failure).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Callable

from . import inputs, report, rows
from .measure import ROOT, CommandFailed

DEFAULT_CORPUS = ROOT.parent / "shared" / "corpus" / "wikipedia.part1"
ALL_ROWS = (1, 2, 3, 4, 5, 6)
FULL = {"reps": 3, "corpus_mb": 300, "corpus_files": 30, "big_mb": [1000, 2000],
        "small_files": 20_000, "skewed_files": 300, "cache": ROOT / "build" / "bench"}
QUICK = {"reps": 1, "corpus_mb": 4, "corpus_files": 4, "big_mb": [8, 16],
         "small_files": 200, "skewed_files": 60, "cache": ROOT / "build" / "bench-quick"}


def _numbers(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _default_tmpfs() -> Path | None:
    """``/dev/shm/amlshard-bench`` if ``/dev/shm`` is a tmpfs mount, else None."""
    try:
        with open("/proc/mounts") as mounts:
            if any(line.split()[1:3] == ["/dev/shm", "tmpfs"] for line in mounts):
                return Path("/dev/shm/amlshard-bench")
    except OSError:
        pass
    return None


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Build the inputs of issue 4 (cached), run every row of its table against "
                    "its reference, print the table and write it to CACHE/results.md.")
    parser.add_argument("--quick", action="store_true",
                        help="tiny run to prove the harness works: a few MB, 200 small files, "
                             "1 rep, cache build/bench-quick")
    parser.add_argument("--reps", type=int, help="repetitions per measurement, median reported "
                        f"(default {FULL['reps']})")
    parser.add_argument("--rows", type=_numbers, default=list(ALL_ROWS),
                        help="rows to run, e.g. 1,2 (default: all)")
    parser.add_argument("--cache", type=Path,
                        help="inputs, scratch outputs and results.md (default build/bench)")
    parser.add_argument("--results", type=Path, help="where to write the report "
                        "(default CACHE/results.md)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS,
                        help="the seed corpus to repeat (default ../shared/corpus/wikipedia.part1)")
    parser.add_argument("--corpus-mb", type=int, help=f"size of the large corpus, rows 1-2 "
                        f"(default {FULL['corpus_mb']})")
    parser.add_argument("--corpus-files", type=int, help="files in the large corpus "
                        f"(default {FULL['corpus_files']})")
    parser.add_argument("--big-mb", type=_numbers, help="sizes of the single big files of row 3, "
                        "comma-separated; the first is the base of the flatness ratio "
                        "(default 1000,2000)")
    parser.add_argument("--small-files", type=int, help=f"files in the small-file set, row 4 "
                        f"(default {FULL['small_files']:,})")
    parser.add_argument("--tmpfs", type=lambda text: Path(text) if text else None,
                        default=_default_tmpfs(),
                        help="a tmpfs folder where row 4 runs a second time, free of the disk's "
                             "noise (default /dev/shm/amlshard-bench when /dev/shm is a tmpfs; "
                             "'' to skip)")
    parser.add_argument("--skewed-files", type=int, help=f"files in the skewed set, row 5 "
                        f"(default {FULL['skewed_files']})")
    args = parser.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.reps < 1 or args.corpus_mb < 1 or args.corpus_files < 1:
        parser.error("--reps, --corpus-mb and --corpus-files must be >= 1")
    unknown = set(args.rows) - set(ALL_ROWS)
    if unknown:
        parser.error(f"no such row: {sorted(unknown)}; rows are {ALL_ROWS}")
    args.results = args.results or args.cache / "results.md"
    return args


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _kernel() -> str:
    """Which kernel the job will use here, compiling it into the cache if need be."""
    from job import native
    if native.turned_off():
        return "pure Python (AMLSHARD_NATIVE=0)"
    try:
        return f"compiled C ({native.build()})"
    except native.Unavailable as reason:
        return f"pure Python ({reason})"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.monotonic()
    machine = report.machine()  # before the run: the load average is the machine's, not ours
    code = report.sources()
    kernel = _kernel()  # built now (cached), so no timed run pays for the compiler
    corpus = inputs.Corpus(args.corpus)
    bench = rows.Bench(args.reps, args.cache / "scratch")
    bench.clean()
    results: list[rows.Row] = []
    sets: list[str] = []

    def step(label: str, what: str, run: Callable[[], rows.Row | list[rows.Row]]) -> None:
        rows.say(f"row {label} ...")
        try:
            produced = run()
        except CommandFailed as error:  # the job (or a reference) failed: no number, no check
            produced = rows.Row(label, f"{label}. {what}", "", "failed", met="**no**",
                                checked=1, mismatch=str(error), check="ran to the end")
        results.extend(produced if isinstance(produced, list) else [produced])

    def built(inputs_set: inputs.InputSet) -> inputs.InputSet:
        inputs.warm(inputs_set)
        sets.append(f"{inputs_set.name} ({inputs_set.describe()})")
        return inputs_set

    if 1 in args.rows or 2 in args.rows:
        large = built(inputs.large_corpus(args.cache, corpus, args.corpus_mb, args.corpus_files))
        if 1 in args.rows:
            step("1", "token splitter, 2 processes",
                 lambda: rows.throughput(bench, large, 2, pin=False))
        if 2 in args.rows:
            step("2", "token splitter, 1 process",
                 lambda: rows.throughput(bench, large, 1, pin=True))
    if 3 in args.rows:
        bigs = [built(inputs.big_file(args.cache, corpus, mb)) for mb in args.big_mb]
        step("3", "peak RSS on one big file", lambda: rows.memory(bench, bigs))
    if 4 in args.rows:
        small = built(inputs.small_files(args.cache, corpus, args.small_files))
        step("4", "small files", lambda: rows.small_files(bench, small))
        if args.tmpfs is not None:
            in_memory = built(inputs.small_files(args.tmpfs, corpus, args.small_files))
            memory_bench = rows.Bench(args.reps, args.tmpfs / "scratch")
            step("4 (tmpfs)", "small files on tmpfs",
                 lambda: rows.small_files(memory_bench, in_memory, where="tmpfs"))
            memory_bench.clean()
    if 5 in args.rows:
        skewed = built(inputs.skewed_files(args.cache, corpus, args.skewed_files))
        step("5", "busiest of 5 ranks", lambda: rows.balance(skewed))
    if 6 in args.rows:
        step("6", "python -m submit --dry-run", lambda: rows.submit(bench))
    bench.clean()

    elapsed = time.monotonic() - started
    command = "python -m benchmarks" + "".join(f" {shlex.quote(a)}" for a in
                                               (sys.argv[1:] if argv is None else argv))
    context = [f"- command: `{command}`; {args.reps} rep(s) per measurement, medians; "
               f"took {_duration(elapsed)} (input building included)",
               f"- inputs under {args.cache}/inputs: " + "; ".join(sets),
               f"- token kernel: {kernel}"]
    if report.sources() != code:
        context.append(f"- **job/ or submit/ changed during the run** (digest {code} -> "
                       f"{report.sources()}): the rows may not measure the same code; run again")
    text = report.render(results, context, machine)
    report.write(text, args.results)
    print(text)
    print(f"(written to {args.results})")
    failed = [r for r in results if r.mismatch]
    if failed:
        print(f"CORRECTNESS FAILURE in {len(failed)} row(s): see 'Output checks' above",
              file=sys.stderr)
        return 1
    return 0
