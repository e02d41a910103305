"""Row 10: 20,000 tiny files (100-200 B), the job vs the seed's ``Pool.starmap``.

Row 4's files (200 B - 4 KB) already hold little work each; these hold less (about 25
tokens), so what the row measures is the flat cost per file: the job's journal
record, its atomic output (an unnamed file linked to its name, or a temporary name
renamed) and its pipe traffic, against the seed's plain ``open``/``write``. Run on
the cache's file system and again on tmpfs (``--tmpfs``), like row 4, and compared
byte for byte with the seed's outputs every rep. Goal: ≤ 0.90× the seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from . import inputs
from .inputs import MB, Corpus, InputSet
from .rows import Bench, Row, against_seed

TINY_SIZES = (100, 200)
GOAL = 0.90
PROCESSES = 2
SEED = 10  # of the file sizes and offsets: another set than row 4's


def tiny_files(cache: Path, corpus: Corpus, count: int) -> InputSet:
    """``count`` files of 100 B to 200 B, slices of the corpus at seeded offsets (cached)."""
    return inputs.small_files(cache, corpus, count, seed=SEED, sizes=TINY_SIZES, name="tiny")


def tiny_row(bench: Bench, tiny: InputSet, where: str = "") -> Row:
    """The job (journal, atomic outputs) vs the seed on ``tiny``; ``where`` names the file
    system when it is not the cache's (``tmpfs``)."""
    on = f" on {where}" if where else ""
    return against_seed(bench, tiny, PROCESSES, GOAL, f"10{' (' + where + ')' if where else ''}",
                        f"10. {tiny.files:,} tiny files ({tiny.bytes / MB:.1f} MB, "
                        f"{TINY_SIZES[0]}-{TINY_SIZES[1]} B){on}, {PROCESSES} processes")


def run_rows(count: int, reps: int, cache: Path, tmpfs: Path | None, corpus: Corpus,
             built: Callable[[InputSet], InputSet],
             step: Callable[[str, str, Callable[[], Row]], None]) -> None:
    """Row 10 in the cache's file system, then on ``tmpfs`` (unless None), through the
    command line's ``built`` (warms and lists a set) and ``step`` (runs and collects a row)."""
    tiny = built(tiny_files(cache, corpus, count))
    step("10", "tiny files", lambda: tiny_row(Bench(reps, cache / "scratch"), tiny))
    if tmpfs is not None:
        in_memory = built(tiny_files(tmpfs, corpus, count))
        memory_bench = Bench(reps, tmpfs / "scratch")
        step("10 (tmpfs)", "tiny files on tmpfs",
             lambda: tiny_row(memory_bench, in_memory, where="tmpfs"))
        memory_bench.clean()
