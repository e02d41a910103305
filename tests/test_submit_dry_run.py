"""``python -m submit --dry-run``: YAML that ``load_job`` (``az ml job create --file``) accepts.

No credentials, no network: the subprocess runs have every socket connection
refused, and the YAML is checked by the real SDK's ``load_job``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from azure_standin.runner import (
    CLEARED_PREFIXES,
    clean_environment,
    network_report,
    run_submit,
)

from job.sample import write_sample
from job.sharding import contiguous_range
from submit import cli
from submit.build import read_environment_spec
from submit.stage import job_package_dir
from submit.yaml_out import SCHEMA_URL, job_dict, load_job_yaml

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning")

REPO = Path(__file__).resolve().parents[1]
INPUT_URI = "azureml://datastores/workspaceblobstore/paths/sample_corpus/"
OUTPUT_URI = "azureml://datastores/workspaceblobstore/paths/tokens/"
BINDINGS = " --input_dir ${{inputs.input_dir}} --out_dir ${{outputs.out_dir}}"


@pytest.fixture(autouse=True)
def hermetic(monkeypatch, tmp_path):
    """No Azure settings from this machine's environment; no config.json above the tests."""
    for name in list(os.environ):
        if name.startswith(CLEARED_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def sample_corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sample_corpus")
    write_sample(str(folder))
    return folder


def conda_spec() -> dict:
    spec = read_environment_spec()
    return {"image": spec["image"],
            "conda_file": yaml.safe_load(Path(spec["conda_file"]).read_text())}


def expected_code_files() -> set[str]:
    package = job_package_dir()
    return {f"job/{p.relative_to(package).as_posix()}" for p in package.rglob("*")
            if p.suffix in (".py", ".c") and "__pycache__" not in p.parts} | {"job_config.yaml"}


def check_common(job, yaml_path: Path) -> None:
    """What every dry-run job holds: schema line, code, environment, bindings."""
    text = yaml_path.read_text()
    assert text.startswith(f"$schema: {SCHEMA_URL}\n")
    assert job.type == "command"
    code = (yaml_path.parent / job.code).resolve()
    assert {p.relative_to(code).as_posix() for p in code.rglob("*") if p.is_file()} == \
        expected_code_files()
    assert job.command.startswith("python -m job --config job_config.yaml" + BINDINGS)
    assert job.environment.image == conda_spec()["image"]
    assert job.environment.conda_file == conda_spec()["conda_file"]
    assert job.inputs["input_dir"].type == "uri_folder"
    assert job.outputs["out_dir"].type == "uri_folder"
    assert job.outputs["out_dir"].mode == "rw_mount"
    # mpirun must not bind each rank to one core (the job would widen it, but need not)
    assert job.environment_variables == {"OMPI_MCA_hwloc_base_binding_policy": "none",
                                         "PRTE_MCA_hwloc_default_binding_policy": "none"}
    assert yaml.safe_load(text)["environment_variables"] == job.environment_variables
    # round trip: the loaded job dumps to the very YAML that was written
    assert job_dict(job, yaml_path.parent) == yaml.safe_load(text)


@pytest.mark.slow
@pytest.mark.parametrize("shape, args, nodes, command_tail", [
    ("multi", ["--nodes", "5"], 5, ""),
    ("single", ["--nodes", "1"], 1, ""),
    ("selective", ["--nodes", "1", "--node-count", "5", "--node-rank", "3"], 1,
     " --distribArgs.node_count 5 --distribArgs.node_rank 3"),
])
def test_dry_run_yaml_loads_and_keeps_the_job(tmp_path, shape, args, nodes, command_tail):
    yaml_path = tmp_path / f"{shape}.yml"
    fresh = shape == "multi"  # what it imports, in a fresh interpreter once: alike for every shape
    result = run_submit(*args, "--dry-run", "--yaml", str(yaml_path), "--compute", "cpu-cluster",
                        "--input", INPUT_URI, "--output", OUTPUT_URI, cwd=tmp_path,
                        no_network=True, fresh=fresh)
    assert result.returncode == 0, result.stderr
    report = network_report(result)
    assert report == {"connections": "0", "identity": "False",
                      "sdk": "True" if fresh else "preloaded"}
    assert "Traceback" not in result.stderr
    job = load_job_yaml(yaml_path)
    check_common(job, yaml_path)
    assert job.resources.instance_count == nodes
    assert job.distribution.type == "mpi"
    assert job.distribution.process_count_per_instance == 1
    assert job.command == "python -m job --config job_config.yaml" + BINDINGS + command_tail
    assert job.inputs["input_dir"].path == INPUT_URI
    assert job.outputs["out_dir"].path == OUTPUT_URI
    assert job.compute == "cpu-cluster"
    assert job.experiment_name == "amlshard"
    # the code folder sits beside the YAML, named after it
    assert (tmp_path / f"{shape}-code" / "job_config.yaml").is_file()
    assert "dry run: nothing was sent to Azure" in result.stdout


def test_dry_run_prints_yaml_on_stdout_and_the_summary_on_stderr(tmp_path, capsys):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    named = ("--display-name", "amlshard test")  # the default holds the minute: runs differ
    result = run_submit("--nodes", "5", "--dry-run", *named, cwd=tmp_path, no_network=True,
                        env=clean_environment(TMPDIR=str(temporary)))
    assert result.returncode == 0, result.stderr
    assert list(temporary.iterdir()) == []  # the code staged for the check is gone
    data = yaml.safe_load(result.stdout)
    assert data["resources"]["instance_count"] == 5
    assert data["compute"] == "azureml:<COMPUTE_CLUSTER>"  # placeholders are fine in a dry run
    assert data["code"] == "job-code"  # relative: no temporary path is printed
    assert "code: job-code is relative to where the YAML is saved" in result.stderr
    # saved beside a staged job-code folder, the printed YAML is the job
    assert cli.main(["--nodes", "5", "--dry-run", *named, "--yaml", "staged.yml",
                     "--code-dir", "job-code"]) == 0, capsys.readouterr().err
    (tmp_path / "job.yml").write_text(result.stdout)
    job = load_job_yaml(tmp_path / "job.yml")
    assert job_dict(job) == job_dict(load_job_yaml(tmp_path / "staged.yml"))
    assert job.resources.instance_count == 5
    assert "5 nodes x 1 rank per node (MPI)" in result.stderr
    assert "submit/config.yaml)   <- placeholder" in result.stderr
    assert "flag --nodes" in result.stderr


def test_a_temporary_code_folder_lasts_as_long_as_its_job(tmp_path):
    """The notebook's case: the job object names the folder, which goes with it."""
    import gc

    # The SDK's first import in a process keeps the frames it was imported from alive, and
    # with them the job of the call that imported it: here, first, it keeps only this test's.
    import azure.ai.ml  # noqa: F401
    from submit import prepare_job, resolve_settings

    prepared = prepare_job(resolve_settings({"nodes": 2}))
    folder = prepared.code_dir
    assert prepared.temporary and (folder / "job_config.yaml").is_file()
    assert yaml.safe_load(prepared.yaml())["code"] == "job-code"
    del prepared
    gc.collect()
    assert not folder.parent.exists()
    with prepare_job(resolve_settings({"nodes": 2})) as prepared:
        folder = prepared.code_dir
    assert not folder.parent.exists()
    kept = prepare_job(resolve_settings({"nodes": 2}), tmp_path / "job-code")
    kept.close()
    assert not kept.temporary and (tmp_path / "job-code" / "job_config.yaml").is_file()


def test_dry_run_with_a_local_input_shows_each_nodes_files(tmp_path, sample_corpus):
    result = run_submit("--nodes", "5", "--dry-run", "--yaml", str(tmp_path / "job.yml"),
                        "--input", str(sample_corpus), cwd=tmp_path, no_network=True)
    assert result.returncode == 0, result.stderr
    files = sorted(p.relative_to(sample_corpus).as_posix() for p in sample_corpus.rglob("*") if p.is_file())
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("node ")]
    assert len(lines) == 5
    for node, line in enumerate(lines):
        block = [files[i] for i in contiguous_range(len(files), node, 5)]
        assert line.startswith(f"node {node} (shard {node} of 5): {len(block)} file(s)")
        assert block[0] in line
    job = load_job_yaml(tmp_path / "job.yml")
    written = yaml.safe_load((tmp_path / "job.yml").read_text())["inputs"]["input_dir"]["path"]
    assert not Path(written).is_absolute()  # relative to the YAML's folder
    assert (tmp_path / written).resolve() == sample_corpus.resolve()
    assert Path(job.inputs["input_dir"].path) == Path(written)


