"""Running ``python -m submit`` as a user would: a subprocess with a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLEARED_PREFIXES = ("AZURE_", "AZUREML_", "IDENTITY_", "MSI_", "IMDS_")
CLEARED = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")

# Runs `python -m submit` with outgoing connections refused (all of them, or all but
# loopback ones), then reports what was refused and which Azure modules were imported:
# proof that a command needs no network, or touches nothing beyond this machine.
# Names under .localhost resolve to the loopback address (RFC 6761, as systemd-resolved does):
# the stand-in's datastores are Azurite reached as devstoreaccount1.blob.localhost:PORT.
RESOLVE_LOCALHOST = """\
import socket
_resolve = socket.getaddrinfo
def _resolve_localhost(host, *args, **kwargs):
    if isinstance(host, str) and host.lower().rstrip(".").endswith(".localhost"):
        host = "127.0.0.1"
    return _resolve(host, *args, **kwargs)
socket.getaddrinfo = _resolve_localhost
"""
NO_NETWORK = RESOLVE_LOCALHOST + r"""
import os, runpy, socket, sys
allow_loopback = os.environ.pop("_SUBMIT_TEST_ALLOW_LOOPBACK", "") == "1"
attempts = []
original = socket.socket.connect
def guarded(self, address, *args, **kwargs):
    host = address[0] if isinstance(address, tuple) else address
    if allow_loopback and host in ("127.0.0.1", "::1", "localhost"):
        return original(self, address, *args, **kwargs)
    attempts.append(address)
    raise OSError(f"network refused by the test: {address}")
def guarded_ex(self, address):
    try:
        guarded(self, address)
        return 0
    except OSError:
        return 111
socket.socket.connect = guarded
socket.socket.connect_ex = guarded_ex
sys.argv = ["python -m submit"] + sys.argv[1:]
code = 0
try:
    runpy.run_module("submit", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    code = exit.code if isinstance(exit.code, int) else 1
print(f"@@connections={len(attempts)} identity={'azure.identity' in sys.modules} "
      f"sdk={'azure.ai.ml' in sys.modules}", file=sys.stderr)
sys.exit(code)
"""


@dataclass
class Result:
    """What a ``python -m submit`` run left: exit code, output, seconds."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip() and not line.startswith("@@")]


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without Azure credentials, endpoints or CA overrides."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(CLEARED_PREFIXES) and k not in CLEARED}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_submit(*args: str, env: dict[str, str] | None = None, cwd: str | Path | None = None,
               timeout: float = 120, no_network: bool = False,
               loopback_only: bool = False) -> Result:
    """Run ``python -m submit ARGS`` in a subprocess.

    ``no_network``: every outgoing connection is refused; ``loopback_only``:
    all but those to 127.0.0.1. Either way the refused attempts are counted
    (:func:`network_report`).
    """
    env = dict(env if env is not None else clean_environment())
    if cwd is not None:
        env.setdefault("TMPDIR", str(cwd))  # temporary code folders stay in the test's folder
    if loopback_only:
        env["_SUBMIT_TEST_ALLOW_LOOPBACK"] = "1"
    command = [sys.executable, "-c", NO_NETWORK, *args] if (no_network or loopback_only) else \
        [sys.executable, "-m", "submit", *args]
    started = time.monotonic()
    done = subprocess.run(command, env=env,
                          cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return Result(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def network_report(result: Result) -> dict[str, str]:
    """The ``@@connections=... identity=... sdk=...`` line of a ``no_network`` run."""
    for line in result.stderr.splitlines():
        if line.startswith("@@"):
            return dict(item.split("=", 1) for item in line[2:].split())
    raise AssertionError(f"no network report in stderr:\n{result.stderr}")
