"""notebooks/submit_job.ipynb, executed headless with nbclient: as shipped, and filled in.

As shipped (placeholders) it runs top to bottom in dry-run mode and shows the
YAML of the three jobs. With its first cell filled in it submits them, here to
the loopback stand-in (real SDK, real DefaultAzureCredential, real Azurite).
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
import yaml
from azure_standin.fixtures import azurite, certificates, standin  # noqa: F401
from azure_standin.runner import CLEARED_PREFIXES
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "submit_job.ipynb"
FILLED = {"SUBSCRIPTION": "00000000-0000-0000-0000-00000000beef", "RESOURCE_GROUP": "rg-nb",
          "WORKSPACE": "ws-nb", "COMPUTE": "cpu-cluster",
          "INPUT": "azureml://datastores/workspaceblobstore/paths/corpus/",
          "OUTPUT": "azureml://datastores/workspaceblobstore/paths/tokens/"}


@pytest.fixture
def kernel_environment(monkeypatch, tmp_path):
    """The kernel inherits this process's environment: no Azure settings from this machine."""
    for name in list(os.environ):
        if name.startswith(CLEARED_PREFIXES) or name in ("REQUESTS_CA_BUNDLE",):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # staged code folders land here
    return monkeypatch


def execute(notebook) -> None:
    NotebookClient(notebook, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()


def stdout_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def code_cells(notebook) -> list:
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def test_the_placeholders_cell_comes_first():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    first = notebook.cells[0]
    assert first.cell_type == "code" and "parameters" in first.metadata.get("tags", [])
    for name in FILLED:
        assert f'{name} = "' in first.source and "<" in first.source
    # the cells call submit's functions and copy none of its logic
    source = "\n".join(cell.source for cell in code_cells(notebook)[1:])
    for needed in ("submit.resolve_settings", "submit.prepare_job", ".yaml()",
                   "submit.submit_job", "submit.ml_client", "submit.unfilled"):
        assert needed in source
    for forbidden in ("command(", "MpiDistribution", "Environment(", "load_job", "azure.ai.ml"):
        assert forbidden not in source


def test_as_shipped_it_runs_headless_in_dry_run_mode(kernel_environment, tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    execute(notebook)
    assert list(tmp_path.glob("amlshard-*")) == []  # staged code folders went with the kernel
    cells = code_cells(notebook)
    assert "mode: dry run" in stdout_of(cells[1])
    shown = [yaml.safe_load(stdout_of(cell)) for cell in cells[2:5]]
    assert [job["resources"]["instance_count"] for job in shown] == [1, 5, 1]
    assert [job["distribution"]["type"] for job in shown] == ["mpi"] * 3
    assert shown[2]["command"].endswith("--distribArgs.node_count 5 --distribArgs.node_rank 3")
    assert all(job["$schema"].endswith("commandJob.schema.json") for job in shown)
    assert [job["code"] for job in shown] == ["job-code"] * 3  # no temporary path shown
    last = stdout_of(cells[5])
    assert last.startswith("dry run: nothing was submitted.")
    assert "fill SUBSCRIPTION in the first cell" in last


def test_filled_in_it_submits_the_three_jobs(kernel_environment, standin):
    for name, value in standin.client_environment().items():
        kernel_environment.setenv(name, value)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    notebook.cells[0].source += "\n" + "\n".join(f"{k} = {v!r}" for k, v in FILLED.items())
    execute(notebook)
    cells = code_cells(notebook)
    assert "mode: submit" in stdout_of(cells[1])
    report = stdout_of(cells[5])
    bodies = standin.job_bodies()
    assert len(bodies) == 3
    for name in bodies:
        assert name in report
        assert f"https://ml.azure.com/runs/{name}?wsid=" in report
    shapes = sorted((b["properties"]["resources"]["instanceCount"],
                     b["properties"]["command"].endswith("--distribArgs.node_rank 3"))
                    for b in bodies.values())
    assert shapes == [(1, False), (1, True), (5, False)]
    assert standin.tokens_issued >= 1
    assert all(b["properties"]["computeId"].endswith("/computes/cpu-cluster")
               for b in bodies.values())
