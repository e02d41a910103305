"""Journal lines: the direct encoding of the usual record is exactly ``json.dumps``'s."""

import errno
import fcntl
import json
import os
import signal
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from job import journal

COMPACT = dict(ensure_ascii=False, separators=(",", ":"))


def record(**changes):
    base = {"input": "a/b.txt", "output": "a/b.txt", "status": "ok", "bytes_in": 12,
            "tokens": 3, "seconds": 0.00125, "attempts": 1, "error": None,
            "mtime_ns": 1732500000123456789, "processor": "job.tokens:TokenSplitter@1",
            "time": 1764091234.1234567}
    return {**base, **changes}


@pytest.mark.parametrize("changes", [
    {},
    {"input": 'quo"te\\back\tslash\x00\x1f\u2028 日本語.txt', "output": None},
    {"status": "failed", "error": "ValueError: bad \"input\"\n at x.py:3", "tokens": None},
    {"status": "skipped", "seconds": 0.0, "bytes_in": None, "mtime_ns": None},
    {"seconds": 1e-07}, {"seconds": 12345678.5},
    {"tokens": {"custom": [1, 2]}},          # a processor's own value: json.dumps itself
    {"tokens": True}, {"seconds": 3}, {"seconds": float("inf")}, {"status": "o\"k"},
    {"time": None}, {"time": 17}, {"time": float("nan")}, {"processor": None},
    {"processor": "m\u00e9:C\"x"}, {"input": 3}, {"output": b"x".decode()},
])
def test_usual_and_unusual_records(changes):
    value = record(**changes)
    assert journal.encode_record(value) == json.dumps(value, **COMPACT)


@pytest.mark.parametrize("counts", [{}, {"lines": 4, "largest": None}, {"l\u00e9": 1},
                                    {"a b": 1}, {"x": 1.5}, {"y": False}])
def test_records_of_processors_that_count_other_things(counts):
    base = record()
    del base["tokens"]
    value = {key: base[key] for key in journal.HEAD_FIELDS}
    value.update(counts)
    value.update({key: base[key] for key in journal.TAIL_FIELDS})
    assert journal.encode_record(value) == json.dumps(value, **COMPACT)


def test_totals_sum_each_declared_count():
    records = [record(lines=2), record(lines=None, status="failed"), record(lines=5)]
    totals = journal.totals(records, ["lines"])
    assert list(totals) == ["files", "ok", "skipped", "failed", "bytes_in", "lines", "seconds"]
    assert (totals["lines"], totals["ok"], totals["failed"]) == (7, 2, 1)
    assert journal.count_names(totals) == ["lines"]
    assert "tokens" not in journal.totals(records)


def test_other_keys_or_order():
    value = {"status": "ok", **record()}
    assert journal.encode_record(value) == json.dumps(value, **COMPACT)
    assert journal.encode_record({"input": "x"}) == '{"input":"x"}'


@settings(max_examples=200, deadline=None)
@given(name=st.text(), error=st.none() | st.text(), tokens=st.none() | st.integers(),
       seconds=st.floats(allow_nan=False, allow_infinity=False, min_value=0))
def test_any_text_and_numbers(name, error, tokens, seconds):
    value = record(input=name, output=name, error=error, tokens=tokens, seconds=seconds)
    line = journal.encode_record(value)
    assert line == json.dumps(value, **COMPACT) and json.loads(line) == value


def test_a_name_that_is_not_utf8_is_escaped_and_read_back_exactly():
    name = b"caf\xe9/\xff.txt".decode("utf-8", "surrogateescape")
    value = record(input=name, output=name)
    line = journal.encode_record(value)
    assert line == json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    line.encode("utf-8")  # a journal line is always UTF-8
    assert os.fsencode(json.loads(line)["input"]) == b"caf\xe9/\xff.txt"


