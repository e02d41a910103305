"""The benchmark inputs: built once under the cache folder, reused while they match.

Every set is a pure function of the seed corpus (``../shared/corpus/
wikipedia.part1``, read in place, never copied into the repository) and of its
parameters. Each set lives in ``CACHE/inputs/NAME/`` with a stamp
``CACHE/inputs/NAME.json`` beside it (not inside: the references list the
folder with ``find``). A set is reused when its stamp holds the same
parameters and every file on disk has the size the stamp records; otherwise
it is rebuilt from scratch.

- ``large``: ``count`` files of about ``total / count`` bytes each, each the
  corpus files concatenated whole, over and over, starting from a different
  corpus file (so the files differ).
- ``big``: one file of at least ``size`` bytes, made the same way.
- ``small``: many files of 200 B to 4 KB, each a slice of the corpus at a
  seeded random offset (so some start with whitespace, some end mid-token);
  row 10's ``tiny`` set is made the same way, 100 B to 200 B.
- ``skewed``: a few hundred files whose sizes follow a Pareto law
  (heavy tail), the content again slices of the corpus.

The listing order of every set is unrelated to file size.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

MB = 1_000_000
SMALL_SIZES = (200, 4_000)
SKEW_ALPHA, SKEW_MIN, SKEW_MAX = 1.5, 16_000, 64 * MB


@dataclass(frozen=True)
class InputSet:
    """A folder of inputs, as the job receives it (``input_dir``)."""

    name: str
    path: Path
    files: int
    bytes: int

    def describe(self) -> str:
        return f"{self.files} file{'s' if self.files != 1 else ''}, {self.bytes / MB:,.1f} MB"


class Corpus:
    """The seed corpus: its files' bytes, in sorted order."""

    def __init__(self, folder: Path):
        names = sorted(n for n in os.listdir(folder)
                       if not n.startswith(".") and (folder / n).is_file())
        if not names:
            raise SystemExit(f"error: no corpus files in {folder}")
        self.folder = folder
        self.parts = [(folder / n).read_bytes() for n in names]
        self.ring = b"".join(self.parts)
        digest = hashlib.sha256()
        for name, part in zip(names, self.parts):
            digest.update(name.encode() + b"\0" + hashlib.sha256(part).digest())
        self.fingerprint = digest.hexdigest()[:16]

    def rotation(self, start: int) -> bytes:
        """All corpus files concatenated, beginning with file ``start``."""
        start %= len(self.parts)
        return b"".join(self.parts[start:] + self.parts[:start])

    def write_slice(self, stream: BinaryIO, offset: int, size: int) -> None:
        """Write ``size`` bytes of the endless repetition of the corpus from ``offset``."""
        ring = self.ring
        offset %= len(ring)
        while size > 0:
            piece = ring[offset:offset + size]
            stream.write(piece)
            size -= len(piece)
            offset = 0


def _write_repeated(path: Path, block: bytes, at_least: int) -> None:
    """``block`` written whole, again and again, until the file holds ``at_least`` bytes."""
    with open(path, "wb") as stream:
        for _ in range(max(1, math.ceil(at_least / len(block)))):
            stream.write(block)


def _on_disk(folder: Path) -> dict[str, int]:
    sizes = {}
    for root, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            sizes[os.path.relpath(path, folder)] = os.path.getsize(path)
    return sizes


