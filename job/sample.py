"""Write the small sample corpus the demo runs on: ``python -m job.sample DIR``; and, for the
tests and benchmarks, a Wikipedia-like corpus (:func:`write_corpus`).

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


PROSE = ("the of and in to a was is for on as by with he at from his an were are which that it "
         "its first also after city river season album song game league county village church "
         "war army station school population music film series ship university team "
         "café naïve Zürich São Paulo Māori Ελλάδα Москва 日本 東京 한국 — – “quoted” ’s "
         "1,234 3.5 % km² <unk> @-@ @,@ ( ) ; : , . ! ? = = Early life = = 🎵").split()
BLANKS = (" ",) * 30 + ("  ", "\t", " \t ", "\u00a0")  # NBSP is no ASCII whitespace: in tokens
ENDS = ("\n",) * 8 + ("\n\n", "\r\n", " \n", "\n \n", "\v", "\f\n", "\r")


def _prose(rng: random.Random, size: int) -> bytes:
    """About ``size`` bytes of paragraphs: long lines of words, Wikipedia-dump style."""
    parts, total = [], 0
    while total < size:
        words = [rng.choice(PROSE) for _ in range(rng.randint(3, 180))]
        line = "".join(word + rng.choice(BLANKS) for word in words).rstrip(" ") + rng.choice(ENDS)
        parts.append(line)
        total += len(line) + 8
    return "".join(parts).encode("utf-8")


def write_corpus(folder: str, files: int = 27, seed: int = 1) -> list[str]:
    """Write a corpus like a Wikipedia dump split into parts; returns the names written.

    ``wiki_00.txt`` … : 27 files of about 30 KB to 95 KB of real-looking prose (UTF-8
    with accents, CJK, emoji; ``<unk>`` and ``@-@`` markers), with every ASCII
    whitespace byte in runs, CRLF and lone CR line ends, a file that starts with
    blanks, one that ends inside a token, and one with bytes that are not UTF-8.
    The same bytes on every machine: what the tests use, and the benchmarks
    where ``../shared/corpus`` is absent.
    """
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    names = []
    for index in range(files):
        data = _prose(rng, rng.randint(27_000, 85_000))
        if index == 1:
            data = b" \t\n\n  " + data
        if index == 2:
            data = data.rstrip()  # ends inside a token
        if index == 3:
            data = data[:5000] + b" caf\xe9 \xff\xfe\x00 tail\x80 " + data[5000:]
        name = f"wiki_{index:02d}.txt"
        with open(os.path.join(folder, name), "wb") as stream:
            stream.write(data)
        names.append(name)
    return names


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