_surrogates = st.text(alphabet=st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF))
_names = st.text() | st.tuples(st.text(), _surrogates).map("".join)
_integers = st.none() | st.integers(min_value=-(1 << 70), max_value=1 << 70) | st.booleans()
_reals = st.floats() | st.integers(min_value=0, max_value=10**6) | st.none()
_added = st.fixed_dictionaries({
    "rel": _names, "output": st.none() | _names | st.integers(),
    "status": st.sampled_from(["ok", "failed", "skipped", 'o"k']),
    "bytes_in": _integers, "seconds": _reals, "attempts": _integers,
    "error": st.none() | _names, "mtime_ns": _integers,
    "processor": st.sampled_from(["job.tokens:TokenSplitter@1", "m\u00e9:C\"x", "a:\udcff"]),
    "when": _reals})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=_added, names=st.sampled_from([("tokens",), (), ("lines", "largest"),
                                             ("l\u00e9", 'q"uote')]),
       counts=st.lists(_integers | st.floats(), min_size=0, max_size=3))
def test_a_record_added_by_its_fields_is_the_line_of_its_record(tmp_path, fields, names, counts):
    """Journal.add writes the usual record's line itself: it is exactly encode_record's (and
    so json.dumps's) for every field, plain or not."""
    counts = (counts + [None] * len(names))[:len(names)]
    book = journal.Journal(str(tmp_path), 0, 1, counts=names)
    book.add(fields["rel"], fields["output"], fields["status"], fields["bytes_in"], counts,
             fields["seconds"], fields["attempts"], fields["error"], fields["mtime_ns"],
             fields["processor"], fields["when"])
    record = journal.make_record(names, fields["rel"], fields["output"], fields["status"],
                                 fields["bytes_in"], counts, fields["seconds"],
                                 fields["attempts"], fields["error"], fields["mtime_ns"],
                                 fields["processor"], fields["when"])
    [line] = book._lines
    assert line == journal.encode_record(record)
    assert book.failed == ([record] if fields["status"] == "failed" else [])


_done = st.tuples(_names, _names | st.none() | st.integers(), _integers,
                  st.lists(_integers | st.floats(), min_size=0, max_size=2).map(tuple),
                  _reals, _integers, _integers)
_usual_done = st.tuples(st.text(), st.text(), st.integers(0, 1 << 62),
                        st.tuples(st.none() | st.integers(0, 1 << 62)),
                        st.floats(min_value=0, max_value=1e9), st.integers(1, 3),
                        st.integers(0, 1 << 62))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.lists(_usual_done | _done, max_size=6) | st.lists(_usual_done, max_size=6),
       names=st.sampled_from([("tokens",), (), ("lines", "largest")]),
       processor=st.sampled_from(["job.tokens:TokenSplitter@1", "m\u00e9:C\"x", "a:\udcff"]),
       when=_reals)
def test_files_done_added_together_are_what_each_added_alone_is(tmp_path, entries, names,
                                                                 processor, when):
    """Journal.add_done writes, keeps and sums exactly what Journal.add does for each entry,
    plain or not (a name that is not UTF-8, a count that is not an integer ...)."""
    together = journal.Journal(str(tmp_path), 0, 1, counts=names)
    alone = journal.Journal(str(tmp_path), 0, 1, counts=names)
    together.add_done(entries, processor, when)
    for rel, output, bytes_in, counts, seconds, attempts, mtime_ns in entries:
        alone.add(rel, output, "ok", bytes_in, counts, seconds, attempts, None, mtime_ns,
                  processor, when)
    assert together._lines == alone._lines and together._waiting == alone._waiting
    assert together._inputs == alone._inputs and together._rows == alone._rows
    assert together.failed == alone.failed == []
    assert (together._unsynced_since is None) == (alone._unsynced_since is None) == (not entries)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rel=st.text(), error=st.none() | st.text(), tokens=st.none() | st.integers(0, 1 << 62),
       seconds=st.floats(min_value=0, max_value=1e9), mtime_ns=st.none() | st.integers(0, 1 << 62))