def test_selective_node_preview_shows_only_that_node(tmp_path, sample_corpus):
    result = run_submit("--nodes", "1", "--node_count", "5", "--node_rank", "3", "--dry-run",
                        "--yaml", str(tmp_path / "job.yml"), "--input", str(sample_corpus), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("node ")]
    assert len(lines) == 1 and lines[0].startswith("node 3 (shard 3 of 5)")
    assert "one selective node: node 3 of 5" in result.stdout


@pytest.mark.parametrize("args, check", [
    (["--nodes", "2", "--processes-per-node", "4", "--process-count", "3"],
     lambda job: (job.resources.instance_count, job.distribution.process_count_per_instance,
                  job.command.endswith("--process_count 3")) == (2, 4, True)),
    (["--nodes", "3", "--distribution", "pytorch"],
     lambda job: (job.distribution.type, job.distribution.process_count_per_instance) ==
     ("pytorch", 1)),
    (["--nodes", "3", "--distribution", "none"], lambda job: job.distribution is None),
    (["--nodes", "2", "--environment", "docker"],  # relative to the YAML's folder
     lambda job: not Path(job.environment.build.path).is_absolute() and
     (Path(job._base_path) / job.environment.build.path).resolve() == REPO / "environment"),
    (["--environment", "Docker"], lambda job: job.environment.build is not None),
    (["--environment", "CONDA"], lambda job: job.environment.conda_file is not None),
    (["--nodes", "2", "--environment", "amlshard-job:1"],
     lambda job: str(job.environment).removeprefix("azureml:") == "amlshard-job:1"),
    (["--environment", "azureml:AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest"],
     lambda job: str(job.environment).endswith("AzureML-sklearn-1.0-ubuntu20.04-py38-cpu@latest")),
    (["--nodes", "2", "--output", ""], lambda job: job.outputs["out_dir"].path is None),
    (["--nodes", "2", "--experiment", "tokens-2024", "--compute", "gpu"],
     lambda job: (job.experiment_name, job.compute) == ("tokens-2024", "gpu")),
])
def test_dry_run_variants_load(tmp_path, capsys, args, check):
    yaml_path = tmp_path / "job.yml"
    assert cli.main([*args, "--dry-run", "--yaml", str(yaml_path)]) == 0, capsys.readouterr().err
    job = load_job_yaml(yaml_path)
    assert check(job)
    assert job_dict(job, tmp_path) == yaml.safe_load(yaml_path.read_text())


