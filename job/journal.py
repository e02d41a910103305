"""Each rank's journal and manifest under ``out_dir/_manifest``.

``shard-IIIII-of-NNNNN.jsonl`` holds one JSON record per file, appended as
the file finishes (every run of the shard appends to it; it is never
rewritten, so no record another layout's ranks may need is lost). Records are
flushed to the operating system whenever the rank has booked the results that
arrived (before it waits for more), and synced to storage (``fsync``, and a
close that uploads the file on a blob mount) at most ``journal_sync_interval``
seconds after they were written, and when the rank ends or is interrupted. A
crash of the rank loses at most the records it was booking; the loss of the
node (preemption) loses at most the records of the last interval. Those
files are redone on resume (outputs are atomic, so redoing is safe). Records:
``input`` and ``output`` (paths relative to ``input_dir`` and ``out_dir``, so a
journal stays valid when the folders are mounted elsewhere), ``status``
(``ok`` | ``failed`` | ``skipped``), ``bytes_in``, then each count the processor
declares (:attr:`job.DataProcessor.counts`: the token splitter's ``tokens``), ``seconds``,
``attempts``, ``error``, ``mtime_ns`` of the input, which resume compares,
``processor`` (``module:Class``, with ``@VERSION`` when the class declares a
``version``: a file made by another processor is done again), and ``time``
(Unix seconds when the record was written: across journals the newest record
of a file wins, so resume and ``job.check`` work after the rank layout
changed). Names that are not UTF-8 are kept exactly: their undecodable bytes
are written as ``\\udcXX`` escapes, which ``json.loads`` and
``os.fsencode`` turn back into the same bytes. When the rank ends, ``shard-IIIII-of-NNNNN.json`` holds
``{"files": [records in listing order], "totals": {...}, "rank": {...}, ...}``.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import time
from collections import Counter
from collections.abc import Collection, Container, Iterable, Sequence

from . import interrupts
from .mounts import uploads_on_close

MANIFEST_DIR = "_manifest"
DONE = ("ok", "skipped")
#: A record's fields before and after the counts the processor declares.
HEAD_FIELDS = ("input", "output", "status", "bytes_in")
TAIL_FIELDS = ("seconds", "attempts", "error", "mtime_ns", "processor", "time")
BASE_TOTALS = ("files", "ok", "skipped", "failed", "bytes_in", "seconds")


def counts_error(names: object) -> str | None:
    """Why ``names`` cannot be a processor's counts (:attr:`job.DataProcessor.counts`), or
    None: they must be distinct, non-empty strings, none of them a field of the record
    (``input``, ``seconds`` ...) or of the totals (``files``, ``ok`` ...), which it would
    overwrite."""
    if not isinstance(names, (tuple, list)) or not all(isinstance(n, str) and n for n in names):
        return f"{names!r} is not a tuple of names (non-empty strings)"
    taken = [n for n in names if n in HEAD_FIELDS + TAIL_FIELDS + BASE_TOTALS]
    if taken:
        return (f"{taken[0]!r} is already a field of every journal record or of the totals; "
                "name the count otherwise")
    twice = sorted({n for n in names if names.count(n) > 1})
    return f"{twice[0]!r} is named twice" if twice else None


def _compact_encoder(ensure_ascii: bool):
    """``json.JSONEncoder(ensure_ascii=…, separators=(",", ":")).encode`` for the JSON
    this module writes (no cycles: records and manifests), the same text.

    ``encode`` builds its C encoder anew at every call; built once here, a journal
    record of the token splitter took 3.8-6.4 µs instead of 8.2-8.9 µs (on the busy
    2-core machine): one record per file in the rank's main process (row 10).
    """
    encoder = json.JSONEncoder(ensure_ascii=ensure_ascii, separators=(",", ":"))
    make = json.encoder.c_make_encoder
    if make is None:  # an interpreter without the C accelerator
        return encoder.encode
    quote = json.encoder.encode_basestring_ascii if ensure_ascii else json.encoder.encode_basestring
    chunks = make(None, encoder.default, quote, None, ":", ",", False, False, True)
    return lambda value: "".join(chunks(value, 0))


_encode_utf8 = _compact_encoder(ensure_ascii=False)
_encode_ascii = _compact_encoder(ensure_ascii=True)


def _encode(value: object) -> str:
    """Compact JSON, UTF-8 where it can be; escaped where a string holds undecodable bytes."""
    text = _encode_utf8(value)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: a file name that is not UTF-8
        return _encode_ascii(value)
    return text


def encode_record(record: dict[str, object]) -> str:
    """The JSON line of a record, as :func:`_encode` writes it.

    (A hand-written encoder of the usual record saved 0.6 µs a record: 12 ms
    on row 4's 20,000 files, under 1% of the row. It went.)
    """
    return _encode(record)


def make_record(count_names: Sequence[str], rel: str, output: str | None, status: str,
                bytes_in: int | None, counts: Sequence[int | None], seconds: float,
                attempts: int, error: str | None, mtime_ns: int | None, processor: str,
                when: float) -> dict[str, object]:
    """The record of these fields, in the journal's order (the processor's counts are
    ``count_names``)."""
    record = {"input": rel, "output": output, "status": status, "bytes_in": bytes_in}
    for name, count in zip(count_names, counts):
        record[name] = count
    record.update(seconds=seconds, attempts=attempts, error=error, mtime_ns=mtime_ns,
                  processor=processor, time=when)
    return record


class _NotPlain(ValueError):
    """A field :meth:`Journal.add` does not write itself: the record is encoded whole."""


_quote = json.encoder.encode_basestring  # the C function where it is built
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]+")  # a count's name that needs no escape


def _json(value: str | int | None, kind: type) -> str:
    """The JSON of ``value``: None, or exactly of type ``kind`` (``str`` or ``int``);
    :class:`_NotPlain` for anything else."""
    if value is None:
        return "null"
    if type(value) is kind:
        return _quote(value) if kind is str else repr(value)
    raise _NotPlain


def _utf8(line: str) -> None:
    """:class:`_NotPlain` if ``line`` holds a name that is not UTF-8 (:func:`_encode` escapes
    it)."""
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        raise _NotPlain from None


def _real(value: float) -> str:
    if type(value) is float and value - value == 0.0:  # finite: no NaN, no Infinity
        return repr(value)
    if type(value) is int:
        return repr(value)
    raise _NotPlain


class JournalError(OSError):
    """The journal or manifest could not be written (disk full, folder gone...)."""


JOURNAL_NAME = re.compile(r"shard-(\d{5,})-of-(\d{5,})\.jsonl")
MANIFEST_NAME = re.compile(r"shard-(\d{5,})-of-(\d{5,})\.json")
#: What a rank leaves in ``_manifest`` only when it is killed: its folder of range parts
#: (:func:`parts_folder`) and a manifest half written (``shard-….json.PID.partial``).
PARTS_NAME = re.compile(r"partial-(\d{5,})-of-(\d{5,})")
MANIFEST_TEMP_NAME = re.compile(r"shard-(\d{5,})-of-(\d{5,})\.json\.\d+\.partial")


def shard_name(index: int, count: int) -> str:
    """``shard-00003-of-00005``: the name every file of shard ``index`` of ``count`` shares."""
    return f"shard-{index:05d}-of-{count:05d}"


def parts_folder(out_dir: str, index: int, count: int) -> str:
    """``out_dir/_manifest/partial-IIIII-of-NNNNN``: the folder where shard ``index`` of
    ``count`` keeps the byte-range parts of its large files while its run lasts."""
    return os.path.join(out_dir, MANIFEST_DIR,
                        "partial-" + shard_name(index, count)[len("shard-"):])


def read_records(path: str, inputs: Container[str] | None = None) -> list[dict[str, object]]:
    """The complete records of a journal; a line cut short by a crash is ignored.

    With ``inputs`` (a collection of inputs, or a :class:`Wanted` made of
    them), only the records of those inputs.
    """
    wanted = inputs if inputs is None or isinstance(inputs, Wanted) else Wanted(inputs)
    records = []
    try:
        with open(path, "rb") as stream:
            lines = stream
            if wanted is not None and os.fstat(stream.fileno()).st_size <= wanted.WHOLE_FILE:
                data = stream.read()  # looked at whole, then its lines: the file read once
                if wanted.none_in(data):
                    return []
                lines = io.BytesIO(data)
            for line in lines:
                if wanted is not None and wanted.surely_not(line):
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("input"), str) and (
                        wanted is None or record["input"] in wanted.inputs):
                    records.append(record)
    except FileNotFoundError:
        pass
    return records


class Wanted:
    """Some inputs, and how to tell without parsing that a journal holds no record of them.

    A record's line begins ``{"input":"`` (:func:`encode_record` writes the
    fields in order, compact): up to the next ``"`` is its input's UTF-8,
    exactly, when that holds no ``\\`` (an escape: a quote, a control character
    or a name that is not UTF-8). A journal whose every line begins so, where
    ``"input"`` appears nowhere else and no ``\\u`` escape does (a second key, even
    spelled with escapes, would win in ``json.loads``),
    and none of whose inputs is wanted, is skipped whole (:meth:`none_in`, at
    the speed of a regular expression); any other is read line by line, and a
    line is parsed unless it begins so with an input not wanted
    (:meth:`surely_not`). A thousand ranks' journals of a million records, to
    keep a rank's thousand: 28 s parsed, 3-5 s line by line, 1.7 s so (while the
    machine was busy: load 4-5 on 2 cores; the two counts are 0.7 s of it).
    """

    HEAD = b'{"input":"'
    PLAIN = re.compile(rb'\{"input":"([^"\\\n]*)"')
    WHOLE_FILE = 64 << 20  # a larger journal is read line by line (memory)

    def __init__(self, inputs: Collection[str]):
        self.inputs = inputs
        self.plain = set()
        for rel in inputs:
            try:
                self.plain.add(rel.encode("utf-8"))
            except UnicodeEncodeError:  # not UTF-8: its record escapes it, and is parsed
                pass

    def none_in(self, data: bytes) -> bool:
        """Whether the journal ``data`` (the whole file) surely holds no wanted record."""
        found = self.PLAIN.findall(data)
        lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
        return (len(found) == lines and data.count(b'"input"') == lines
                and b"\\u" not in data and self.plain.isdisjoint(found))

    def surely_not(self, line: bytes) -> bool:
        """Whether the journal line surely is not the record of a wanted input."""
        if not line.startswith(self.HEAD):
            return False
        end = line.find(b'"', 10)
        if end < 0:
            return False
        raw = line[10:end]
        return (raw not in self.plain and b"\\" not in raw
                and line.find(b'"input"', end) < 0 and b"\\u" not in line)


def journal_names(out_dir: str) -> list[str]:
    """The names of every rank's journal in ``out_dir/_manifest``, sorted."""
    try:
        names = os.listdir(os.path.join(out_dir, MANIFEST_DIR))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(n for n in names if JOURNAL_NAME.fullmatch(n))


