"""The real submission path, offline: the real ``MLClient`` against loopback stand-ins.

``jobs.create_or_update`` talks HTTPS to the Azure ML stand-in (through the SDK's
``AZUREML_DEV_URL_MFE`` override, trusting a test CA through
``REQUESTS_CA_BUNDLE``) and uploads the code to a real Azurite. The command-line
runs sign in with the real ``DefaultAzureCredential`` (a managed identity the
stand-in serves); the in-process runs use a static token credential.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from azure_standin.fixtures import azurite, certificates, make_standin, standin  # noqa: F401
from azure_standin.runner import CLEARED_PREFIXES, clean_environment, network_report, run_submit
from azure_standin.silent import SilentServer

from submit import azure as submit_azure
from submit import cli
from submit import prepare_job, resolve_settings
from submit.build import job_command, read_environment_spec
from submit.stage import checkout_commit, job_package_dir

pytestmark = [pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning"),
              pytest.mark.slow]

SUBSCRIPTION = "00000000-0000-0000-0000-00000000c0de"
WORKSPACE_FLAGS = ["--subscription", SUBSCRIPTION, "--resource-group", "rg-test",
                   "--workspace", "ws-test", "--compute", "cpu-cluster",
                   "--input", "azureml://datastores/workspaceblobstore/paths/corpus/",
                   "--output", "azureml://datastores/workspaceblobstore/paths/tokens/"]
WORKSPACE = {"subscription": SUBSCRIPTION, "resource_group": "rg-test", "workspace": "ws-test",
             "compute": "cpu-cluster",
             "input": "azureml://datastores/workspaceblobstore/paths/corpus/",
             "output": "azureml://datastores/workspaceblobstore/paths/tokens/"}


class StaticCredential:
    """A token credential that always returns the stand-in's token (no sign-in)."""

    def __init__(self, token: str, aml_token: str | None = None):
        self.token, self.aml_token = token, aml_token
        self.requests = 0

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken

        self.requests += 1
        aml = self.aml_token and any(s.startswith("https://ml.azure.com") for s in scopes)
        return AccessToken(self.aml_token if aml else self.token, int(time.time()) + 3600)


@pytest.fixture
def sdk_environment(monkeypatch, standin, tmp_path):
    """This process pointed at the stand-in, as the SDK's own variables do it."""
    for name in list(os.environ):
        if name.startswith(CLEARED_PREFIXES):
            monkeypatch.delenv(name)
    for name, value in standin.client_environment().items():
        if not name.startswith("IDENTITY_"):
            monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    return standin