def test_a_usual_record_is_written_by_the_direct_path(tmp_path, rel, error, tokens, seconds,
                                                        mtime_ns):
    """The fields of a file done or failed take the direct path, not the encoder's."""
    book = journal.Journal(str(tmp_path), 0, 1, counts=("tokens",))
    fields = (rel, rel, "ok", 12, (tokens,), seconds, 1, error, mtime_ns,
              "job.tokens:TokenSplitter@1", 1764091234.25)
    line = book._line(*fields)
    assert line == journal.encode_record(journal.make_record(("tokens",), *fields))


def test_a_manifest_lists_records_in_listing_order_with_their_totals(tmp_path):
    book = journal.Journal(str(tmp_path), 0, 1, sync_interval=60, counts=("tokens",))
    book.start([record(input="b", status="skipped", tokens=4, seconds=0.5)])
    book.add("c", "c", "ok", 10, (3,), 0.25, 1, None, 7, "p", 1.0)
    book.add("a", None, "failed", 5, (None,), 0.125, 2, "E: x", None, "p", 2.0)
    totals = book.write_manifest({"complete": True})
    book.close()
    manifest = json.loads(open(book.manifest_path).read())
    assert [r["input"] for r in manifest["files"]] == ["a", "b", "c"]
    assert manifest["totals"] == totals == journal.totals(manifest["files"], ["tokens"])
    assert totals == {"files": 3, "ok": 1, "skipped": 1, "failed": 1, "bytes_in": 27,
                      "tokens": 7, "seconds": 0.875}
    assert [r["input"] for r in book.failed] == ["a"] and manifest["complete"] is True
    lines = open(book.path).read().splitlines()
    assert [json.loads(line)["input"] for line in lines] == ["b", "c", "a"]


def test_records_are_synced_once_the_oldest_has_waited_the_interval(tmp_path):
    book = journal.Journal(str(tmp_path), 0, 1, sync_interval=0.2)
    book.start([])
    assert book.syncs == 1 and book.flush() is None  # nothing waits
    book.append(record())
    due = book.flush()
    assert 0 < due <= 0.2 and book.syncs == 1
    book.append(record(input="c.txt"))
    assert book.flush() <= due  # the oldest record sets the time
    time.sleep(due + 0.01)
    assert book.flush() is None and book.syncs == 2
    book.append(record(input="d.txt"))  # the journal was closed and opened again: still appends
    book.close()
    assert [r["input"] for r in journal.read_records(book.path)] == ["a/b.txt", "c.txt", "d.txt"]



# --- issue 14: a rank keeps only the records of its own files ----------------------------------

NAMES = ["a", "a.b", 'qu"ote', "back\\slash", "tab\tname", "caf\u00e9", "\udcff.txt", "input",
         "x/input", "a/b", "\u2028", "ctrl\x01"]


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMES),
                                st.integers(0, 3), st.booleans()), max_size=30),
       wanted=st.sets(st.sampled_from(NAMES)))
