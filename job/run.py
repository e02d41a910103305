"""One rank's run: resolve the rank, plan the shard, process it, journal it.

Exit codes: 0 done (failures within ``error_threshold``); 1 failures beyond
it; 2 bad usage, config, environment or input folder, found before any file
is processed; 130 interrupted by SIGINT; 143 terminated by SIGTERM.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping

from . import atomic, journal, mounts, outline, ranks, resume, sharding, tasks
from .assemble import Assembler, FileResult
from .outputs import known_output_of, output_rel
from .config import JobConfig
from .cpus import widen_affinity
from .listing import (FULL_DIGEST, PATHS_DIGEST, InputDirError, InputFile, folders_up,
                      identity, list_inputs)
from .lock import RankBusy, RankLock
from .pool import Done, Outcome, WorkerPool, WorkersUnavailable
from .processor import DataProcessor, DistributedPreprocessArguments
from .progress import Progress

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LOGGED_FAILURES = 10
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}

log = logging.getLogger("job")


class UsageError(Exception):
    """Bad usage, config, environment or input folder: exit 2 with this one-line message."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; ``signum`` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Plan:
    """What this rank will do: computed and checked before anything is written."""

    def __init__(self, config: JobConfig, rank: ranks.Rank, listing: outline.Summary,
                 files: list[InputFile], processor: DataProcessor, linked_folders: list[str],
                 input_folders: frozenset[tuple[int, int]]):
        self.config, self.rank, self.processor = config, rank, processor
        self.listing = listing  # of the whole listing: its length and digest
        self.files = files
        self.linked_folders = linked_folders  # links to folders in input_dir, not followed
        self.input_folders = input_folders  # (device, inode) of every folder listed


def load_processor_class(spec: str) -> type[DataProcessor]:
    """The class named by ``module:Class``; :class:`UsageError` if it is not a DataProcessor."""
    module_name, _, class_name = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # noqa: BLE001 - any import failure is a usage error
        raise UsageError(f"processor {spec!r}: cannot import {module_name!r}: "
                         f"{type(error).__name__}: {error}") from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, DataProcessor)):
        what = "not found" if cls is None else "not a DataProcessor subclass"
        raise UsageError(f"processor {spec!r}: {class_name!r} is {what} in {module_name!r}")
    return cls


def prepare(config: JobConfig, environ: Mapping[str, str]) -> Plan:
    """Resolve the rank, list and shard the inputs, build the processor; write nothing."""
    try:
        rank = ranks.resolve(config.distribArgs, environ, config.run_type)
    except ranks.RankError as error:
        raise UsageError(str(error)) from None
    inputs, outputs = os.path.realpath(config.input_dir), os.path.realpath(config.out_dir)
    if inputs == outputs:
        raise UsageError(f"out_dir {config.out_dir!r} must differ from input_dir")
    if inputs.startswith(os.path.join(outputs, "")):
        raise UsageError(f"input_dir {config.input_dir!r} is inside out_dir {config.out_dir!r}: "
                         "outputs could land on inputs; choose an out_dir outside input_dir")
    if _in_reserved_manifest(config.input_dir, config.out_dir):
        raise UsageError(f"out_dir {config.out_dir!r} is input_dir's reserved _manifest folder "
                         "or inside it: it holds the journals of the stage that wrote "
                         "input_dir; choose an out_dir outside it")
    if os.path.exists(config.out_dir) and not os.path.isdir(config.out_dir):
        raise UsageError(f"out_dir {config.out_dir!r} exists and is not a folder")
    _refuse_aliases(config.input_dir, config.out_dir)
    linked: list[str] = []
    input_folders: set[tuple[int, int]] = set()
    try:
        listing, files = list_shard(config, rank, linked, input_folders)
    except InputDirError as error:
        raise UsageError(str(error)) from None
    cls = load_processor_class(config.processor)
    try:
        arguments = DistributedPreprocessArguments.of_rank(rank)
        processor = cls(config.input_dir, config.out_dir, arguments)
    except Exception as error:  # noqa: BLE001
        raise UsageError(f"processor {config.processor!r} could not be built: "
                         f"{type(error).__name__}: {error}") from None
    problem = journal.counts_error(processor.counts)
    if problem is not None:
        raise UsageError(f"processor {config.processor!r}: counts: {problem}")
    return Plan(config, rank, listing, files, processor, sorted(linked), frozenset(input_folders))


