"""Running ``python -m submit`` as a user would: a process of its own with a clean environment.

Each run is a process of its own. By default it is forked from a pre-warmed interpreter
(:mod:`azure_standin.zygote`) that imported the Azure SDK once, which saves 1.5 s of CPU
per run; ``fresh=True`` starts a brand-new interpreter instead, for the tests that look
at what a command imports (:func:`network_report`'s ``sdk`` and ``identity``).
"""

from __future__ import annotations

import json
import locale
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

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
# Run in the pre-warmed interpreter (runner.py), a module it imported before the run began
# shows as "preloaded": whether the command imports it cannot be told there.
preloaded = globals().get("_PRELOADED", ())
imported = {name: "preloaded" if name in preloaded else name in sys.modules
            for name in ("azure.identity", "azure.ai.ml")}
print(f"@@connections={len(attempts)} identity={imported['azure.identity']} "
      f"sdk={imported['azure.ai.ml']}", file=sys.stderr)
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
               loopback_only: bool = False, fresh: bool = False) -> Result:
    """Run ``python -m submit ARGS`` in a process of its own.

    ``no_network``: every outgoing connection is refused; ``loopback_only``:
    all but those to 127.0.0.1. Either way the refused attempts are counted
    (:func:`network_report`). ``fresh``: in a brand-new interpreter rather than
    one forked from the pre-warmed one (which shows the SDK as ``preloaded``).
    """
    env = dict(env if env is not None else clean_environment())
    if cwd is not None:
        env.setdefault("TMPDIR", str(cwd))  # temporary code folders stay in the test's folder
    if loopback_only:
        env["_SUBMIT_TEST_ALLOW_LOOPBACK"] = "1"
    interpreter_args = ["-c", NO_NETWORK] if (no_network or loopback_only) else ["-m", "submit"]
    started = time.monotonic()
    returncode, stdout, stderr = run_python(interpreter_args, args, env, cwd or REPO, timeout,
                                            fresh=fresh)
    return Result(returncode, stdout, stderr, time.monotonic() - started)


# --- the pre-warmed interpreter ------------------------------------------------------------------

PRELOAD = ("azure.ai.ml",)  # what every submission imports, 1.5 s of CPU
MOST_WARM_INTERPRETERS = 4  # per test process: one per set of values of what the SDK reads
STARTUP_VARIABLES = ("PYTHON", "LC_", "LANG")  # what an interpreter reads as it starts
# Modules whose import reads variables that a run may set otherwise than the warm interpreter
# did, each looked at: "agree" names the only variables (a prefix) that must still agree,
# "differ" the ones that need not; why a run then behaves as in a fresh interpreter.
IMPORT_READS = {
    "tqdm.std": {"agree": "TQDM_", "why": "it lists the environment for TQDM_* defaults of "
                                          "its progress bars, and reads nothing else"},
    "wsgiref.handlers": {"agree": None, "why": "BaseHandler.os_environ, the environment a "
                                               "WSGI server hands on: no submit command runs one"},
    "azure.ai.ml._utils._artifact_utils": {
        "differ": ("TMPDIR", "TEMP", "TMP"),
        "why": "ArtifactCache's default folder (tempfile.gettempdir()), for the artifacts of "
               "registry components' additional includes, which no submit job has; "
               "tempfile's own cached folder is dropped in each child"},
}
_warm: list[WarmInterpreter] = []
_warm_lock = threading.Lock()


def _startup_environment(env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if name.startswith(STARTUP_VARIABLES)}


