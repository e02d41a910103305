"""Where each submission setting comes from: flags > env > workspace config.json > config.yaml."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from submit import settings as S

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning")

WORKSPACE_VALUES = {"subscription_id": "11111111-2222-3333-4444-555555555555",
                    "resource_group": "rg-from-json", "workspace_name": "ws-from-json"}


def write_json(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_packaged_config_gives_placeholders_for_what_only_the_user_knows(tmp_path):
    settings = S.resolve({}, environ={}, search_from=tmp_path)
    assert S.unfilled(settings) == ["subscription", "resource_group", "workspace", "compute",
                                    "input", "output"]
    for name in S.unfilled(settings):
        assert settings.sources[name].endswith("submit/config.yaml")
    assert settings.input.startswith("azureml://datastores/<DATASTORE>/paths/")
    assert settings.output.startswith("azureml://datastores/<DATASTORE>/paths/")
    assert (settings.nodes, settings.processes_per_node, settings.distribution,
            settings.environment) == (1, 1, "mpi", "conda")
    assert Path(settings.job_config) == S.PACKAGE_DIR / "job_config.yaml"


@pytest.mark.parametrize("layers, value, source", [
    ((), "<SUBSCRIPTION_ID>", "submit/config.yaml"),
    (("json",), WORKSPACE_VALUES["subscription_id"], "workspace config"),
    (("json", "env"), "sub-from-env", "env AZURE_SUBSCRIPTION_ID"),
    (("json", "env", "flag"), "sub-from-flag", "flag --subscription"),
    (("env", "flag"), "sub-from-flag", "flag --subscription"),
    (("json", "flag"), "sub-from-flag", "flag --subscription"),
])
def test_precedence_of_the_subscription(tmp_path, layers, value, source):
    if "json" in layers:
        write_json(tmp_path / "config.json", WORKSPACE_VALUES)
    environ = {"AZURE_SUBSCRIPTION_ID": "sub-from-env"} if "env" in layers else {}
    overrides = {"subscription": "sub-from-flag"} if "flag" in layers else {}
    settings = S.resolve(overrides, environ=environ, search_from=tmp_path)
    assert settings.subscription == value
    assert source in settings.sources["subscription"]


def test_every_environment_variable_names_its_setting(tmp_path):
    environ = {"AZURE_SUBSCRIPTION_ID": "s", "AZURE_RESOURCE_GROUP": "rg",
               "AZUREML_WORKSPACE_NAME": "ws", "AZUREML_COMPUTE": "cpu-cluster"}
    settings = S.resolve({}, environ=environ, search_from=tmp_path)
    assert (settings.subscription, settings.resource_group, settings.workspace,
            settings.compute) == ("s", "rg", "ws", "cpu-cluster")
    for name, variable in zip(("subscription", "resource_group", "workspace", "compute"), environ):
        assert settings.sources[name] == f"env {variable}"
    assert S.unfilled(settings) == ["input", "output"]


def test_the_workspace_config_json_overrides_the_file_and_says_so(tmp_path):
    found = write_json(tmp_path / ".azureml" / "config.json", WORKSPACE_VALUES)
    settings = S.resolve({}, environ={}, search_from=tmp_path)
    assert settings.resource_group == "rg-from-json"
    assert settings.workspace == "ws-from-json"
    assert str(found) in settings.sources["workspace"] or \
        found.name in settings.sources["workspace"]
    described = settings.describe()
    assert "ws-from-json" in described and "workspace config" in described
    assert "<COMPUTE_CLUSTER>" in described and "placeholder" in described


# Layouts of config files: (files to write, relative to tmp/a/b, searched from tmp/a/b).
LAYOUTS = {
    "here": ["config.json"],
    "parent": ["../config.json"],
    ".azureml beats a closer plain file": ["config.json", "../../.azureml/config.json"],
    "aml_config": ["aml_config/config.json"],
    "project.json": ["../project.json"],
    ".azureml/config.json beats .azureml/project.json": [".azureml/project.json",
                                                         "../.azureml/config.json"],
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_config_json_is_found_as_mlclient_from_config_finds_it(tmp_path, layout):
    """Our search and the SDK's own ``MLClient.from_config`` pick the same file."""
    from azure.ai.ml import MLClient
    from azure.core.credentials import AccessToken

    class StaticCredential:
        def get_token(self, *scopes, **kwargs):
            return AccessToken("unused", int(time.time()) + 3600)

    start = tmp_path / "a" / "b"
    start.mkdir(parents=True)
    for index, relative in enumerate(LAYOUTS[layout]):
        write_json((start / relative).resolve(),
                   {"subscription_id": f"sub-{index}", "resource_group": f"rg-{index}",
                    "workspace_name": f"ws-{index}"})
    ours = S.resolve({}, environ={}, search_from=start)
    client = MLClient.from_config(StaticCredential(), path=str(start))
    assert (ours.subscription, ours.resource_group, ours.workspace) == \
        (client.subscription_id, client.resource_group_name, client.workspace_name)


