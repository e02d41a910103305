"""environment/: one source of truth for the job's runtime pins, and everything agrees with it.

``environment/conda.yaml`` holds the pins. ``environment.yml`` (for ``az ml
environment create``) points at it, the Dockerfile installs it on the same
base image, ``submit`` sends the same image and file, and pyproject.toml's
runtime ``dependencies`` are exactly its pip packages at versions they allow.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.filterwarnings("ignore::marshmallow.warnings.Marshmallow4Warning")

REPO = Path(__file__).resolve().parents[1]
ENVIRONMENT = REPO / "environment"
PINNED_IMAGE = re.compile(r"^mcr\.microsoft\.com/azureml/openmpi[\w.]*-ubuntu[\d.]+:\d{8}\.v\d+$")


def conda() -> dict:
    return yaml.safe_load((ENVIRONMENT / "conda.yaml").read_text())


def conda_pip_pins() -> dict[str, str]:
    """``{canonical name: version}`` of the pip section; every entry must be ``name==version``."""
    [pip_section] = [d["pip"] for d in conda()["dependencies"] if isinstance(d, dict)]
    pins = {}
    for line in pip_section:
        requirement = Requirement(line)
        [spec] = list(requirement.specifier)
        assert spec.operator == "==", f"{line!r} is not pinned with =="
        pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def environment_spec() -> dict:
    return yaml.safe_load((ENVIRONMENT / "environment.yml").read_text())


def test_conda_file_pins_python_and_only_the_job_runtime():
    dependencies = conda()["dependencies"]
    conda_packages = [d for d in dependencies if isinstance(d, str)]
    [python] = [d for d in conda_packages if d.startswith("python")]
    assert re.fullmatch(r"python=3\.\d+(\.\d+)?", python)
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert python.split("=")[1].startswith(running), "tests run on another Python than the nodes"
    assert all("=" in d for d in conda_packages), "every conda package is pinned"
    assert not any(name.startswith(("azure", "azureml", "mlflow")) for name in conda_pip_pins()), \
        "the nodes need no Azure SDK"


def test_pyproject_dependencies_are_the_conda_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = {canonicalize_name(Requirement(r).name): Requirement(r)
                    for r in project["dependencies"]}
    pins = conda_pip_pins()
    assert set(requirements) == set(pins)
    for name, requirement in requirements.items():
        assert requirement.specifier.contains(pins[name]), \
            f"conda.yaml pins {name}=={pins[name]}, outside pyproject's {requirement}"
    python = re.search(r"python=(3\.\d+)", " ".join(
        d for d in conda()["dependencies"] if isinstance(d, str)))[1]
    assert SpecifierSet(project["requires-python"]).contains(python + ".0")


def test_environment_yml_points_at_the_conda_file_on_a_pinned_openmpi_image():
    text = (ENVIRONMENT / "environment.yml").read_text()
    first = next(line for line in text.splitlines() if line.strip() and not line.startswith("#"))
    assert first == "$schema: https://azuremlschemas.azureedge.net/latest/environment.schema.json"
    spec = environment_spec()
    assert spec["conda_file"] == "conda.yaml"
    assert PINNED_IMAGE.match(spec["image"]), f"{spec['image']} is not a pinned OpenMPI image"
    assert not spec["image"].endswith(":latest")


def test_the_sdk_reads_environment_yml_as_az_ml_environment_create_does():
    from azure.ai.ml import load_environment

    environment = load_environment(source=str(ENVIRONMENT / "environment.yml"))
    assert environment.name == "amlshard-job" and environment.version == "1"
    assert environment.image == environment_spec()["image"]
    assert environment.conda_file == conda()


def test_dockerfile_builds_the_same_image_and_conda_file():
    lines = [line.strip() for line in (ENVIRONMENT / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.strip().startswith("#")]
    assert lines[0] == f"FROM {environment_spec()['image']}"
    assert any(line.startswith("COPY conda.yaml ") for line in lines)
    assert any("conda env create" in line and "conda.yaml" in line for line in lines)
    text = "\n".join(lines)
    assert "pip install" not in text, "pins live in conda.yaml only"


def test_submit_sends_the_environment_of_environment_dir():
    from submit.build import environment_of

    environment = environment_of("conda")
    assert environment.image == environment_spec()["image"]
    assert environment.conda_file == conda()
    docker = environment_of("docker")
    assert Path(docker.build.path).resolve() == ENVIRONMENT
