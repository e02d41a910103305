"""An Azurite blob container mounted with rclone, as Azure ML mounts one with blobfuse.

Azure ML mounts a job's output container read-write (``rw_mount``) and its
input read-only (``ro_mount``) with blobfuse: files are written to a local
cache, ``O_TMPFILE`` is refused, a file is uploaded when it is closed, and a
rename is a copy and a delete. :class:`BlobMount` gives a test the same with
``rclone mount`` of an Azurite container, reached through a container SAS URL
held in environment variables (no rclone config file is read or written).

What rclone 1.75 does, found by trying it:

- ``--vfs-cache-mode writes`` uploads a file after its last close: its
  ``O_TMPFILE`` fails with ``EOPNOTSUPP``.
- ``--vfs-write-back 0s`` does *not* do what blobfuse does. rclone then uploads
  synchronously inside FUSE's RELEASE, which the kernel sends after ``close()``
  has returned; a rename right after the close (an output's temporary name
  becoming its final name) races that upload, which fails ("corrupted on
  transfer": the cache file was renamed under it), is not retried, and the file
  never reaches the container although the mount lists it. With a short
  positive delay (:data:`WRITE_BACK`) the upload is queued instead, and a
  rename while it waits or uploads puts it back in the queue under its new name.
- Unmounting does not wait for uploads: rclone exits at once ("Unmounted
  externally. Just exit now."), leaving the files not yet uploaded in its
  cache. So :meth:`BlobMount.unmount` first waits until rclone's remote control
  (``vfs/stats``, on a loopback port) reports no upload queued or running, and
  afterwards fails naming any file its cache still marks as not uploaded.
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from conftest import mount_points, require

#: How long rclone waits after a file's last close before it uploads it (see the docstring).
WRITE_BACK = "100ms"
REMOTE = "BLOB"  # the name of the rclone remote its environment variables define
RC_ADDRESS = re.compile(r"Serving remote control on (http://127\.0\.0\.1:\d+)/")
# The request line of a dumped request: its own log entry, not always right after the
# "HTTP REQUEST" entry (another goroutine's entries may come between them).
REQUEST = re.compile(r"^\S+ \S+ DEBUG : ([A-Z]+) /\S* HTTP/[\d.]+$", re.MULTILINE)


class MountError(RuntimeError):
    """rclone did not mount, unmount or upload as expected; the message has its log's tail."""


def requests(log_file: str | os.PathLike) -> collections.Counter:
    """The HTTP requests a mount logged with ``dump_headers``, counted by method."""
    text = Path(log_file).read_text(errors="replace")
    return collections.Counter(match[1] for match in REQUEST.finditer(text))