STORAGE_INPUTS = [
    "azureml://datastores/workspaceblobstore/paths/corpus/",
    "azureml://subscriptions/0000/resourcegroups/rg/workspaces/ws/datastores/blobs/paths/c/",
    "https://account1.blob.core.windows.net/container/corpus/",
    "wasbs://container@account1.blob.core.windows.net/corpus/",
    "abfss://filesystem@account1.dfs.core.windows.net/corpus/",
]


@pytest.mark.parametrize("source", ["azureml:corpus:3", "azureml:corpus@latest",
                                    *STORAGE_INPUTS])
def test_every_accepted_input_form_round_trips(tmp_path, capsys, source):
    """Data assets and storage URIs: the YAML loads back as the same job, naming the input."""
    yaml_path = tmp_path / "job.yml"
    assert cli.main(["--input", source, "--dry-run", "--yaml", str(yaml_path)]) == 0, \
        capsys.readouterr().err
    written = yaml.safe_load(yaml_path.read_text())
    assert written["inputs"]["input_dir"]["path"] == source  # as azureml-examples write it
    job = load_job_yaml(yaml_path)
    assert job_dict(job, tmp_path) == written
    expected = source.removeprefix("azureml:") if "://" not in source else source
    assert job.inputs["input_dir"].path == expected  # what load_job makes of it


