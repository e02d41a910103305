"""Row 7: the job's outputs on a blob mount, in storage requests per output and wall time.

Azurite (the Azure Storage emulator) serves a container that ``rclone mount``
mounts as Azure ML mounts an output with blobfuse: the test suite's
``tests/blobmount.py`` and ``tests/azure_standin/azurite.py``, imported from
there (``make test`` installs Azurite, rclone and fusermount3). Three measurements:

- **the job on the mount**: ``python -m job`` with ``out_dir`` on the mount,
  timed until it exits and until rclone reports no upload queued or running;
  against the same job with ``out_dir`` on the local disk. Every rep runs on a
  fresh container, and after the unmount the container must hold every output
  byte-exact and no temporary blob.
- **requests per output**: one more run on a mount that logs every HTTP request's
  headers (``--dump headers``, not timed: the logging slows rclone down), counted
  by method and by blob: outputs, their temporary names, the job's ``_manifest/``,
  the container (listings). A copy is a PUT with ``x-ms-copy-source``.
- **what blobfuse pays for a rename**: rclone uploads once, under the final name,
  because the job renames the temporary file during the 100 ms write-back delay.
  blobfuse uploads at close, so there the rename is what blobfuse2's
  ``RenameFile`` (``component/azstorage/block_blob.go``) sends: HEAD of the
  temporary blob, a server-side copy to the final name, DELETE of the temporary
  blob. Measured with azure-storage-blob on the same Azurite, 2 threads (as 2
  workers), the same bytes: PUT temp + HEAD + copy + DELETE vs one PUT under the
  final name.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import os
import re
import shutil
import statistics
import sys
import time
import urllib.parse
from pathlib import Path

from . import references
from .inputs import MB, InputSet
from .measure import ROOT, Timing, digests, timed
from .rows import Bench, Row, _contention, _runs, _verify, ratio, say

TESTS = ROOT / "tests"
MANIFEST = "_manifest/"
TEMPORARY = ".partial-"
# A request as rclone's ``--dump headers`` logs it: the request line, then its headers up
# to a blank line, in one log entry (the "HTTP REQUEST" line before it is another entry,
# and another goroutine's entries may come between the two).
DUMPED = re.compile(r"^\S+ \S+ DEBUG : ([A-Z]+) (/\S*) HTTP/[\d.]+\n((?:.+\n)*)", re.MULTILINE)
POLL = 0.02  # seconds between two looks at rclone's upload queue


class Unavailable(Exception):
    """Azurite, rclone, FUSE or the SDK is missing: the row says n/a and why."""


def helpers():
    """``(azurite, blobmount)``, the test suite's modules, or :class:`Unavailable` naming
    what is missing."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    try:
        import azure.storage.blob  # noqa: F401
        import blobmount
        from azure_standin import azurite
    except ImportError as error:
        raise Unavailable(f"cannot import the test suite's helpers: {error}") from None
    for tool in ("rclone", "fusermount3"):
        if shutil.which(tool) is None:
            raise Unavailable(f"{tool} is not on PATH (`make test` installs it)")
    if not Path("/dev/fuse").exists():
        raise Unavailable("no /dev/fuse")
    return azurite, blobmount


# -- what rclone asked of the storage ---------------------------------------------------------

def kind_of(name: str) -> str:
    """Which blob a request was for: ``container`` (a listing), ``temporary``, ``_manifest``
    (the job's journal, lock and manifest) or ``output``."""
    if not name:
        return "container"
    if TEMPORARY in name.rsplit("/", 1)[-1]:
        return "temporary"
    return "_manifest" if name.startswith(MANIFEST) else "output"


def dumped_requests(log_text: str, container: str) -> collections.Counter:
    """``{(blob kind, operation): count}`` from rclone's ``--dump headers`` log.

    The operation is the HTTP method, or ``copy`` for a PUT with ``x-ms-copy-source``
    (a server-side copy: what a rename costs where the source was uploaded already).
    """
    counts: collections.Counter = collections.Counter()
    for method, url, headers in DUMPED.findall(log_text):
        path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
        name = path.split(f"/{container}", 1)[-1].lstrip("/")
        copy = method == "PUT" and "\nx-ms-copy-source:" in "\n" + headers.lower()
        counts[kind_of(name), "copy" if copy else method] += 1
    return counts


def per_output(counts: collections.Counter, files: int, kinds: tuple[str, ...]) -> str:
    """``2.02 (PUT 1.00, HEAD 1.00, ...)``: requests on blobs of ``kinds`` per output file."""
    by_operation: collections.Counter = collections.Counter()
    for (kind, operation), n in counts.items():
        if kind in kinds:
            by_operation[operation] += n
    total = sum(by_operation.values())
    parts = ", ".join(f"{op} {n / files:.2f}" for op, n in sorted(by_operation.items(),
                                                               key=lambda item: -item[1]))
    return f"{total / files:.2f} ({parts or 'none'})"