class BlobMount:
    """``container`` of ``azurite`` mounted on ``mountpoint`` by an ``rclone mount`` child.

    Use as a context manager: entering mounts (waiting until the mount is
    listed in ``/proc/self/mountinfo``), leaving unmounts after every upload
    is done (:meth:`unmount`). :meth:`kill` loses the node instead.
    ``read_only`` mounts with ``--read-only`` and a SAS that only reads and
    lists. rclone logs to ``log_file`` with every HTTP request's headers
    (count them with :func:`requests`), or else, requests left out, to
    ``CACHE_DIR.log``.
    """

    def __init__(self, azurite, container: str, mountpoint: str | os.PathLike,
                 cache_dir: str | os.PathLike, read_only: bool = False,
                 log_file: str | os.PathLike | None = None, write_back: str = WRITE_BACK):
        self.azurite, self.container = azurite, container
        self.mountpoint, self.cache_dir = Path(mountpoint), Path(cache_dir)
        self.read_only, self.write_back = read_only, write_back
        self.dump_headers = log_file is not None
        self.log_file = Path(log_file) if log_file is not None else Path(f"{cache_dir}.log")
        self.process: subprocess.Popen | None = None
        self._rc: str | None = None

    # -- starting ---------------------------------------------------------------------------

    def command(self) -> list[str]:
        command = ["rclone", "mount", f"{REMOTE}:{self.container}", str(self.mountpoint),
                   "--config", "/dev/null", "--cache-dir", str(self.cache_dir),
                   "--log-file", str(self.log_file), "--log-level", "INFO",
                   "--rc", "--rc-addr", "127.0.0.1:0", "--rc-no-auth"]
        if self.read_only:
            command += ["--read-only"]
        else:
            command += ["--vfs-cache-mode", "writes", "--vfs-write-back", self.write_back]
        if self.dump_headers:
            command += ["--dump", "headers"]  # sets the log level to DEBUG too
        return command

    def environment(self) -> dict[str, str]:
        permission = "rl" if self.read_only else "racwdl"
        sas_url = self.azurite.container_sas_url(self.container, permission=permission)
        return {**os.environ, f"RCLONE_CONFIG_{REMOTE}_TYPE": "azureblob",
                f"RCLONE_CONFIG_{REMOTE}_SAS_URL": sas_url}

    def mount(self, timeout: float = 20.0) -> "BlobMount":
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.log_file.unlink(missing_ok=True)
        self.process = subprocess.Popen(self.command(), env=self.environment(),
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not self.mounted():
            if self.process.poll() is not None:
                raise MountError(f"rclone exited with {self.process.returncode} before "
                                 f"mounting {self.mountpoint}{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise MountError(f"rclone did not mount {self.mountpoint} within "
                                 f"{timeout:.0f} s{self.log_tail()}")
            time.sleep(0.05)
        return self

    def mounted(self) -> bool:
        return str(self.mountpoint) in mount_points()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError as error:
            return f"; no log ({error})"
        return f"; rclone's log {self.log_file} ends with:\n" + \
            "\n".join(text.splitlines()[-lines:])

    # -- stopping ---------------------------------------------------------------------------

    def vfs_stats(self) -> dict:
        """rclone's ``vfs/stats``: ``diskCache`` holds ``uploadsQueued``, ``uploadsInProgress``."""
        if self._rc is None:
            match = RC_ADDRESS.search(self.log_file.read_text(errors="replace"))
            if match is None:
                raise MountError(f"rclone did not log its remote control address{self.log_tail()}")
            self._rc = match[1]
        request = urllib.request.Request(f"{self._rc}/vfs/stats", data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def wait_for_uploads(self, timeout: float = 60.0) -> None:
        """Return once no upload is queued or running, twice in a row 0.1 s apart."""
        deadline, idle = time.monotonic() + timeout, 0
        while idle < 2:
            cache = self.vfs_stats().get("diskCache", {})
            pending = cache.get("uploadsQueued", 0) + cache.get("uploadsInProgress", 0)
            idle = idle + 1 if pending == 0 else 0
            if pending and time.monotonic() > deadline:
                raise MountError(f"{pending} uploads still pending after {timeout:.0f} s"
                                 f"{self.log_tail()}")
            time.sleep(0.1)

    def not_uploaded(self) -> list[str]:
        """The files rclone's cache still marks dirty (written here, never uploaded)."""
        dirty = []
        root = self.cache_dir / "vfsMeta"  # holds REMOTE{hash}/CONTAINER/PATH
        for meta in sorted(root.rglob("*")):
            try:
                if meta.is_file() and json.loads(meta.read_bytes()).get("Dirty"):
                    dirty.append("/".join(meta.relative_to(root).parts[2:]))
            except (OSError, ValueError):
                dirty.append(f"{meta} (unreadable)")
        return dirty

    def unmount(self, timeout: float = 20.0) -> None:
        """Wait for the uploads, unmount, and wait for rclone to exit (killed if it hangs).

        :class:`MountError` if it had to be killed, or if a file written here never
        reached the container.
        """
        if self.process is None:
            return
        try:
            if not self.read_only and self.process.poll() is None:
                self.wait_for_uploads()
        finally:
            unmounted = subprocess.run(["fusermount3", "-u", str(self.mountpoint)],
                                       capture_output=True, text=True)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise MountError(f"rclone did not exit within {timeout:.0f} s of the "
                                 f"unmount ({unmounted.stderr.strip()}){self.log_tail()}")
            if self.mounted():  # busy: someone still uses it
                subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], capture_output=True)
                raise MountError(f"{self.mountpoint} did not unmount: "
                                 f"{unmounted.stderr.strip()}")
            self.process = None
        lost = self.not_uploaded()
        if lost:
            raise MountError(f"{len(lost)} files written to {self.mountpoint} never reached "
                             f"container {self.container}: {lost[:10]}{self.log_tail()}")

    def kill(self) -> None:
        """A lost node: SIGKILL rclone, detach the mount, and lose its cache (pending uploads)."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None
        if self.mounted():
            subprocess.run(["fusermount3", "-uz", str(self.mountpoint)], capture_output=True)
        shutil.rmtree(self.cache_dir, ignore_errors=True)

    def __enter__(self) -> "BlobMount":
        return self.mount()

    def __exit__(self, *exc) -> None:
        self.unmount()


def require_mount_tools() -> None:
    """Fail, never skip, without rclone, fusermount3 or FUSE (``make test`` installs them)."""
    for tool in ("rclone", "fusermount3"):
        require(shutil.which(tool) is not None, tool)
    require(os.path.exists("/dev/fuse"), "/dev/fuse (FUSE, for rclone's mounts)")


def new_container(azurite) -> str:
    """A fresh container with a unique name (3 to 63 lowercase letters and digits)."""
    name = f"t{uuid.uuid4().hex[:16]}"
    azurite.create_container(name)
    return name


@pytest.fixture
def blob_mounts(azurite, tmp_path):
    """Mount containers: ``blob_mounts(container=None, read_only=False, **options)``.

    Each call mounts ``container`` (a fresh one when None) on a new folder of
    ``tmp_path`` with a cache of its own, and returns the :class:`BlobMount`,
    whose ``container`` names the container. Mounts still mounted at the end
    of the test are unmounted, last first.
    """
    require_mount_tools()
    made: list[BlobMount] = []

    def mount(container: str | None = None, read_only: bool = False, **options) -> BlobMount:
        container = container or new_container(azurite)
        folder = tmp_path / f"mount{len(made)}-{container}"
        blob = BlobMount(azurite, container, folder / "mnt", folder / "cache",
                         read_only=read_only, **options)
        made.append(blob)
        return blob.mount()

    yield mount
    errors = []
    for blob in reversed(made):
        try:
            blob.unmount()
        except MountError as error:
            errors.append(str(error))
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


@pytest.fixture
def blob_mount(blob_mounts) -> BlobMount:
    """A fresh container, mounted read-write."""
    return blob_mounts()