def newest_records(out_dir: str, inputs: Container[str] | None = None
                   ) -> dict[str, tuple[dict[str, object], str]]:
    """Per input, its newest record in any journal of ``out_dir``, and that journal's name;
    with ``inputs``, for those inputs only (a rank's own: a thousand records kept of the
    million that a thousand ranks' journals hold).

    Records are ordered by their ``time``; a record without one (written by
    an older version) takes its journal's modification time. Within a
    journal a later line wins a tie. Every journal is read, whatever rank
    layout wrote it, so the newest word on a file wins after the layout
    changed (5 ranks, then 3, then 3 x 2 processes).
    """
    folder = os.path.join(out_dir, MANIFEST_DIR)
    wanted = None if inputs is None else Wanted(inputs)
    newest: dict[str, tuple[dict[str, object], str]] = {}
    stamps: dict[str, float] = {}
    for name in journal_names(out_dir):
        path = os.path.join(folder, name)
        try:
            fallback = os.stat(path).st_mtime
        except OSError:
            continue
        for record in read_records(path, wanted):
            stamp = record.get("time")
            if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or stamp != stamp:
                stamp = fallback
            rel = record["input"]
            if stamp >= stamps.get(rel, stamp):
                newest[rel] = record, name
                stamps[rel] = stamp
    return newest