def test_records_of_some_inputs_are_those_of_all_inputs_kept(tmp_path_factory, lines, wanted):
    """Whatever the names (quotes, escapes, not UTF-8, a value that reads "input"), a line cut
    short, a second "input" key: filtering while reading keeps exactly what reading all and
    filtering after keeps."""
    out = tmp_path_factory.mktemp("out")
    folder = out / journal.MANIFEST_DIR
    folder.mkdir()
    for number in range(2):
        name = journal.shard_name(number, 2) + ".jsonl"
        with open(folder / name, "w", encoding="utf-8", errors="surrogateescape") as f:
            for rel, output, stamp, odd in lines[number::2]:
                line = journal.encode_record(record(input=rel, output=output, time=stamp))
                if odd and stamp == 0:
                    line = line[:-1] + ',"input":' + json.dumps(output) + "}"  # a second key
                elif odd and stamp == 1:
                    line = line[:len(line) // 2]  # cut short
                elif odd:
                    line = json.dumps(record(input=rel, output=output, time=stamp))  # ASCII
                f.write(line + "\n")
    everything = journal.newest_records(str(out))
    expected = {rel: value for rel, value in everything.items() if rel in wanted}
    assert journal.newest_records(str(out), wanted) == expected


def test_a_second_input_key_is_the_one_that_counts(tmp_path):
    """json.loads keeps the last of two keys: a line that begins with another input is still
    the record of the wanted one, whether the journal is skipped whole or line by line."""
    (tmp_path / journal.MANIFEST_DIR).mkdir()
    line = journal.encode_record(record(input="a", output="b"))[:-1] + ',"input":"b"}'
    for other in ([], ['{"input":"c\\\\"}']):  # the second makes the journal read line by line
        path = tmp_path / journal.MANIFEST_DIR / "shard-00000-of-00001.jsonl"
        path.write_text("\n".join([line, *other]) + "\n")
        assert list(journal.newest_records(str(tmp_path), {"b"})) == ["b"]
        assert journal.newest_records(str(tmp_path), {"a"}) == {}


class _DiskFullOnce:
    """``os`` for job.journal, whose ``write`` stores ``room`` bytes of the next large
    write (a short write, as write(2) makes when the disk fills), fails the write after it
    with ENOSPC, and then finds space again."""

    def __init__(self, room: int):
        self.room, self.full = room, False

    def write(self, fd, data):
        if self.full:
            self.full = False
            raise OSError(errno.ENOSPC, "No space left on device")
        if self.room is not None and len(data) > self.room:
            room, self.room, self.full = self.room, None, True
            return os.write(fd, bytes(data[:room]))
        return os.write(fd, data)

    def __getattr__(self, name):
        return getattr(os, name)


def test_a_write_that_fails_part_way_is_completed_later_never_written_twice(tmp_path,
                                                                            monkeypatch):
    """The disk fills in the middle of a flush, then has space again when the run abandons
    the journal (the pool removed its temporary files): every line is one whole record,
    each once. (An attack found the whole batch written again after its cut prefix: two
    records in one line, and job.check failing the out_dir for good.)"""
    book = journal.Journal(str(tmp_path), 0, 1, sync_interval=1000.0, counts=("tokens",))
    book.start([])
    monkeypatch.setattr(journal, "os", _DiskFullOnce(room=20_000))  # not a whole line
    for i in range(400):
        book.add(f"file{i:05d}", f"file{i:05d}", "ok", 10, (3,), 0.001, 1, None, 5, "p", 1.5)
    with pytest.raises(journal.JournalError, match="No space left"):
        book.flush()
    book.abandon()  # as run._process does after a JournalError
    lines = open(book.path, encoding="utf-8").read().splitlines()
    assert [json.loads(line)["input"] for line in lines] == [f"file{i:05d}" for i in range(400)]


@pytest.mark.parametrize("names", [("seconds",), ("bytes_in",), ("status",), ("time",),
                                   ("tokens", "tokens"), ("files",)])
def test_counts_named_like_record_fields_are_refused_and_still_written_as_their_record(
        tmp_path, names):
    """A run refuses such counts (job.run: exit 2); given them anyway, Journal.add writes
    exactly the line of the record make_record builds (one key each), not a line of its own
    with the key twice."""
    assert journal.counts_error(names) is not None
    book = journal.Journal(str(tmp_path), 0, 1, counts=names)
    fields = ("a", "a", "ok", 5, tuple(range(7, 7 + len(names))), 0.5, 1, None, 123, "m:P@1", 1.25)
    book.add(*fields)
    assert book._lines == [journal.encode_record(journal.make_record(names, *fields))]


@pytest.mark.parametrize("names", [(), ("tokens",), ("lines", "largest"), ["a b", "\u00e9"]])
def test_usual_counts_are_accepted(names):
    assert journal.counts_error(names) is None


class _Stop(Exception):
    pass


def _stop(signum, frame):
    raise _Stop(signum)


def test_a_signal_while_the_journal_is_written_waits_for_the_write(tmp_path):
    """SIGTERM's handler raises (as job.run's does); one arriving while a batch is written
    is raised once the write is booked: what reached the journal is written once, the rest
    after it. (An attack found the count of a write lost to the exception, the batch
    written again: a record twice, or two records in one line after a short write.)"""
    book = journal.Journal(str(tmp_path), 0, 1)
    for k in range(2000):
        book.add(f"f{k:05d}", f"f{k:05d}", "ok", 1, (), 0.0, 1, None, 1, "p", 1.0)
    total = sum(len(line) + 1 for line in book._waiting)
    readable, writable = os.pipe()
    fcntl.fcntl(writable, fcntl.F_SETPIPE_SZ, 4096)  # a small pipe: the write takes a while
    got = bytearray()

    def drain():
        while True:
            chunk = os.read(readable, 4096)
            if not chunk:
                return
            got.extend(chunk)
            time.sleep(0.002)

    reader = threading.Thread(target=drain)
    reader.start()
    killer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGTERM))
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        killer.start()
        with pytest.raises(_Stop):
            book._write_pending(writable)
            time.sleep(5)  # the signal, held during the write, arrives here at the latest
    finally:
        signal.signal(signal.SIGTERM, previous)
        killer.cancel()
        os.close(writable)
        reader.join()
        os.close(readable)
    assert book._unwritten == b"" and len(got) == total
    assert [json.loads(line)["input"] for line in got.decode().splitlines()] == [
        f"f{k:05d}" for k in range(2000)]