@pytest.mark.parametrize("target", [STORAGE_INPUTS[0], STORAGE_INPUTS[1]])
def test_outputs_on_a_datastore_round_trip(tmp_path, capsys, target):
    yaml_path = tmp_path / "job.yml"
    assert cli.main(["--output", target, "--dry-run", "--yaml", str(yaml_path)]) == 0, \
        capsys.readouterr().err
    assert load_job_yaml(yaml_path).outputs["out_dir"].path == target


def settings_of(job) -> tuple:
    """The job settings of a loaded job, as comparable values."""
    return (job.display_name, job.description, {k: job.tags[k] for k in ("team", "nodes")},
            job.environment_variables, job.limits.timeout, type(job.identity).__name__,
            job.compute, job.resources.instance_type, job.queue_settings.job_tier,
            job.queue_settings.priority)


EXPECTED_SETTINGS = ("tokens", "one run", {"team": "nlp", "nodes": "all"},
                     {"OMPI_MCA_hwloc_base_binding_policy": "none",
                      "PRTE_MCA_hwloc_default_binding_policy": "none", "LOG": "debug"},
                     3600, "ManagedIdentityConfiguration", None, "Standard_D4s_v3",
                     "spot", "low")


@pytest.mark.parametrize("spelling", ["-", "_"])
def test_job_settings_from_flags_round_trip(tmp_path, capsys, spelling):
    def flag(name: str) -> str:
        return "--" + name.replace("-", spelling)

    yaml_path = tmp_path / "job.yml"
    args = [flag("display-name"), "tokens", flag("description"), "one run",
            flag("tag"), "team=nlp", flag("tag"), "nodes=all", flag("env"), "LOG=debug",
            flag("timeout"), "3600", flag("identity"), "Managed", flag("instance-type"),
            "Standard_D4s_v3", flag("job-tier"), "spot", flag("priority"), "Low"]
    assert cli.main([*args, "--dry-run", "--yaml", str(yaml_path)]) == 0, \
        capsys.readouterr().err
    job = load_job_yaml(yaml_path)
    assert job_dict(job, tmp_path) == yaml.safe_load(yaml_path.read_text())
    assert settings_of(job) == EXPECTED_SETTINGS
    assert job.tags["processes_per_node"] == "1" and job.tags["input"].startswith("azureml://")


def test_job_settings_from_a_config_file_and_flags(tmp_path, capsys):
    """The file's tags and variables, with the flags' laid over them entry by entry."""
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump({
        "display_name": "tokens", "description": "one run", "tags": {"team": "nlp", "nodes": 1},
        "environment_variables": {"LOG": "info"}, "timeout": 3600, "identity": "managed",
        "compute": "", "instance_type": "Standard_D4s_v3", "job_tier": "Spot",
        "priority": "low"}))
    yaml_path = tmp_path / "job.yml"
    assert cli.main(["--config", str(config), "--tag", "nodes=all", "--env", "LOG=debug",
                     "--dry-run", "--yaml", str(yaml_path)]) == 0, capsys.readouterr().err
    assert settings_of(load_job_yaml(yaml_path)) == EXPECTED_SETTINGS
    [line] = [line for line in capsys.readouterr().out.splitlines() if "  tags  " in line]
    assert sorted(line.split()[1:3]) == ["nodes=all", "team=nlp"]
    assert line.endswith("mine.yaml + flag --tag)")


