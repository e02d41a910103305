"""notebooks/submit_job.ipynb, executed headless with nbclient: as shipped, and filled in.

As shipped (placeholders) it runs top to bottom in dry-run mode with every connection
refused: it shows the YAML of the three layouts and skips the check, submission, wait,
report and download. Filled in (values injected after its ``parameters`` cell, as
papermill does) it checks the workspace and compute, submits the one chosen layout, waits,
reports and downloads, here against the loopback stand-in (real SDK, real
DefaultAzureCredential, real Azurite holding what a real rank wrote).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import nbformat
import pytest
import yaml
from azure_standin.fixtures import azurite, certificates, make_standin, standin  # noqa: F401
from azure_standin.runner import CLEARED_PREFIXES, RESOLVE_LOCALHOST
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from test_submit_lifecycle import run_ranks, upload_folder

pytestmark = [pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning"),
              pytest.mark.slow]

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "submit_job.ipynb"
PLACEHOLDERS = ("SUBSCRIPTION", "RESOURCE_GROUP", "WORKSPACE", "COMPUTE", "INPUT", "OUTPUT")
FILLED = {"SUBSCRIPTION": "00000000-0000-0000-0000-00000000beef", "RESOURCE_GROUP": "rg-nb",
          "WORKSPACE": "ws-nb", "COMPUTE": "cpu-cluster",
          "INPUT": "azureml://datastores/workspaceblobstore/paths/corpus/",
          "OUTPUT": "azureml://datastores/workspaceblobstore/paths/tokens/"}
LAYOUTS = ("single-node", "5-nodes", "selective-node")

# Test harness cells, put around the notebook's own (which are run unchanged).
REFUSE_CONNECTIONS = """\
import socket
_refused = []
def _refuse(self, address, *args, **kwargs):
    _refused.append(address)
    raise OSError(f"network refused by the test: {address}")
socket.socket.connect = _refuse
socket.socket.connect_ex = lambda self, address: _refuse(self, address) or 111
"""
COUNT_CONNECTIONS = 'print(f"@@connections={len(_refused)}")'


@pytest.fixture
def kernel_environment(monkeypatch, tmp_path):
    """The kernel inherits this process's environment: no Azure settings from this machine."""
    for name in list(os.environ):
        if name.startswith(CLEARED_PREFIXES) or name in ("REQUESTS_CA_BUNDLE",):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # staged code folders land here
    return monkeypatch


def read_notebook():
    return nbformat.read(NOTEBOOK, as_version=4)


def parameters_index(notebook) -> int:
    [index] = [i for i, cell in enumerate(notebook.cells)
               if "parameters" in cell.metadata.get("tags", [])]
    return index


def with_harness(notebook, first: str, parameters: dict | None = None, last: str | None = None):
    """The notebook with a harness cell before it, values injected after its parameters cell
    (papermill's ``injected-parameters`` cell), and a harness cell after it."""
    cells = list(notebook.cells)
    if parameters:
        injected = nbformat.v4.new_code_cell(
            "\n".join(f"{name} = {value!r}" for name, value in parameters.items()),
            id="injected-parameters", metadata={"tags": ["injected-parameters"]})
        cells.insert(parameters_index(notebook) + 1, injected)
    cells.insert(0, nbformat.v4.new_code_cell(first, id="harness-first"))
    if last:
        cells.append(nbformat.v4.new_code_cell(last, id="harness-last"))
    notebook.cells = cells
    return notebook


