"""A submission with unfilled placeholders is refused before any network call: exit 2, fast."""

from __future__ import annotations

import json

import pytest
from azure_standin.runner import clean_environment, network_report, run_submit

MISSING = ["subscription", "resource_group", "workspace", "compute", "input", "output"]


def test_placeholders_are_refused_without_network(tmp_path):
    result = run_submit("--nodes", "5", cwd=tmp_path, no_network=True, fresh=True)
    assert result.returncode == 2
    assert result.seconds < 15
    assert "Traceback" not in result.stderr
    # refused before anything was sent, before the Azure SDK was even imported
    assert network_report(result) == {"connections": "0", "identity": "False", "sdk": "False"}
    lines = result.error_lines
    assert lines[0].startswith("error: 6 setting(s) still hold placeholders")
    listed = [line.split()[0] for line in lines[1:]]
    assert listed == MISSING
    by_name = dict(zip(listed, lines[1:]))
    assert "AZURE_SUBSCRIPTION_ID" in by_name["subscription"]
    assert "--resource-group" in by_name["resource_group"]
    assert "AZUREML_WORKSPACE_NAME" in by_name["workspace"]
    assert "AZUREML_COMPUTE" in by_name["compute"]
    assert "azureml://datastores/<DATASTORE>/paths/" in by_name["input"]
    assert result.stdout == ""


def test_only_what_is_still_missing_is_listed(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "subscription_id": "00000000-0000-0000-0000-000000000001",
        "resource_group": "rg", "workspace_name": "ws"}))
    env = clean_environment(AZUREML_COMPUTE="cpu-cluster")
    result = run_submit("--nodes", "1", "--node-count", "5", "--node-rank", "3",
                        "--input", "azureml://datastores/blobs/paths/in/", env=env, cwd=tmp_path,
                        no_network=True)
    assert result.returncode == 2
    assert network_report(result)["connections"] == "0"
    assert [line.split()[0] for line in result.error_lines[1:]] == ["output"]
    assert result.error_lines[0].startswith("error: 1 setting(s) still hold placeholders")


def test_what_a_partial_config_json_lacks_is_listed(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"subscription_id": "s",
                                                      "workspace_name": "w"}))
    (tmp_path / "sub").mkdir()
    env = clean_environment(AZUREML_COMPUTE="cpu-cluster")
    result = run_submit("--nodes", "1", "--input", "azureml:d:1", "--output",
                        "azureml://datastores/w/paths/o", env=env, cwd=tmp_path / "sub",
                        no_network=True)
    assert result.returncode == 2, result.stderr
    assert network_report(result)["connections"] == "0"
    assert result.error_lines[0].startswith("error: 1 setting(s) still hold placeholders")
    [line] = result.error_lines[1:]
    assert line.startswith("  resource_group = <RESOURCE_GROUP> (from ")
    assert "put resource_group in a workspace config.json" in line


def _empty_after_ignore(folder):
    folder.mkdir()
    (folder / ".amlignore").write_text("*\n")  # excludes every file, itself too


@pytest.mark.parametrize("make, message", [
    (lambda folder: None, "is neither a storage URI nor a local folder"),
    (_empty_after_ignore, "holds no file to upload (an .amlignore or .gitignore there may "
                          "exclude them all)"),
], ids=["missing", "nothing to upload"])
def test_a_bad_local_input_is_refused_for_a_submission_before_any_request(tmp_path, make,
                                                                          message):
    """A local folder is uploaded when submitted; one that is not there, or whose files
    its ignore file all excludes, stops before sign-in (the SDK would stop later)."""
    make(tmp_path / "in")
    env = clean_environment(AZURE_SUBSCRIPTION_ID="s", AZURE_RESOURCE_GROUP="rg",
                            AZUREML_WORKSPACE_NAME="ws", AZUREML_COMPUTE="cpu")
    result = run_submit("--input", str(tmp_path / "in"), "--output",
                        "azureml://datastores/blobs/paths/out/", env=env, cwd=tmp_path,
                        no_network=True)
    assert result.returncode == 2, result.stderr
    report = network_report(result)
    assert report["connections"] == "0" and report["identity"] == "False"
    [line] = result.error_lines  # one line, the summary not printed
    assert line.startswith("error: input ") and line.endswith(message)
    assert "Traceback" not in result.stderr
