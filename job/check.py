"""Check a run: ``python -m job.check --input_dir IN --out_dir OUT [--pattern P] [--no-content]``.

Lists the inputs as every rank does (same ``--pattern``), reads every
journal and manifest in ``OUT/_manifest``, whatever rank layouts wrote them
(5 ranks, then 3, then 3 x 2 processes), and checks:

- the bookkeeping itself: each ``shard-IIIII-of-NNNNN.json`` is a manifest
  and each ``.jsonl`` line a journal record (else: one line naming the file,
  and nothing more is checked). A journal whose last line was cut by a
  killed rank is a problem in the newest layout, a note in an older one;
- the newest layout (the rank layout of the most recent run: the one whose
  records are newest) is whole: a manifest for each of its shards, each
  complete, none older than its shard's journal. One line per rank of it;
- each listed input, by its newest record in any journal (as resume decides,
  :func:`job.journal.newest_records`): it says ``ok`` or ``skipped``, for the
  input's current size and modification time, and the output is byte-exact
  against the token splitter's reference, streamed in chunks (memory stays
  flat whatever the file size). Records of another processor (or another
  version of the token splitter): only that the output they name exists.
  ``--no-content``: outputs are only checked to exist;
- within each layout, no input made by two shards, unchanged and by the same
  processor (two ranks took it);
- the listing: ranks of the newest layout that listed other inputs than the
  rest (count and digest, as each manifest records them), or other inputs
  than check lists now (a digest covers what the rank's plan depended on, as
  its manifest's ``digest_of`` says: the paths for ``contiguous``; the paths,
  sizes and errors for ``size`` and for manifests without ``digest_of``); a
  listing entry that cannot be read (``sub/``: a folder that cannot be
  listed, a broken link) names its path and error;
  inputs in the newest layout's manifests that are no longer listed.

Records in older journals that a newer record replaced are expected and are
not problems. Lock files (``shard-….lock``) are not bookkeeping: a rank that
holds one while running is a note.

Prints one line per rank of the newest layout, at most 20 problems (then
``... N more``) and a verdict. Names that are not UTF-8 are printed with
backslash escapes. Exit codes: 0 all holds; 1 problems found; 2 bad usage
(input_dir or out_dir missing or not a folder, a bad pattern).
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import re
import stat
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable, TextIO

from . import journal
from .listing import InputDirError, InputFile, list_inputs
from .listing import digest as listing_digest
from .listing import FULL_DIGEST, PATHS_DIGEST, paths_digest
from .lock import STALE_SECONDS, this_host
from .tokens import CHUNK_SIZE, TokenSplitter, split_stream

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
SHOWN = 20  # problem lines printed; the rest are counted
# the record's ``processor`` whose outputs are compared byte for byte (as job.run names it)
TOKEN_SPLITTER = f"{TokenSplitter.__module__}:{TokenSplitter.__qualname__}@{TokenSplitter.version}"
LOCK_NAME = re.compile(r"shard-(\d{5,})-of-(\d{5,})\.lock")  # job.lock's, beside the journal
_SHARD_NUMBERS = re.compile(r"shard-(\d+)-of-(\d+)\.")
DIGESTS = (PATHS_DIGEST, FULL_DIGEST)  # a manifest's "digest_of"; FULL_DIGEST when absent
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO in the way never blocks


class UsageError(Exception):
    """A missing or unusable argument: exit 2 with this one line."""


class BadFile(Exception):
    """A journal or manifest that is not one: the message names the file and why."""


# --- reading the bookkeeping ------------------------------------------------------------------

@dataclass
class Manifest:
    """What check keeps of a manifest: its records summed up, not kept (a layout of a
    million files would hold a million dicts per layout)."""

    totals: dict[str, Any]
    inputs: list[str]  # every record's input
    complete: bool | None
    interrupted_by: str | None
    listing: tuple[int, str, str] | None  # the rank's listing: file count, digest, what it covers
    failed: list[tuple[str, str | None]] = field(default_factory=list)  # (input, error)
    wall_seconds: float | None = None  # how long the rank ran


@dataclass
class Shard:
    """What ``out_dir/_manifest`` holds for shard ``index`` of ``count``."""

    index: int
    count: int
    manifest: Manifest | None = None
    journal: str | None = None  # the journal's path, if it has one
    claims: set[tuple] = field(default_factory=set)  # (input, size, mtime, processor) it made
    journal_newest: float | None = None  # the newest record time in the journal
    manifest_newest: float | None = None  # ... in the manifest
    mtime: float = 0.0  # of its newest file: orders layouts whose records carry no time
    cut: bool = False  # the journal's last line is cut short (a killed rank)
    running: str | None = None  # who holds its lock, while alive


_TEXT, _WHOLE, _NUMBER = ((str,), "text"), ((int,), "an integer"), ((int, float), "a number")
_RECORD_TYPES = {"output": _TEXT, "bytes_in": _WHOLE, "tokens": _WHOLE, "attempts": _WHOLE,
                 "error": _TEXT, "mtime_ns": _WHOLE, "processor": _TEXT, "time": _NUMBER,
                 "seconds": _NUMBER}  # each may also be null


def _json_kind(value: Any) -> str:
    """What JSON calls the type of ``value``."""
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "true or false",
             int: "a number", float: "a number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def record_error(record: Any) -> str | None:
    """Why ``record`` is not a journal record, or None."""
    if not isinstance(record, dict):
        return f"{_json_kind(record)} where a record (an object) belongs"
    if not isinstance(record.get("input"), str):
        return "a record without its 'input' path"
    if record.get("status") not in ("ok", "failed", "skipped"):
        return (f"{record['input']!r}: status {record.get('status')!r:.40} is not ok, failed "
                "or skipped")
    for key, (types, what) in _RECORD_TYPES.items():
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
            return f"{record['input']!r}: {key} {value!r:.40} is not {what}"
    return None


def open_regular(path: str, buffering: int = -1, follow: bool = True) -> BinaryIO:
    """``path`` opened for reading without blocking (a FIFO put in its place cannot hang
    check); ``OSError`` (``EINVAL``) if it is not a regular file, (``ELOOP``) if it is a
    symbolic link and not ``follow``."""
    fd = os.open(path, _OPEN_FLAGS | (0 if follow else os.O_NOFOLLOW))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        return open(fd, "rb", buffering=buffering)
    except BaseException:
        os.close(fd)
        raise


def _seconds(value: Any) -> float | None:
    """``value`` as a finite number of seconds, or None (null, NaN, 1e999, 10**400, text)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def _stamp(record: dict[str, Any]) -> float | None:
    return _seconds(record.get("time"))


