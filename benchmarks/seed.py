"""The seed's design, the reference of row 4: ``python -m benchmarks.seed IN OUT PROCESSES``.

A ``multiprocessing.Pool`` whose ``starmap`` calls, for each file, a function
that reads it whole, splits it and writes the output with plain ``open``:
no journal, no atomic rename, no retries, no timeouts.
"""

from __future__ import annotations

import multiprocessing
import os
import sys


def process(source: str, target: str) -> None:
    with open(source, "rb") as stream:
        data = stream.read()
    with open(target, "wb") as stream:
        stream.write(b"".join(t + b"\n" for t in data.split()))


def main(argv: list[str]) -> int:
    input_dir, out_dir, processes = argv[0], argv[1], int(argv[2])
    pairs = []
    for folder, dirs, files in os.walk(input_dir):
        dirs.sort()
        for name in sorted(files):
            source = os.path.join(folder, name)
            pairs.append((source, os.path.join(out_dir, os.path.relpath(source, input_dir))))
    for target_dir in {os.path.dirname(target) for _, target in pairs}:
        os.makedirs(target_dir, exist_ok=True)
    with multiprocessing.Pool(processes) as pool:
        pool.starmap(process, pairs)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