def totals(records: Iterable[dict[str, object]], counts: Sequence[str] = ()) -> dict[str, object]:
    """Files by status, and the sums of bytes, of each of ``counts`` and of seconds."""
    return _totals([(r["status"], r.get("bytes_in"), [r.get(name) for name in counts],
                     r.get("seconds")) for r in records], counts)


def _totals(rows: Sequence[tuple], counts: Sequence[str]) -> dict[str, object]:
    """:func:`totals` of records given as ``(status, bytes_in, (count, ...), seconds)``."""
    statuses = Counter(row[0] for row in rows)
    result = {"files": len(rows), "ok": statuses["ok"], "skipped": statuses["skipped"],
              "failed": statuses["failed"], "bytes_in": sum(row[1] or 0 for row in rows)}
    for k, name in enumerate(counts):
        result[name] = sum(row[2][k] or 0 for row in rows)
    result["seconds"] = round(sum(row[3] or 0 for row in rows), 6)
    return result


def count_names(totals: dict[str, object]) -> list[str]:
    """The names of the processor's counts among a manifest's ``totals``."""
    return [name for name in totals if name not in BASE_TOTALS]


class Journal:
    """The journal of one shard: appended to by each run of the shard, never rewritten.

    Records are made durable in storage (see :meth:`sync`) at most
    ``sync_interval`` seconds after they were appended, as long as the caller
    calls :meth:`flush` by the time it returns (see there), and when the
    journal is closed.
    """

    def __init__(self, out_dir: str, index: int, count: int, sync_interval: float = 10.0,
                 counts: Sequence[str] = ()):
        self.folder = os.path.join(out_dir, MANIFEST_DIR)
        base = os.path.join(self.folder, shard_name(index, count))
        self.path = base + ".jsonl"
        self.manifest_path = base + ".json"
        self.counts = tuple(counts)  # the processor's, summed in the manifest's totals
        # The JSON of each record, written once, spliced into the manifest: encoding the
        # manifest anew takes 100 ms for 20,000 records, splicing 18 ms, so this saves about
        # 80 ms of the rank's serial end, 5-7% of row 4 (1.1-1.5 s), a gain at the level of
        # the benchmark's noise on a shared machine (runs of one row vary by 30%).
        self._lines: list[str] = []
        self._inputs: list[str] = []  # each line's input: the manifest's order
        self._rows: list[tuple] = []  # each line's (status, bytes_in, counts, seconds): totals
        self.failed: list[dict[str, object]] = []  # the records of the files that failed
        self._processor = self._processor_json = None  # the last processor named, quoted
        # ',"tokens":' for each count: None if a name needs escaping (then records are encoded)
        self._count_keys = [f',"{name}":' for name in self.counts] if counts_error(
            self.counts) is None and all(_PLAIN_NAME.fullmatch(n) for n in self.counts) else None
        self._fd: int | None = None  # the journal, open to append to (on a disk)
        self.sync_interval = sync_interval
        self.syncs = 0
        self._unsynced_since: float | None = None  # when the oldest record not synced came
        self.on_close = False  # stored on close only (a blob mount): appended at each sync
        self._waiting: list[str] = []  # lines not yet handed to the operating system
        self._unwritten = b""  # the end of what a write that failed part way did not write

    def start(self, carried: Iterable[dict[str, object]],
              journaled: Iterable[bool] | None = None) -> None:
        """Open the journal to append to it; ``carried`` are the records of the skipped files.

        The journal keeps every earlier run's records: it is never rewritten,
        so no file's newest record is lost whichever rank takes the file next.
        A carried record is written to it unless ``journaled`` says this
        journal already holds that file's newest record (after a layout change
        the new layout's journals so come to stand on their own); all go into
        the manifest. A last line cut short by a crash is dropped first. The
        journal is never opened through a symbolic link.
        """
        os.makedirs(self.folder, exist_ok=True)
        self.on_close = uploads_on_close(self.folder)
        carried = list(carried)
        journaled = [False] * len(carried) if journaled is None else list(journaled)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
                     | os.O_NOFOLLOW, 0o644)
        try:
            _drop_cut_line(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        for record, written in zip(carried, journaled):
            line = encode_record(record)
            self._keep_record(line, record)
            if not written:
                self._waiting.append(line)
        self._unsynced_since = time.monotonic()
        self.sync()

    def append(self, record: dict[str, object]) -> None:
        """Add one record; it is handed to the operating system at the next :meth:`flush`."""
        line = encode_record(record)
        self._keep_record(line, record)
        self._queue(line)

    def add(self, rel: str, output: str | None, status: str, bytes_in: int | None,
            counts: Sequence[int | None], seconds: float, attempts: int, error: str | None,
            mtime_ns: int | None, processor: str, when: float) -> None:
        """Add the record of these fields (see the module's notes), as :meth:`append` does.

        Its line is written straight from the fields where they are plain (text, integers,
        finite floats): one record per file in the rank's main process, where building
        the record and encoding it took 7 µs, this 2 µs (row 10: 20,000 tiny files).
        """
        try:
            line = self._line(rel, output, status, bytes_in, counts, seconds, attempts, error,
                              mtime_ns, processor, when)
        except _NotPlain:
            line = None
        if line is None or status == "failed":  # the record itself is kept for the summary
            record = make_record(self.counts, rel, output, status, bytes_in, counts, seconds,
                                 attempts, error, mtime_ns, processor, when)
            line = encode_record(record) if line is None else line
            self._keep_record(line, record)
        else:
            self._keep(line, rel, status, bytes_in, counts, seconds)
        self._queue(line)

    def add_done(self, entries: Sequence[tuple], processor: str, when: float) -> None:
        """Add the records of files done well, ``(rel, output, bytes_in, counts, seconds,
        attempts, mtime_ns)`` each (status ``ok``, no error), all written at ``when``: what
        :meth:`add` does for each, in one piece where the fields are plain and the
        processor declares one count (the token splitter): a record for each of 20,000
        tiny files in the rank's main process (row 10)."""
        if not entries:
            return
        keys = self._count_keys
        try:
            if keys is None or len(keys) != 1 or type(processor) is not str:
                raise _NotPlain
            if processor is not self._processor:
                self._processor, self._processor_json = processor, _quote(processor)
            head, tail = ',"status":"ok","bytes_in":', ',"error":null,"mtime_ns":'
            end = f',"processor":{self._processor_json},"time":{_real(when)}}}'
            key = keys[0]
            lines = [f'{{"input":{_quote(rel)},"output":{_quote(output)}{head}{bytes_in}{key}'
                     f'{"null" if counts[0] is None else counts[0]},"seconds":{seconds!r},'
                     f'"attempts":{attempts}{tail}{mtime_ns}{end}'
                     for rel, output, bytes_in, counts, seconds, attempts, mtime_ns in entries
                     if type(output) is str and type(bytes_in) is int and type(seconds) is float
                     and seconds - seconds == 0.0 and type(attempts) is int
                     and type(mtime_ns) is int and len(counts) == 1
                     and (counts[0] is None or type(counts[0]) is int)]
            if len(lines) != len(entries):
                raise _NotPlain
            if not "".join(lines).isascii():
                for line in lines:
                    if not line.isascii():
                        _utf8(line)
        except _NotPlain:  # a field, or a name, that add() writes its own way
            for rel, output, bytes_in, counts, seconds, attempts, mtime_ns in entries:
                self.add(rel, output, "ok", bytes_in, counts, seconds, attempts, None, mtime_ns,
                         processor, when)
            return
        inputs = [entry[0] for entry in entries]
        rows = [("ok", entry[2], entry[3], entry[4]) for entry in entries]
        # SIGINT and SIGTERM wait while the files are booked (about 25 µs a report, not a
        # file): their exception, raised between two of these, would leave the manifest's
        # lines, inputs and rows of different lengths (write_manifest failing), or the
        # manifest listing files that the journal does not hold.
        with interrupts.held():
            self._lines += lines
            self._inputs += inputs
            self._rows += rows
            self._waiting += lines
            if self._unsynced_since is None:
                self._unsynced_since = time.monotonic()

    def _line(self, rel, output, status, bytes_in, counts, seconds, attempts, error, mtime_ns,
              processor, when) -> str:
        """The line :func:`encode_record` writes for the record of these fields;
        :class:`_NotPlain` where a field is not text, an integer or a finite float.

        (Each field's usual type is tested inline: a call per field cost 1.2 µs more.)
        """
        if processor is not self._processor:
            self._processor, self._processor_json = processor, _quote(processor)
        keys = self._count_keys
        if keys is None or len(counts) != len(keys):
            raise _NotPlain
        if len(keys) == 1:
            count = counts[0]
            numbers = keys[0] + (str(count) if type(count) is int else _json(count, int))
        else:
            numbers = "".join([key + _json(count, int) for key, count in zip(keys, counts)])
        line = (f'{{"input":{_quote(rel)},'
                f'"output":{_quote(output) if type(output) is str else _json(output, str)},'
                f'"status":{_quote(status)},'
                f'"bytes_in":{bytes_in if type(bytes_in) is int else _json(bytes_in, int)}'
                f'{numbers},"seconds":{_real(seconds)},'
                f'"attempts":{attempts if type(attempts) is int else _json(attempts, int)},'
                f'"error":{"null" if error is None else _json(error, str)},'
                f'"mtime_ns":{mtime_ns if type(mtime_ns) is int else _json(mtime_ns, int)},'
                f'"processor":{self._processor_json},"time":{_real(when)}}}')
        if not line.isascii():
            _utf8(line)
        return line

    def _queue(self, line: str) -> None:
        """Have ``line`` written at the next :meth:`flush` (synced by its interval)."""
        self._waiting.append(line)
        if self._unsynced_since is None:
            self._unsynced_since = time.monotonic()

    def _keep(self, line: str, rel: str, status: str, bytes_in: int | None,
              counts: Sequence[int | None], seconds: float | None) -> None:
        """Keep a record's line, its input and what the totals sum, for the manifest."""
        self._lines.append(line)
        self._inputs.append(rel)
        self._rows.append((status, bytes_in, counts, seconds))

    def _keep_record(self, line: str, record: dict[str, object]) -> None:
        """:meth:`_keep` for ``record`` (whose line is ``line``), and the record itself if
        its file failed."""
        self._keep(line, record["input"], record["status"], record.get("bytes_in"),
                   tuple(record.get(name) for name in self.counts), record.get("seconds"))
        if record["status"] == "failed":
            self.failed.append(record)

    def flush(self) -> float | None:
        """Hand the records appended so far to the operating system, and :meth:`sync` them
        when the oldest has waited ``sync_interval`` seconds.

        Returns how many seconds may pass before the next call is due (the
        oldest record not yet synced reaches ``sync_interval``), or ``None``
        when every record is synced: a caller that waits calls again by then.
        """
        try:
            if self._fd is not None:
                self._write_pending(self._fd)
        except OSError as error:
            raise JournalError(f"cannot write the journal {self.path}: {error.strerror}") from None
        if self._unsynced_since is None:
            return None
        due = self._unsynced_since + self.sync_interval - time.monotonic()
        if due > 0:
            return due
        self.sync()
        return None

    def sync(self) -> None:
        """Make every record appended so far durable in storage.

        On a disk the journal stays open, flushed as records come, and is
        ``fsync``-ed here. On a blob mount (``on_close``: see
        :mod:`job.mounts`) a file is stored only when it is closed, and rclone
        drops a pending upload when the file is opened again: there the
        records wait in memory and are appended here, to the journal opened
        and closed again. Each sync then uploads the whole journal (about 250
        bytes per record), hence an interval rather than a sync per record.
        """
        try:
            if self.on_close:
                self._append_waiting()
            else:
                self._write_pending(self._fd)
                _fsync(self._fd)
        except OSError as error:
            raise JournalError(f"cannot write the journal {self.path}: {error.strerror}") from None
        self._unsynced_since = None
        self.syncs += 1

    def _write_pending(self, fd: int) -> None:
        """Append to ``fd`` what a failed write left unwritten, then the lines waiting.

        Whatever a write that fails part way (a disk full) leaves is kept, and is
        the first thing written the next time: the journal is only ever appended
        to, by this rank alone, so a line cut there is completed, never written
        twice (two records in one line) nor skipped. SIGINT and SIGTERM wait
        meanwhile (:func:`job.interrupts.held`): their exception, raised as a write
        returns, would lose what it wrote from this account.
        """
        with interrupts.held():
            data = self._unwritten
            if self._waiting:
                data += ("\n".join(self._waiting) + "\n").encode("utf-8")
                self._waiting.clear()
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(fd, view):]
            finally:
                self._unwritten = bytes(view)

    def _append_waiting(self) -> None:
        if self._fd is not None:  # the one start() opened
            fd, self._fd = self._fd, None
            try:
                _fsync(fd)
            finally:
                os.close(fd)
        if self._unwritten or self._waiting:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW)
            try:
                self._write_pending(fd)
            finally:
                os.close(fd)  # on a blob mount, this stores the journal

    def close(self) -> None:
        """Sync and close the journal; :class:`JournalError` if its last records are lost."""
        try:
            if self._fd is not None or self.on_close:
                self.sync()
        finally:
            fd, self._fd = self._fd, None
            if fd is not None:
                try:
                    os.close(fd)
                except OSError as error:
                    raise JournalError(f"cannot write the journal {self.path}: "
                                       f"{error.strerror}") from None

    def abandon(self) -> None:
        """Close the journal after a write failed, dropping what could not be written."""
        try:
            self.close()
        except JournalError:
            pass  # the failure that brought us here was reported

    def write_manifest(self, extra: dict[str, object]) -> dict[str, object]:
        """Write ``shard-….json`` (atomically): every record in listing order, the totals and
        ``extra``; returns the totals."""
        order = sorted(range(len(self._inputs)), key=self._inputs.__getitem__)
        summed = _totals([self._rows[k] for k in order], self.counts)
        rest = _encode({"totals": summed, **extra})
        temp = f"{self.manifest_path}.{os.getpid()}.partial"
        try:
            with open(temp, "w", encoding="utf-8") as stream:
                stream.write('{"files":[')
                stream.write(",".join([self._lines[k] for k in order]))
                stream.write("]," + rest[1:] + "\n")
                stream.flush()
                _fsync(stream.fileno())
            os.replace(temp, self.manifest_path)
        except OSError as error:
            _remove(temp)
            raise JournalError(f"cannot write the manifest {self.manifest_path}: "
                               f"{error.strerror}") from None
        return summed


