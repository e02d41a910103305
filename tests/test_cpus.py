"""The node's CPUs from a fake /sys, and widening a narrowed affinity in a real process."""

import doctest
import json
import os
import subprocess
import sys

import pytest

from job import cpus
from job.cpus import cpu_count, cpu_quota, node_cpus, parse_cpu_list, wider_mask

from conftest import ROOT, clean_environ

V2 = "0::/job.slice/rank.scope\n"
V1 = "4:cpuset:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n"


def reader(files):
    return lambda path: files.get(path)


@pytest.mark.parametrize("files, expected", [
    ({cpus.ONLINE: "0-15"}, set(range(16))),  # no cgroup visible: every online CPU
    ({cpus.ONLINE: "0-15", "/proc/self/cgroup": V2,
      "/sys/fs/cgroup/job.slice/cpuset.cpus.effective": "4-7"}, {4, 5, 6, 7}),  # from a parent
    ({cpus.ONLINE: "0-15", "/proc/self/cgroup": V2,
      "/sys/fs/cgroup/job.slice/rank.scope/cpuset.cpus.effective": "2,9",
      "/sys/fs/cgroup/cpuset.cpus.effective": "0-15"}, {2, 9}),  # the innermost wins
    ({cpus.ONLINE: "0-15", "/proc/self/cgroup": V1,  # a container: its own cgroup is the root
      "/sys/fs/cgroup/cpuset/cpuset.effective_cpus": "0-3"}, {0, 1, 2, 3}),
    ({cpus.ONLINE: "0-3", "/sys/fs/cgroup/cpuset.cpus.effective": "2-9"}, {2, 3}),
    ({cpus.ONLINE: "0-3", "/sys/fs/cgroup/cpuset.cpus.effective": "8-9"}, set()),
    ({cpus.ONLINE: "0-3", "/sys/fs/cgroup/cpuset.cpus.effective": "zero"}, set()),
    ({}, set()),  # nothing readable (not Linux): nothing known, nothing widened
])
def test_node_cpus_are_the_online_cpus_the_cgroup_allows(files, expected):
    assert node_cpus(reader(files)) == expected


@pytest.mark.parametrize("files, expected", [
    ({}, None),
    ({"/sys/fs/cgroup/cpu.max": "max 100000"}, None),
    ({"/sys/fs/cgroup/cpu.max": "400000 100000"}, 4.0),
    ({"/proc/self/cgroup": V2, "/sys/fs/cgroup/job.slice/cpu.max": "250000 100000",
      "/sys/fs/cgroup/job.slice/rank.scope/cpu.max": "max 100000"}, 2.5),  # a parent's limit
    ({"/proc/self/cgroup": V2, "/sys/fs/cgroup/job.slice/cpu.max": "800000 100000",
      "/sys/fs/cgroup/job.slice/rank.scope/cpu.max": "300000 100000"}, 3.0),  # the tightest
    ({"/proc/self/cgroup": V1, "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "150000",
      "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000"}, 1.5),
    ({"/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1",
      "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000"}, None),
    ({"/sys/fs/cgroup/cpu.max": "lots 100000"}, None),
])
def test_cpu_quota_is_the_tightest_cgroup_limit(files, expected):
    assert cpu_quota(reader(files)) == expected


def test_a_quota_caps_the_worker_count():
    assert [cpu_count(16, q) for q in (None, 4.0, 2.5, 0.5, 32.0)] == [16, 4, 3, 1, 16]


def test_only_a_narrower_mask_is_widened():
    node = frozenset({0, 1, 2, 3})
    assert wider_mask(frozenset({1}), node) == node
    assert wider_mask(node, node) is None
    assert wider_mask(frozenset({1, 7}), node) is None  # CPUs /sys does not show: keep it
    assert wider_mask(frozenset({1}), frozenset()) is None
    assert parse_cpu_list("0-2,5\n") == {0, 1, 2, 5}


WIDEN = """
import json, os, sys
from job.cpus import widen_affinity
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
widened = widen_affinity(json.loads(sys.argv[1]))
print(json.dumps([sorted(widened or []), len(os.sched_getaffinity(0))]))
"""


@pytest.mark.parametrize("environ, launched", [
    ({"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "1"}, True),
    ({"RANK": "0", "WORLD_SIZE": "1"}, True),
    ({}, False),  # taskset or numactl chose the mask: it stays
])
def test_a_process_started_by_a_launcher_gets_the_nodes_cpus_back(environ, launched):
    result = subprocess.run([sys.executable, "-c", WIDEN, json.dumps(environ)],
                            env=clean_environ(), cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    widened, count = json.loads(result.stdout)
    node = node_cpus()
    if launched and len(node) > 1:
        assert (set(widened), count) == (node, len(node))
    else:
        assert (widened, count) == ([], 1)


def test_docstring_examples():
    assert doctest.testmod(cpus).failed == 0
    assert os.sched_getaffinity(0)  # this process's own mask was never touched