def expected_code() -> set[str]:
    """The files of the job package (no caches), as paths in the code folder."""
    package = job_package_dir()
    return {f"job/{p.relative_to(package).as_posix()}" for p in package.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def check_job_body(server, name: str, settings, nodes: int, per_node: int) -> dict:
    """The job the SDK PUT: shape, command, bindings, environment, code."""
    body = server.job_bodies()[name]["properties"]
    assert body["jobType"] == "Command"
    assert body["resources"]["instanceCount"] == nodes
    assert body["distribution"] == {"distributionType": "Mpi", "processCountPerInstance": per_node}
    assert body["command"] == job_command(settings)
    assert body["inputs"] == {"input_dir": {"jobInputType": "uri_folder", "mode": "ReadOnlyMount",
                                            "uri": WORKSPACE["input"]}}
    assert body["outputs"] == {"out_dir": {"jobOutputType": "uri_folder", "mode": "ReadWriteMount",
                                           "uri": WORKSPACE["output"]}}
    assert body["computeId"].endswith("/workspaces/ws-test/computes/cpu-cluster")
    assert body["experimentName"] == "amlshard"
    # the environment: the image and conda file of environment/, created as an asset first
    assert re.search(r"/environments/CliV2AnonymousEnvironment/versions/\w+$", body["environmentId"])
    environment = server.environments[body["environmentId"].split("/environments/")[1]
                                      .replace("/versions/", ":")]["properties"]
    spec = read_environment_spec()
    assert environment["image"] == spec["image"]
    assert yaml.safe_load(environment["condaFile"]) == \
        yaml.safe_load(Path(spec["conda_file"]).read_text())
    # the code: registered as a version whose files went to Azurite
    code = server.codes[body["codeId"].split("/codes/")[1].replace("/versions/", ":")]
    assert code["properties"]["codeUri"].startswith(server.azurite.blob_endpoint)
    return body


def test_api_submission_sends_the_job_and_uploads_only_the_job_package(sdk_environment, tmp_path):
    server = sdk_environment
    settings = resolve_settings({**WORKSPACE, "nodes": 5, "processes_per_node": 2,
                                 "process_count": 3})
    prepared = prepare_job(settings, tmp_path / "job-code")
    credential = StaticCredential(server.token)
    client = submit_azure.ml_client(settings, credential, show_progress=False)
    submitted = submit_azure.submit_job(client, prepared.job)

    assert submitted.status == "Starting"
    assert submitted.studio_url.startswith(f"https://ml.azure.com/runs/{submitted.name}?wsid=")
    assert submitted.studio_url.endswith(f"&tid={server.tenant_id}")
    body = check_job_body(server, submitted.name, settings, nodes=5, per_node=2)
    assert body["command"].endswith("--process_count 3")
    assert re.fullmatch(r"amlshard corpus x5 \d{4}", body["displayName"])
    assert body["tags"] == {"input": WORKSPACE["input"], "output": WORKSPACE["output"],
                            "nodes": "5", "processes_per_node": "2",
                            "git_commit": checkout_commit()}

    uploaded = server.uploaded_code()
    staged = {p.relative_to(prepared.code_dir).as_posix(): p.read_bytes()
              for p in prepared.code_dir.rglob("*") if p.is_file()}
    assert uploaded == staged  # byte for byte what was staged, and nothing else
    assert set(uploaded) == set(expected_code()) | {"job_config.yaml"}
    assert uploaded["job_config.yaml"] == Path(settings.job_config).read_bytes()

    # every call went where the SDK sends it, each with the bearer token
    assert server.unmatched() == []
    paths = [(r.method, r.path.split("/workspaces/ws-test")[-1]) for r in server.requests]
    assert [m for m, _ in paths] == ["GET", "POST", "PUT", "PUT", "PUT"]
    assert paths[-1] == ("PUT", f"/jobs/{submitted.name}")
    assert credential.requests >= 1


def test_selective_node_submission(sdk_environment, tmp_path):
    server = sdk_environment
    settings = resolve_settings({**WORKSPACE, "nodes": 1, "node_count": 5, "node_rank": 3})
    prepared = prepare_job(settings, tmp_path / "job-code")
    client = submit_azure.ml_client(settings, StaticCredential(server.token), show_progress=False)
    submitted = submit_azure.submit_job(client, prepared.job)
    body = check_job_body(server, submitted.name, settings, nodes=1, per_node=1)
    assert body["command"].endswith("--distribArgs.node_count 5 --distribArgs.node_rank 3")
    assert re.fullmatch(r"amlshard corpus node 3 of 5 \d{4}", body["displayName"])
    assert body["tags"]["selective_node"] == "3 of 5"


def test_the_dry_run_yaml_submits_the_same_job(sdk_environment, tmp_path):
    """What `az ml job create --file` would send for the dry-run YAML is the job submit sends."""
    from submit.yaml_out import load_job_yaml

    server = sdk_environment
    result = run_submit("--nodes", "5", "--dry-run", "--yaml", str(tmp_path / "job.yml"),
                        *WORKSPACE_FLAGS, "--display-name", "tokens", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    settings = resolve_settings({**WORKSPACE, "nodes": 5, "display_name": "tokens"})
    client = submit_azure.ml_client(settings, StaticCredential(server.token), show_progress=False)
    from_yaml = client.jobs.create_or_update(load_job_yaml(tmp_path / "job.yml"))
    direct = submit_azure.submit_job(client, prepare_job(settings, tmp_path / "direct" / "job-code").job)
    bodies = server.job_bodies()
    first, second = (bodies[n]["properties"] for n in (from_yaml.name, direct.name))
    assert first == second
    check_job_body(server, direct.name, settings, nodes=5, per_node=1)


@pytest.mark.parametrize("source", ["azureml:corpus:2", "azureml:corpus@latest"])
def test_a_data_asset_input_is_sent_as_its_version(sdk_environment, tmp_path, source):
    """A registered data asset binds as its version's ID, from the YAML as from submit."""
    from submit.yaml_out import load_job_yaml

    server = sdk_environment
    result = run_submit("--dry-run", "--yaml", str(tmp_path / "job.yml"), *WORKSPACE_FLAGS,
                        "--input", source, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    settings = resolve_settings({**WORKSPACE, "input": source})
    client = submit_azure.ml_client(settings, StaticCredential(server.token), show_progress=False)
    from_yaml = client.jobs.create_or_update(load_job_yaml(tmp_path / "job.yml"))
    direct = submit_azure.submit_job(client, prepare_job(settings, tmp_path / "code").job)
    version = "2" if source.endswith(":2") else "3"  # the stand-in's latest corpus is 3
    for name in (from_yaml.name, direct.name):
        uri = server.job_bodies()[name]["properties"]["inputs"]["input_dir"]["uri"]
        assert uri.endswith(f"/workspaces/ws-test/data/corpus/versions/{version}")
    assert server.unmatched() == []


def test_a_missing_data_asset_is_named_in_one_line(sdk_environment, tmp_path):
    server = sdk_environment
    settings = resolve_settings({**WORKSPACE, "input": "azureml:nowhere@latest"})
    client = submit_azure.ml_client(settings, StaticCredential(server.token), show_progress=False)
    with pytest.raises(submit_azure.AzureError) as caught:
        submit_azure.submit_job(client, prepare_job(settings, tmp_path / "code").job)
    assert str(caught.value) == ("submitting the job: the Azure ML SDK refused: Asset nowhere "
                                 "does not exist in workspace ws-test.")
    assert server.job_bodies() == {}


JOB_SETTINGS = ["--tag", "team=nlp", "--tag", "nodes=all five", "--description", "tokens of c",
                "--env", "LOG=debug", "--env", "OMPI_MCA_hwloc_base_binding_policy=core",
                "--timeout", "7200", "--identity", "user", "--job-tier", "Spot",
                "--priority", "high", "--display-name", "tokens of corpus"]


def check_settings_body(body: dict) -> None:
    """The job settings of JOB_SETTINGS as Azure ML's REST API receives them."""
    assert body["displayName"] == "tokens of corpus"
    assert body["description"] == "tokens of c"
    assert body["tags"]["team"] == "nlp" and body["tags"]["nodes"] == "all five"
    assert body["tags"]["input"] == WORKSPACE["input"] and "git_commit" in body["tags"]
    assert body["environmentVariables"] == {"OMPI_MCA_hwloc_base_binding_policy": "core",
                                            "PRTE_MCA_hwloc_default_binding_policy": "none",
                                            "LOG": "debug"}
    assert body["limits"] == {"jobLimitsType": "Command", "timeout": "PT2H"}
    assert body["identity"] == {"identityType": "UserIdentity"}
    assert body["queueSettings"] == {"jobTier": "Spot", "priority": 3}


def test_job_settings_reach_azure_ml(sdk_environment, tmp_path):
    """Tags, description, variables, timeout, identity, queue: from flags and from the YAML."""
    from submit.yaml_out import load_job_yaml

    server = sdk_environment
    result = run_submit("--dry-run", "--yaml", str(tmp_path / "job.yml"), *WORKSPACE_FLAGS,
                        *JOB_SETTINGS, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "experimental" not in result.stderr
    settings = resolve_settings(WORKSPACE)
    credential = StaticCredential(server.token, server.aml_token)
    client = submit_azure.ml_client(settings, credential, show_progress=False)
    from_yaml = client.jobs.create_or_update(load_job_yaml(tmp_path / "job.yml"))
    check_settings_body(server.job_bodies()[from_yaml.name]["properties"])
    result = run_submit(*WORKSPACE_FLAGS, *JOB_SETTINGS, env=cli_environment(server),
                        cwd=tmp_path, timeout=120, loopback_only=True)
    assert result.returncode == 0, result.stderr
    direct = re.search(r"^submitted job: (\S+) ", result.stdout, re.MULTILINE)[1]
    check_settings_body(server.job_bodies()[direct]["properties"])
    first, second = (server.job_bodies()[n]["properties"] for n in (from_yaml.name, direct))
    assert first == second
    # a user identity: the SDK sends the submitter's Azure ML token along
    assert all(r.headers.get("x-azureml-token") == server.aml_token
               for r in server.calls("PUT", "/jobs/"))


def test_serverless_compute_sends_an_instance_type_and_no_compute(sdk_environment, tmp_path):
    server = sdk_environment
    settings = resolve_settings({**WORKSPACE, "compute": None, "nodes": 2,
                                 "instance_type": "Standard_D4s_v3"},
                                environ={}, search_from=tmp_path)
    assert settings.compute is None and settings.sources["compute"].startswith("serverless")
    prepared = prepare_job(settings, tmp_path / "code")
    assert "on serverless compute (Standard_D4s_v3)" in prepared.summary()
    client = submit_azure.ml_client(settings, StaticCredential(server.token), show_progress=False)
    submitted = submit_azure.submit_job(client, prepared.job)
    body = server.job_bodies()[submitted.name]["properties"]
    assert (body["resources"]["instanceCount"], body["resources"]["instanceType"]) == \
        (2, "Standard_D4s_v3")
    assert body.get("computeId") is None


def cli_environment(server) -> dict[str, str]:
    return clean_environment(**server.client_environment())


def test_cli_submits_with_default_credential_and_streams_to_completed(standin, tmp_path):
    result = run_submit("--nodes", "5", *WORKSPACE_FLAGS, "--stream", env=cli_environment(standin),
                        cwd=tmp_path, timeout=120, loopback_only=True)
    assert result.returncode == 0, result.stderr
    name = re.search(r"^submitted job: (\S+) \(status Starting\)$", result.stdout, re.MULTILINE)[1]
    assert f"studio: https://ml.azure.com/runs/{name}?wsid=" in result.stdout
    assert f"[stand-in] {name}: poll 2, status Running" in result.stdout  # the streamed log
    assert result.stdout.rstrip().endswith(f"job {name} ended: Completed")
    assert "Traceback" not in result.stderr
    assert standin.tokens_issued >= 1  # DefaultAzureCredential -> managed identity
    assert network_report(result)["connections"] == "0"  # nothing beyond 127.0.0.1
    assert standin.unmatched() == []
    assert len(standin.calls("GET", f"/runs/{name}/details")) == standin.running_polls + 1
    settings = resolve_settings({**WORKSPACE, "nodes": 5}, environ={}, search_from=tmp_path)
    check_job_body(standin, name, settings, nodes=5, per_node=1)
    assert "flag --subscription" in result.stdout  # the summary names each value's source


def test_cli_stream_of_a_failed_job_exits_1(make_standin, tmp_path):
    server = make_standin(outcome="Failed", running_polls=1)
    result = run_submit("--nodes", "2", *WORKSPACE_FLAGS, "--stream", env=cli_environment(server),
                        cwd=tmp_path, timeout=120, loopback_only=True)
    assert result.returncode == 1, result.stderr
    assert re.search(r"^job \S+ ended: Failed$", result.stdout, re.MULTILINE)
    assert "Traceback" not in result.stderr


def test_cli_without_stream_returns_after_submitting(standin, tmp_path):
    env = cli_environment(standin)
    env.update(AZURE_SUBSCRIPTION_ID=SUBSCRIPTION, AZURE_RESOURCE_GROUP="rg-test",
               AZUREML_WORKSPACE_NAME="ws-test", AZUREML_COMPUTE="cpu-cluster")
    result = run_submit("--nodes", "1", "--input", WORKSPACE["input"], "--output",
                        WORKSPACE["output"], "--yaml", str(tmp_path / "submitted.yml"),
                        env=env, cwd=tmp_path, timeout=120, loopback_only=True)
    assert result.returncode == 0, result.stderr
    assert "env AZUREML_WORKSPACE_NAME" in result.stdout
    assert standin.calls("GET", "/details") == []
    assert (tmp_path / "submitted.yml").is_file()
    [name] = standin.job_bodies()
    assert standin.job_bodies()[name]["properties"]["resources"]["instanceCount"] == 1


def test_default_credential_without_any_sign_in_is_one_line_exit_2(standin, tmp_path):
    """Not logged in: DefaultAzureCredential's developer credentials all fail; no traceback."""
    env = clean_environment(AZUREML_DEV_URL_MFE=standin.url + "/",
                            REQUESTS_CA_BUNDLE=str(standin.certificates.ca_bundle),
                            # developer credentials only (no managed-identity probe off this
                            # machine); nothing logged in: no az, azd or pwsh on PATH
                            AZURE_TOKEN_CREDENTIALS="dev", HOME=str(tmp_path),
                            PATH=str(Path(os.sys.executable).parent))
    result = run_submit("--nodes", "5", *WORKSPACE_FLAGS, env=env, cwd=tmp_path, timeout=60,
                        loopback_only=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.error_lines
    assert line.startswith("error: authentication failed: DefaultAzureCredential tried ")
    assert "AzureCliCredential" in line and "az login" in line
    assert standin.requests == []  # nothing reached Azure ML
    assert network_report(result)["connections"] == "0"  # nor anything beyond this machine


def test_a_refused_managed_identity_is_one_line_exit_2(standin, tmp_path):
    env = cli_environment(standin)
    env["IDENTITY_HEADER"] = "not-the-right-secret"
    result = run_submit("--nodes", "5", *WORKSPACE_FLAGS, env=env, cwd=tmp_path, timeout=60,
                        loopback_only=True)
    assert result.returncode == 2
    [line] = result.error_lines
    assert line.startswith("error: authentication failed: ")
    assert "ManagedIdentityCredential" in line and "az login" in line
    assert "Traceback" not in result.stderr
    assert standin.calls(contains="/workspaces/") == []


def test_a_missing_workspace_is_one_line_exit_2(make_standin, tmp_path):
    server = make_standin(workspace_exists=False)
    result = run_submit("--nodes", "5", *WORKSPACE_FLAGS, env=cli_environment(server),
                        cwd=tmp_path, timeout=60, loopback_only=True)
    assert result.returncode == 2, result.stderr
    # the check before submitting says so (check_workspace), before any code is uploaded
    assert result.error_lines[-1].startswith("error: workspace 'ws-test' was not found in "
                                             "resource group rg-test")
    assert server.calls("POST") == [] and server.calls("PUT") == []
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("signum, code, what", [(signal.SIGTERM, 143, "terminated"),
                                                (signal.SIGINT, 130, "interrupted")])
def test_a_signal_while_submitting_removes_the_code_folder_in_one_line(tmp_path, signum, code,
                                                                        what):
    """Stopped while the sign-in hangs: the temporary code folder goes, one line says that
    nothing was submitted."""
    with SilentServer() as silent:
        # https (bearer tokens go over TLS only), so the request waits for the token first:
        # the managed identity's, from the silent server
        mfe = silent.url.replace("http:", "https:") + "/"
        env = clean_environment(AZUREML_DEV_URL_MFE=mfe, IDENTITY_HEADER="header",
                                IDENTITY_ENDPOINT=silent.url + "/msi/token",
                                TMPDIR=str(tmp_path))
        process = subprocess.Popen([sys.executable, "-m", "submit", "--nodes", "1",
                                    *WORKSPACE_FLAGS], env=env, cwd=tmp_path, text=True,
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        try:
            assert silent.connected.wait(30), "the submission never reached the server"
            assert list(tmp_path.glob("amlshard-code-*"))  # staged, then the request hangs
            process.send_signal(signum)
            out, err = process.communicate(timeout=30)
        finally:
            process.kill()
            process.wait()
    assert process.returncode == code, err
    assert err.splitlines() == [f"{what}: nothing was submitted"]
    assert out.startswith("job: 1 node")  # the summary, printed before signing in
    assert list(tmp_path.glob("amlshard-code-*")) == []


def test_an_interruption_says_how_far_the_submission_went():
    progress = cli.Progress()
    assert progress.interrupted("terminated") == "terminated: nothing was submitted"
    progress.sending = True
    assert "may have reached Azure ML" in progress.interrupted("interrupted")
    progress.submitted = "job-1"
    assert progress.interrupted("interrupted") == (
        "interrupted: job job-1 was submitted and goes on running on Azure ML "
        "(python -m submit cancel job-1 stops it)")