def _newer(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _claim(record: dict[str, Any]) -> tuple:
    """What an ``ok`` record says was made: this input, at this size and time, by this
    processor. Two shards of one layout that made the same are two ranks that took one file
    (a file made again after it changed, or by another processor, is not)."""
    return (record["input"], record.get("bytes_in"), record.get("mtime_ns"),
            record.get("processor"))


def read_journal(path: str, shard: Shard) -> None:
    """Add the journal at ``path`` to ``shard``; :class:`BadFile` if it is not a journal."""
    try:
        with open_regular(path) as stream:
            shard.mtime = max(shard.mtime, os.fstat(stream.fileno()).st_mtime)
            for number, line in enumerate(stream, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except (ValueError, RecursionError):
                    if not line.endswith(b"\n") and not stream.read(1):
                        shard.cut = True  # the last line, cut short: what a killed rank leaves
                        return
                    raise BadFile(f"{path}: line {number} is not JSON: not a journal") from None
                problem = record_error(record)
                if problem is not None:
                    raise BadFile(f"{path}: line {number}: {problem}: not a journal")
                shard.journal_newest = _newer(shard.journal_newest, _stamp(record))
                if record["status"] == "ok":
                    shard.claims.add(_claim(record))
    except OSError as error:
        raise BadFile(f"{path}: cannot be read: {error.strerror or error}") from None


def read_manifest(path: str, shard: Shard) -> None:
    """Add the manifest at ``path`` to ``shard``; :class:`BadFile` if it is not a manifest."""
    try:
        with open_regular(path) as stream:
            shard.mtime = max(shard.mtime, os.fstat(stream.fileno()).st_mtime)
            manifest = json.load(stream)
    except OSError as error:
        raise BadFile(f"{path}: cannot be read: {error.strerror or error}") from None
    except (ValueError, RecursionError) as error:  # invalid JSON or UTF-8, cut short, too deep
        raise BadFile(f"{path}: not JSON ({error}): a truncated or foreign manifest") from None
    problem = manifest_error(manifest, shard.index, shard.count)
    if problem is not None:
        raise BadFile(f"{path}: {problem}: not a manifest")
    records = manifest["files"]
    for record in records:
        shard.manifest_newest = _newer(shard.manifest_newest, _stamp(record))
        if record["status"] == "ok":
            shard.claims.add(_claim(record))
    listed, by = manifest.get("listing"), manifest.get("interrupted_by")
    counts = journal.count_names(manifest["totals"])
    shard.manifest = Manifest(journal.totals(records, counts), [r["input"] for r in records],
                              manifest.get("complete"), by if isinstance(by, str) else None,
                              (listed["files"], listed["digest"],
                               listed.get("digest_of", FULL_DIGEST)) if listed else None,
                              [(r["input"], r.get("error")) for r in records
                               if r["status"] == "failed"],
                              _seconds(manifest.get("wall_seconds")))


def manifest_error(manifest: Any, index: int, count: int) -> str | None:
    """Why ``manifest`` is not the manifest of shard ``index`` of ``count``, or None."""
    if not isinstance(manifest, dict):
        return f"{_json_kind(manifest)}, not an object"
    for key, kind in (("files", list), ("totals", dict)):
        if not isinstance(manifest.get(key), kind):
            return f"{key!r} is missing or not a {kind.__name__}"
    for record in manifest["files"]:
        problem = record_error(record)
        if problem is not None:
            return problem
    if not isinstance(manifest.get("complete", True), bool):
        return "'complete' is not true or false"
    rank = manifest.get("rank", {})
    if not isinstance(rank, dict):
        return "'rank' is not an object"
    said = rank.get("shard_index", index), rank.get("shard_count", count)
    if said != (index, count):
        return f"it says it is shard {said[0]!r} of {said[1]!r}, its name {index} of {count}"
    listed = manifest.get("listing")
    if listed is not None and not (isinstance(listed, dict)
                                   and type(listed.get("files")) is int
                                   and isinstance(listed.get("digest"), str)
                                   and listed.get("digest_of", FULL_DIGEST) in DIGESTS):
        return ("'listing' is not {'files': count, 'digest': text, 'digest_of': "
                f"{' or '.join(map(repr, DIGESTS))}}}")
    return None


def running_holder(path: str) -> str | None:
    """Who holds the lock at ``path``, if that run looks alive (see :mod:`job.lock`)."""
    try:
        with open_regular(path) as stream:
            holder = json.loads(stream.read(4096))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(holder, dict):
        return None
    pid, host = holder.get("pid"), holder.get("host")
    if host == this_host():
        if type(pid) is not int or pid <= 0:
            return None
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, OverflowError):
            return None  # a killed rank left it
        except OSError:
            pass  # alive, another user's
    else:  # a rank on another node sharing the out_dir: alive while its heartbeat is
        beat = _seconds(holder.get("heartbeat", holder.get("since")))
        if beat is None or not time.time() - beat < STALE_SECONDS:
            return None
    return f"pid {pid} on host {host}"


def read_bookkeeping(out_dir: str) -> tuple[dict[tuple[int, int], Shard], list[str]]:
    """Every shard with a journal or manifest in ``out_dir/_manifest``, and the bad files."""
    folder = os.path.join(out_dir, journal.MANIFEST_DIR)
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return {}, []
    except OSError as error:
        return {}, [f"{folder}: cannot be listed: {error.strerror or error}"]
    shards: dict[tuple[int, int], Shard] = {}
    bad: list[str] = []
    seen: dict[tuple[int, int, str], str] = {}
    locks: dict[tuple[int, int], str] = {}
    for name in names:
        kind = ("journal" if journal.JOURNAL_NAME.fullmatch(name) else
                "manifest" if journal.MANIFEST_NAME.fullmatch(name) else
                "lock" if LOCK_NAME.fullmatch(name) else None)
        if kind is None:
            continue  # temporary files and folders of a rank, anything else
        index, count = map(int, _SHARD_NUMBERS.match(name).groups())
        path = os.path.join(folder, name)
        if not 0 <= index < count:
            bad.append(f"{path}: shard {index} of {count} cannot be: not a rank's {kind}")
            continue
        if (index, count, kind) in seen:  # shard-00001-of-00002 and shard-000001-of-000002
            bad.append(f"{path}: names the same shard as {seen[index, count, kind]}")
            continue
        seen[index, count, kind] = name
        if kind == "lock":
            locks[index, count] = path
            continue
        shard = shards.setdefault((index, count), Shard(index, count))
        try:
            if kind == "journal":
                shard.journal = path
                read_journal(path, shard)
            else:
                read_manifest(path, shard)
        except BadFile as error:
            bad.append(str(error))
    for key, path in locks.items():
        if key in shards:
            shards[key].running = running_holder(path)
    return shards, bad


def newest_layout(shards: Iterable[Shard]) -> int:
    """The shard count of the most recent run: the layout with the newest record.

    Records carry the time they were written (files done again or carried
    over as skipped alike), so the last run's layout holds the newest one.
    Layouts with no timed record at all fall back to their files' times.
    """
    timed: dict[int, float] = {}
    touched: dict[int, float] = defaultdict(float)
    for shard in shards:
        newest = _newer(shard.journal_newest, shard.manifest_newest)
        if newest is not None:
            timed[shard.count] = max(timed.get(shard.count, newest), newest)
        touched[shard.count] = max(touched[shard.count], shard.mtime)
    if timed:
        return max(timed, key=lambda count: (timed[count], count))
    return max(touched, key=lambda count: (touched[count], count))


# --- comparing an output with the reference ---------------------------------------------------

class _Differs(Exception):
    """The output departs from the reference at byte ``offset``."""

    def __init__(self, offset: int, shorter: bool):
        super().__init__(offset)
        self.offset, self.shorter = offset, shorter


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    while data is not None and len(data) < size:
        more = stream.read(size - len(data))
        if not more:
            break
        data += more
    return data or b""


def compare_stream(source: BinaryIO, output: BinaryIO) -> tuple[str | None, int | None]:
    """Why ``output`` is not the token splitter's output of ``source`` (or None), and the
    token count.

    The reference is produced chunk by chunk (:func:`job.tokens.split_stream`)
    and each chunk compared with as many bytes of ``output``; neither is held
    whole, so memory stays flat whatever the file size.
    """
    position = 0

    def write(data) -> None:
        nonlocal position
        expected = bytes(data)  # a view of a reused buffer: compared at once (memcmp)
        actual = _read_exactly(output, len(expected))
        if actual != expected:
            same = next((k for k, (a, b) in enumerate(zip(actual, expected)) if a != b),
                        len(actual))
            raise _Differs(position + same, shorter=same == len(actual) < len(expected))
        position += len(expected)

    try:
        tokens = split_stream(source, write, chunk_size=CHUNK_SIZE)
    except _Differs as differs:
        if differs.shorter:
            return f"output is shorter than the reference: it ends at byte {differs.offset:,}", None
        return f"output differs from the reference at byte {differs.offset:,}", None
    if output.read(1):
        return f"output is longer than the reference ({position:,} bytes)", None
    return None, tokens


def compare_file(input_path: str, output_path: str) -> tuple[str | None, int | None]:
    """:func:`compare_stream` on two paths: the input opened without blocking, the output
    not through a symbolic link (the job writes regular files)."""
    try:
        source = open_regular(input_path, buffering=0)
    except OSError as error:
        return f"input cannot be read: {error.strerror or error}", None
    with source:
        try:
            output = open_regular(output_path, buffering=0, follow=False)
        except OSError as error:
            return _output_error(error), None
        with output:
            try:
                return compare_stream(source, output)
            except OSError as error:
                return f"cannot be compared: {error.strerror or error}", None


def _output_error(error: OSError) -> str:
    if error.errno == errno.ENOENT:
        return "output is missing"
    if error.errno == errno.ELOOP:
        return "output is a symbolic link, not a file the job wrote"
    if error.errno == errno.EINVAL:
        return "output is not a regular file"
    return f"output cannot be read: {error.strerror or error}"


# --- the checks -------------------------------------------------------------------------------

@dataclass
class Report:
    """What :func:`check` found: lines to print, notes, problems."""

    inputs: int = 0
    ranks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    layouts: list[int] = field(default_factory=list)  # shard counts, the newest last
    other_processors: Counter = field(default_factory=Counter)
    content: bool = True


def _rank_of(journal_name: str) -> str:
    index, count = map(int, journal.JOURNAL_NAME.match(journal_name).groups())
    return f"rank {index} of {count}"


def check(input_dir: str, out_dir: str, pattern: str | None = None,
          content: bool = True) -> Report:
    """Check ``out_dir`` against the inputs of ``input_dir`` (see the module docstring).

    :class:`InputDirError` or :class:`UsageError` for bad arguments.
    """
    listing = list_inputs(input_dir, out_dir, pattern)
    if not os.path.isdir(out_dir):
        raise UsageError(f"out_dir {out_dir!r} is not a folder" if os.path.exists(out_dir)
                         else f"out_dir {out_dir!r} does not exist")
    report = Report(inputs=len(listing), content=content)
    shards, bad = read_bookkeeping(out_dir)
    if bad:
        report.problems = bad
        return report
    if not shards:
        folder = os.path.join(out_dir, journal.MANIFEST_DIR)
        report.problems.append(f"no journals or manifests in {folder}: the job has not run "
                               "into this out_dir")
        return report
    count = newest_layout(shards.values())
    report.layouts = sorted({c for _, c in shards} - {count}) + [count]
    check_layout(report, shards, count)
    check_claims(report, shards)
    check_listings(report, shards, count, listing)
    newest = journal.newest_records(out_dir)  # as resume decides (journals checked above)
    for item in listing:
        problem = check_input(report, item, newest.get(item.rel), input_dir, out_dir)
        if problem is not None:
            report.problems.append(f"{item.rel}: {problem}")
    check_unlisted(report, shards, count, listing)
    return report


def check_layout(report: Report, shards: dict[tuple[int, int], Shard], count: int) -> None:
    """A manifest for each shard of the newest layout, complete and not older than its
    journal; a rank line for each; cut journals."""
    for index in range(count):
        shard = shards.get((index, count), Shard(index, count))
        name = f"shard {index} of {count}"
        running = f" (running: {shard.running})" if shard.running else ""
        manifest = shard.manifest
        if manifest is None:
            report.ranks.append(f"rank {index}/{count}: no manifest{running}")
            why = (": still running" if shard.running else
                   ": it started and did not finish (killed?)" if shard.journal
                   else ": it has not run")
            report.problems.append(f"{name} has no manifest{why}")
        else:
            totals = manifest.totals
            report.ranks.append(
                f"rank {index}/{count}: {totals['files']:4d} files "
                f"{totals['bytes_in']:>10,d} bytes {totals.get('tokens', 0):>9,d} tokens  "
                f"({totals['ok']} done, {totals['skipped']} skipped, {totals['failed']} failed)"
                f"{running}")
            if manifest.complete is False:
                by = f" by {manifest.interrupted_by}" if manifest.interrupted_by else ""
                report.problems.append(f"{name} was interrupted{by}: run it again to finish")
            elif (shard.journal_newest or 0) > (shard.manifest_newest or 0):
                report.problems.append(f"{name}: its journal is newer than its manifest: a later "
                                       f"run did not finish{running or ' (killed?)'}")
            if shard.journal is None:
                report.problems.append(f"{name} has a manifest but no journal")
        if shard.cut and shard.journal and not shard.running:  # else: a line being written
            report.problems.append(f"{shard.journal}: its last line is cut short (the rank was "
                                   "killed while writing it)")
    older = [s for s in shards.values() if s.count != count]
    cut = sorted(s.journal for s in older if s.cut and s.journal)
    if cut:
        report.notes.append(f"{len(cut)} journal(s) of older layouts end in a cut line (a rank "
                            f"killed while writing; that record is lost): {cut[0]}"
                            + (" ..." if len(cut) > 1 else ""))
    for shard in sorted(older, key=lambda s: (s.count, s.index)):
        if shard.running:
            report.notes.append(f"rank {shard.index} of {shard.count} (an older layout) is "
                                f"running: {shard.running}")


def check_unlisted(report: Report, shards: dict[tuple[int, int], Shard], count: int,
                   listing: list[InputFile]) -> None:
    """Inputs in the newest layout's manifests that check does not list."""
    listed = {item.rel for item in listing}
    for index in range(count):
        shard = shards.get((index, count))
        for rel in shard.manifest.inputs if shard and shard.manifest else ():
            if rel not in listed:
                report.problems.append(f"{rel}: in the manifest of rank {index} of {count} but "
                                       "not in the input listing")


def check_claims(report: Report, shards: dict[tuple[int, int], Shard]) -> None:
    """Within each layout, no input made twice, unchanged, by the same processor."""
    for count in sorted({c for _, c in shards}):
        owners: dict[tuple, list[int]] = defaultdict(list)
        for (index, c), shard in sorted(shards.items()):
            if c == count:
                for claim in shard.claims:
                    owners[claim].append(index)
        for claim in sorted((c for c, ranks in owners.items() if len(ranks) > 1),
                            key=lambda c: c[0]):
            ranks = owners[claim]
            report.problems.append(f"{claim[0]}: done by {len(ranks)} ranks of the {count}-shard "
                                   f"layout ({', '.join(map(str, ranks))}): two ranks took it")


def check_listings(report: Report, shards: dict[tuple[int, int], Shard], count: int,
                   listing: list[InputFile]) -> None:
    """The ranks of the newest layout listed what the others, and check, list."""
    seen = {}
    for index in range(count):
        shard = shards.get((index, count))
        if shard and shard.manifest and shard.manifest.listing:
            seen[index] = shard.manifest.listing
    digests = {PATHS_DIGEST: lambda: paths_digest(f.rel for f in listing),
               FULL_DIGEST: lambda: listing_digest(listing)}
    own = {kind: (len(listing), digests[kind](), kind) for kind in {l[2] for l in seen.values()}}
    commons = []  # the listing most ranks recorded, for each kind of digest recorded
    for kind in sorted(own):
        ranks = {index: mine for index, mine in seen.items() if mine[2] == kind}
        groups = Counter(ranks.values())
        common = max(groups, key=lambda g: (groups[g], g == own[kind], g))
        commons.append(common)
        for index, mine in sorted(ranks.items()):
            if mine != common:
                report.problems.append(
                    f"rank {index} of {count} listed {mine[0]} files (digest {mine[1][:12]}), "
                    f"the others {common[0]} (digest {common[1][:12]}): ranks saw different inputs")
    # Digests of different kinds (ranks of code before and after "digest_of", a rank that
    # listed again) are compared through check's own listing, which gives both.
    agreeing = [common for common in commons if common == own[common[2]]]
    for common in commons:
        if common == own[common[2]]:
            continue
        if agreeing:
            report.problems.append(
                f"ranks of the {count}-shard layout listed {common[0]} files (digest "
                f"{common[1][:12]}, of {common[2]}), the others what check lists now "
                f"({len(listing)} files): ranks saw different inputs")
        else:
            report.problems.append(
                f"the ranks of the {count}-shard layout listed {common[0]} files (digest "
                f"{common[1][:12]}), check lists {len(listing)} now (digest "
                f"{own[common[2]][1][:12]}): the inputs "
                "changed since the run, or --pattern differs")


def check_input(report: Report, item: InputFile, newest: tuple[dict, str] | None,
                input_dir: str, out_dir: str) -> str | None:
    """Why input ``item`` is not done right, judged by its newest record; or None."""
    record, name = newest if newest is not None else (None, None)
    if item.error is not None:
        said = ("no record" if record is None else
                f"recorded {record['status']} by {_rank_of(name)}")
        return f"{item.error} ({said})"
    if record is None:
        return "no record in any journal: not done"
    if record["status"] == "failed":
        error = record.get("error")
        return f"failed on {_rank_of(name)}" + (f": {error}" if error else "")
    then = record.get("bytes_in"), record.get("mtime_ns")
    if then[0] is not None and then[0] != item.size:
        return (f"changed since it was done ({then[0]:,} bytes then, {item.size:,} now): "
                "run the job again")
    if then[1] is not None and then[1] != item.mtime_ns:
        return "modified since it was done: run the job again"
    processor = record.get("processor")
    if processor != TOKEN_SPLITTER:
        report.other_processors[processor or "an unnamed processor"] += 1
        return _named_output_error(record.get("output"), out_dir)
    output = os.path.join(out_dir, item.rel)
    if not report.content:
        try:
            open_regular(output, follow=False).close()
        except OSError as error:
            return _output_error(error)
        return None
    problem, tokens = compare_file(os.path.join(input_dir, item.rel), output)
    if problem is None and record.get("tokens") not in (None, tokens):
        problem = f"recorded {record['tokens']:,} tokens, the reference has {tokens:,}"
    return problem


def _named_output_error(output: str | None, out_dir: str) -> str | None:
    """Why the output a record names does not exist under ``out_dir``, or None."""
    if output is None:
        return None  # the processor names no single output
    if os.path.isabs(output) or ".." in output.split("/"):
        return f"its output {output!r} is outside out_dir"
    try:
        if stat.S_ISREG(os.stat(os.path.join(out_dir, output)).st_mode):
            return None
    except (OSError, ValueError):
        pass
    return f"output {output} is missing"


# --- the command ------------------------------------------------------------------------------

def _say(stream: TextIO, line: str) -> None:
    """Print ``line``; what the stream cannot encode (a name that is not UTF-8) is escaped."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    stream.write(line.encode(encoding, "backslashreplace").decode(encoding) + "\n")


def summary(report: Report) -> str:
    """The verdict line of a run that passed."""
    line = f"OK: {report.inputs} input files, each done (its newest record ok or skipped)"
    others = sum(report.other_processors.values())
    if not report.content:
        line += ", outputs exist (contents not compared)"
    elif report.inputs > others:
        line += ", outputs byte-exact" if not others else f", {report.inputs - others} byte-exact"
    for processor, files in sorted(report.other_processors.items()):
        line += f"; {files} made by {processor}: outputs only checked to exist"
    return line


def print_report(report: Report, stream: TextIO) -> int:
    """Print ``report``; return the exit code."""
    for line in report.ranks:
        _say(stream, line)
    if len(report.layouts) > 1:
        _say(stream, "older layouts: " + ", ".join(f"{c} shard{'s' * (c != 1)}"
                                                   for c in report.layouts[:-1])
             + " (their records count where they are an input's newest)")
    for note in report.notes[:SHOWN]:
        _say(stream, f"note: {note}")
    for problem in report.problems[:SHOWN]:
        _say(stream, f"problem: {problem}")
    if len(report.problems) > SHOWN:
        _say(stream, f"... {len(report.problems) - SHOWN} more")
    if report.problems:
        _say(stream, f"FAILED: {len(report.problems)} problem(s)")
        return EXIT_PROBLEMS
    _say(stream, summary(report))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m job.check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input_dir", "--input-dir", required=True)
    parser.add_argument("--out_dir", "--out-dir", required=True)
    parser.add_argument("--pattern", default=None, help="the glob the job ran with (default: all)")
    parser.add_argument("--no-content", action="store_true",
                        help="do not compare outputs with the token splitter's reference")
    args = parser.parse_args(argv)
    try:
        report = check(args.input_dir, args.out_dir, args.pattern, not args.no_content)
    except (InputDirError, UsageError) as error:
        _say(sys.stderr, f"error: {error}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return print_report(report, sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
