"""Write the small sample corpus the demo and the tests run on: ``python -m job.sample DIR``.

Deterministic text (the same bytes on every machine and Python 3.11+): 36
files in nested folders, sizes from empty to about 150 KB, with the
whitespace a real dump has (tabs, CRLF line ends, runs of blanks).
"""

from __future__ import annotations

import os
import random
import sys

WORDS = ("the of and in to a was is for on as by with he at from his an were are which "
         "that it its first also after new two one has been who their more during when "
         "city river season album song game league county village church war army "
         "station school population music film series ship university team").split()
FILE_COUNT = 36


def _text(rng: random.Random, size: int) -> bytes:
    lines, total = [], 0
    while total < size:
        words = [rng.choice(WORDS) for _ in range(rng.randint(1, 24))]
        sep = rng.choice((" ", " ", " ", "  ", "\t"))
        end = rng.choice(("\n", "\n", "\n", "\r\n", "\n\n"))
        line = sep.join(words) + end
        lines.append(line)
        total += len(line)
    return "".join(lines).encode("utf-8")[:size]


def write_sample(folder: str, seed: int = 2024) -> list[str]:
    """Write the corpus under ``folder``; returns the relative paths written."""
    rng = random.Random(seed)
    written = []
    for index in range(FILE_COUNT):
        part = f"part-{index // 12 + 1}"
        rel = f"{part}/doc_{index:03d}.txt"
        size = 0 if index == 7 else int(200 * 1.2 ** rng.randint(0, 36))
        path = os.path.join(folder, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as stream:
            stream.write(_text(rng, size))
        written.append(rel)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m job.sample DIR", file=sys.stderr)
        return 2
    files = write_sample(argv[0])
    size = sum(os.path.getsize(os.path.join(argv[0], f)) for f in files)
    print(f"sample corpus: {len(files)} files, {size / 1e3:.0f} KB in {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
