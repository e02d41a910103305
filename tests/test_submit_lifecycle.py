"""``python -m submit status|cancel|logs|report|download|resubmit NAME``, offline.

The real CLI (a subprocess, as a user runs it, or ``main(argv)`` in this process) with
the real SDK and ``DefaultAzureCredential`` against the Azure ML stand-in; the
datastores are containers of the real Azurite, where the tests put what the nodes
would have written: manifests and outputs of real ``python -m job`` ranks, logs.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path

import pytest
from azure_standin.fixtures import azurite, certificates, make_standin, standin  # noqa: F401
from azure_standin.runner import CLEARED_PREFIXES, clean_environment, network_report, run_submit
from conftest import run_job
from test_submit_azure import SUBSCRIPTION, WORKSPACE, WORKSPACE_FLAGS, StaticCredential

from submit import azure as submit_azure
from submit import cli, lifecycle, prepare_job, resolve_settings

pytestmark = [pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning"),
              pytest.mark.slow]

WORKSPACE_ENV = {"AZURE_SUBSCRIPTION_ID": SUBSCRIPTION, "AZURE_RESOURCE_GROUP": "rg-test",
                 "AZUREML_WORKSPACE_NAME": "ws-test"}
OUTPUT_PREFIX = "tokens/"  # WORKSPACE["output"] on workspaceblobstore


def cli_env(server, **extra) -> dict[str, str]:
    return clean_environment(**{**server.client_environment(), **WORKSPACE_ENV, **extra})


def lifecycle_cli(server, *args, tmp_path, env=None):
    """``python -m submit ARGS`` as a subprocess reaching nothing beyond 127.0.0.1."""
    result = run_submit(*args, env=env or cli_env(server), cwd=tmp_path, timeout=120,
                        loopback_only=True)
    assert "Traceback" not in result.stderr, result.stderr
    assert network_report(result)["connections"] == "0"
    return result


@pytest.fixture
def in_process(monkeypatch, tmp_path):
    """Run ``cli.main(argv)`` here, with the environment of a user pointed at the stand-in."""
    resolve = socket.getaddrinfo

    def resolve_localhost(host, *args, **kwargs):  # RFC 6761, as the runner's wrapper does
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve_localhost)
    monkeypatch.chdir(tmp_path)

    def run(server, *argv):
        for name in list(os.environ):
            if name.startswith(CLEARED_PREFIXES) or name in ("REQUESTS_CA_BUNDLE",):
                monkeypatch.delenv(name)
        for name, value in {**server.client_environment(), **WORKSPACE_ENV}.items():
            monkeypatch.setenv(name, value)
        return cli.main(list(argv))
    return run


def said(text: str) -> list[str]:
    """The lines of ``text`` that say something (not the SDK's bare color resets)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    return [line for line in text.splitlines() if line.strip()]


def submit(server, tmp_path, **settings) -> str:
    """Submit a job to the stand-in through submit's API; returns its name."""
    saved = dict(os.environ)
    os.environ.update(AZUREML_DEV_URL_MFE=server.url + "/",
                      REQUESTS_CA_BUNDLE=str(server.certificates.ca_bundle))
    try:
        resolved = resolve_settings({**WORKSPACE, "nodes": 5, **settings}, environ={},
                                    search_from=tmp_path)
        prepared = prepare_job(resolved, tmp_path / f"code-{len(server.runs)}" / "job-code")
        client = submit_azure.ml_client(resolved, StaticCredential(server.token),
                                        show_progress=False)
        return submit_azure.submit_job(client, prepared.job).name
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_ranks(tmp_path, ranks, count=5, poisoned=()) -> Path:
    """Real ranks of a ``count``-rank run over 15 small files; returns their out_dir."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir(exist_ok=True)
    for i in range(15):
        (inputs / f"f{i:02d}.txt").write_bytes(b"alpha beta %d gamma\n" % i
                                               + (b"POISON" if i in poisoned else b""))
    for rank in ranks:
        result = run_job("--input_dir", str(inputs), "--out_dir", str(out), "--process_count", "1",
                         "--processor", "fault_processors:Poisoned", "--error_threshold", "-1",
                         "--distribArgs.node_count", str(count),
                         "--distribArgs.node_rank", str(rank))
        assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def ranks_made(tmp_path_factory):
    """``ranks_made(tmp_path, ranks, poisoned)``: :func:`run_ranks`'s out_dir, copied into
    ``tmp_path/out``; the real ranks run once per module and set of ranks (the copy keeps
    every byte; the tests only upload what the ranks wrote)."""
    made = {}

    def copy(tmp_path, ranks, poisoned=()) -> Path:
        key = (tuple(ranks), frozenset(poisoned))
        if key not in made:
            made[key] = run_ranks(tmp_path_factory.mktemp("ranks"), ranks, poisoned=poisoned)
        shutil.copytree(made[key], tmp_path / "out")
        return tmp_path / "out"
    return copy


def upload_folder(server, folder: Path, prefix: str, only: str = "") -> dict[str, bytes]:
    """Upload ``folder`` (or its subfolder ``only``) to workspaceblobstore under ``prefix``."""
    files = {p.relative_to(folder).as_posix(): p.read_bytes()
             for p in sorted((folder / only).rglob("*")) if p.is_file()}
    for relative, data in files.items():
        server.upload("workspaceblobstore", prefix + relative, data)
    return files


# --- help, placeholders, unknown jobs -----------------------------------------------------------

def test_help_lists_the_subcommands_and_each_has_its_own(tmp_path):
    result = run_submit("--help", cwd=tmp_path, no_network=True, fresh=True)
    assert result.returncode == 0
    for name in lifecycle.SUBCOMMANDS:
        assert f"python -m submit {name} NAME" in result.stdout
    for name in lifecycle.SUBCOMMANDS:
        result = run_submit(name, "--help", cwd=tmp_path, no_network=True, fresh=True)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(f"usage: python -m submit {name} ")
        assert "exit codes:" in result.stdout and "--workspace NAME" in result.stdout
        assert network_report(result)["sdk"] == "False"


def test_placeholders_are_refused_before_any_network_call(tmp_path):
    result = run_submit("status", "some-job", "--workspace", "ws-test", cwd=tmp_path,
                        no_network=True, fresh=True)
    assert result.returncode == 2
    lines = result.error_lines
    assert lines[0].startswith("error: 2 workspace setting(s) still hold placeholders")
    assert [line.split(" = ")[0].strip() for line in lines[1:]] == ["subscription",
                                                                    "resource_group"]
    assert "export AZURE_SUBSCRIPTION_ID=VALUE" in lines[1]
    report = network_report(result)
    assert (report["connections"], report["identity"], report["sdk"]) == ("0", "False", "False")


@pytest.mark.parametrize("subcommand", lifecycle.SUBCOMMANDS)
def test_an_unknown_job_is_one_line_exit_2(subcommand, standin, in_process, capsys):
    code = in_process(standin, subcommand, "no-such-job")
    assert code == 2
    err = said(capsys.readouterr().err)
    assert err == ["error: no job 'no-such-job' in workspace ws-test (resource group rg-test): "
                   "check the name and the workspace"]
    assert standin.calls("POST") == [] and standin.calls("PUT") == []


def test_a_refused_sign_in_is_one_line_exit_2(standin, tmp_path):
    env = cli_env(standin, IDENTITY_HEADER="not-the-right-secret")
    result = lifecycle_cli(standin, "status", "any-job", tmp_path=tmp_path, env=env)
    assert result.returncode == 2
    [line] = result.error_lines
    assert line.startswith("error: authentication failed: ") and "az login" in line
    assert standin.calls(contains="/workspaces/") == []


# --- status and cancel --------------------------------------------------------------------------

@pytest.mark.parametrize("status, code", [("Completed", 0), ("Failed", 1), ("Canceled", 1),
                                          ("Running", 3), ("Queued", 3)])
def test_status_prints_the_job_and_exits_by_its_status(status, code, standin, tmp_path,
                                                       in_process, capsys):
    name = submit(standin, tmp_path)
    standin.set_status(name, status)
    if status == "Completed":  # once as a user runs it, in a process of its own
        result = lifecycle_cli(standin, "status", name, tmp_path=tmp_path)
        returncode, stdout, stderr = result.returncode, result.stdout, result.stderr
    else:  # the same code in this process: no second import of the SDK
        capsys.readouterr()
        returncode = in_process(standin, "status", name)
        stdout, stderr = capsys.readouterr()
    assert returncode == code, stderr
    lines = stdout.splitlines()
    assert lines[0] == f"job {name}: {status}"
    assert f"  studio: https://ml.azure.com/runs/{name}?wsid=" in stdout
    assert "  nodes: 5 (instance_count), compute " in stdout
    started = "2026-01-02 03:04:05+00:00" if status != "Queued" else "not yet"
    assert f"  started: {started}" in lines
    ended = "2026-01-02 03:14:05+00:00" if code in (0, 1) else "not yet"
    assert f"  ended: {ended}" in lines
    assert standin.unmatched() == []


def test_cancel_a_running_job_and_a_finished_one(standin, tmp_path, in_process, capsys):
    running, finished = submit(standin, tmp_path), submit(standin, tmp_path)
    standin.set_status(running, "Running")
    standin.set_status(finished, "Completed")
    assert in_process(standin, "cancel", running) == 0
    assert capsys.readouterr().out.startswith(f"cancel requested: job {running} (it was Running)")
    assert [r.path.rsplit("/", 2)[1:] for r in standin.calls("POST", "/jobs/")] == \
        [[running, "cancel"]]
    assert in_process(standin, "status", running) == 1
    assert capsys.readouterr().out.startswith(f"job {running}: Canceled")
    assert in_process(standin, "cancel", finished) == 0
    assert capsys.readouterr().out.strip() == (f"job {finished} already ended: Completed; "
                                               "nothing to cancel")
    assert len(standin.calls("POST", "/cancel")) == 1


# --- logs ---------------------------------------------------------------------------------------

def upload_logs(server, name: str, failing_rank: int = 3, ranks: int = 5) -> dict[int, str]:
    logs = {}
    for rank in range(ranks):
        lines = [f"2026-01-02 03:04:{s:02d} INFO [rank {rank}] line {s}" for s in range(29)]
        lines.append("log_level: ERROR")  # an innocent line, e.g. the config the rank echoes
        if rank == failing_rank:
            lines.append(f"2026-01-02 03:05:00 ERROR [rank {rank}] failed: f09.txt: disk full")
        logs[rank] = "\n".join(lines) + "\n"
        server.upload("workspaceartifactstore",
                      f"ExperimentRun/dcid.{name}/user_logs/std_log_process_{rank}.txt",
                      logs[rank].encode())
    server.upload("workspaceartifactstore", f"ExperimentRun/dcid.{name}/system_logs/x.txt", b"x")
    return logs


def test_logs_show_every_rank_and_name_the_failed_one(standin, tmp_path, in_process, capsys):
    name = submit(standin, tmp_path)
    standin.set_status(name, "Failed")
    logs = upload_logs(standin, name)
    result = lifecycle_cli(standin, "logs", name, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    headers = re.findall(r"^==> rank (\d): (\S+) \((\d+) lines\) <==$", result.stdout, re.M)
    assert headers == [(str(r), f"user_logs/std_log_process_{r}.txt", "31" if r == 3 else "30")
                       for r in range(5)]
    assert "failed: f09.txt: disk full" in result.stdout
    assert "... 10 earlier lines (--rank 0 prints all)" in result.stdout  # the tail of each
    assert result.stdout.splitlines()[-1] == (f"job {name}: Failed; ranks whose log shows an "
                                              "error: 3")
    capsys.readouterr()
    assert in_process(standin, "logs", name, "--rank", "3") == 0
    assert capsys.readouterr().out == logs[3]
    assert standin.unmatched() == []


@pytest.mark.parametrize("line, error", [
    ("2026-01-02 03:05:00 ERROR [rank 3] failed: f09.txt: disk full", True),
    ("2026-01-02 03:05:00,123 ERROR [rank 3] failed", True),
    ("Traceback (most recent call last):", True),
    ("error: input_dir does not exist", True),
    ("log_level: ERROR", False),
    ("2026-01-02 03:05:00 INFO [rank 3] f09.txt: ERROR counted", False),
    ("  processor: ERROR_COUNTER", False),
    ("    raise ValueError('error: x')", False),
])
def test_what_marks_a_rank_failed_in_its_log(line, error):
    text = f"2026-01-02 03:04:00 INFO [rank 3] start\n{line}\n"
    assert bool(lifecycle.ERROR_LINE.search(text)) is error


@pytest.mark.parametrize("subcommand", ["status", "logs", "report", "download", "resubmit"])
def test_an_empty_job_name_is_refused_before_any_request(subcommand, tmp_path, monkeypatch,
                                                        capsys):
    monkeypatch.chdir(tmp_path)
    for name, value in WORKSPACE_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AZUREML_DEV_URL_MFE", "https://127.0.0.1:9/")  # never reached
    assert cli.main([subcommand, " "]) == 2
    assert said(capsys.readouterr().err) == [
        "error: the job name is empty: give the name python -m submit printed"]


def test_a_subcommand_prints_the_settings_warnings(tmp_path, monkeypatch, capsys):
    for name in list(os.environ):
        if name.startswith(CLEARED_PREFIXES):
            monkeypatch.delenv(name)
    (tmp_path / "config.json").write_text('{"editor.fontSize": 12}')
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert cli.main(["status", "job-1"]) == 2  # placeholders: refused before any request
    err = said(capsys.readouterr().err)
    assert err[0] == (f"warning: {str(tmp_path / 'config.json')!r} is not a workspace config: "
                      "it names none of subscription_id, resource_group, workspace_name, Scope; "
                      "skipped it")
    assert err[1].startswith("error: 3 workspace setting(s) still hold placeholders")


def test_logs_of_a_missing_rank_or_of_a_job_without_logs_exit_1(standin, tmp_path, in_process,
                                                                 capsys):
    name, silent = submit(standin, tmp_path), submit(standin, tmp_path)
    upload_logs(standin, name, ranks=2)
    assert in_process(standin, "logs", name, "--rank", "4") == 1
    assert said(capsys.readouterr().err) == [f"error: job {name} has no log of rank 4; ranks "
                                             "with logs: 0, 1"]
    assert in_process(standin, "logs", silent) == 1
    assert said(capsys.readouterr().err)[0].startswith(f"error: job {silent} (Starting) has no "
                                                       "rank logs")


# --- report -------------------------------------------------------------------------------------

def test_report_names_the_missing_rank_and_the_failed_files(standin, tmp_path):
    name = submit(standin, tmp_path)
    standin.set_status(name, "Failed")
    out = run_ranks(tmp_path, ranks=(0, 1, 2, 4), poisoned={1, 13})
    upload_folder(standin, out, OUTPUT_PREFIX, only="_manifest")
    standin.upload("workspaceblobstore", OUTPUT_PREFIX + "f00.txt", b"an output: not fetched")
    result = lifecycle_cli(standin, "report", name, tmp_path=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"job {name}: Failed; output {WORKSPACE['output']}"
    assert lines[1] == "ranks: 4 of 5 finished"
    assert "  rank 3/5: no manifest: has not run" in lines
    assert "files: 12 (10 ok, 0 skipped, 2 failed)" in result.stdout
    assert any(line.startswith("  f01.txt (rank 0): ") for line in lines)
    assert any(line.startswith("  f13.txt (rank 4): ") for line in lines)
    assert any(line.startswith("slowest rank: ") for line in lines)
    assert lines[-1] == ("FAILED: 1 rank(s) without a complete manifest: 3 (not run); "
                         "2 file(s) failed")


@pytest.mark.parametrize("content", [b"{not json", b"[1,2]", b"{}"])
def test_report_names_an_unreadable_manifest_and_sums_up_the_others(standin, tmp_path, content,
                                                                     in_process, capsys,
                                                                     ranks_made):
    name = submit(standin, tmp_path)
    standin.set_status(name, "Completed")
    out = ranks_made(tmp_path, range(5), poisoned={1, 13})
    upload_folder(standin, out, OUTPUT_PREFIX, only="_manifest")
    broken = "_manifest/shard-00002-of-00005.json"
    standin.upload("workspaceblobstore", OUTPUT_PREFIX + broken, content)
    assert in_process(standin, "report", name) == 1
    lines = capsys.readouterr().out.splitlines()
    uri = WORKSPACE["output"] + broken
    assert lines[0] == f"job {name}: Completed; output {WORKSPACE['output']}"
    assert lines[1].startswith(f"cannot read the bookkeeping: {uri}: ")
    assert "amlshard-report-" not in "\n".join(lines)
    assert lines[2] == "ranks: 4 of 5 finished"
    assert "  rank 2/5: manifest cannot be read (named above)" in lines
    assert any(line.startswith("  f01.txt (rank 0): ") for line in lines)
    assert any(line.startswith("  f13.txt (rank 4): ") for line in lines)
    assert lines[-1].startswith("FAILED: 1 journal(s) or manifest(s) cannot be read; 1 rank(s) "
                                "without a complete manifest: 2")


def test_report_of_a_whole_run_on_the_default_output_exits_0(standin, tmp_path, in_process, capsys,
                                                             ranks_made):
    name = submit(standin, tmp_path, output="")  # Azure ML's default output path
    standin.set_status(name, "Completed")
    out = ranks_made(tmp_path, range(5))
    upload_folder(standin, out, f"azureml/{name}/out_dir/", only="_manifest")
    assert in_process(standin, "report", name) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"job {name}: Completed; output azureml://datastores/workspaceblobstore/"
                        f"paths/azureml/{name}/out_dir/")
    assert lines[1] == "ranks: 5 of 5 finished"
    assert lines[-1] == "OK: 5 rank(s) finished, no file failed"


def test_report_of_a_job_that_wrote_nothing_yet(standin, tmp_path, in_process, capsys):
    name = submit(standin, tmp_path, nodes=1, node_count=5, node_rank=3)
    assert in_process(standin, "report", name) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == ["ranks: 0 of 1 finished (of 5 shards)",
                         "  rank 3/5: no manifest: has not run",
                         "files: 0 (0 ok, 0 skipped, 0 failed); 0 bytes in, 0 tokens",
                         "FAILED: 1 rank(s) without a complete manifest: 3 (not run)"]


def test_stream_ends_with_the_report(standin, ranks_made, tmp_path):
    out = ranks_made(tmp_path, range(5))
    upload_folder(standin, out, OUTPUT_PREFIX, only="_manifest")
    result = run_submit("--nodes", "5", *WORKSPACE_FLAGS, "--stream", env=cli_env(standin),
                        cwd=tmp_path, timeout=120, loopback_only=True)
    assert result.returncode == 0, result.stderr
    tail = result.stdout.splitlines()[-3:]
    assert tail[0].startswith("slowest rank: ")
    assert tail[1] == "OK: 5 rank(s) finished, no file failed"
    assert re.fullmatch(r"job \S+ ended: Completed", tail[2])
    assert "ranks: 5 of 5 finished" in result.stdout
    assert standin.unmatched() == []


# --- download and resubmit ----------------------------------------------------------------------

def test_download_fetches_the_output_and_a_second_run_keeps_what_is_there(standin, tmp_path,
                                                                          in_process, capsys,
                                                                          ranks_made):
    name = submit(standin, tmp_path)
    standin.set_status(name, "Completed")
    out = ranks_made(tmp_path, range(5))
    files = upload_folder(standin, out, OUTPUT_PREFIX)
    standin.upload("workspaceblobstore", "elsewhere/x.txt", b"not this job's")
    target = tmp_path / "fetched"
    result = lifecycle_cli(standin, "download", name, "--to", str(target), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    got = {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*")
           if p.is_file()}
    assert got == files
    assert result.stdout.splitlines()[0] == (
        f"downloaded {len(files)} file(s) of {WORKSPACE['output']} to {target}: "
        f"{sum(map(len, files.values())):,} bytes")
    capsys.readouterr()
    assert in_process(standin, "download", name, "--to", str(target)) == 0
    assert f"downloaded 0 file(s) of {WORKSPACE['output']} to {target} ({len(files)} already " \
           "there)" in capsys.readouterr().out
    summary = run_job_report(target)
    assert summary.splitlines()[-1] == "OK: 5 rank(s) finished, no file failed"


def test_download_skips_a_blob_that_would_land_outside_and_fetches_the_rest(
        standin, tmp_path, in_process, capsys):
    name = submit(standin, tmp_path)
    standin.set_status(name, "Completed")
    standin.upload("workspaceblobstore", OUTPUT_PREFIX + "a.txt", b"a")
    standin.upload_dotted("workspaceblobstore", OUTPUT_PREFIX + "x/../../evil.txt", b"evil")
    standin.upload("workspaceblobstore", OUTPUT_PREFIX + "z/b.txt", b"bb")
    target = tmp_path / "deep" / "fetched"
    assert in_process(standin, "download", name, "--to", str(target)) == 1
    out, err = capsys.readouterr()
    assert said(err) == [f"error: blob '{OUTPUT_PREFIX}x/../../evil.txt' would land outside "
                         f"{str(target)!r}; skipped it"]
    assert {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*")
            if p.is_file()} == {"a.txt": b"a", "z/b.txt": b"bb"}
    assert not list(tmp_path.rglob("evil.txt"))
    assert out.startswith(f"downloaded 2 file(s) of {WORKSPACE['output']} to {target}: 3 bytes")


def run_job_report(folder: Path) -> str:
    import subprocess
    import sys

    from conftest import ROOT, clean_environ

    done = subprocess.run([sys.executable, "-m", "job.report", str(folder)], cwd=ROOT,
                          env=clean_environ(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_download_of_an_empty_output_exits_1(standin, tmp_path, in_process, capsys):
    name = submit(standin, tmp_path, output="")
    standin.set_status(name, "Running")
    assert in_process(standin, "download", name) == 1
    err = said(capsys.readouterr().err)
    assert err == [f"note: job {name} is Running: its output is not complete yet",
                   f"error: the output of job {name} (azureml://datastores/workspaceblobstore/"
                   f"paths/azureml/{name}/out_dir/) holds no file"]


def test_resubmit_sends_the_same_job_on_the_same_output(standin, tmp_path):
    name = submit(standin, tmp_path)
    standin.set_status(name, "Failed")
    result = lifecycle_cli(standin, "resubmit", name, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [line for line in said(result.stderr) if not line.startswith("@@")] == []
    new = re.search(rf"^resubmitted job {name} \(Failed\) as: (\S+) \(status Starting\)$",
                    result.stdout, re.M)[1]
    assert new != name
    assert f"studio: https://ml.azure.com/runs/{new}?wsid=" in result.stdout
    bodies = standin.job_bodies()
    old_body, new_body = bodies[name]["properties"], bodies[new]["properties"]
    assert new_body["tags"] == {**old_body.get("tags", {}), "amlshard.resubmitted_from": name}
    for key in ("command", "codeId", "environmentId", "computeId", "inputs", "outputs",
                "distribution", "resources", "experimentName", "displayName",
                "environmentVariables"):
        assert new_body[key] == old_body[key], key
    assert "default" not in new_body["outputs"]
    assert len(standin.calls("PUT", "/jobs/")) == 2
    assert standin.calls("PUT", "/codes/") and len(standin.calls("PUT", "/codes/")) == 1


def test_resubmit_of_a_default_output_binds_its_path_and_a_running_job_is_refused(
        standin, tmp_path, in_process, capsys):
    name = submit(standin, tmp_path, output="")
    assert "uri" not in standin.job_bodies()[name]["properties"]["outputs"]["out_dir"]
    assert in_process(standin, "resubmit", name) == 2
    assert said(capsys.readouterr().err) == [
        f"error: job {name} is Starting: two runs would share its output; cancel it first "
        f"(python -m submit cancel {name}) or wait"]
    standin.set_status(name, "Canceled")
    assert in_process(standin, "resubmit", name) == 0
    new = re.search(r" as: (\S+) ", capsys.readouterr().out)[1]
    output = standin.job_bodies()[new]["properties"]["outputs"]["out_dir"]
    assert output["uri"] == f"azureml://datastores/workspaceblobstore/paths/azureml/{name}/out_dir/"


# --- the pure parts -----------------------------------------------------------------------------

@pytest.mark.parametrize("uri, where", [
    ("azureml://datastores/workspaceblobstore/paths/tokens",
     ("workspaceblobstore", None, "tokens/")),
    ("azureml://subscriptions/s/resourcegroups/rg/workspaces/ws/datastores/ds/paths/a/b/",
     ("ds", None, "a/b/")),
    ("azureml://datastores/workspaceartifactstore/ExperimentRun/dcid.job1",
     ("workspaceartifactstore", None, "ExperimentRun/dcid.job1/")),
    ("https://acct.blob.core.windows.net/data/out/x", (None, "data", "out/x/")),
    ("wasbs://data@acct.blob.core.windows.net/", (None, "data", "")),
])
def test_storage_locations(uri, where):
    from submit.datastore import parse_location

    location = parse_location(uri)
    assert (location.datastore, location.container, location.path) == where


@pytest.mark.parametrize("uri", ["abfss://fs@acct.dfs.core.windows.net/x", "azureml:data:1",
                                 "/local/folder"])
def test_other_storage_locations_are_one_line_errors(uri):
    from submit.datastore import StorageError, parse_location

    with pytest.raises(StorageError, match="is not a folder this command can read"):
        parse_location(uri)


@pytest.mark.parametrize("uri", [
    "https://acct.blob.core.windows.net/data/a/b",
    "wasbs://data@ACCT.blob.core.windows.net/a//b/",
    "abfss://data@acct.dfs.core.windows.net/a/./b?sv=1",
    "HTTPS://acct.dfs.core.windows.net/data/x/../a/b",
])
def test_every_form_of_one_account_folder_is_one_place(uri):
    """submit's one parser of storage URIs: what the overlap check of input and output
    compares (an account's folder through https, wasbs and abfss alike)."""
    from submit.build import storage_place

    assert storage_place(uri) == ("account:acct.blob.core.windows.net/data", "a/b")


def test_a_sovereign_cloud_folder_is_read_at_its_own_endpoint():
    from submit.build import storage_place
    from submit.datastore import parse_location

    uri = "wasbs://data@acct.blob.core.chinacloudapi.cn/corpus/"
    assert parse_location(uri).account_url == "https://acct.blob.core.chinacloudapi.cn"
    assert storage_place(uri) != storage_place("wasbs://data@acct.blob.core.windows.net/corpus")


@pytest.mark.parametrize("relative", ["../x", "a/../../x", "/etc/passwd", "a/..", ""])
def test_a_blob_name_never_lands_outside_the_destination(relative, tmp_path):
    from submit.datastore import StorageError, local_path

    with pytest.raises(StorageError):
        local_path(tmp_path, relative)
    assert local_path(tmp_path, "a/b.txt") == tmp_path / "a" / "b.txt"


def test_rank_logs_and_exit_codes_of_statuses():
    from submit.datastore import Blob

    names = ["user_logs/std_log_process_10.txt", "user_logs/std_log_process_02.txt",
             "user_logs/std_log.txt", "user_logs/std_log_node_3.txt", "system_logs/x.txt"]
    logs = lifecycle.rank_logs(Blob(n, n, 1) for n in names)
    assert {rank: blob.relative for rank, blob in logs.items()} == {
        0: "user_logs/std_log.txt", 2: "user_logs/std_log_process_02.txt",
        3: "user_logs/std_log_node_3.txt", 10: "user_logs/std_log_process_10.txt"}
    statuses = ("Completed", "Failed", "Canceled", "Running", "CancelRequested", "Finalizing")
    assert [lifecycle.exit_code_of(s) for s in statuses] == [0, 1, 1, 3, 3, 3]