def test_config_json_with_a_scope(tmp_path):
    scope = ("/subscriptions/sub-x/resourceGroups/rg-x/providers/"
             "Microsoft.MachineLearningServices/workspaces/ws-x")
    write_json(tmp_path / "config.json", {"Scope": scope})
    settings = S.resolve({}, environ={}, search_from=tmp_path)
    assert (settings.subscription, settings.resource_group, settings.workspace) == \
        ("sub-x", "rg-x", "ws-x")


@pytest.mark.parametrize("content, words", [
    ({"Scope": "/subscriptions/s"}, ["not a workspace resource ID"]),
])
def test_a_broken_config_json_is_named(tmp_path, content, words):
    path = tmp_path / "config.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(S.SettingsError) as caught:
        S.resolve({}, environ={}, search_from=tmp_path)
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("content, words", [
    ({"editor.fontSize": 12}, ["names none of subscription_id, resource_group, workspace_name"]),
    ('{"editor.fontSize": 12, // a comment\n}', ["not valid JSON"]),
    ([1, 2], ["names none of"]),
])
def test_a_config_json_that_is_no_workspace_config_is_skipped_with_a_warning(tmp_path, content,
                                                                               words):
    """An editor's config.json above the project neither blocks nor hides a real one."""
    start = tmp_path / "project" / "notebooks"
    start.mkdir(parents=True)
    unrelated = tmp_path / "project" / "config.json"
    unrelated.write_text(content if isinstance(content, str) else json.dumps(content))
    settings = S.resolve({}, environ={}, search_from=start)
    [warning] = settings.warnings
    assert warning.startswith(f"{str(unrelated)!r} is not a workspace config")
    assert warning.endswith("; skipped it") and "\n" not in warning
    for word in words:
        assert word in warning
    assert settings.subscription == "<SUBSCRIPTION_ID>"  # the next source, submit/config.yaml
    # a workspace config further up is still found
    write_json(tmp_path / "config.json", WORKSPACE_VALUES)
    settings = S.resolve({}, environ={}, search_from=start)
    assert settings.workspace == "ws-from-json" and len(settings.warnings) == 1


@pytest.mark.parametrize("content", [{"editor.fontSize": 12}, {"subscription_id": "s"},
                                     {"Scope": "broken"}])
def test_config_json_is_not_read_when_flags_and_environment_give_the_workspace(tmp_path,
                                                                               content):
    write_json(tmp_path / "config.json", content)
    settings = S.resolve({"subscription": "sub", "workspace": "ws"},
                         environ={"AZURE_RESOURCE_GROUP": "rg"}, search_from=tmp_path)
    assert (settings.subscription, settings.resource_group, settings.workspace) == \
        ("sub", "rg", "ws")
    assert settings.warnings == ()


def test_config_json_gives_only_what_flags_and_environment_leave_unset(tmp_path):
    write_json(tmp_path / "config.json", {"workspace_name": "ws-from-json"})
    settings = S.resolve({"subscription": "sub"}, environ={"AZURE_RESOURCE_GROUP": "rg"},
                         search_from=tmp_path)
    assert settings.workspace == "ws-from-json"
    assert settings.sources["workspace"].startswith("workspace config")
    assert settings.sources["subscription"] == "flag --subscription"