def list_shard(config: JobConfig, rank: ranks.Rank, linked: list[str],
               input_folders: set[tuple[int, int]]) -> tuple[outline.Summary, list[InputFile]]:
    """The summary of the whole listing and this rank's files, in listing order.

    Walks input_dir once and reads again only the folders of this rank's files
    (:mod:`job.outline`); if input_dir changed meanwhile, lists it the
    straightforward way (:func:`list_inputs`, every file held) and plans from that.
    """
    index, count, strategy = rank.shard_index, rank.shard_count, config.shard_strategy
    try:
        walked = outline.outline(config.input_dir, config.out_dir, config.pattern, linked,
                                 input_folders, sizes=strategy == "size")
        return walked.summary(), outline.shard(walked, index, count, strategy)
    except outline.ListingChanged as change:
        log.warning("%s: listing it again, whole", change)
    linked.clear()
    input_folders.clear()
    listing = list_inputs(config.input_dir, config.out_dir, config.pattern, linked,
                          input_folders)
    files = sharding.plan(listing, [f.size for f in listing], index, count, strategy)
    digest_of = FULL_DIGEST if strategy == "size" else PATHS_DIGEST  # as its peers record
    return outline.Summary.of(listing, digest_of), files


def _refuse_aliases(input_dir: str, out_dir: str) -> None:
    """:class:`UsageError` if ``out_dir`` is ``input_dir`` or one of its parents under
    another name (a bind mount, a second mount of the same storage): paths compared
    as text cannot see that. Each folder's place in its file system (from mountinfo)
    sees a bind mount of a parent; where mountinfo is not read, the identities (device
    and inode) of input_dir and the folders above it are compared with out_dir's."""
    out = identity(out_dir)
    if out is None:
        return
    inputs, outputs = mounts.location(input_dir), mounts.location(out_dir)
    inside = inputs is not None and outputs is not None and inputs[0] == outputs[0] and (
        inputs[1] + "/").startswith(outputs[1].rstrip("/") + "/")
    if inside or any(identity(f) == out for f in folders_up(os.path.realpath(input_dir))):
        raise UsageError(f"input_dir {input_dir!r} is inside out_dir {out_dir!r} (through a "
                         "mount or link): outputs could land on inputs; choose an out_dir "
                         "outside input_dir")


def _in_reserved_manifest(input_dir: str, out_dir: str) -> bool:
    """Whether ``out_dir`` is ``input_dir/_manifest`` or inside it, as written or resolved.

    That folder is not an input (:mod:`job.listing` skips it) but an earlier
    stage's bookkeeping: a run into it would replace that stage's journals.
    """
    for place in (os.path.abspath, os.path.realpath):
        reserved = os.path.join(place(input_dir), journal.MANIFEST_DIR)
        out = place(out_dir)
        if out == reserved or out.startswith(os.path.join(reserved, "")):
            return True
    return False


def processor_identity(processor: DataProcessor) -> str:
    """``module:Class``, with ``@VERSION`` when the class declares a ``version``.

    Journal records carry it: a file made by another processor, or another
    version of it, is done again on resume.
    """
    cls = type(processor)
    version = getattr(cls, "version", None)
    name = f"{cls.__module__}:{cls.__qualname__}"
    return name if version is None else f"{name}@{version}"


def _book(book: journal.Journal, plan: Plan, identity: str, item: InputFile,
          result: FileResult) -> None:
    """Journal ``item``'s ``result`` (a failed file names the output it would have had)."""
    output = result.output if result.ok else output_rel(
        plan.processor, plan.config.input_dir, plan.config.out_dir, item.rel)
    book.add(item.rel, output, "ok" if result.ok else "failed", result.size,
             result.counts or _nothing(plan), round(result.seconds, 6), result.attempts,
             result.error, result.mtime_ns, identity, time.time())