# -- the job on the mount -------------------------------------------------------------------

def expected_outputs(inputs: InputSet) -> dict[str, str]:
    """``{name: sha256}`` of the SPEC's reference output of every input."""
    return {name: hashlib.sha256(b"".join(t + b"\n" for t in data.split())).hexdigest()
            for name, data in read_tree(inputs.path).items()}


def read_tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def stored(azurite, container: str) -> dict[str, str]:
    """``{blob name: sha256}`` of every blob of ``container`` but the job's ``_manifest/``."""
    return {name: hashlib.sha256(data).hexdigest()
            for name, data in azurite.blobs(container).items() if not name.startswith(MANIFEST)}


def uploads_pending(mount) -> int:
    cache = mount.vfs_stats().get("diskCache", {})
    return cache.get("uploadsQueued", 0) + cache.get("uploadsInProgress", 0)


def until_uploaded(mount, timeout: float = 300.0) -> float:
    """Seconds until rclone reports no upload queued or running (twice, :data:`POLL` apart)."""
    start = time.perf_counter()
    idle_since = None
    while time.perf_counter() - start < timeout:
        if uploads_pending(mount):
            idle_since = None
        elif idle_since is None:
            idle_since = time.perf_counter()
        else:
            return idle_since - start
        time.sleep(POLL)
    raise TimeoutError(f"uploads still pending after {timeout:.0f} s")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds that processes ``pids`` have used so far (``/proc``)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()
        except OSError:  # exited
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def storage_pids(azurite, mount) -> list[int]:
    """rclone's process, and every process of Azurite's group (node under a wrapper)."""
    group = []
    for name in os.listdir("/proc"):
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                if int(stat.read().rpartition(b")")[2].split()[2]) == azurite.process.pid:
                    group.append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    return [mount.process.pid, *group]


@dataclasses.dataclass
class MountRun:
    """The job writing to a fresh container's mount."""

    job: Timing          # until the job exited; ``others`` leaves rclone and Azurite out
    uploaded: float      # seconds from the job's start until every upload was done
    storage_cpu: float   # CPU seconds rclone and Azurite used meanwhile
    container: str
    requests: collections.Counter  # counted when asked for (see dumped_requests)
    logged: int = 0                # requests in rclone's log, to check that count


def on_mount(azurite, blobmount, scratch: Path, inputs: InputSet, processes: int,
             count_requests: bool) -> MountRun:
    """The job to a fresh container's mount, and the wait for its uploads."""
    container = blobmount.new_container(azurite)
    folder = scratch / container
    log_file = folder / "rclone.log" if count_requests else None
    mount = blobmount.BlobMount(azurite, container, folder / "mnt", folder / "cache",
                                log_file=log_file)
    with mount:
        storage = storage_pids(azurite, mount)
        before = cpu_seconds(storage)
        job = timed(references.job_command(inputs.path, mount.mountpoint, processes))
        during = cpu_seconds(storage) - before
        uploaded = job.seconds + until_uploaded(mount)
        storage_cpu = cpu_seconds(storage) - before
    # the storage side is part of what is measured, not another tenant of the machine
    others = max(0.0, job.others - during / (job.seconds * (os.cpu_count() or 1)))
    counts, logged = collections.Counter(), 0
    if count_requests:
        text = mount.log_file.read_text(errors="replace")
        counts, logged = dumped_requests(text, container), text.count("HTTP REQUEST")
    shutil.rmtree(folder, ignore_errors=True)
    return MountRun(dataclasses.replace(job, others=others), uploaded, storage_cpu, container,
                    counts, logged)


# -- what a rename costs where the file was uploaded at close (blobfuse) --------------------

def counting_client(azurite, account: tuple[str, str], counts: collections.Counter):
    """A container-service client of ``azurite`` that counts every response by operation."""
    from azure.storage.blob import BlobServiceClient

    def count(response) -> None:
        request = response.http_request
        copy = request.method == "PUT" and "x-ms-copy-source" in {
            k.lower() for k in request.headers}
        counts["copy" if copy else request.method] += 1

    name, key = account
    return BlobServiceClient(azurite.blob_endpoint, raw_response_hook=count,
                             credential={"account_name": name, "account_key": key})


def store_direct(client, name: str, data: bytes) -> None:
    """One PUT under the final name."""
    client.get_blob_client(name).upload_blob(data, overwrite=True)