@pytest.mark.parametrize("content, given", [
    ({"subscription_id": "s"}, {"subscription": "s"}),
    ({"resource_group": "rg", "workspace_name": "ws"}, {"resource_group": "rg",
                                                        "workspace": "ws"}),
])
def test_a_partial_config_json_gives_what_it_has_and_the_rest_falls_through(tmp_path, content,
                                                                             given):
    """The values a workspace config.json lacks come from the layers below it: --config FILE,
    else submit/config.yaml's placeholders, which only a submission refuses."""
    start = tmp_path / "sub"
    start.mkdir()
    found = write_json(tmp_path / "config.json", content)
    settings = S.resolve({}, environ={}, search_from=start)
    for name in S.WORKSPACE_KEYS:
        if name in given:
            assert settings.values[name] == given[name]
            assert settings.sources[name] == f"workspace config {found}"
        else:
            assert S.is_placeholder(settings.values[name])
            assert settings.sources[name].endswith("submit/config.yaml")
    assert settings.warnings == ()
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({"workspace": "ws-from-file", "resource_group": "rg-file"}))
    settings = S.resolve({}, environ={}, config_file=mine, search_from=start)
    assert settings.workspace == given.get("workspace", "ws-from-file")
    assert settings.resource_group == given.get("resource_group", "rg-file")


@pytest.mark.parametrize("name", ["input", "output"])
def test_the_provider_form_of_a_datastore_uri_is_accepted(tmp_path, name):
    uri = ("azureml://subscriptions/S/resourceGroups/RG/providers/"
           "Microsoft.MachineLearningServices/workspaces/W/datastores/D/paths/P")
    settings = S.resolve({name: uri}, environ={}, search_from=tmp_path)
    assert settings.values[name] == uri
    from submit.build import storage_place
    assert storage_place(uri) == storage_place("azureml://datastores/d/paths/P/") == \
        ("datastore:d", "P")


def test_a_user_config_file_lies_over_the_packaged_one(tmp_path):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "mine.yaml").write_text(yaml.safe_dump(
        {"compute": "gpu-cluster", "nodes": 3, "job_config": "job.yaml"}))
    settings = S.resolve({}, environ={}, config_file=tmp_path / "conf" / "mine.yaml",
                         search_from=tmp_path)
    assert settings.compute == "gpu-cluster" and settings.nodes == 3
    assert settings.sources["compute"].endswith("mine.yaml")
    # relative paths are relative to the file that gives them
    assert settings.job_config == str(tmp_path / "conf" / "job.yaml")
    assert settings.sources["experiment"].endswith("submit/config.yaml")


@pytest.mark.parametrize("content, words", [
    ({"nodez": 5}, ["nodez", "settings are"]),
    ({"nodes": 0}, ["nodes must be >= 1"]),
    ({"nodes": "five"}, ["nodes must be an integer"]),
    ({"distribution": "slurm"}, ["distribution must be one of"]),
    ({"node_rank": 3}, ["unknown setting 'node_rank'"]),
])
def test_bad_settings_files_are_refused_in_one_line(tmp_path, content, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(S.SettingsError) as caught:
        S.resolve({}, environ={}, config_file=path, search_from=tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_placeholder_overrides_count_as_not_given(tmp_path):
    """The notebook passes its unfilled cell; the chain falls through to env and files."""
    settings = S.resolve({"subscription": "<SUBSCRIPTION_ID>", "compute": None},
                         environ={"AZURE_SUBSCRIPTION_ID": "from-env"}, search_from=tmp_path)
    assert settings.subscription == "from-env"
    assert settings.sources["compute"].endswith("submit/config.yaml")


def test_the_refusal_lists_each_missing_value_and_how_to_set_it(tmp_path):
    settings = S.resolve({"compute": "cpu"}, environ={"AZURE_RESOURCE_GROUP": "rg"},
                         search_from=tmp_path)
    message = S.unfilled_message(settings)
    lines = message.splitlines()
    assert lines[0].startswith("error: 4 setting(s) still hold placeholders")
    assert [line.split()[0] for line in lines[1:]] == ["subscription", "workspace", "input",
                                                      "output"]
    assert "--subscription" in lines[1] and "AZURE_SUBSCRIPTION_ID" in lines[1] \
        and "subscription_id" in lines[1]
    assert "--workspace" in lines[2] and "AZUREML_WORKSPACE_NAME" in lines[2]
    assert "--input" in lines[3] and "submit/config.yaml" in lines[3]
    notebook = S.unfilled_message(settings, in_notebook=True)
    assert "fill SUBSCRIPTION in the parameters cell" in notebook
    assert "--subscription" not in notebook