def test_the_default_display_name_tells_runs_apart(tmp_path, capsys):
    yaml_path = tmp_path / "job.yml"
    assert cli.main(["--nodes", "5", "--input", "azureml:wiki-corpus@latest", "--dry-run",
                     "--yaml", str(yaml_path)]) == 0, capsys.readouterr().err
    assert re.fullmatch(r"amlshard wiki-corpus x5 \d{4}", load_job_yaml(yaml_path).display_name)


def test_a_custom_job_config_is_validated_and_shipped(tmp_path, capsys):
    config = tmp_path / "my_job.yaml"
    config.write_text("shard_strategy: size\nprocess_count: 2\nlog_level: DEBUG\n")
    yaml_path = tmp_path / "job.yml"
    assert cli.main(["--nodes", "2", "--job-config", str(config), "--dry-run",
                     "--yaml", str(yaml_path)]) == 0
    shipped = tmp_path / "job-code" / "job_config.yaml"
    assert shipped.read_text() == config.read_text()


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("make_args, words", [
    (lambda t: ["--nodes", "2", "--node-count", "5", "--node-rank", "3"], ["--nodes 1"]),
    (lambda t: ["--nodes", "1", "--node-rank", "3"], ["--node-rank needs --node-count"]),
    (lambda t: ["--nodes", "1", "--node-count", "5"], ["--node-count needs --node-rank"]),
    (lambda t: ["--nodes", "1", "--node-count", "5", "--node-rank", "5"], ["out of range"]),
    (lambda t: ["--node-count", "5", "--node-rank", "1", "--processes-per-node", "2"],
     ["one rank"]),
    (lambda t: ["--nodes", "2", "--processes-per-node", "2", "--distribution", "none"],
     ["distribution 'none'"]),
    (lambda t: ["--nodes", "0"], ["nodes must be >= 1", "flag --nodes"]),
    (lambda t: ["--input", str(t / "nowhere")], ["neither a storage URI nor a local folder"]),
    (lambda t: ["--input", "azureml://datastores/ds/paths/corpus/",
                "--output", "azureml://datastores/ds/paths/corpus"], ["the same path as input"]),
    (lambda t: ["--input", "azureml://datastores/ds/paths/corpus",
                "--output", "azureml://datastores/ds/paths/corpus/out/"], ["inside input"]),
    (lambda t: ["--input", "azureml://datastores/ds/paths/corpus/part1",
                "--output", "azureml://datastores/ds/paths/corpus"], ["a parent of input"]),
    (lambda t: ["--input", "azureml://subscriptions/s/resourcegroups/rg/workspaces/w/"
                "datastores/DS/paths/data", "--output", "azureml://datastores/ds/paths/data"],
     ["the same path as input"]),
    (lambda t: ["--input", "azureml://subscriptions/S/resourceGroups/RG/providers/"
                "Microsoft.MachineLearningServices/workspaces/W/datastores/ds/paths/data",
                "--output", "azureml://datastores/ds/paths/data/out"], ["inside input"]),
    (lambda t: ["--input", "azureml://datastores/ds/paths/a/../data",
                "--output", "azureml://datastores/ds/paths//data/./x"], ["inside input"]),
    (lambda t: ["--input", "azureml://datastores/ds/paths/data",
                "--output", "azureml://datastores/ds/paths/"], ["a parent of input"]),
    (lambda t: ["--input", "azureml://datastores/x"],
     ["input 'azureml://datastores/x' is not a location Azure ML reads",
      "azureml://datastores/NAME/paths/PATH", "azureml:NAME@latest", "flag --input"]),
    (lambda t: ["--input", "s3://bucket/corpus/"], ["'s3://bucket/corpus/'", "wasbs://"]),
    (lambda t: ["--input", "gs://bucket/corpus/"], ["'gs://bucket/corpus/'", "abfss://"]),
    (lambda t: ["--input", "azureml:corpus"], ["azureml:NAME:VERSION"]),
    (lambda t: ["--input", "https://example.com/corpus/"], ["https://ACCOUNT.blob"]),
    (lambda t: ["--output", "s3://bucket/out/"], ["not a datastore path", "flag --output"]),
    (lambda t: ["--output", "azureml:tokens:1"], ["not a datastore path"]),
    (lambda t: ["--output", "https://account1.blob.core.windows.net/c/out/"],
     ["register other storage as a datastore"]),
    (lambda t: ["--output", str(t)], ["azureml://datastores/NAME/paths/PATH"]),
    (lambda t: ["--environment", "Condas"],
     ["environment 'Condas' is neither conda nor docker nor a registered environment",
      "azureml:NAME:VERSION", "azureml:NAME@latest"]),
    (lambda t: ["--tag", "team"], ["tags takes tag name=VALUE; got 'team'", "flag --tag"]),
    (lambda t: ["--tag", "=x"], ["tags takes tag name=VALUE"]),
    (lambda t: ["--env", "1LOG=x"], ["'1LOG' is not a valid variable name", "flag --env"]),
    (lambda t: ["--timeout", "0"], ["timeout must be >= 1", "flag --timeout"]),
    (lambda t: ["--identity", "service"], ["identity must be one of user, managed"]),
    (lambda t: ["--job-tier", "cheap"], ["job_tier must be one of Spot, Basic, Standard, "
                                         "Premium"]),
    (lambda t: ["--priority", "urgent"], ["priority must be one of Low, Medium, High"]),
    (lambda t: ["--distribution", "slurm"], ["distribution must be one of mpi, pytorch, none"]),
    (lambda t: ["--compute", "cpu", "--instance-type", "Standard_D4s_v3"],
     ["runs on serverless compute", "compute 'cpu' (from flag --compute)", "--compute ''"]),
    (lambda t: ["--config", write(t / "c.yaml", "tags: [a, b]\n")], ["tags takes"]),
    (lambda t: ["--config", write(t / "c.yaml", "tags: {a: {b: c}}\n")],
     ["a must have a text value"]),
    (lambda t: ["--job-config", write(t / "j.yaml", "proces_count: 2\n")],
     ["job config", "proces_count"]),
    (lambda t: ["--job-config", write(t / "j.yaml", "distribArgs: {node_count: 2}\n")],
     ["distribArgs", "--node-count"]),
    (lambda t: ["--nodes", "2", "--job-config", write(t / "j.yaml", "run_type: local\n")],
     ["run_type: local"]),
    (lambda t: ["--job-config", str(t / "missing.yaml")], ["does not exist"]),
    (lambda t: ["--config", write(t / "c.yaml", "nodes: 2\nzone: eu\n")], ["zone"]),
    (lambda t: ["--stream"], ["--stream"]),
])
def test_bad_usage_exits_2_with_one_line(tmp_path, capsys, make_args, words):
    code = cli.main([*make_args(tmp_path), "--dry-run", "--yaml", str(tmp_path / "job.yml")])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0]
    assert not (tmp_path / "job.yml").exists()