def _fsync(fd: int) -> None:
    """``os.fsync``, where the file system has it (some FUSE mounts answer ENOSYS/EINVAL)."""
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EROFS):
            raise


def remove_manifest_temps(out_dir: str, index: int, count: int) -> int:
    """Remove the temporary manifests (``shard-….json.PID.partial``) of shard ``index`` of
    ``count`` that a run killed while writing its manifest left; returns how many.

    Call it only while holding the shard's lock (:mod:`job.lock`): no other
    process then writes this shard's manifest. Other shards' are left alone.
    """
    folder = os.path.join(out_dir, MANIFEST_DIR)
    prefix = shard_name(index, count) + ".json."
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    removed = 0
    for name in names:
        pid = name[len(prefix):-len(".partial")] if name.startswith(prefix) else ""
        if name.endswith(".partial") and pid.isascii() and pid.isdigit():
            _remove(os.path.join(folder, name))
            removed += 1
    return removed


def _drop_cut_line(fd: int) -> None:
    """Truncate the file ``fd`` after its last newline: a line cut short by a crash goes."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    end = size
    while end > 0:
        start = max(0, end - (1 << 16))
        cut = os.pread(fd, end - start, start).rfind(b"\n")
        if cut >= 0:
            os.ftruncate(fd, start + cut + 1)
            return
        end = start
    os.ftruncate(fd, 0)


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
