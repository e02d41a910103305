"""Rows 8 and 9: the token splitter against the copy floor, ``dd`` of the same files.

The token splitter reads every byte and writes nearly every byte; the least any
program can do with the same files is copy them, so the floor is ``dd bs=128K``
per file, run by ``xargs -P N`` (read + write, no transform, one ``dd`` per file,
no shell in between). Row 8 runs both with 2 processes, row 9 with 1, the whole
process tree pinned to one CPU. Goal: the job within 2.0× the floor.

The job is ``python -m job`` as in rows 1-2, so its time includes what any run
pays whatever the input's size (interpreter start, imports, journal, workers).
The notes say how much that is (the job on an empty folder, timed in the same
reps), what the ratio is without it, and how fast the kernel alone is on each
of its paths (in this process, in memory: no I/O at all).

Outputs are compared with the reference splitter's (``job.tokens.split_bytes``:
``bytes.split``, each token then a newline, the SPEC's definition), computed
once per input set.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import statistics
import time
from pathlib import Path

from job import native
from job.tokens import CHUNK_SIZE

from . import references
from .inputs import MB, InputSet
from .measure import digests, timed
from .rows import Bench, Row, _paired, _verify, ratio, say

GOAL = 2.0
BLOCK_SIZE = "128K"


def dd_command(input_dir: Path, out_dir: Path, parallel: int) -> list[str]:
    """``xargs -P N dd bs=128K``: each file of the flat folder ``input_dir`` copied to
    ``out_dir`` under its name, by one ``dd`` of its own."""
    script = (f'cd "$1" && find . -type f -printf "%P\\0" | xargs -0 -P{parallel} -I{{}} '
              f'dd if={{}} of="$2"/{{}} bs={BLOCK_SIZE} status=none')
    return ["sh", "-c", script, "sh", str(input_dir), str(out_dir)]


def reference_output(data: bytes) -> bytes:
    """``job.tokens.split_bytes(data)``, the same bytes 3× faster: one join, not one
    concatenation per token (303 MB take ~3 s instead of ~10 s)."""
    tokens = data.split()
    return b"\n".join(tokens) + b"\n" if tokens else b""


@functools.lru_cache(maxsize=2)
def expected_digests(inputs_set: InputSet) -> dict[str, str]:
    """``{name: sha256}`` of the reference splitter's output of every file of the set."""
    found = {}
    for path in sorted(inputs_set.path.iterdir()):
        found[path.name] = hashlib.sha256(reference_output(path.read_bytes())).hexdigest()
    return found


def row(bench: Bench, large: InputSet, processes: int, pin: bool, fixed_cost: bool = True) -> Row:
    """Row 8 (``processes`` 2) or 9 (1, pinned): the job vs ``xargs -P N dd`` on ``large``.

    ``fixed_cost``: also time the job on an empty folder in every rep (left out by
    ``--quick``, whose rows 8-9 must take under 2 s).
    """
    label = "8" if processes > 1 else "9"
    cpus = {min(os.sched_getaffinity(0))} if pin else None
    plural = "es" if processes > 1 else ""
    result = Row(label, f"{label}. token splitter wall time vs the copy floor, {processes} "
                 f"process{plural}{' (pinned to 1 CPU)' if pin else ''}, {large.describe()}",
                 "", "", goal=f"≤ {GOAL:.2f}×")
    result.check = "output byte-identical to the reference splitter's (bytes.split)"
    expected = expected_digests(large)
    empty = bench.fresh("empty-input")
    empty.mkdir()
    floor_times, job_times, fixed_times = [], [], []
    for rep in range(bench.reps):
        copy_dir = bench.fresh("dd")
        copy_dir.mkdir()
        floor_times.append(timed(dd_command(large.path, copy_dir, processes), cpus))
        job_dir = bench.fresh("job")
        job_times.append(timed(references.job_command(large.path, job_dir, processes), cpus))
        _verify(result, expected, digests(job_dir), f"rep {rep + 1}")
        if fixed_cost:
            fixed_times.append(timed(references.job_command(empty, bench.fresh("job"),
                                                            processes), cpus))
        say(f"  rep {rep + 1}/{bench.reps}: dd {floor_times[-1].seconds:.2f} s, "
            f"job {job_times[-1].seconds:.2f} s" + (f", job on an empty folder "
                                                     f"{fixed_times[-1].seconds:.2f} s"
                                                     if fixed_cost else ""))
    _paired(result, f"`xargs -P{processes} dd bs={BLOCK_SIZE}`", floor_times, job_times, GOAL,
            (large.bytes / MB, "MB"))
    floor = statistics.median(t.seconds for t in floor_times)
    ours = statistics.median(t.seconds for t in job_times)
    if fixed_cost:
        fixed = statistics.median(t.seconds for t in fixed_times)
        result.notes.append(
            f"the job on an empty folder (its fixed cost: interpreter, imports, journal, "
            f"workers): {fixed:.2f} s; the job less that: {max(ours - fixed, 0):.2f} s, "
            f"{ratio(max(ours - fixed, 0), floor):.2f}× the floor")
    result.notes.append(f"the kernel alone, in memory: {kernel_speeds(large)}")
    bench.clean()
    return result


def kernel_speeds(large: InputSet, repeats: int = 5) -> str:
    """Each compiled path's speed on the set's first file, in memory, in CHUNK_SIZE calls."""
    squeeze = native.kernel()
    if squeeze is None:
        return "n/a (no compiled kernel)"
    data = min(large.path.iterdir()).read_bytes()
    source = ctypes.create_string_buffer(data, len(data))
    target = ctypes.create_string_buffer(CHUNK_SIZE)
    start, end = ctypes.addressof(source), ctypes.addressof(source) + len(data)
    speeds, before = [], native.selected(squeeze)
    try:
        for path in native.paths(squeeze):
            native.select(squeeze, path)
            best = float("inf")
            for _ in range(repeats):
                state, count = ctypes.c_int(1), ctypes.c_size_t(0)
                began = time.perf_counter()
                for at in range(start, end, CHUNK_SIZE):
                    squeeze(at, min(CHUNK_SIZE, end - at), target, ctypes.byref(state),
                            ctypes.byref(count))
                best = min(best, time.perf_counter() - began)
            speeds.append(f"{path} {len(data) / best / 1e9:.1f} GB/s")
    finally:
        native.select(squeeze, before)
    return ", ".join(speeds) + f" (fastest of {repeats} passes over {len(data) / MB:.1f} MB)"