def test_an_unrelated_config_json_above_is_skipped_with_one_warning(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"editor.fontSize": 12}')
    (tmp_path / "work").mkdir()
    os.chdir(tmp_path / "work")
    workspace = ["--subscription", "sub", "--resource-group", "rg", "--workspace", "ws"]
    assert cli.main([*workspace, "--dry-run", "--yaml", "a.yml"]) == 0
    assert "warning" not in capsys.readouterr().err  # the flags gave it all: not read
    assert cli.main(["--dry-run", "--yaml", "b.yml"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == [f"warning: {str(tmp_path / 'config.json')!r} is not a workspace config: "
                        "it names none of subscription_id, resource_group, workspace_name, "
                        "Scope; skipped it"]


def test_a_partial_workspace_config_json_above_lets_the_dry_run_through(tmp_path, capsys):
    (tmp_path / "config.json").write_text('{"subscription_id": "s", "workspace_name": "w"}')
    (tmp_path / "sub").mkdir()
    os.chdir(tmp_path / "sub")
    code = cli.main(["--nodes", "1", "--dry-run", "--input", "azureml:d:1", "--output",
                     "azureml://datastores/w/paths/o", "--yaml", "job.yml"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "error" not in err and "warning" not in err
    described = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert " s  (workspace config " in described["subscription"]
    assert " w  (workspace config " in described["workspace"]
    assert "<RESOURCE_GROUP>" in described["resource_group"]


@pytest.mark.parametrize("where", [["--yaml", "job.yml"], ["--code-dir", "sub/code"]])
def test_code_staged_inside_the_local_input_folder_is_refused(tmp_path, capsys, where):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (data / name).write_text("alpha beta\n")
    os.chdir(data)
    code = cli.main(["--nodes", "2", "--dry-run", "--input", ".", "--output",
                     "azureml://datastores/ws/paths/o", *where])
    err = capsys.readouterr().err
    assert code == 2, err
    [line] = [line for line in err.splitlines() if line.strip()]
    assert line.startswith("error: the code folder ") and "inside the local input folder" in line
    assert sorted(p.name for p in data.iterdir()) == ["a.txt", "b.txt", "c.txt"]


def test_the_provider_form_of_a_datastore_uri_is_an_input(tmp_path, capsys):
    uri = ("azureml://subscriptions/S/resourceGroups/RG/providers/"
           "Microsoft.MachineLearningServices/workspaces/W/datastores/D/paths/P")
    code = cli.main(["--nodes", "2", "--dry-run", "--input", uri, "--output",
                     "azureml://datastores/D/paths/Q", "--yaml", "job.yml"])
    assert code == 0, capsys.readouterr().err
    assert load_job_yaml(tmp_path / "job.yml").inputs["input_dir"].path == uri


def test_an_empty_local_input_folder_is_one_warning_in_a_dry_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = cli.main(["--nodes", "2", "--dry-run", "--input", "empty", "--output",
                     "azureml://datastores/ws/paths/o", "--yaml", "job.yml"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert [line for line in err.splitlines() if line.strip()] == [
        f"warning: input: the local folder {str(tmp_path / 'empty')!r} holds no file to upload "
        "(an .amlignore or .gitignore there may exclude them all); a submission refuses it"]


def test_a_code_dir_holding_other_files_is_never_replaced(tmp_path, capsys):
    precious = tmp_path / "job-code" / "notes.txt"
    precious.parent.mkdir()
    precious.write_text("mine")
    assert cli.main(["--dry-run", "--yaml", str(tmp_path / "job.yml")]) == 2
    assert "already exists and holds other files" in capsys.readouterr().err
    assert precious.read_text() == "mine"


def test_argparse_errors_are_exit_2_without_traceback(tmp_path):
    result = run_submit("--nodes", "five", "--dry-run", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid int value" in result.stderr and "Traceback" not in result.stderr


def test_help_documents_the_contract_options():
    result = run_submit("--help")
    assert result.returncode == 0
    for option in ("--subscription", "--resource-group", "--workspace", "--compute", "--input",
                   "--output", "--stream", "--dry-run", "--yaml", "--nodes", "--node-count",
                   "--node-rank", "--processes-per-node", "--process-count", "--experiment",
                   "--environment", "--distribution", "--job-config", "--tag", "--env",
                   "--description", "--timeout", "--identity", "--instance-type", "--job-tier",
                   "--priority", "--display-name", "--job_tier", "AZURE_SUBSCRIPTION_ID",
                   "AZURE_RESOURCE_GROUP", "AZUREML_WORKSPACE_NAME", "AZUREML_COMPUTE"):
        assert option in result.stdout, option
