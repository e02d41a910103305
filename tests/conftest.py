"""Shared helpers: run ``python -m job`` for real, and the byte-exact reference."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from job.sample import write_corpus

ROOT = Path(__file__).resolve().parents[1]

# A suite started in the background of a shell without job control inherits SIGINT
# ignored, and so would every process it starts; the tests that press Ctrl-C need it handled.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# The tools `make test` installs into the project: the venv's mpirun (and node), then Azurite.
TOOL_DIRS = (os.path.dirname(sys.executable), str(ROOT / ".tools" / "azurite" / "node_modules" / ".bin"))
os.environ["PATH"] = os.pathsep.join([*TOOL_DIRS, os.environ.get("PATH", "")])
PR_SET_CHILD_SUBREAPER = 36
LAUNCHER_VARIABLES = ("OMPI_", "PMI_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                      "NODE_RANK", "GROUP_RANK", "AZUREML_NODE_COUNT", "AZ_BATCHAI_TASK_INDEX")


SEED_CONFIG = """\
input_dir: {input_dir}
out_dir: out
process_count: {process_count}
run_type: ''
distribArgs:
  local_rank: 0
  global_rank: 0
  world_size: 1
  node_count: 5
  local_size: 1
  node_rank: 3
"""


def seed_config(input_dir="data/wikipedia.part1", process_count=10) -> str:
    """A seed user's ``config_prod.yaml``: selective node 3 of 5."""
    return SEED_CONFIG.format(input_dir=input_dir, process_count=process_count)


def reference(data: bytes) -> bytes:
    """The SPEC's reference output of the token splitter."""
    return b"".join(token + b"\n" for token in data.split())


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without launcher variables, plus ``extra``."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER_VARIABLES)}
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
    environ.update(extra)
    return environ


def run_job(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            cwd: str | os.PathLike | None = None, fresh: bool = False) -> subprocess.CompletedProcess:
    """``python -m job ARGS`` in a process of its own, text output captured
    (:func:`run_module`)."""
    return run_module("job", *args, env=env, timeout=timeout, cwd=cwd, fresh=fresh)


