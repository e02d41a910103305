"""A submission with unfilled placeholders is refused before any network call: exit 2, fast."""

from __future__ import annotations

import json

from azure_standin.runner import clean_environment, network_report, run_submit

MISSING = ["subscription", "resource_group", "workspace", "compute", "input", "output"]


def test_placeholders_are_refused_without_network(tmp_path):
    result = run_submit("--nodes", "5", cwd=tmp_path, no_network=True)
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


def test_a_local_input_is_refused_for_a_submission_before_any_request(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("a b c\n")
    env = clean_environment(AZURE_SUBSCRIPTION_ID="s", AZURE_RESOURCE_GROUP="rg",
                            AZUREML_WORKSPACE_NAME="ws", AZUREML_COMPUTE="cpu")
    result = run_submit("--input", str(tmp_path / "in"), "--output",
                        "azureml://datastores/blobs/paths/out/", env=env, cwd=tmp_path,
                        no_network=True)
    assert result.returncode == 2, result.stderr
    report = network_report(result)
    assert report["connections"] == "0" and report["identity"] == "False"
    assert result.error_lines[-1].startswith("error: input input_dir is the local folder")
    assert "az ml data create" in result.error_lines[-1]
    assert "Traceback" not in result.stderr
