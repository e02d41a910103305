"""The dry-run job, run as Azure ML would run it: 5 ranks, OpenMPI variables, environment/'s packages.

Azure ML mounts the code folder as the working directory, binds
``${{inputs.input_dir}}`` and ``${{outputs.out_dir}}`` to mounted folders, and
its MPI distribution starts each rank with ``OMPI_COMM_WORLD_RANK`` /
``_SIZE`` / ``_LOCAL_RANK`` / ``_LOCAL_SIZE`` set. Here the bindings are local
folders and the ranks run in a fresh virtual environment holding only the pip
packages of ``environment/conda.yaml``: if the job needed anything else, or
anything outside its code folder, this fails.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from azure_standin.runner import run_submit

from job.sample import write_sample
from submit.yaml_out import load_job_yaml

pytestmark = [pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning"),
              pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
NODES = 5


def pip_packages_of_the_environment() -> list[str]:
    conda = yaml.safe_load((REPO / "environment" / "conda.yaml").read_text())
    [pip] = [d["pip"] for d in conda["dependencies"] if isinstance(d, dict)]
    return pip


@pytest.fixture(scope="module")
def node_python(tmp_path_factory) -> Path:
    """A fresh venv with exactly environment/'s pip packages (no project, no Azure SDK)."""
    venv = tmp_path_factory.mktemp("node-venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
                    "--disable-pip-version-check", "--no-deps", *pip_packages_of_the_environment()],
                   check=True, timeout=300)
    listed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "list",
                             "--format", "freeze", "--disable-pip-version-check"],
                            check=True, capture_output=True, text=True, timeout=120).stdout.split()
    assert sorted(p.lower() for p in listed) == \
        sorted(p.lower() for p in pip_packages_of_the_environment())
    return python


def node_environment(python: Path, home: Path, **variables: str) -> dict[str, str]:
    """What a node's process sees: the environment's interpreter first on PATH, nothing else."""
    return {"PATH": f"{python.parent}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(home),
            "LANG": "C.UTF-8", **variables}


def bound_command(job, input_dir: Path, out_dir: Path) -> list[str]:
    """The job's command with its input and output bound to local folders."""
    command = job.command.replace("${{inputs.input_dir}}", shlex.quote(str(input_dir)))
    command = command.replace("${{outputs.out_dir}}", shlex.quote(str(out_dir)))
    assert "${{" not in command
    return shlex.split(command)


def dry_run(tmp_path: Path, name: str, *args: str):
    yaml_path = tmp_path / f"{name}.yml"
    result = run_submit(*args, "--dry-run", "--yaml", str(yaml_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    job = load_job_yaml(yaml_path)
    return job, (yaml_path.parent / job.code).resolve(), result


def check_run(input_dir: Path, out_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "job.check", "--input_dir", str(input_dir),
                           "--out_dir", str(out_dir)], capture_output=True, text=True, timeout=120)


def test_the_environment_has_neither_azure_nor_the_project(node_python, tmp_path):
    env = node_environment(node_python, tmp_path)  # not this process's PYTHONPATH, if any
    probe = subprocess.run([str(node_python), "-c", "import azure"], capture_output=True,
                           cwd=tmp_path, env=env, timeout=60)
    assert probe.returncode != 0
    probe = subprocess.run([str(node_python), "-c", "import job"], capture_output=True,
                           cwd=tmp_path, env=env, timeout=60)
    assert probe.returncode != 0, "the job must come from the code folder, not an install"


def test_every_module_of_the_shipped_job_imports_on_a_node(node_python, tmp_path):
    """No module of ``job`` reaches for ``submit``, the Azure SDK or anything else not shipped."""
    _, code_dir, _ = dry_run(tmp_path, "modules", "--nodes", "2")
    modules = sorted(f"job.{p.stem}" for p in (code_dir / "job").glob("*.py")
                     if p.stem not in ("__init__", "__main__"))
    probe = subprocess.run(
        [str(node_python), "-c", "import importlib, sys\n"
         f"for name in {modules!r}: importlib.import_module(name)\n"
         "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('azure', 'submit'))\n"
         "assert not bad, bad\n"],
        cwd=code_dir, env=node_environment(node_python, tmp_path), capture_output=True, text=True,
        timeout=120)
    assert probe.returncode == 0, probe.stderr


def test_five_mpi_ranks_run_the_dry_run_job_completely(node_python, tmp_path):
    input_dir = tmp_path / "mounted-input"
    write_sample(str(input_dir))
    out_dir = tmp_path / "mounted-output"
    job, code_dir, _ = dry_run(tmp_path, "five", "--nodes", str(NODES), "--process-count", "2",
                               "--input", str(input_dir))
    assert job.resources.instance_count == NODES
    assert job.distribution.process_count_per_instance == 1
    command = bound_command(job, input_dir, out_dir)
    ranks = []
    for rank in range(NODES):
        env = node_environment(node_python, tmp_path, OMPI_COMM_WORLD_RANK=str(rank),
                               OMPI_COMM_WORLD_SIZE=str(NODES), OMPI_COMM_WORLD_LOCAL_RANK="0",
                               OMPI_COMM_WORLD_LOCAL_SIZE="1")
        ranks.append(subprocess.Popen(command, cwd=code_dir, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    logs = []
    for rank, process in enumerate(ranks):
        output, _ = process.communicate(timeout=180)
        logs.append(output)
        assert process.returncode == 0, f"rank {rank} failed:\n{output}"
        assert "OpenMPI" in output  # each rank says where its rank came from
    checked = check_run(input_dir, out_dir)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    manifests = sorted(p.name for p in (out_dir / "_manifest").glob("*.json"))
    assert manifests == [f"shard-{i:05d}-of-{NODES:05d}.json" for i in range(NODES)]


def test_one_selective_node_takes_exactly_its_share(node_python, tmp_path):
    input_dir = tmp_path / "mounted-input"
    write_sample(str(input_dir))
    out_dir = tmp_path / "mounted-output"
    job, code_dir, result = dry_run(tmp_path, "node3", "--nodes", "1", "--node-count", "5",
                                    "--node-rank", "3", "--input", str(input_dir))
    assert job.resources.instance_count == 1
    # Azure ML's MPI launcher still sets the variables for its single rank
    env = node_environment(node_python, tmp_path, OMPI_COMM_WORLD_RANK="0",
                           OMPI_COMM_WORLD_SIZE="1", OMPI_COMM_WORLD_LOCAL_RANK="0",
                           OMPI_COMM_WORLD_LOCAL_SIZE="1")
    done = subprocess.run(bound_command(job, input_dir, out_dir), cwd=code_dir, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    written = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*.txt"))
    [preview] = [line for line in result.stdout.splitlines() if line.strip().startswith("node 3")]
    assert f"{len(written)} file(s)" in preview and written[0] in preview
    assert (out_dir / "_manifest" / "shard-00003-of-00005.json").is_file()