def _signal_at_line(function, k):
    """A tracer that sends SIGTERM at the ``k``-th line that ``function`` (or a comprehension
    of it) starts: the handler runs there, as Python may run it between any two lines."""
    seen = [0]

    def local(frame, event, arg):
        if event == "line":
            seen[0] += 1
            if seen[0] == k:
                signal.raise_signal(signal.SIGTERM)
        return local

    def tracer(frame, event, arg):
        caller = frame.f_back
        if frame.f_code is function.__code__ or (
                caller is not None and caller.f_code is function.__code__):
            return local
        return None

    return tracer, seen


def test_a_signal_while_files_done_are_booked_leaves_the_journal_whole(tmp_path):
    """SIGINT or SIGTERM (whose handler raises, as job.run's does) arriving anywhere in
    Journal.add_done leaves its files either all booked or none: the manifest and the
    journal then hold the same records. (An attack found the signal raised between the
    inputs and the totals' rows kept: write_manifest failed with an IndexError, a
    traceback and exit 1 instead of 143 and no manifest; or between the rows and the lines
    queued: the manifest listed files done that the journal did not hold.)"""
    entries = [(f"d/f{i}", f"d/f{i}", 10 + i, (i,), 0.001, 1, 17 + i) for i in range(5)]
    k = 0
    while True:
        k += 1
        folder = tmp_path / str(k)
        book = journal.Journal(str(folder), 0, 1, sync_interval=60, counts=("tokens",))
        book.start([])
        book.add("a", "a", "ok", 1, (1,), 0.5, 1, None, 5, "p@1", 1.0)
        tracer, seen = _signal_at_line(journal.Journal.add_done, k)
        previous = signal.signal(signal.SIGTERM, _stop)
        sys.settrace(tracer)
        try:
            book.add_done(entries, "p@1", 2.0)
        except _Stop:
            pass
        finally:
            sys.settrace(None)
            signal.signal(signal.SIGTERM, previous)
        assert len(book._lines) == len(book._inputs) == len(book._rows) in (1, 6), k
        book.write_manifest({"complete": False})
        book.close()
        written = open(book.path).read().splitlines()
        listed = json.loads(open(book.manifest_path).read())["files"]
        assert [json.loads(line) for line in written] == listed, k
        if seen[0] < k:  # the signal came after the last line: all lines were tried
            break