def store_renamed(client, name: str, data: bytes) -> None:
    """Upload at close under a temporary name, then rename as blobfuse2 does: HEAD of the
    source, server-side copy (polled while pending, as blobfuse2 does once a second),
    DELETE of the source."""
    folder, _, base = name.rpartition("/")
    temp = client.get_blob_client(f"{folder}{'/' if folder else ''}.{base}{TEMPORARY}bench")
    temp.upload_blob(data, overwrite=True)
    temp.get_blob_properties()
    final = client.get_blob_client(name)
    status = final.start_copy_from_url(temp.url)["copy_status"]
    while status == "pending":
        time.sleep(1)
        status = final.get_blob_properties().copy.status
    if status != "success":
        raise RuntimeError(f"copy of {temp.blob_name} to {name} ended {status!r}")
    temp.delete_blob()


def through_sdk(azurite, account: tuple[str, str], outputs: dict[str, bytes], store,
                threads: int) -> tuple[float, collections.Counter, str]:
    """Store ``outputs`` into a fresh container with ``store`` on ``threads`` threads: (wall
    seconds, requests by operation, the container)."""
    counts: collections.Counter = collections.Counter()
    container = f"sdk{time.time_ns()}"
    service = counting_client(azurite, account, counts)
    service.create_container(container)
    client = service.get_container_client(container)
    counts.clear()
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda item: store(client, *item), outputs.items()))
    return time.perf_counter() - start, counts, container


def operations(counts: collections.Counter, files: int) -> str:
    total = sum(counts.values())
    parts = ", ".join(f"{op} {n / files:.2f}" for op, n in counts.most_common())
    return f"{total / files:.2f} ({parts})"


# -- the row ----------------------------------------------------------------------------------

def rows(bench: Bench, inputs: InputSet, processes: int = 2) -> list[Row]:
    """Row 7: the job to a blob mount vs to the local disk; requests per output; and what
    blobfuse's rename would cost (SDK)."""
    label = f"{inputs.files:,} small files ({inputs.bytes / MB:.1f} MB)"
    timing = Row("7", f"7. {label}, {processes} processes, out_dir on an rclone blob mount "
                 f"(Azurite): until the job exits; until uploads are done", "", "")
    timing.check = "outputs byte-exact in the container after the unmount, no temporary blob"
    try:
        azurite_module, blobmount = helpers()
    except Unavailable as why:
        timing.reference = timing.ours = "n/a"
        timing.notes.append(f"n/a (blob mount not available): {why}")
        return [timing]
    expected = expected_outputs(inputs)
    scratch = bench.fresh("blob")
    scratch.mkdir()
    try:
        with azurite_module.Azurite(scratch / "azurite") as azurite:
            account = (azurite_module.ACCOUNT, azurite_module.ACCOUNT_KEY)
            counted = _mount_rows(bench, azurite, blobmount, inputs, processes, expected,
                                  timing)
            renamed = _sdk_row(bench, azurite, account, inputs, expected)
    except (blobmount.MountError, TimeoutError, azurite_module.AzuriteUnavailable) as error:
        timing.reference, timing.ours, timing.met = "", "failed", "**no**"
        timing.checked += 1
        timing.mismatch = f"{type(error).__name__}: {error}"
        return [timing]
    finally:
        bench.clean()
    return [timing, counted, renamed]


def _check_container(row: Row, azurite, container: str, expected: dict[str, str],
                     run: str) -> None:
    blobs = stored(azurite, container)
    left = sorted(name for name in blobs if TEMPORARY in name)
    _verify(row, expected, {k: v for k, v in blobs.items() if TEMPORARY not in k}, run)
    if left and row.mismatch is None:
        row.mismatch = f"{run}: temporary blobs left: {left[:3]}"
    azurite.service().delete_container(container)


