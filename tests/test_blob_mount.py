"""The job on blob mounts, as Azure ML runs it: input read-only, output read-write.

Azurite's containers are mounted with rclone (see :mod:`blobmount`), which
like blobfuse refuses ``O_TMPFILE`` and uploads a file when it is closed. Five
ranks read from the read-only mount and write to the read-write one; once it
is unmounted, the container itself must hold every output byte-exact, every
rank's journal and manifest, and no temporary file; and ``python -m job.check``
must accept the outputs as a fresh mount of the container shows them.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from azure_standin.fixtures import azurite  # noqa: F401
from blobmount import blob_mount, blob_mounts, new_container  # noqa: F401
from conftest import ROOT, clean_environ, reference
from job import mounts

pytestmark = pytest.mark.slow

RANKS = 5


def inputs() -> dict[str, bytes]:
    """30 small files: nested folders, a name with spaces and non-ASCII, every whitespace."""
    files = {}
    for i in range(24):
        folder = ("", "a/", "a/b/", "deep/er/still/")[i % 4]
        files[f"{folder}f{i:02}.txt"] = b"w%d  alpha\tbeta\r\ngamma\x0bdelta\x0c" % i * (i + 1)
    files["name with spaces.txt"] = b"spaced out words\n"
    files["Ünïcödé/naïve café ☕.txt"] = "naïve café ☕ 東京\n".encode() * 3
    files["a/empty.txt"] = b""
    files["a/only whitespace"] = b" \t\n\r\x0b\x0c"
    files["a/no newline at end"] = b"last token"
    files["binary.bin"] = bytes(range(256)) * 4
    return files


def upload(azurite, container: str, files: dict[str, bytes]) -> None:  # noqa: F811
    client = azurite.service().get_container_client(container)
    for name, data in files.items():
        client.upload_blob(name, data)


def start_rank(rank: int, input_dir: str, out_dir: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "job", "--input_dir", input_dir, "--out_dir", out_dir,
         "--process_count", "2", "--distribArgs.node_count", str(RANKS),
         "--distribArgs.node_rank", str(rank)],
        env=clean_environ(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)


def run_ranks(input_dir: str, out_dir: str) -> None:
    """All five ranks at once (one node, as if each had its own); each must exit 0."""
    ranks = [start_rank(rank, input_dir, out_dir) for rank in range(RANKS)]
    outputs = [rank.communicate(timeout=120)[0] for rank in ranks]
    failed = [f"rank {i} exited {rank.returncode}:\n{output[-3000:]}"
              for i, (rank, output) in enumerate(zip(ranks, outputs)) if rank.returncode]
    assert not failed, "\n".join(failed)


def bookkeeping() -> set[str]:
    """Every rank's journal and manifest."""
    return {f"_manifest/shard-{rank:05}-of-{RANKS:05}{suffix}"
            for rank in range(RANKS) for suffix in (".jsonl", ".json")}


def temporary(name: str) -> bool:
    return any(".partial-" in part or part.startswith("partial-") for part in name.split("/"))


def test_five_ranks_from_a_read_only_mount_to_a_blob_mount(azurite, blob_mounts):  # noqa: F811
    files = inputs()
    container = new_container(azurite)
    upload(azurite, container, files)
    source = blob_mounts(container, read_only=True)
    out = blob_mounts()

    run_ranks(str(source.mountpoint), str(out.mountpoint))
    out.unmount()

    blobs = azurite.blobs(out.container)
    wrong = sorted(name for name, data in files.items() if blobs.get(name) != reference(data))
    assert not wrong, f"outputs missing or not byte-exact in the container: {wrong}"
    missing = sorted(bookkeeping() - set(blobs))
    assert not missing, f"journals or manifests missing from the container: {missing}"
    left = sorted(name for name in blobs if temporary(name))
    assert not left, f"temporary files left in the container: {left}"
    unexpected = sorted(set(blobs) - set(files) - bookkeeping())
    assert not unexpected, f"unexpected blobs in the container: {unexpected}"

    fresh = blob_mounts(out.container)
    checked = subprocess.run(
        [sys.executable, "-m", "job.check", "--input_dir", str(source.mountpoint),
         "--out_dir", str(fresh.mountpoint)],
        env=clean_environ(), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_blob_mount_refuses_o_tmpfile(blob_mount):  # noqa: F811
    """So the job writes a temporary name and renames it there, as on blobfuse."""
    with pytest.raises(OSError) as refused:
        os.close(os.open(blob_mount.mountpoint, os.O_TMPFILE | os.O_WRONLY, 0o644))
    assert refused.value.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL)


