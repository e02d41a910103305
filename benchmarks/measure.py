"""Running commands and measuring them: wall time, peak memory, output digests."""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
MANIFEST_DIR = "_manifest"  # the job's journal folder: not an output to compare
LAUNCHER_VARIABLES = ("OMPI_", "PMI_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                      "NODE_RANK", "GROUP_RANK", "AZUREML_NODE_COUNT", "AZ_BATCHAI_TASK_INDEX")


class CommandFailed(Exception):
    """A measured command exited non-zero."""

    def __init__(self, command: Sequence[str], code: int, stderr: str):
        tail = " | ".join(stderr.strip().splitlines()[-3:])
        super().__init__(f"`{' '.join(map(str, command))}` exited {code}: {tail}")
        self.code = code


def environ() -> dict[str, str]:
    """This environment without launcher variables (they would make the job one of many ranks)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(LAUNCHER_VARIABLES)}


def _pin(cpus: set[int] | None):
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def settle() -> None:
    """Flush to disk what earlier runs left dirty, so its writeback is not timed in the next."""
    os.sync()


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (``/proc/stat``)."""
    with open("/proc/stat") as stream:
        fields = [int(x) for x in stream.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


@dataclass
class Timing:
    """One run: its wall time, its CPU time, and how busy the rest of the machine was."""

    seconds: float
    cpu: float        # user + system seconds of the command and every process it reaped
    others: float     # share of the machine's CPUs used by other processes meanwhile (0-1)


class _Meter:
    """Measures the machine around a run, to tell how much of it others used."""

    def __init__(self) -> None:
        self.busy = _busy_seconds()
        self.own = _cpu(resource.getrusage(resource.RUSAGE_SELF))
        self.children = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN))
        self.start = time.perf_counter()

    def stop(self, cpu: float | None = None) -> Timing:
        seconds = time.perf_counter() - self.start
        if cpu is None:
            cpu = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN)) - self.children
        own = _cpu(resource.getrusage(resource.RUSAGE_SELF)) - self.own
        others = _busy_seconds() - self.busy - cpu - own
        share = max(0.0, others) / (seconds * (os.cpu_count() or 1)) if seconds > 0 else 0.0
        return Timing(seconds, cpu, min(share, 1.0))


def timed(command: Sequence[str], cpus: set[int] | None = None) -> Timing:
    """Run ``command`` (from the repository root) and time it.

    ``cpus`` pins it, and so every process it starts, to those CPUs.
    """
    command = [str(c) for c in command]
    settle()
    meter = _Meter()
    done = subprocess.run(command, cwd=ROOT, env=environ(), capture_output=True,
                          preexec_fn=_pin(cpus))
    timing = meter.stop()
    if done.returncode != 0:
        raise CommandFailed(command, done.returncode, done.stderr.decode(errors="replace"))
    return timing


@dataclass
class Memory:
    """Peak resident memory of a command's process tree."""

    timing: Timing
    peak: int                      # bytes: wait4's ru_maxrss, over the tree
    by_process: dict[int, int] = field(default_factory=dict)  # pid -> VmHWM bytes, from /proc
    main_pid: int = 0

    @property
    def main_peak(self) -> int:
        return self.by_process.get(self.main_pid, 0)

    @property
    def worker_peak(self) -> int:
        return max((v for pid, v in self.by_process.items() if pid != self.main_pid), default=0)

    @property
    def processes(self) -> int:
        return len(self.by_process)


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as stream:
                found.extend(int(c) for c in stream.read().split())
    except OSError:
        pass
    return found


def _high_water(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as stream:
            for line in stream:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# A minimal parent for the measured command. ``ru_maxrss`` survives exec: a process
# forked from the (large) harness keeps the harness's high-water mark, so the
# harness's own size would leak into the figure. This wrapper, ``python -S``
# with no imports beyond ``os`` (about 9 MB), forks and execs the command, reaps
# it with wait4 and writes its rusage to the file named by argv[1].
WRAPPER = """\
import os, sys
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}")
sys.exit(os.waitstatus_to_exitcode(status) % 256)
"""


def peak_memory(command: Sequence[str], poll_seconds: float = 0.05) -> Memory:
    """Run ``command``; its wall time and the peak RSS of its main process and every worker.

    The figure is ``ru_maxrss`` from ``wait4`` in a minimal wrapper process (see
    :data:`WRAPPER`): on Linux the largest peak RSS of the command's process and
    of every descendant it reaped (the job joins its workers), i.e. what
    ``getrusage(RUSAGE_CHILDREN)`` reports in a fresh wrapper. A thread also
    polls the tree's ``VmHWM`` in ``/proc`` to tell which process it was.
    """
    command = [str(c) for c in command]
    settle()
    with tempfile.TemporaryDirectory() as folder:
        report, errors_path = os.path.join(folder, "usage"), os.path.join(folder, "stderr")
        with open(errors_path, "wb") as errors:
            meter = _Meter()
            wrapper = subprocess.Popen([sys.executable, "-S", "-c", WRAPPER, report, *command],
                                       cwd=ROOT, env=environ(), stdout=subprocess.DEVNULL,
                                       stderr=errors)
            seen: dict[int, int] = {}
            main_pid: list[int] = []
            finished = threading.Event()

            def poll() -> None:
                while not finished.is_set():
                    main = _children(wrapper.pid)
                    if main and not main_pid:
                        main_pid.append(main[0])
                    tree, todo = [], list(main)
                    while todo:
                        pid = todo.pop()
                        tree.append(pid)
                        todo.extend(_children(pid))
                    for pid in tree:
                        value = _high_water(pid)
                        if value is not None and value > seen.get(pid, 0):
                            seen[pid] = value
                    finished.wait(poll_seconds)

            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            code = wrapper.wait()
            finished.set()
            poller.join()
        with open(report) as stream:
            maxrss, cpu = stream.read().split()
        timing = meter.stop(float(cpu))
        if code != 0:
            with open(errors_path, "rb") as stream:
                raise CommandFailed(command, code, stream.read().decode(errors="replace"))
    return Memory(timing, int(maxrss) * 1024, seen, main_pid[0] if main_pid else 0)


def digests(folder: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``folder`` but the job's journal."""
    found = {}
    for root, dirs, files in os.walk(folder):
        if Path(root) == Path(folder):
            dirs[:] = [d for d in dirs if d != MANIFEST_DIR]
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as stream:
                digest = hashlib.file_digest(stream, "sha256").hexdigest()
            found[os.path.relpath(path, folder)] = digest
    return found


def compare(expected: dict[str, str], actual: dict[str, str]) -> str | None:
    """``None`` when both trees hold the same files with the same bytes, else what differs."""
    if expected == actual:
        return None
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    differ = sorted(k for k in set(expected) & set(actual) if expected[k] != actual[k])
    parts = []
    for label, names in (("missing", missing), ("unexpected", extra), ("different", differ)):
        if names:
            shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
            parts.append(f"{len(names)} {label} ({shown})")
    return "; ".join(parts)
