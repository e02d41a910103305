"""A local ``--input`` folder, submitted for real: the SDK uploads it, offline.

The real SDK uploads a local input folder to ``https://ACCOUNT.blob.core.windows.net``
(the datastore's account, the public cloud's suffix); ``HTTPS_PROXY`` sends that to
:class:`azure_standin.BlobProxy`, which serves it from Azurite, so the SDK's own path
runs unchanged and nothing leaves this machine.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from azure_standin.fixtures import (  # noqa: F401
    azurite,
    blob_proxy,
    certificates,
    make_standin,
    standin,
)
from azure_standin.runner import clean_environment, network_report, run_submit
from test_submit_azure import WORKSPACE, StaticCredential

from submit import azure as submit_azure
from submit import prepare_job, resolve_settings

pytestmark = [pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning"),
              pytest.mark.slow]

WHERE = ["--subscription", WORKSPACE["subscription"], "--resource-group", "rg-test",
         "--workspace", "ws-test", "--compute", "cpu-cluster", "--output", WORKSPACE["output"]]
# The SDK's upload place of a local folder: LocalUpload/<content hash>/<folder name>/
UPLOADED = re.compile(r"azureml://datastores/workspaceblobstore/paths/"
                      r"(LocalUpload/[0-9a-f]{32,64}/corpus/)")


def make_corpus(root: Path) -> dict[str, bytes]:
    """A folder with a nested file, a dotfile, a .gitignore and a file it excludes.

    Returns what the SDK uploads: every file but the excluded one, dotfiles included.
    """
    files = {"a.txt": b"alpha beta\n", "deep/er/b.txt": b"gamma\n" * 100,
             ".hidden": b"the job skips me, the upload does not\n", ".gitignore": b"*.tmp\n"}
    for name, data in {**files, "scratch.tmp": b"not uploaded\n"}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def uploaded_folder(server, name: str) -> str:
    """The datastore path the job named ``name`` was bound to (``LocalUpload/.../corpus/``)."""
    uri = server.job_bodies()[name]["properties"]["inputs"]["input_dir"]["uri"]
    found = UPLOADED.fullmatch(uri)
    assert found, uri
    return found[1]


def blobs_under(server, folder: str) -> dict[str, bytes]:
    return {name[len(folder):]: data for name, data in
            server.datastore_blobs("workspaceblobstore").items() if name.startswith(folder)}


def test_cli_uploads_a_local_input_folder_and_binds_the_job_to_it(standin, blob_proxy,
                                                                    tmp_path):
    corpus = tmp_path / "corpus"
    expected = make_corpus(corpus)
    env = clean_environment(**{**standin.client_environment(), **blob_proxy.environment()})
    result = run_submit("--nodes", "2", *WHERE, "--input", str(corpus), env=env, cwd=tmp_path,
                        timeout=120, loopback_only=True)
    assert result.returncode == 0, result.stderr
    size = sum(len(data) for data in expected.values())
    assert (f"input: {corpus} (local folder, uploaded on submission: 4 files, {size} B "
            "to datastore workspaceblobstore (.gitignore applied))") in result.stdout
    # the plan leaves out what the upload leaves out, and the job skips dotfiles itself
    assert re.search(r"^plan for local input .*: 2 file\(s\), ", result.stdout, re.MULTILINE)
    assert "scratch.tmp" not in result.stdout
    name = re.search(r"^submitted job: (\S+) ", result.stdout, re.MULTILINE)[1]
    # said before anything was sent: the line comes before the job's name
    assert result.stdout.index("uploaded on submission") < result.stdout.index("submitted job")

    folder = uploaded_folder(standin, name)
    assert blobs_under(standin, folder) == expected  # byte for byte, and nothing else
    assert network_report(result)["connections"] == "0"  # the proxy is on 127.0.0.1
    assert blob_proxy.refused == []
    hosts = {call.host for call in blob_proxy.calls()}
    assert hosts == {"devstoreaccount1.blob.core.windows.net"}
    assert standin.unmatched() == []
    # the SDK asked the stand-in for the datastore and its key, and Azure ML got the job
    assert standin.calls("GET", "/datastores/workspaceblobstore")
    assert standin.calls("POST", "/datastores/workspaceblobstore/listSecrets")
    assert standin.job_bodies()[name]["properties"]["resources"]["instanceCount"] == 2


def submit_in_process(server, folder: Path, code: Path) -> str:
    settings = resolve_settings({**WORKSPACE, "input": str(folder)}, environ={},
                                search_from=code.parent)
    client = submit_azure.ml_client(settings, StaticCredential(server.token),
                                    show_progress=False)
    return submit_azure.submit_job(client, prepare_job(settings, code).job).name


def test_an_unchanged_folder_is_uploaded_once(standin, blob_proxy, tmp_path, monkeypatch):
    """The SDK names the upload by a hash of the folder's names and contents: submitting
    the same folder again uploads nothing; a changed file makes a new upload."""
    for name, value in {**standin.client_environment(), **blob_proxy.environment()}.items():
        if not name.startswith("IDENTITY_"):
            monkeypatch.setenv(name, value)
    corpus = tmp_path / "corpus"
    expected = make_corpus(corpus)

    first = submit_in_process(standin, corpus, tmp_path / "code1")
    puts = len(blob_proxy.calls("PUT"))
    assert puts >= len(expected)
    second = submit_in_process(standin, corpus, tmp_path / "code2")
    assert blob_proxy.calls("PUT") == blob_proxy.calls("PUT")[:puts]  # no new upload
    assert uploaded_folder(standin, second) == uploaded_folder(standin, first)

    (corpus / "a.txt").write_bytes(b"alpha beta delta\n")
    third = submit_in_process(standin, corpus, tmp_path / "code3")
    assert uploaded_folder(standin, third) != uploaded_folder(standin, first)
    assert blobs_under(standin, uploaded_folder(standin, third)) == \
        {**expected, "a.txt": b"alpha beta delta\n"}
    assert len(blob_proxy.calls("PUT")) > puts