def _cached(cache: Path, name: str, params: dict, build: Callable[[Path], None]) -> InputSet:
    """The set ``name``: reused if its stamp and sizes match, else built afresh."""
    folder = cache / "inputs" / name
    stamp = folder.with_name(name + ".json")
    try:
        recorded = json.loads(stamp.read_text())
        if recorded["params"] == params and recorded["files"] == _on_disk(folder):
            return InputSet(name, folder, len(recorded["files"]), sum(recorded["files"].values()))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    print(f"building inputs: {name} ...", file=sys.stderr, flush=True)
    stamp.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    building = folder.with_name(name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    build(building)
    building.rename(folder)
    files = _on_disk(folder)
    stamp.write_text(json.dumps({"params": params, "files": files}, sort_keys=True))
    return InputSet(name, folder, len(files), sum(files.values()))


def large_corpus(cache: Path, corpus: Corpus, total_mb: int, count: int) -> InputSet:
    """``count`` files of at least ``total_mb / count`` MB each (whole corpus rotations)."""
    each = math.ceil(total_mb * MB / count)
    params = {"kind": "large", "total_mb": total_mb, "count": count, "corpus": corpus.fingerprint}

    def build(folder: Path) -> None:
        for i in range(count):
            _write_repeated(folder / f"part-{i:03d}.txt", corpus.rotation(i), each)

    return _cached(cache, f"large-{total_mb}MB-{count}files", params, build)


def big_file(cache: Path, corpus: Corpus, size_mb: int) -> InputSet:
    """A folder holding one file of at least ``size_mb`` MB."""
    params = {"kind": "big", "size_mb": size_mb, "corpus": corpus.fingerprint}

    def build(folder: Path) -> None:
        _write_repeated(folder / "big.txt", corpus.ring, size_mb * MB)

    return _cached(cache, f"big-{size_mb}MB", params, build)


def small_files(cache: Path, corpus: Corpus, count: int, seed: int = 4,
                sizes: tuple[int, int] = SMALL_SIZES, name: str = "small") -> InputSet:
    """``count`` files of ``sizes`` bytes (200 B to 4 KB), slices of the corpus at seeded
    offsets; ``name`` names the set and its files (row 10's ``tiny``: see ``tiny.py``)."""
    params = {"kind": "small", "count": count, "seed": seed, "sizes": list(sizes),
              "corpus": corpus.fingerprint}  # a list: as the JSON stamp reads back

    def build(folder: Path) -> None:
        rng = random.Random(seed)
        for i in range(count):
            size = rng.randint(*sizes)
            with open(folder / f"{name}-{i:05d}.txt", "wb") as stream:
                corpus.write_slice(stream, rng.randrange(len(corpus.ring)), size)

    return _cached(cache, f"{name}-{count}", params, build)


def skewed_sizes(count: int, seed: int = 5) -> list[int]:
    """Heavy-tailed sizes: Pareto(alpha=1.5) times 16 KB, capped at 64 MB; deterministic.

    alpha 1.5 has an infinite variance, yet over a few hundred files the
    largest stays below a fifth of the total, so the balance is the planner's
    doing (with alpha 1.1 one file outweighed a fifth and any plan was optimal).
    """
    rng = random.Random(seed)
    return [min(int(SKEW_MIN * rng.paretovariate(SKEW_ALPHA)), SKEW_MAX) for _ in range(count)]


def skewed_files(cache: Path, corpus: Corpus, count: int, seed: int = 5) -> InputSet:
    """``count`` files with :func:`skewed_sizes`, in listing order unrelated to size."""
    params = {"kind": "skewed", "count": count, "seed": seed, "alpha": SKEW_ALPHA,
              "min": SKEW_MIN, "max": SKEW_MAX, "corpus": corpus.fingerprint}

    def build(folder: Path) -> None:
        offsets = random.Random(seed + 1)
        for i, size in enumerate(skewed_sizes(count, seed)):
            with open(folder / f"skewed-{i:04d}.txt", "wb") as stream:
                corpus.write_slice(stream, offsets.randrange(len(corpus.ring)), size)

    return _cached(cache, f"skewed-{count}", params, build)


def warm(inputs: InputSet) -> None:
    """Read every file once, so that no timed run pays for a cold page cache."""
    for root, _dirs, files in os.walk(inputs.path):
        for name in files:
            with open(os.path.join(root, name), "rb", buffering=0) as stream:
                while stream.read(1 << 24):
                    pass