def _book_unlisted(book: journal.Journal, plan: Plan, identity: str, item: InputFile) -> None:
    """Journal a listing entry that could not be listed or examined: failed."""
    book.add(item.rel, None, "failed", item.size, _nothing(plan), 0.0, 0, item.error,
             item.mtime_ns, identity, time.time())


def _nothing(plan: Plan) -> tuple:
    """No value for each count the processor declares (a failed file)."""
    return (None,) * len(plan.processor.counts)


def _batch_size(task_count: int, workers: int) -> int:
    """Files per hand-out: many when there are many, one when a few must spread evenly."""
    return max(1, min(tasks.BATCH_FILES, task_count // (8 * workers)))


#: The signal that asked the run to stop, kept as well as raised: Python drops an
#: exception raised where it cannot propagate (in an ``os.fork`` hook, a ``__del__``), and
#: the run then looks again at each result and before each wait (:func:`_stop_if_asked`).
_asked: list[int] = []


def _raise_interrupted(signum, frame):
    _asked.append(signum)
    raise Interrupted(signum)


def _quiet_about_interrupted(previous, unraisable) -> None:
    """``sys.unraisablehook`` while files are processed: an :class:`Interrupted` that Python
    drops is kept in :data:`_asked`, so it is not reported; anything else goes to the
    ``previous`` hook."""
    if not isinstance(unraisable.exc_value, Interrupted):
        previous(unraisable)


def _stop_if_asked() -> None:
    """:class:`Interrupted` if a signal asked the run to stop (its exception may be lost)."""
    if _asked:
        raise Interrupted(_asked[0])


def _lock_rank(plan: Plan) -> RankLock:
    """Create ``out_dir/_manifest`` and take this rank's lock there (see :mod:`job.lock`)."""
    out_dir, rank = plan.config.out_dir, plan.rank
    folder = os.path.join(out_dir, journal.MANIFEST_DIR)
    try:
        os.makedirs(folder, exist_ok=True)
        if os.path.islink(folder) or os.path.realpath(folder) != os.path.join(
                os.path.realpath(out_dir), journal.MANIFEST_DIR):
            raise UsageError(f"{folder!r} is a link: the journals must live in out_dir itself, "
                             "never in a folder a link points to (it could be the inputs)")
        for place in (out_dir, folder):
            if identity(place) in plan.input_folders:
                raise UsageError(f"{place!r} is a folder of input_dir under another name (a "
                                 "mount or link): the journals and outputs would land on inputs")
        lock = RankLock(folder, journal.shard_name(rank.shard_index, rank.shard_count),
                        f"rank {rank.shard_index} of {rank.shard_count}")
        lock.acquire()
        try:
            lock.refuse_other_layouts()
        except BaseException:
            lock.release()
            raise
    except RankBusy as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"out_dir {out_dir!r} cannot be written: "
                         f"{error.strerror or error}") from None
    return lock


def _open_outputs(plan: Plan, book: journal.Journal, carried: resume.Carried) -> str:
    """Start the journal; return this rank's fresh folder for range parts."""
    out_dir, rank = plan.config.out_dir, plan.rank
    temp_dir = journal.parts_folder(out_dir, rank.shard_index, rank.shard_count)
    try:
        atomic.remove_folder(temp_dir)  # left by an earlier run that was killed
        if journal.remove_manifest_temps(out_dir, rank.shard_index, rank.shard_count):
            log.info("removed the temporary manifest of an earlier run killed while writing it")
        os.makedirs(temp_dir)
        book.start(carried.records, carried.journaled)
    except OSError as error:
        atomic.remove_folder(temp_dir)
        raise UsageError(f"out_dir {out_dir!r} cannot be written: {error.strerror}") from None
    return temp_dir


def _worker_lost(plan: Plan, todo: list[InputFile], tag: str, pid: int, task: tasks.Task) -> None:
    """Remove what a killed worker was writing for ``task``."""
    output = known_output_of(plan.processor, plan.config.input_dir, todo[task.index].rel)
    if output is not None:
        atomic.remove_temps(os.path.dirname(output), os.path.basename(output), tag, pid)


def execute(plan: Plan) -> int:
    """Process the plan; returns the exit code. Writes only under ``out_dir``.

    The rank's lock is taken before anything is written or logged, and held
    until the end: a second run of the same rank is refused with a
    :class:`UsageError` (see :mod:`job.lock`).
    """
    lock = _lock_rank(plan)
    try:
        log.info("%s", plan.rank.describe())
        log.info("config: %s", plan.config.as_dict())
        if lock.took_over:
            log.warning("took over the lock of a run that is gone: %s", lock.took_over)
        if pattern_matches_nothing(plan):
            log.warning("pattern %r matches no file under input_dir %r: nothing to do",
                        plan.config.pattern, plan.config.input_dir)
        if plan.linked_folders:
            names = ", ".join(plan.linked_folders[:5])
            more = f" and {len(plan.linked_folders) - 5} more" if len(plan.linked_folders) > 5 else ""
            log.warning("%d link(s) to folders in input_dir are not followed, their files are "
                        "not inputs: %s%s", len(plan.linked_folders), names, more)
        return _execute(plan)
    finally:
        lock.release()


def pattern_matches_nothing(plan: Plan) -> bool:
    """Whether a ``pattern`` is given and no file of input_dir matches it (a likely typo)."""
    return plan.config.pattern is not None and not plan.listing.files


class _Shard:
    """This rank's bookkeeping while it runs: what to do, its journal, its parts folder."""

    def __init__(self, identity: str, tag: str, todo: list[InputFile],
                 unlisted: list[InputFile], done_earlier: int, book: journal.Journal,
                 temp_dir: str):
        self.identity = identity  # the processor's, as records name it
        self.tag = tag  # this rank's, in temporary names
        self.todo = todo  # listed files still to do
        self.unlisted = unlisted  # files that could not be listed or examined: failed at once
        self.done_earlier = done_earlier
        self.book = book
        self.temp_dir = temp_dir  # this rank's folder for range parts


def _execute(plan: Plan) -> int:
    """Resume, process the files still to do, journal each, write the manifest; the exit code."""
    shard = _open_shard(plan)
    started = time.monotonic()
    try:
        interrupted = _process(plan, shard)
    except journal.JournalError as error:
        log.error("%s; stopped the workers. Free space or fix out_dir, then run again "
                  "to resume", error)
        return EXIT_FAILED
    except WorkersUnavailable as error:
        try:
            shard.book.close()  # what was done stays done: a run again resumes from it
        except journal.JournalError as lost:
            log.error("%s", lost)
        log.error("%s; raise the limit (ulimit -n, -u), free memory or lower process_count, "
                  "then run again to resume", error.strerror)
        return EXIT_FAILED
    finally:
        atomic.remove_folder(shard.temp_dir)
    return _finish(plan, shard, interrupted, started)


def _open_shard(plan: Plan) -> _Shard:
    """Split the plan into files done by an earlier run and files to do; clean up what a
    killed run left; start the journal with the records of the files done."""
    config, rank, processor = plan.config, plan.rank, plan.processor
    identity = processor_identity(processor)
    name = journal.shard_name(rank.shard_index, rank.shard_count)
    carried, todo = resume.split_done(config, plan.files, identity, name + ".jsonl",
                                      processor.counts)
    tag = f"{rank.shard_index}of{rank.shard_count}"
    atomic.use_tag(tag)
    book = journal.Journal(config.out_dir, rank.shard_index, rank.shard_count,
                           config.journal_sync_interval, processor.counts)
    if not resume.ended_cleanly(book):
        resume.remove_stale_temps(config, processor, plan.files, tag, plan.input_folders)
    resume.remove_orphaned_temps(config, processor, plan.files, rank.shard_count,
                                 plan.input_folders)
    temp_dir = _open_outputs(plan, book, carried)
    return _Shard(identity, tag, [item for item in todo if item.error is None],
                  [item for item in todo if item.error is not None], len(carried.records),
                  book, temp_dir)


def _plan_work(plan: Plan, shard: _Shard) -> tuple[list[tasks.Task], int]:
    """The tasks of the files to do, and how many workers take them (logged)."""
    config, todo = plan.config, shard.todo
    ranges = callable(getattr(plan.processor, "process_range", None))
    widen_affinity(os.environ)  # before workers fork: they inherit the node's CPUs
    wanted = config.workers(plan.rank.local_size)
    work = tasks.plan_tasks(todo, wanted, ranges)
    workers = min(wanted, max(1, len(work)))
    log.info("plan: %d of %d files (%s), %s strategy; %d done by an earlier run, %d to do "
             "in %d task(s) by %d worker process(es)", len(plan.files), plan.listing.files,
             _size(sum(f.size for f in plan.files)), config.shard_strategy, shard.done_earlier,
             len(todo), len(work), workers)
    return work, workers


def _process(plan: Plan, shard: _Shard) -> Interrupted | None:
    """Process the files to do with a pool of workers, journaling each as it completes.

    Returns the signal that stopped the run (SIGINT, SIGTERM), if one did; a
    :class:`journal.JournalError` stops it too, the journal abandoned.
    """
    config, todo, book = plan.config, shard.todo, shard.book
    work, workers = _plan_work(plan, shard)
    progress = Progress(len(todo), sum(f.size for f in todo), log,
                        label=f"rank {plan.rank.shard_index}/{plan.rank.shard_count} ",
                        log_interval=config.progress_interval)
    assembler = Assembler(plan.processor, config.input_dir, shard.temp_dir, todo)
    failures = _FailureLog(progress)
    _asked.clear()
    # The handlers that raise Interrupted are installed inside the try that catches it (and
    # whose finally puts back the ones of before): a signal the moment one is installed
    # stops the run as any other does, not with a traceback.
    previous = {s: signal.getsignal(s) for s in EXIT_SIGNAL}
    previous_hook = sys.unraisablehook
    try:
        sys.unraisablehook = functools.partial(_quiet_about_interrupted, previous_hook)
        for signum in EXIT_SIGNAL:
            signal.signal(signum, _raise_interrupted)
        for item in shard.unlisted:
            _book_unlisted(book, plan, shard.identity, item)
            failures.add(item.rel, item.error, 0)
        call = tasks.Runner(plan.processor, config.input_dir, config.out_dir, shard.temp_dir,
                            plan.input_folders).run
        lost = functools.partial(_worker_lost, plan, todo, shard.tag)
        identity, nothing = shard.identity, _nothing(plan)
        with WorkerPool(call, workers, max_retries=config.max_retries,
                        timeout=config.file_timeout, on_worker_lost=lost,
                        plain_results=True) as pool:
            outcomes = pool.imap(tasks.pool_items(work, todo),
                                 batch_size=_batch_size(len(work), workers),
                                 batch_weight=tasks.BATCH_BYTES,
                                 before_wait=functools.partial(_flush_unless_asked, book),
                                 grouped=True)
            for outcome in outcomes:
                _stop_if_asked()
                if type(outcome) is Done:
                    parts = _book_done(book, todo, outcome.results, identity, nothing, progress)
                else:
                    parts = (outcome,)
                for part in parts:
                    result = assembler.add(part)
                    if result is None:
                        continue
                    item = todo[result.index]
                    _book(book, plan, shard.identity, item, result)
                    if not result.ok:
                        failures.add(item.rel, result.error, result.attempts)
                    progress.update(item.size, failed=not result.ok)
    except (Interrupted, journal.JournalError, WorkersUnavailable) as stop:
        progress.clear()
        assembler.abort()
        if isinstance(stop, Interrupted):
            return stop
        if isinstance(stop, journal.JournalError):
            book.abandon()
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = previous_hook
    return None


def _book_done(book: journal.Journal, todo: list[InputFile], results: list[tuple],
               identity: str, nothing: tuple, progress: Progress) -> list[Outcome]:
    """Journal the whole files among the ``results`` of a :class:`Done` together (most files
    come so; on 20,000 tiny files the rank's main process spends 9-12 µs of CPU a file while
    they are processed, against 16-20 µs booking them one at a time); return the rest,
    ranges of files, as outcomes for the assembler."""
    whole, ranges = [], []
    for task, value, seconds, attempts in results:
        if task.parts == 1:
            item = todo[task.index]
            whole.append((item.rel, value[3], item.size, value[2] or nothing,
                          round(seconds, 6), attempts, item.mtime_ns))
        else:
            ranges.append(Outcome(task, True, value, None, seconds, attempts))
    if whole:
        book.add_done(whole, identity, time.time())
        progress.update(sum([entry[2] for entry in whole]), files=len(whole))
    return ranges


def _flush_unless_asked(book: journal.Journal) -> float | None:
    """The pool's ``before_wait``: stop if a signal asked to, else flush the journal."""
    _stop_if_asked()
    return book.flush()


def _finish(plan: Plan, shard: _Shard, interrupted: Interrupted | None, started: float) -> int:
    """Close the journal, write the manifest, log the summary; the exit code."""
    try:
        shard.book.close()
    except journal.JournalError as error:
        log.error("%s; run again to resume", error)
        return EXIT_FAILED
    rank = plan.rank
    extra = {"rank": {"shard_index": rank.shard_index, "shard_count": rank.shard_count,
                      "node_rank": rank.node_rank, "node_count": rank.node_count,
                      "local_rank": rank.local_rank, "local_size": rank.local_size,
                      "source": rank.source},
             "complete": interrupted is None,
             "processor": shard.identity,
             "listing": {"files": plan.listing.files, "digest": plan.listing.digest,
                         "digest_of": plan.listing.digest_of,
                         "unlisted": plan.listing.unlisted},
             "wall_seconds": round(time.monotonic() - started, 3)}
    if interrupted is not None:
        extra["interrupted_by"] = str(interrupted)
    try:
        summed = shard.book.write_manifest(extra)
    except journal.JournalError as error:
        log.error("%s", error)
        return EXIT_FAILED
    return _summarize(plan, shard.book, summed, extra["wall_seconds"], interrupted)


class _FailureLog:
    """Logs the first :data:`LOGGED_FAILURES` failed files as they fail, then only says that
    more follow: the journal and the manifest hold every one."""

    def __init__(self, progress: Progress):
        self._progress = progress
        self.count = 0

    def add(self, rel: str, error: str | None, attempts: int) -> None:
        self.count += 1
        if self.count > LOGGED_FAILURES + 1:
            return
        self._progress.clear()
        if self.count > LOGGED_FAILURES:
            log.warning("more files failed: they are not logged one by one (the journal and "
                        "the manifest list them all)")
        elif attempts:
            log.warning("failed: %s: %s (after %d attempt(s))", rel, error, attempts)
        else:
            log.warning("failed: %s: %s", rel, error)


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count} B"