def test_a_killed_mount_loses_what_it_had_not_uploaded(azurite, blob_mounts):  # noqa: F811
    """``kill()``, a lost node: what was not uploaded yet never reaches the container.

    Neither a closed file waiting for its write-back nor an open one, although
    synced: an ``fsync`` on rclone's mount only syncs its local cache.
    """
    mount = blob_mounts(write_back="1h")
    (mount.mountpoint / "closed").write_bytes(b"waits for its write-back\n")
    still_open = os.open(mount.mountpoint / "open", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(still_open, b"written and synced, never closed\n")
        os.fsync(still_open)
        mount.kill()
    finally:
        try:
            os.close(still_open)
        except OSError as error:  # the mount is gone
            assert error.errno == errno.ENOTCONN
    assert not mount.mounted() and not mount.cache_dir.exists()
    assert azurite.blobs(mount.container) == {}


def journal_in(blobs: dict[str, bytes], name: str) -> dict[str, dict]:
    """The complete records of journal ``name`` as the container holds it, by input."""
    records = {}
    for line in blobs.get(f"_manifest/{name}.jsonl", b"").splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # cut short
            continue
        records[record["input"]] = record
    return records


def test_a_preempted_node_resumes_from_what_the_container_holds(azurite, blob_mounts):  # noqa: F811
    """SIGKILL the rank and lose its mount and cache, as a preempted node does; a new node
    mounts the container afresh and reruns: what the container's journal proves done is
    skipped, the rest is done, and every output ends byte-exact."""
    files = {f"part-{i:03}.txt": b"token%d " % i * (50 + i) for i in range(40)}
    container = new_container(azurite)
    upload(azurite, container, files)
    source = blob_mounts(container, read_only=True)
    first = blob_mounts()
    arguments = ["--input_dir", str(source.mountpoint), "--process_count", "1",
                 "--processor", "fault_processors:Slow", "--journal_sync_interval", "0.5"]
    rank = subprocess.Popen([sys.executable, "-m", "job", *arguments,
                             "--out_dir", str(first.mountpoint)],
                            env=clean_environ(SLOW_SECONDS="0.1"), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and rank.poll() is None:
        stored = journal_in(azurite.blobs(first.container), "shard-00000-of-00001")
        if len(stored) >= 10:  # part of the work is in storage, and the rank goes on
            break
        time.sleep(0.2)
    assert rank.poll() is None, f"the rank ended before it could be preempted: {rank.stderr.read()}"
    rank.kill()  # the node is gone: the rank, then its mount and the mount's cache
    rank.communicate(timeout=30)
    first.kill()

    blobs = azurite.blobs(first.container)
    before = {rel: r for rel, r in journal_in(blobs, "shard-00000-of-00001").items()
              if r["status"] == "ok"}
    assert 10 <= len(before) < len(files), "the container's journal proves some files done"
    assert all(blobs[rel] == reference(files[rel]) for rel in before)
    assert not any(name.endswith(".json") for name in blobs)  # the rank never finished

    second = blob_mounts(first.container)  # a new node
    rerun = subprocess.run([sys.executable, "-m", "job", *arguments,
                            "--out_dir", str(second.mountpoint)],
                           env=clean_environ(SLOW_SECONDS="0"), cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    second.unmount()

    blobs = azurite.blobs(second.container)
    manifest = json.loads(blobs["_manifest/shard-00000-of-00001.json"])
    status = {r["input"]: r["status"] for r in manifest["files"]}
    assert {rel for rel, s in status.items() if s == "skipped"} == set(before)
    assert {rel for rel, s in status.items() if s == "ok"} == set(files) - set(before)
    wrong = sorted(rel for rel, data in files.items() if blobs.get(rel) != reference(data))
    assert not wrong, f"outputs missing or not byte-exact in the container: {wrong}"
    left = sorted(name for name in blobs if temporary(name) or name.endswith(".lock"))
    assert not left, f"temporary files left in the container: {left}"


def test_the_journal_knows_a_blob_mount_from_a_disk(blob_mount, tmp_path):  # noqa: F811
    assert mounts.filesystem_type(blob_mount.mountpoint) == "fuse.rclone"
    assert mounts.uploads_on_close(blob_mount.mountpoint / "_manifest")  # not made yet
    assert not mounts.uploads_on_close(tmp_path)
    assert mounts.filesystem_type("/proc/self") == "proc"


# What a killed writer leaves in the container. The SPEC wants no partial output under
# a final name. Would writing the final name directly (no temporary name, no rename: one
# request per output instead of a copy and a delete on blobfuse) be atomic enough on an
# upload-on-close mount? No: the kernel closes a killed process's files, and the mount
# uploads what a close leaves, finished or not. The job's own path leaves only a
# temporary name, which the next run removes.

WRITER = """\
import sys, time
with open(sys.argv[1], "wb") as output:
    output.write(b"partial")
    output.flush()
    print("written", flush=True)
    time.sleep(120)
    output.write(b" and the rest\\n")
"""


def test_a_killed_writer_of_a_final_name_leaves_a_partial_blob(azurite, blob_mount):  # noqa: F811
    """A worker killed by the OOM killer mid-write, the mount living on: the partial file is
    uploaded under its final name. So the job never writes a final name directly."""
    final = blob_mount.mountpoint / "out.txt"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(final)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline() == "written\n"
    finally:
        writer.kill()  # SIGKILL: no handler, no atexit; the kernel closes the file
        writer.communicate(timeout=30)
    blob_mount.unmount()  # waits for the uploads
    assert azurite.blobs(blob_mount.container) == {"out.txt": b"partial"}


def worker_writing(rank: subprocess.Popen, out_dir, timeout: float = 60) -> int:
    """The pid of the job's process that has a temporary output open in ``out_dir``, once it
    sleeps (``fault_processors.Slow``); its name ``.NAME.partial-TAG-PID-N`` names it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and rank.poll() is None:
        for name in os.listdir(out_dir):
            if ".partial-" in name:
                pid = int(name.rsplit("-", 2)[1])
                with open(f"/proc/{pid}/stat", "rb") as stat:
                    state = stat.read().rpartition(b")")[2].split()[0]
                if state == b"S":
                    return pid
        time.sleep(0.05)
    raise AssertionError(f"no process was writing an output (rank exited {rank.poll()})")


def test_a_killed_worker_leaves_no_blob_under_a_final_name(azurite, blob_mounts,  # noqa: F811
                                                          tmp_path):
    """The job's own path, killed the same way: its output was a temporary file, so the
    container holds at most a temporary blob, never the final name; the next run removes
    the temporary blob and writes the output whole."""
    source = tmp_path / "in"
    source.mkdir()
    (source / "f.txt").write_bytes(b"alpha beta\tgamma\n" * 40)
    out = blob_mounts()
    arguments = ["--input_dir", str(source), "--out_dir", str(out.mountpoint),
                 "--processor", "fault_processors:Slow", "--process_count", "2",
                 "--max_retries", "0"]
    rank = subprocess.Popen([sys.executable, "-m", "job", *arguments],
                            env=clean_environ(SLOW_SECONDS="120"), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        os.kill(worker_writing(rank, out.mountpoint), signal.SIGKILL)
        _, errors = rank.communicate(timeout=60)
    finally:
        if rank.poll() is None:
            rank.kill()
            rank.communicate(timeout=30)
    assert rank.returncode == 1, errors  # the file failed: a crash that retries did not cure
    out.unmount()
    blobs = azurite.blobs(out.container)
    assert "f.txt" not in blobs, "a partial output under its final name"
    # the rank removed the dead worker's temporary file (a rank killed too would leave it)
    assert all(temporary(name) or name.startswith("_manifest/") for name in blobs), blobs

    again = blob_mounts(out.container)
    arguments[arguments.index(str(out.mountpoint))] = str(again.mountpoint)
    rerun = subprocess.run([sys.executable, "-m", "job", *arguments],
                           env=clean_environ(SLOW_SECONDS="0"), cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    again.unmount()
    blobs = azurite.blobs(again.container)
    assert blobs["f.txt"] == reference((source / "f.txt").read_bytes())
    assert not [name for name in blobs if temporary(name)], sorted(blobs)