def execute(notebook) -> None:
    NotebookClient(notebook, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()


def stdout_of(notebook, cell_id: str) -> str:
    [cell] = [cell for cell in notebook.cells if cell.get("id") == cell_id]
    return "".join(o.get("text", "") for o in cell.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stdout")


def test_title_and_requirements_then_the_parameters_cell():
    notebook = read_notebook()
    title, parameters = notebook.cells[:2]
    assert title.cell_type == "markdown" and title.source.startswith("# ")
    assert "**Requirements**" in title.source
    assert "pip install -e '.[notebook]'" in title.source and "jupyter lab" in title.source
    assert parameters_index(notebook) == 1 and parameters.cell_type == "code"
    for name in PLACEHOLDERS:
        assert f'\n{name} = "' in parameters.source
    assert "<" in parameters.source and '\nLAYOUT = "5-nodes"' in parameters.source
    for layout in LAYOUTS:
        assert f'"{layout}"' in parameters.source
    # the cells call submit's functions and copy none of its logic
    source = "\n".join(cell.source for cell in notebook.cells[2:] if cell.cell_type == "code")
    for needed in ("submit.resolve_settings", "submit.prepare_job", ".yaml()",
                   "submit.unfilled", "submit.ml_client", "submit.check_workspace",
                   "submit.submit_job", "submit.stream_job", "submit.job_report",
                   "submit.download_output"):
        assert needed in source
    for forbidden in ("command(", "MpiDistribution", "Environment(", "load_job", "azure.",
                      "create_or_update", "jobs.", "compute.get", "max_instances",
                      "max_node_count", "_manifest", "BlobServiceClient"):
        assert forbidden not in source
    # the three layouts each show their YAML; only one is submitted
    ids = [cell.get("id") for cell in notebook.cells if cell.cell_type == "code"]
    assert ids == ["parameters", "settings", "connect", *LAYOUTS, "submit", "wait", "report",
                   "download"]
    [submission] = [cell for cell in notebook.cells if cell.get("id") == "submit"]
    assert source.count("submit.submit_job(") == 1 and "for " not in submission.source


def test_the_notebook_extra_installs_jupyter_and_the_readme_says_how_to_open_it():
    root = NOTEBOOK.parents[1]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    names = [requirement.split(">")[0].split("[")[0] for requirement in extras["notebook"]]
    assert names == ["amlshard", "jupyterlab", "ipykernel"]  # amlshard[submit]: the Azure SDK
    assert "jupyterlab" not in " ".join(extras["dev"])  # make test runs it with nbclient only
    readme = (root / "README.md").read_text()
    assert ".venv/bin/pip install -e '.[notebook]'" in readme
    assert ".venv/bin/jupyter lab notebooks/submit_job.ipynb" in readme


def test_as_shipped_it_runs_headless_in_dry_run_mode(kernel_environment, tmp_path):
    notebook = with_harness(read_notebook(), REFUSE_CONNECTIONS, last=COUNT_CONNECTIONS)
    execute(notebook)
    assert stdout_of(notebook, "harness-last") == "@@connections=0\n"  # no network at all
    assert list(tmp_path.glob("amlshard-*")) == []  # staged code folders went with the kernel
    settings = stdout_of(notebook, "settings")
    assert "layout: 5-nodes; mode: dry run (placeholders left: subscription," in settings
    assert stdout_of(notebook, "connect").startswith("dry run: not connecting to Azure ML")

    shown = [yaml.safe_load(stdout_of(notebook, layout)) for layout in LAYOUTS]
    assert [job["resources"]["instance_count"] for job in shown] == [1, 5, 1]
    assert [job["distribution"]["type"] for job in shown] == ["mpi"] * 3
    assert shown[2]["command"].endswith("--distribArgs.node_count 5 --distribArgs.node_rank 3")
    assert all(job["$schema"].endswith("commandJob.schema.json") for job in shown)
    assert [job["code"] for job in shown] == ["job-code"] * 3  # no temporary path shown
    # each layout its own output folder (placeholders kept, so that the dry run shows them)
    assert [job["outputs"]["out_dir"]["path"] for job in shown] == \
        [f"azureml://datastores/<DATASTORE>/paths/<OUTPUT_FOLDER>/{layout}/" for layout in LAYOUTS]

    submitted = stdout_of(notebook, "submit")
    assert submitted.startswith("dry run: nothing was submitted (LAYOUT '5-nodes' would be).")
    assert "fill SUBSCRIPTION in the parameters cell" in submitted
    for cell_id in ("wait", "report", "download"):
        assert stdout_of(notebook, cell_id).startswith("dry run: skipped")


def test_filled_in_it_checks_submits_the_chosen_layout_waits_reports_downloads(
        kernel_environment, standin, tmp_path):
    for name, value in standin.client_environment().items():
        kernel_environment.setenv(name, value)
    # what the selective node (node 3 of 5) writes, already in its output folder
    out = run_ranks(tmp_path, [3])
    written = upload_folder(standin, out, "tokens/selective-node/")
    downloads = tmp_path / "downloads"
    notebook = with_harness(read_notebook(), RESOLVE_LOCALHOST,
                            {**FILLED, "LAYOUT": "selective-node", "DOWNLOAD_TO": str(downloads)})
    execute(notebook)

    assert "layout: selective-node; mode: submit" in stdout_of(notebook, "settings")
    assert stdout_of(notebook, "connect").splitlines() == [
        "workspace ws-nb: found (westeurope)",
        "compute cpu-cluster (amlcompute): found, up to 10 node(s); the job asks for 1"]
    # exactly one job: the chosen layout, on its own output folder
    bodies = standin.job_bodies()
    assert len(bodies) == 1 and len(standin.calls("PUT", "/jobs/")) == 1
    [(name, body)] = bodies.items()
    job = body["properties"]
    assert job["resources"]["instanceCount"] == 1
    assert job["command"].endswith("--distribArgs.node_count 5 --distribArgs.node_rank 3")
    assert job["outputs"]["out_dir"]["uri"] == FILLED["OUTPUT"] + "selective-node/"
    assert job["computeId"].endswith("/computes/cpu-cluster")
    submitted = stdout_of(notebook, "submit")
    assert f"job: {name} (status Starting)" in submitted
    assert f"studio: https://ml.azure.com/runs/{name}?wsid=" in submitted

    waited = stdout_of(notebook, "wait")
    assert f"[stand-in] {name}: poll 2, status Running" in waited  # the streamed log
    assert waited.rstrip().endswith(f"job {name} ended: Completed")

    report = stdout_of(notebook, "report").splitlines()
    assert report[0] == (f"job {name}: Completed; output "
                         f"{FILLED['OUTPUT']}selective-node/")
    assert report[1] == "ranks: 1 of 1 finished (of 5 shards)"  # the job runs rank 3 only
    assert report[2].startswith("  rank 3/5: 3 files (3 ok, 0 skipped, 0 failed), 59 bytes, ")
    assert report[-1] == "OK: 1 rank(s) finished, no file failed"

    fetched = {p.relative_to(downloads / name).as_posix(): p.read_bytes()
               for p in (downloads / name).rglob("*") if p.is_file()}
    assert fetched == written and any(path.startswith("_manifest/") for path in fetched)
    assert stdout_of(notebook, "download").startswith(
        f"downloaded {len(written)} file(s) of {FILLED['OUTPUT']}selective-node/ to ")
    assert standin.tokens_issued >= 1 and standin.unmatched() == []


def test_a_compute_too_small_for_the_layout_stops_at_the_check(kernel_environment,
                                                               make_standin):
    server = make_standin(computes={"cpu-cluster": 4})
    for name, value in server.client_environment().items():
        kernel_environment.setenv(name, value)
    notebook = with_harness(read_notebook(), RESOLVE_LOCALHOST, FILLED)  # LAYOUT: 5-nodes
    with pytest.raises(CellExecutionError) as raised:
        execute(notebook)
    message = str(raised.value)
    assert ("compute 'cpu-cluster' runs at most 4 node(s) (its max_instances), but the job "
            "asks for 5: choose fewer nodes, or raise its maximum (`az ml compute update "
            "--name cpu-cluster --max-instances 5`)") in message
    assert "AzureError" in message
    [connect] = [cell for cell in notebook.cells if cell.get("id") == "connect"]
    assert any(o.get("output_type") == "error" for o in connect.outputs)
    assert server.calls("PUT") == [] and server.calls("POST", "/codes/") == []  # nothing sent
    assert len(server.calls("GET", "/computes/cpu-cluster")) == 1