def _summarize(plan: Plan, book: journal.Journal, totals: dict, wall_seconds: float,
               interrupted) -> int:
    failed = sorted(book.failed, key=lambda record: record["input"])
    counts = "".join(f", {totals[name]:,} {name}" for name in plan.processor.counts)
    log.info("summary: %d files: %d done, %d skipped (done earlier), %d failed; "
             "%s in%s, %.1f s", totals["files"], totals["ok"], totals["skipped"],
             totals["failed"], _size(totals["bytes_in"]), counts, wall_seconds)
    for record in failed[:LOGGED_FAILURES]:
        log.error("failed: %s: %s", record["input"], record["error"])
    if len(failed) > LOGGED_FAILURES:
        log.error("... and %d more failed files: the manifest lists them all",
                  len(failed) - LOGGED_FAILURES)
    log.info("manifest: %s", book.manifest_path)
    if interrupted is not None:
        log.error("interrupted by %s: stopped the workers, removed partial outputs; "
                  "run again to resume", interrupted)
        return EXIT_SIGNAL[interrupted.signum]
    threshold = plan.config.error_threshold
    if failed and threshold != -1 and len(failed) > threshold:
        log.error("%d file(s) failed, more than error_threshold=%d: %s", len(failed), threshold,
                  ", ".join(r["input"] for r in failed[:LOGGED_FAILURES])
                  + (" ..." if len(failed) > LOGGED_FAILURES else ""))
        return EXIT_FAILED
    return EXIT_OK


def configure_logging(level: str, rank: ranks.Rank | None = None) -> None:
    """Log lines to stderr, each tagged with the rank."""
    tag = f"rank {rank.shard_index}/{rank.shard_count}" if rank else "job"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [{tag}] %(message)s",
                                           "%Y-%m-%d %H:%M:%S"))
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