class WarmInterpreter:
    """``python -c zygote.py`` started with one run's environment, having imported ``PRELOAD``.

    It serves a run whose environment agrees with its own on what an interpreter reads as it
    starts and on every variable that importing ``PRELOAD`` read. It is not used at all
    (``usable`` is false, and runs start fresh interpreters) if that import printed anything,
    tried a connection, left a thread running or a file open, or listed the environment.
    """

    def __init__(self, env: dict[str, str], preload: tuple[str, ...] = PRELOAD):
        self.env, self.startup, self.preload = dict(env), _startup_environment(env), preload
        self.channel, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        source = (Path(__file__).with_name("zygote.py")).read_text()
        self.process = subprocess.Popen(
            [sys.executable, "-c", source, str(theirs.fileno()), *preload], env=env, cwd=REPO,
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        theirs.close()
        self.lock = threading.Lock()
        ready = self._receive(timeout=120)
        self.read = ready["read"] if ready else []
        printed = ready is not None and any(
            select.select([stream], [], [], 0)[0] for stream in (self.process.stdout,
                                                                 self.process.stderr))
        listed = sorted({module for module, name, _ in self.read
                         if name == "*" and "agree" not in IMPORT_READS.get(module, {})})
        what = f"importing {', '.join(preload)}"
        self.problem = ("it did not start" if ready is None else
                        f"{what} printed something" if printed else
                        f"{what} tried to connect: {ready['connections']}"
                        if ready["connections"] else
                        f"{what} left {ready['threads']} threads"
                        if ready["threads"] != 1 else
                        f"{what} left files open: {ready['open_fds']}"
                        if ready["open_fds"] else
                        f"importing {', '.join(listed)} listed the environment" if listed else "")
        self.usable = not self.problem

    def _receive(self, timeout: float):
        if not select.select([self.channel], [], [], timeout)[0]:
            return None
        message = self.channel.recv(1 << 20)
        return json.loads(message) if message else None

    def serves(self, env: dict[str, str]) -> bool:
        """Whether a fresh interpreter started with ``env`` would have imported ``PRELOAD``
        into the same state: the same values for whatever the import read (but
        :data:`IMPORT_READS`), and for what an interpreter reads as it starts."""
        if _startup_environment(env) != self.startup:
            return False
        for module, name, value in self.read:
            rule = IMPORT_READS.get(module, {})
            if "agree" in rule:
                prefix = rule["agree"]
                if prefix is not None and ({k: v for k, v in env.items() if k.startswith(prefix)}
                                           != {k: v for k, v in self.env.items()
                                               if k.startswith(prefix)}):
                    return False
            elif name not in rule.get("differ", ()) and env.get(name) != value:
                return False
        return True

    def run(self, interpreter_args: list[str], argv: list[str], env: dict[str, str],
            cwd: str | Path, timeout: float) -> tuple[int, str, str]:
        """Fork a child for one run; its exit code, stdout and stderr (as ``subprocess.run``)."""
        with self.lock:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            request = {"interpreter_args": interpreter_args, "argv": argv, "env": env,
                       "cwd": str(cwd),
                       "module": interpreter_args[1] if interpreter_args[0] == "-m" else None,
                       "source": interpreter_args[1] if interpreter_args[0] == "-c" else None}
            try:
                socket.send_fds(self.channel, [json.dumps(request).encode()], [out_w, err_w])
            finally:
                os.close(out_w)
                os.close(err_w)
            pid = self._receive(timeout=60)["pid"]
            captured = {out_r: [], err_r: []}
            readers = [threading.Thread(target=_read_all, args=(fd, captured[fd]), daemon=True)
                       for fd in captured]
            for reader in readers:
                reader.start()
            deadline = time.monotonic() + timeout
            for reader in readers:
                reader.join(max(0.0, deadline - time.monotonic()))
            timed_out = any(reader.is_alive() for reader in readers)
            if timed_out:
                os.kill(pid, signal.SIGKILL)
                for reader in readers:
                    reader.join()
            returncode = self._receive(timeout=60)["returncode"]
            stdout, stderr = (_text(b"".join(captured[fd])) for fd in (out_r, err_r))
            if timed_out:
                raise subprocess.TimeoutExpired([sys.executable, *interpreter_args, *argv],
                                                timeout, output=stdout, stderr=stderr)
            return returncode, stdout, stderr

    def stop(self) -> None:
        self.usable = False
        self.channel.close()  # the interpreter ends when it reads the end of its socket
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.process.stderr.close()


def _read_all(fd: int, into: list[bytes]) -> None:
    with open(fd, "rb", buffering=0) as stream:
        while chunk := stream.read(1 << 16):
            into.append(chunk)


def _text(data: bytes) -> str:
    """Bytes decoded as ``subprocess.run(text=True)`` decodes them."""
    encoding = "utf-8" if sys.flags.utf8_mode else locale.getencoding()
    return data.decode(encoding).replace("\r\n", "\n").replace("\r", "\n")


def _warm_interpreter(env: dict[str, str],
                      preload: tuple[str, ...] = PRELOAD) -> WarmInterpreter | None:
    """A warm interpreter that imported ``preload`` and serves ``env``: one running already,
    or a new one."""
    with _warm_lock:
        mine = [warm for warm in _warm if warm.preload == preload]
        for warm in mine:
            if warm.serves(env):
                return warm if warm.usable else None  # a problem was reported when it started
        if len(mine) >= MOST_WARM_INTERPRETERS:
            return None
        warm = WarmInterpreter(env, preload)
        _warm.append(warm)
        if not warm.usable:
            warm.stop()
            warnings.warn(f"runs that import {', '.join(preload)} start fresh interpreters: "
                          f"{warm.problem}", RuntimeWarning, stacklevel=3)
            return None
        return warm


def run_python(interpreter_args: list[str], args: Sequence[str], env: dict[str, str],
               cwd: str | Path, timeout: float, preload: tuple[str, ...] = PRELOAD,
               fresh: bool = False) -> tuple[int, str, str]:
    """``python INTERPRETER_ARGS ARGS`` in a process of its own, stdin ``/dev/null``: its
    exit code, stdout and stderr (as :func:`subprocess.run` with ``text=True`` gives them).
    Forked from a warm interpreter that imported ``preload`` where one serves ``env``,
    unless ``fresh``; else a brand-new interpreter."""
    warm = None if fresh else _warm_interpreter(env, preload)
    if warm is not None:
        return warm.run(interpreter_args, list(args), env, cwd, timeout)
    done = subprocess.run([sys.executable, *interpreter_args, *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return done.returncode, done.stdout, done.stderr


def stop_warm_interpreters() -> None:
    """End every warm interpreter of this process (the session's end)."""
    with _warm_lock:
        while _warm:
            _warm.pop().stop()


def network_report(result: Result) -> dict[str, str]:
    """The ``@@connections=... identity=... sdk=...`` line of a ``no_network`` run."""
    for line in result.stderr.splitlines():
        if line.startswith("@@"):
            return dict(item.split("=", 1) for item in line[2:].split())
    raise AssertionError(f"no network report in stderr:\n{result.stderr}")