def run_module(module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120,
               cwd: str | os.PathLike | None = None,
               fresh: bool = False) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` (a module of ``job``) in a process of its own, text output
    captured, as :func:`subprocess.run` returns it.

    The process is forked from a pre-warmed interpreter that imported ``job.cli`` (most of
    the 0.1 s of start-up of a run; not the module itself, which ``-m`` runs as ``__main__``;
    :mod:`azure_standin.zygote` says how the child becomes what a fresh ``python -m`` would
    be), unless ``fresh``, or ``cwd`` holds a ``job`` package of its own (a staged copy: a
    fresh interpreter imports that one).
    """
    from azure_standin.runner import run_python

    env, cwd = env or clean_environ(), Path(cwd or ROOT)
    own = (cwd / "job").exists() and (cwd / "job").resolve() != ROOT / "job"
    returncode, stdout, stderr = run_python(["-m", module], args, env, cwd, timeout,
                                            preload=("job.cli",), fresh=fresh or own)
    return subprocess.CompletedProcess([sys.executable, "-m", module, *args], returncode,
                                       stdout, stderr)


def assert_outputs_exact(input_dir: Path, out_dir: Path, rels=None) -> None:
    """Every input (or each of ``rels``) has its byte-exact output under ``out_dir``."""
    if rels is None:
        rels = [p.relative_to(input_dir).as_posix() for p in sorted(input_dir.rglob("*"))
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(input_dir).parts)]
    assert rels, "nothing to compare"
    for rel in rels:
        expected = reference((input_dir / rel).read_bytes())
        assert (out_dir / rel).read_bytes() == expected, rel


def require(available: bool, what: str) -> None:
    """Fail, never skip, when ``what`` is missing: ``make test`` installs every tool a test needs."""
    if not available:
        pytest.fail(f"{what} is missing: `make test` installs it (see the README)", pytrace=False)


def temporary_files(out_dir: Path) -> list[Path]:
    """Temporary outputs left under ``out_dir`` (``.NAME.partial-…`` files, range folders)."""
    return [p for p in out_dir.rglob("*") if ".partial-" in p.name or p.name.startswith("partial-")]


def process_table() -> dict[int, tuple[int, str]]:
    """Every process on the machine: pid -> (parent pid, state letter), from ``/proc/*/stat``."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rpartition(b")")[2].split()  # the name may hold spaces
        except OSError:  # exited while listed
            continue
        table[int(name)] = (int(fields[1]), fields[0].decode())
    return table


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` and that are running (not zombies)."""
    return sorted(child for child, (parent, state) in process_table().items()
                  if parent == pid and state != "Z")


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except OSError:
        return False


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def end_processes(pids) -> None:
    """SIGKILL each of ``pids`` still running, and reap those that are this process's children."""
    for pid in pids:
        if running(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for pid in pids:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # not ours (reparented to init, or reaped already)
            deadline = time.monotonic() + 5
            while running(pid) and time.monotonic() < deadline:
                time.sleep(0.01)


def _become_subreaper() -> bool:
    """Linux: orphaned descendants of this process are reparented to it instead of to init."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    return prctl(PR_SET_CHILD_SUBREAPER, ctypes.c_ulong(1), ctypes.c_ulong(0),
                 ctypes.c_ulong(0), ctypes.c_ulong(0)) == 0


def _reap_zombies() -> None:
    for pid, (parent, state) in process_table().items():
        if parent == os.getpid() and state == "Z":
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind():
    """The suite ends with no process of its own left running, or fails naming each one.

    The test process becomes a child subreaper (Linux), so that a process orphaned
    by a test (a worker whose rank was killed, a grandchild) is reparented
    here rather than to init, where it could not be seen. At the end of the
    session, after the other session fixtures have stopped their services,
    every process still running whose parent is this one is reported (pid
    and command line), then killed, and so are the children it leaves;
    zombies are reaped.
    """
    if not os.path.isdir("/proc"):  # nowhere to look
        yield
        return
    _become_subreaper()  # without it, only the tests' own children can be checked
    yield
    deadline = time.monotonic() + 2  # a process killed just now may still be exiting
    while children(os.getpid()) and time.monotonic() < deadline:
        _reap_zombies()
        time.sleep(0.05)
    strays: dict[int, str] = {}
    for _ in range(10):  # a stray's own children come here when it is killed: end them too
        found = {pid: command_line(pid) for pid in children(os.getpid()) if pid not in strays}
        if not found:
            break
        strays.update(found)
        end_processes(found)
    _reap_zombies()
    if strays:
        pytest.fail("processes left running by the tests (killed now): " + "; ".join(
            f"{pid}: {line}" for pid, line in strays.items()), pytrace=False)


def mount_points() -> list[str]:
    """The mount points this process sees (Linux), as ``/proc/self/mountinfo`` gives them."""
    try:
        with open("/proc/self/mountinfo", "rb") as info:
            return [os.fsdecode(line.split()[4]).replace("\\040", " ") for line in info]
    except OSError:
        return []


@pytest.fixture(scope="session", autouse=True)
def no_mount_or_temporary_file_left_behind(tmp_path_factory):
    """The suite leaves no mount and no temporary file or folder behind, or fails naming them.

    For the session, ``TMPDIR`` (and :mod:`tempfile`) point to a fresh folder
    of its own, which the tests and every process they start inherit; at the
    end it must be empty, and nothing may be mounted under it or under the
    session's ``tmp_path`` folders. What is left is named, then unmounted and
    removed.
    """
    basetemp = str(tmp_path_factory.getbasetemp())  # pytest's own, made before TMPDIR moves
    own = tempfile.mkdtemp(prefix="amlshard-tests-")
    saved = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"], tempfile.tempdir = own, own
    roots = (os.path.join(own, ""), os.path.join(basetemp, ""))
    yield
    if saved[0] is None:
        del os.environ["TMPDIR"]
    else:
        os.environ["TMPDIR"] = saved[0]
    tempfile.tempdir = saved[1]
    mounts = sorted((m for m in mount_points() if m.startswith(roots)), reverse=True)
    for mount in mounts:
        subprocess.run(["umount", "-l", mount], capture_output=True)
    left = sorted(os.listdir(own))
    shutil.rmtree(own, ignore_errors=True)
    if mounts or left:
        pytest.fail("left behind by the tests (removed now): " + "; ".join(
            [f"mount {m}" for m in mounts] + [f"temporary {os.path.join(own, n)}" for n in left]),
            pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def compiled_project():
    """The project's modules are compiled to bytecode (``__pycache__`` beside each, ignored
    by git and by ``submit``'s staging) before the tests start their hundreds of Python
    processes.

    Python writes that bytecode itself on first import, unless ``PYTHONDONTWRITEBYTECODE``
    is set (as in some CI images and sandboxes): then each ``python -m job`` compiled
    job/ again, some 60 ms of CPU a process. Bytecode that no longer matches its source
    (its size and modification time) is not used: a run reads the source as it is.
    """
    import compileall

    for package in ("job", "submit", "benchmarks", "tests"):
        compileall.compile_dir(ROOT / package, quiet=1)
    yield


@pytest.fixture(scope="session", autouse=True)
def warm_interpreters_end():
    """The pre-warmed interpreters of ``python -m submit`` runs end with the session (before
    the checks above look for processes left behind)."""
    yield
    from azure_standin.runner import stop_warm_interpreters

    stop_warm_interpreters()


@pytest.fixture
def inputs(eight_files) -> Path:
    """The inputs of a run, unless a test module says otherwise: :func:`eight_files`."""
    return eight_files


def journal_records(out: Path, shard: str = "shard-") -> list[tuple[str, dict]]:
    """Every record of the journals of ``out`` whose names start with ``shard``, with its
    journal's name, in name then line order (every line must parse)."""
    found = []
    for path in sorted((out / "_manifest").glob("*.jsonl")):
        if path.name.startswith(shard):
            found += [(path.name, json.loads(line)) for line in path.read_bytes().splitlines()]
    return found


def newest_records(out: Path, shard: str = "shard-") -> dict[str, dict]:
    """Per input, its last record in the journals of ``shard`` (a journal keeps every run's)."""
    return {record["input"]: record for _, record in journal_records(out, shard)}


def read_manifest(out: Path, shard: str = "shard-00000-of-00001") -> dict:
    """The manifest of ``shard``'s last run."""
    return json.loads((out / "_manifest" / f"{shard}.json").read_bytes())


def read_manifests(out: Path) -> dict[str, dict]:
    """Every manifest of ``out``, by file name."""
    return {path.name: json.loads(path.read_bytes())
            for path in sorted((out / "_manifest").glob("shard-*.json"))}


@pytest.fixture
def eight_files(tmp_path) -> Path:
    """``in/f0.txt`` … ``f7.txt``: small files of tabs and spaces, 17 to 136 bytes."""
    source = tmp_path / "in"
    source.mkdir()
    for i in range(8):
        (source / f"f{i}.txt").write_bytes(b"alpha beta\tgamma\n" * (i + 1))
    return source


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> Path:
    """27 files of Wikipedia-like prose with every kind of whitespace (see job.sample)."""
    folder = tmp_path_factory.mktemp("corpus") / "wikipedia.part1"
    write_corpus(str(folder))
    return folder


def refuse_o_tmpfile(monkeypatch):
    """Make every O_TMPFILE open fail, as blobfuse and NFS answer it."""
    from job import atomic

    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if flags & atomic._O_TMPFILE == atomic._O_TMPFILE:
            raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(atomic, "_no_tmpfile", set())
    monkeypatch.setattr(atomic.os, "open", refusing_open)
    from job import native

    kernel = native.kernel()  # its one call for a small file opens O_TMPFILE in C: refused too
    if kernel is not None:
        monkeypatch.setattr(kernel, "split_small_file", lambda *args: -1)


@pytest.fixture(params=["unnamed", "named", "refused"])
def any_way(request, monkeypatch):
    """Every way an output is written: O_TMPFILE, no O_TMPFILE, and a file system that
    refuses it (blobfuse, NFS)."""
    from job import atomic

    if request.param == "named":
        monkeypatch.setattr(atomic, "_O_TMPFILE", 0)
    elif request.param == "refused":
        refuse_o_tmpfile(monkeypatch)
    return request.param
