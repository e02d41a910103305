"""Azurite, the Azure Storage emulator, started on a free loopback port for one test session.

Installed by ``make test`` into ``.tools/azurite`` (npm, ``azurite@3.35.0``: the
last release that runs on Node.js 20). Only its blob service runs, in memory,
with telemetry off.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

# Azurite's well-known development account (public, documented, not a secret).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
LISTENING = re.compile(r"Blob service successfully listens on (http://127\.0\.0\.1:(\d+))")


def _group_alive(group: int) -> bool:
    """Whether a process of process group ``group`` is still running (not a zombie)."""
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as stat:
                    fields = stat.read().rpartition(b")")[2].split()
            except OSError:
                continue
            if int(fields[2]) == group and fields[0] != b"Z":
                return True
    return False


class AzuriteUnavailable(RuntimeError):
    """Azurite is not installed or did not start."""


class Azurite:
    """An Azurite blob service on 127.0.0.1; use as a context manager."""

    def __init__(self, workdir: str | Path, start_timeout: float = 30.0):
        self.workdir = Path(workdir)
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    @staticmethod
    def executable() -> str:
        found = shutil.which("azurite-blob")
        if found is None:
            raise AzuriteUnavailable("azurite-blob is not in .tools/azurite nor on PATH: "
                                     "`make test` installs it")
        return found

    def start(self) -> "Azurite":
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "azurite.log", "w+b")
        self.process = subprocess.Popen(
            [self.executable(), "--blobHost", "127.0.0.1", "--blobPort", "0",
             "--inMemoryPersistence", "--extentMemoryLimit", "256", "--skipApiVersionCheck",
             "--disableTelemetry", "--loose", "--silent"],
            cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)  # its own group: PyPI's `node` is a wrapper that forks node
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            log.seek(0)
            text = log.read().decode("utf-8", "replace")
            match = LISTENING.search(text)
            if match:
                self.port = int(match[2])
                return self
            if self.process.poll() is not None:
                raise AzuriteUnavailable(f"azurite exited with {self.process.returncode}: {text[-500:]}")
            time.sleep(0.1)
        self.stop()
        raise AzuriteUnavailable(f"azurite did not start within {self.start_timeout} s")

    def stop(self) -> None:
        """Stop Azurite and every process of its group (the real node under a wrapper)."""
        if self.process is None:
            return
        for signum, patience in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, signum)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + patience
            while time.monotonic() < deadline and _group_alive(self.process.pid):
                self.process.poll()
                time.sleep(0.05)
            if not _group_alive(self.process.pid):
                break
        self.process.wait(10)
        self.process = None

    def __enter__(self) -> "Azurite":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def blob_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    def service(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(self.blob_endpoint,
                                 credential={"account_name": ACCOUNT, "account_key": ACCOUNT_KEY})

    def create_container(self, name: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            self.service().create_container(name)
        except ResourceExistsError:
            pass

    def container_sas_url(self, name: str, hours: float = 1.0, permission: str = "racwl") -> str:
        """A SAS URL of container ``name``, as Azure ML hands out for uploads.

        ``permission`` letters as Azure spells them: by default read, add, create,
        write and list; a blob mount also needs ``d`` (delete: a rename is a copy
        and a delete), a read-only one only ``rl``.
        """
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        token = generate_container_sas(
            ACCOUNT, name, account_key=ACCOUNT_KEY,
            permission=ContainerSasPermissions.from_string(permission),
            expiry=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=hours))
        return f"{self.blob_endpoint}/{name}?{token}"

    def blobs(self, container: str) -> dict[str, bytes]:
        """Every blob of ``container``: name -> content."""
        client = self.service().get_container_client(container)
        return {blob.name: client.download_blob(blob.name).readall()
                for blob in client.list_blobs()}