def _mount_rows(bench: Bench, azurite, blobmount, inputs: InputSet, processes: int,
                expected: dict[str, str], row: Row) -> Row:
    """Fill ``row`` (wall times) and return the requests-per-output row."""
    scratch = bench.scratch / "blob"
    say("  counted run (rclone logs every request's headers, not timed) ...")
    run = on_mount(azurite, blobmount, scratch, inputs, processes, True)
    counts, logged = run.requests, run.logged
    _check_container(row, azurite, run.container, expected, "counted run")
    local_times, job_times, uploaded, storage_cpu = [], [], [], []
    for rep in range(bench.reps):
        local_dir = bench.fresh("blob-local")
        local_times.append(timed(references.job_command(inputs.path, local_dir, processes)))
        _verify(row, expected, digests(local_dir), f"rep {rep + 1} (local disk)")
        shutil.rmtree(local_dir)
        run = on_mount(azurite, blobmount, scratch, inputs, processes, False)
        job_times.append(run.job)
        uploaded.append(run.uploaded)
        storage_cpu.append(run.storage_cpu)
        _check_container(row, azurite, run.container, expected, f"rep {rep + 1}")
        say(f"  rep {rep + 1}/{bench.reps}: local disk {local_times[-1].seconds:.2f} s, "
            f"blob mount {run.job.seconds:.2f} s, uploads done {run.uploaded:.2f} s")
    local = statistics.median(t.seconds for t in local_times)
    ours = statistics.median(t.seconds for t in job_times)
    done = statistics.median(uploaded)
    row.reference = f"out_dir on the local disk: {local:.2f} s"
    row.ours = f"{ours:.2f} s; {done:.2f} s"
    row.ratio = f"{ratio(ours, local):.2f}×; {ratio(done, local):.2f}×"
    row.notes.append(f"runs: {_runs('local disk', local_times)}; {_runs('blob mount', job_times)}"
                     f"; uploads done {'/'.join(f'{s:.2f}' for s in uploaded)} s (rclone "
                     f"uploads {blobmount.WRITE_BACK} after a file's last close; its upload "
                     f"queue polled every {POLL * 1000:.0f} ms); files/s (medians): local disk "
                     f"{inputs.files / local:,.0f}, blob mount {inputs.files / done:,.0f}; "
                     f"CPU of rclone and Azurite until the uploads were done (median): "
                     f"{statistics.median(storage_cpu):.2f} s (left out of the share of the "
                     f"CPUs that other processes used)")
    _contention(row, {"local disk": local_times, "blob mount": job_times})

    files = inputs.files
    counted = Row("7 requests", f"7. storage requests per output file, rclone mount "
                  f"(temporary name + rename), {files:,} files", "an upload under the final "
                  "name: 1 PUT", per_output(counts, files, ("output", "temporary", "_manifest",
                                                             "container")))
    for kinds, what in ((("output",), "on outputs' final names"),
                        (("temporary",), "on temporary names"),
                        (("_manifest",), "on the job's _manifest/ (journal, lock, manifest)"),
                        (("container",), "on the container (listings)")):
        counted.notes.append(f"{what}: {per_output(counts, files, kinds)} per output file, "
                             f"{sum(n for (k, _), n in counts.items() if k in kinds)} in all")
    counted.notes.append(f"requests counted: {sum(counts.values())} of the "
                         f"{logged} rclone logged")
    if sum(counts.values()) != logged:
        counted.mismatch = f"{logged - sum(counts.values())} logged requests not understood"
    counted.checked, counted.check = 1, "every request rclone logged was counted"
    return counted


def _sdk_row(bench: Bench, azurite, account: tuple[str, str], inputs: InputSet,
             expected: dict[str, str]) -> Row:
    """What each output costs where the rename is a copy and a delete (blobfuse)."""
    outputs = {name: b"".join(t + b"\n" for t in data.split())
               for name, data in read_tree(inputs.path).items()}
    files = len(outputs)
    row = Row("7 blobfuse", f"7. {files:,} outputs stored as blobfuse2 stores a file renamed "
              f"after its upload (azure-storage-blob on Azurite, 2 threads)", "", "")
    row.check = "blobs byte-exact, no temporary blob"
    direct_times, renamed_times = [], []
    direct_counts = renamed_counts = collections.Counter()
    for rep in range(bench.reps):
        for store, times in ((store_direct, direct_times), (store_renamed, renamed_times)):
            seconds, counts, container = through_sdk(azurite, account, outputs, store, 2)
            times.append(seconds)
            if store is store_direct:
                direct_counts = counts
            else:
                renamed_counts = counts
            _check_container(row, azurite, container, expected, f"rep {rep + 1} "
                             f"({store.__name__})")
        say(f"  rep {rep + 1}/{bench.reps}: SDK, final name {direct_times[-1]:.2f} s, "
            f"temporary name + copy + delete {renamed_times[-1]:.2f} s")
    direct = statistics.median(direct_times)
    renamed = statistics.median(renamed_times)
    row.reference = (f"PUT under the final name: {operations(direct_counts, files)} "
                     f"requests/file, {direct:.2f} s")
    row.ours = f"{operations(renamed_counts, files)} requests/file, {renamed:.2f} s"
    row.ratio = f"{ratio(renamed, direct):.2f}×"
    row.notes.append(f"runs: final name {'/'.join(f'{s:.2f}' for s in direct_times)} s; "
                     f"temporary name, HEAD, copy, DELETE "
                     f"{'/'.join(f'{s:.2f}' for s in renamed_times)} s (Azurite copies "
                     f"within an account at once: no copy was pending)")
    return row
