"""The node's CPUs, and widening the CPU affinity that a launcher narrowed.

OpenMPI's ``mpirun`` binds every rank it starts unless told not to: to one
core when it starts 1 or 2 ranks, to a socket when it starts more, to nothing
when oversubscribed ("mpirun automatically binds processes", mpirun(1),
https://www.open-mpi.org/doc/v4.1/man1/mpirun.1.php). A rank's worker
processes inherit its mask, so a one-rank node of 16 CPUs would run every
worker on one core, and ``process_count: null`` would start one worker.

The node's CPUs are read from the kernel, not from the inherited mask: the
CPUs online (``/sys/devices/system/cpu/online``), limited to the cgroup's
cpuset where one is visible (v2 ``cpuset.cpus.effective``, v1
``cpuset.effective_cpus``), so a container given 4 CPUs of 16 counts 4. A cgroup
CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``) cannot be expressed as a
mask; :func:`cpu_quota` reports it and :func:`job.config.usable_cpus` counts it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping

from .ranks import launched

ONLINE = "/sys/devices/system/cpu/online"
CGROUP_ROOT = "/sys/fs/cgroup"  # v2 (unified); v1 mounts one folder per controller under it
Reader = Callable[[str], "str | None"]

log = logging.getLogger("job")


def read_text(path: str) -> str | None:
    """The stripped text of the file ``path``; ``None`` when it cannot be read."""
    try:
        with open(path, encoding="ascii") as stream:
            return stream.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def parse_cpu_list(text: str) -> frozenset[int]:
    """The kernel's CPU list format (``0-3,8,10-11``) as a set of CPU numbers.

    >>> sorted(parse_cpu_list("0-2,5"))
    [0, 1, 2, 5]
    """
    cpus: set[int] = set()
    for part in text.replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return frozenset(cpus)


def format_cpu_list(cpus: Iterable[int]) -> str:
    """A set of CPU numbers in the kernel's CPU list format.

    >>> format_cpu_list({0, 1, 2, 5, 7, 8})
    '0-2,5,7-8'
    """
    ranges: list[list[int]] = []
    for cpu in sorted(cpus):
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ranges)


def _cgroup_files(read: Reader, controller: str, name: str) -> list[str]:
    """Where ``name`` may be for this process's cgroup, innermost first, up to the root.

    ``controller`` is a v1 controller (``cpuset``, ``cpu``) or ``""`` for v2.
    Inside a container the cgroup's own folder is often mounted as the root,
    while ``/proc/self/cgroup`` still names the host's path: the root is always
    a candidate, so such a path that does not exist falls through to it.
    """
    path = "/"
    for line in (read("/proc/self/cgroup") or "").splitlines():
        _, controllers, own = (line.split(":", 2) + ["", ""])[:3]
        if (controllers == "" if controller == "" else controller in controllers.split(",")):
            path = own
            break
    mount = os.path.join(CGROUP_ROOT, controller) if controller else CGROUP_ROOT
    parts = [p for p in path.split("/") if p and p != ".."]
    return [os.path.join(mount, *parts[:depth], name) for depth in range(len(parts), -1, -1)]


def _first(read: Reader, paths: Iterable[str]) -> str | None:
    for path in paths:
        text = read(path)
        if text:
            return text
    return None


def node_cpus(read: Reader = read_text) -> frozenset[int]:
    """The CPUs of this node that this process's cgroup allows, whatever its affinity mask.

    The CPUs online, intersected with the innermost cgroup cpuset visible (v2,
    then v1). Empty when the online CPUs cannot be read (not Linux): then
    nothing is known and nothing is widened; so too when the files make no sense
    (a cpuset of CPUs that are not online).
    """
    try:
        cpus = parse_cpu_list(read(ONLINE) or "")
        cpuset = (_first(read, _cgroup_files(read, "", "cpuset.cpus.effective"))
                  or _first(read, _cgroup_files(read, "cpuset", "cpuset.effective_cpus")))
        allowed = parse_cpu_list(cpuset) & cpus if cpuset else cpus
    except ValueError:  # not the kernel's format: know nothing rather than guess
        return frozenset()
    return allowed


def cpu_quota(read: Reader = read_text) -> float | None:
    """CPUs' worth of time the cgroup allows (2.5 for 250 ms per 100 ms); ``None``: no quota.

    The tightest of v2 ``cpu.max`` (``QUOTA PERIOD`` or ``max PERIOD``) and v1
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota -1: none) from this
    process's cgroup up to the root.
    """
    pairs = [tuple((read(path) or "max").partition(" ")[::2])
             for path in _cgroup_files(read, "", "cpu.max")]
    pairs += [(read(path) or "-1",
               read(os.path.join(os.path.dirname(path), "cpu.cfs_period_us")) or "")
              for path in _cgroup_files(read, "cpu", "cpu.cfs_quota_us")]
    limits = []
    for quota, period in pairs:
        try:
            if quota not in ("max", "-1") and int(period) > 0:
                limits.append(int(quota) / int(period))
        except ValueError:
            continue
    return min(limits) if limits else None


def cpu_count(affinity: int, quota: float | None) -> int:
    """How many CPUs a process may keep busy: its affinity's, capped by a quota rounded up.

    >>> cpu_count(16, 3.5), cpu_count(16, None), cpu_count(2, 8.0), cpu_count(4, 0.2)
    (4, 16, 2, 1)
    """
    if quota is None:
        return max(1, affinity)
    return max(1, min(affinity, math.ceil(quota)))


def wider_mask(current: frozenset[int], node: frozenset[int]) -> frozenset[int] | None:
    """``node`` when it is wider than the ``current`` mask (a launcher narrowed it), else None.

    A mask that is not inside ``node`` (CPUs the online list or cpuset does not
    show) is left alone: what the machine is cannot be told then.

    >>> wider_mask(frozenset({0}), frozenset({0, 1}))
    frozenset({0, 1})
    >>> wider_mask(frozenset({0, 1}), frozenset({0, 1})) is None
    True
    """
    return node if current < node else None


def widen_affinity(environ: Mapping[str, str], read: Reader = read_text) -> frozenset[int] | None:
    """Give this process all the node's CPUs again if a launcher narrowed its affinity.

    The contract: when a launcher started this process (:func:`job.ranks.launched`:
    OpenMPI's or torchrun's variables are set) and its CPU affinity is narrower
    than :func:`node_cpus`, set it to :func:`node_cpus` and log one line saying
    from what to what; the worker processes forked afterwards inherit the wide
    mask. Returns the new mask, or ``None`` when nothing changed.

    This is done whatever ``process_count`` is: ``mpirun -np 1`` binds the rank
    to one core, and 8 workers of ``process_count: 8`` pinned to that core
    would take turns on it, as slow as one. The ranks of a node then share all
    its CPUs (``process_count: null`` gives each rank its share of workers) and
    the kernel balances them. Without a launcher the mask is the user's choice
    (``taskset``, ``numactl``) and is kept. A cgroup's cpuset is never
    exceeded; a failure to widen is a warning, never an error.
    """
    if not launched(environ) or not hasattr(os, "sched_setaffinity"):
        return None
    current = frozenset(os.sched_getaffinity(0))
    wanted = wider_mask(current, node_cpus(read))
    if wanted is None:
        return None
    try:
        os.sched_setaffinity(0, wanted)
    except OSError as error:
        log.warning("CPU affinity %s could not be widened to the node's CPUs %s: %s",
                    format_cpu_list(current), format_cpu_list(wanted), error)
        return None
    now = frozenset(os.sched_getaffinity(0))
    log.info("CPU affinity widened from %s to %s (%d CPUs): the launcher had bound this rank "
             "to fewer CPUs than the node has", format_cpu_list(current),
             format_cpu_list(now), len(now))
    return now
