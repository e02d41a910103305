"""Each rank's journal and manifest under ``out_dir/_manifest``.

``shard-IIIII-of-NNNNN.jsonl`` holds one JSON record per file, appended and
flushed as the file finishes, so it survives a crash of the rank. Records:
``input`` and ``output`` (paths relative to ``input_dir`` and ``out_dir``, so a
journal stays valid when the folders are mounted elsewhere), ``status``
(``ok`` | ``failed`` | ``skipped``), ``bytes_in``, ``tokens``, ``seconds``,
``attempts``, ``error``, and ``mtime_ns`` of the input, which resume compares.
When the rank ends, ``shard-IIIII-of-NNNNN.json`` holds
``{"files": [records in listing order], "totals": {...}, "rank": {...}, ...}``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any, Iterable

MANIFEST_DIR = "_manifest"
_encode = json.JSONEncoder(ensure_ascii=False).encode
DONE = ("ok", "skipped")


class JournalError(OSError):
    """The journal or manifest could not be written (disk full, folder gone...)."""


def shard_name(index: int, count: int) -> str:
    """``shard-00003-of-00005``: the name every file of shard ``index`` of ``count`` shares."""
    return f"shard-{index:05d}-of-{count:05d}"


def read_records(path: str) -> list[dict[str, Any]]:
    """The complete records of a journal; a line cut short by a crash is ignored."""
    records = []
    try:
        with open(path, "rb") as stream:
            for line in stream:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("input"), str):
                    records.append(record)
    except FileNotFoundError:
        pass
    return records


def finished_records(out_dir: str) -> dict[str, dict[str, Any]]:
    """Per input, its ``ok``/``skipped`` record from any journal in ``out_dir`` that ends so.

    Within a journal the last record of an input counts. Every shard's
    journal is read, so resume works after the rank count changed.
    """
    folder = os.path.join(out_dir, MANIFEST_DIR)
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".jsonl"))
    except FileNotFoundError:
        return {}
    done: dict[str, dict[str, Any]] = {}
    for name in names:
        latest = {r["input"]: r for r in read_records(os.path.join(folder, name))}
        done.update((k, r) for k, r in latest.items() if r.get("status") in DONE)
    return done


def totals(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts by status and sums of bytes, tokens and seconds."""
    records = list(records)
    counts = Counter(r["status"] for r in records)
    return {
        "files": len(records),
        "ok": counts["ok"],
        "skipped": counts["skipped"],
        "failed": counts["failed"],
        "bytes_in": sum(r.get("bytes_in") or 0 for r in records),
        "tokens": sum(r.get("tokens") or 0 for r in records),
        "seconds": round(sum(r.get("seconds") or 0 for r in records), 6),
    }


class Journal:
    """The journal of one shard: started fresh with the records carried over, then appended."""

    def __init__(self, out_dir: str, index: int, count: int):
        self.folder = os.path.join(out_dir, MANIFEST_DIR)
        base = os.path.join(self.folder, shard_name(index, count))
        self.path = base + ".jsonl"
        self.manifest_path = base + ".json"
        self.records: list[dict[str, Any]] = []
        self._stream = None

    def start(self, carried: Iterable[dict[str, Any]]) -> None:
        """Replace the journal, atomically, by ``carried`` records (the skipped files)."""
        os.makedirs(self.folder, exist_ok=True)
        temp = f"{self.path}.{os.getpid()}.partial"
        with open(temp, "w", encoding="utf-8") as stream:
            for record in carried:
                self.records.append(record)
                stream.write(_encode(record) + "\n")
        os.replace(temp, self.path)
        self._stream = open(self.path, "a", encoding="utf-8")

    def append(self, record: dict[str, Any]) -> None:
        """Add one record and flush it to the operating system; :class:`JournalError` if not."""
        self.records.append(record)
        try:
            self._stream.write(_encode(record) + "\n")
            self._stream.flush()
        except OSError as error:
            raise JournalError(f"cannot write the journal {self.path}: {error.strerror}") from None

    def close(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            except OSError:
                pass  # already reported by append
            self._stream = None

    def write_manifest(self, extra: dict[str, Any]) -> dict[str, Any]:
        """Write ``shard-….json`` (atomically): every record in listing order, and the totals."""
        records = sorted(self.records, key=lambda r: r["input"])
        manifest = {"files": records, "totals": totals(records), **extra}
        temp = f"{self.manifest_path}.{os.getpid()}.partial"
        try:
            with open(temp, "w", encoding="utf-8") as stream:
                stream.write(json.dumps(manifest, ensure_ascii=False, separators=(",", ":")) + "\n")
            os.replace(temp, self.manifest_path)
        except OSError as error:
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise JournalError(f"cannot write the manifest {self.manifest_path}: "
                               f"{error.strerror}") from None
        return manifest
