"""Talking to Azure ML: the credential, the client, the workspace check, the submission, the logs.

The only module of ``submit`` that opens connections. ``azure.identity`` and
``azure.ai.ml`` are imported when a function needs them. Every Azure error a
user can meet comes out as :class:`AzureError`: one line and an exit code
(2 for authentication and for a workspace, compute or datastore that is not
there; 1 for anything else the service refused).
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from .settings import Settings

COMPLETED = "Completed"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
LOGIN_HINT = ("log in with `az login` (or `azd auth login`), or set AZURE_TENANT_ID, AZURE_CLIENT_ID "
              "and AZURE_CLIENT_SECRET for a service principal, then try again")


class AzureError(Exception):
    """A failure to report as one line, with the exit code to leave with."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Submitted:
    """A job Azure ML accepted."""

    name: str
    studio_url: str | None
    status: str | None


def status_text(status) -> str | None:
    """A job status as Azure ML spells it (``Completed``), whether the SDK gave an enum or text."""
    if status is None:
        return None
    return str(getattr(status, "value", status))


ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def _first_line(error: BaseException) -> str:
    """The line of an error that says what is wrong: the SDK's first ``(x)`` detail if any.

    The SDK's formatted messages are coloured and open with a generic headline
    ("Resource was not found."); the detail names the asset.
    """
    text = ANSI_ESCAPE.sub("", str(getattr(error, "message", None) or error))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    details = [line.removeprefix("(x)").strip() for line in lines if line.startswith("(x)")]
    return (details or lines or [type(error).__name__])[0]


def authentication_message(error: BaseException) -> str:
    """One line for a failed sign-in: which credentials were tried and how to log in."""
    text = str(getattr(error, "message", None) or error)
    tried = re.findall(r"^\s*(\w+Credential):", text, flags=re.MULTILINE)
    if "DefaultAzureCredential" in text and tried:
        names = ", ".join(dict.fromkeys(tried))
        return (f"authentication failed: DefaultAzureCredential tried {names} and none gave a "
                f"token; {LOGIN_HINT}")
    return f"authentication failed: {_first_line(error)}; {LOGIN_HINT}"


@contextmanager
def azure_errors(action: str) -> Iterator[None]:
    """Turn the SDK's exceptions raised while doing ``action`` into :class:`AzureError`."""
    from azure.ai.ml.exceptions import ErrorCategory, MlException
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceNotFoundError,
        ServiceRequestError,
    )

    try:
        yield
    except ClientAuthenticationError as error:
        raise AzureError(authentication_message(error), EXIT_USAGE) from None
    except ResourceNotFoundError as error:
        raise AzureError(f"{action}: not found (check the subscription, resource group, "
                         f"workspace, compute and datastore): {_first_line(error)}", EXIT_USAGE) from None
    except HttpResponseError as error:
        raise AzureError(f"{action}: Azure ML answered HTTP {error.status_code}: "
                         f"{_first_line(error)}", EXIT_FAILED) from None
    except ServiceRequestError as error:
        raise AzureError(f"{action}: cannot reach Azure ML: {_first_line(error)}", EXIT_FAILED) from None
    except MlException as error:
        user_error = getattr(error, "error_category", None) == ErrorCategory.USER_ERROR
        raise AzureError(f"{action}: the Azure ML SDK refused: {_first_line(error)}",
                         EXIT_USAGE if user_error else EXIT_FAILED) from None


def default_credential():
    """``DefaultAzureCredential``: environment, workload identity, managed identity, Azure CLI, ..."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def ml_client(settings: Settings, credential=None, **client_options):
    """An ``MLClient`` for the settings' workspace; no request is made until it is used.

    ``credential`` defaults to :func:`default_credential`; ``client_options``
    go to ``MLClient`` (e.g. ``transport``, ``show_progress``).
    """
    from azure.ai.ml import MLClient

    return MLClient(credential if credential is not None else default_credential(),
                    subscription_id=settings.subscription,
                    resource_group_name=settings.resource_group,
                    workspace_name=settings.workspace, **client_options)


def local_inputs(job) -> dict[str, str]:
    """The inputs of ``job`` that the SDK uploads as local folders: name -> path."""
    from .build import is_local_binding

    found = {}
    for name, binding in (getattr(job, "inputs", None) or {}).items():
        path = getattr(binding, "path", None)
        if isinstance(path, str) and is_local_binding(path):
            found[name] = path
    return found


def check_local_inputs(job) -> None:
    """:class:`AzureError` (exit code 2) if a local input folder of ``job`` is gone or
    holds no file to upload (see :mod:`submit.upload`); the SDK would stop there too,
    after signing in and uploading the code."""
    from .upload import local_upload

    for name, path in local_inputs(job).items():
        if not os.path.isdir(path):
            raise AzureError(f"input {name}: the local folder {path!r} is not there", EXIT_USAGE)
        if local_upload(path).files == 0:
            raise AzureError(f"input {name}: the local folder {path!r} holds no file to upload "
                             "(an .amlignore or .gitignore there may exclude them all)", EXIT_USAGE)


def submit_job(client, job) -> Submitted:
    """Create the job (uploading its code and any local input folder, creating its
    environment); returns its name and URL.

    A local input folder goes to the datastore ``workspaceblobstore`` (see
    :mod:`submit.upload`); one that is gone or empty is refused before any request
    (see :func:`check_local_inputs`).
    """
    check_local_inputs(job)
    with azure_errors("submitting the job"):
        returned = client.jobs.create_or_update(job)
    return Submitted(returned.name, returned.studio_url, status_text(returned.status))


@dataclass(frozen=True)
class WorkspaceCheck:
    """What :func:`check_workspace` found: the workspace, and the compute the job runs on."""

    workspace: str
    location: str | None
    compute: str | None  # None: serverless compute
    compute_type: str | None
    max_nodes: int | None  # None: the compute reports no maximum
    nodes: int  # what the job asks for (instance_count)

    def describe(self) -> str:
        lines = [f"workspace {self.workspace}: found ({self.location or 'location not reported'})"]
        if self.compute is None:
            lines.append(f"compute: serverless; {self.nodes} node(s), no cluster to check")
        elif self.max_nodes is None:
            lines.append(f"compute {self.compute} ({self.compute_type}): found; it reports no "
                         f"maximum node count, so {self.nodes} node(s) could not be checked")
        else:
            lines.append(f"compute {self.compute} ({self.compute_type}): found, up to "
                         f"{self.max_nodes} node(s); the job asks for {self.nodes}")
        return "\n".join(lines)


def max_nodes_of(compute) -> int | None:
    """The most nodes ``compute`` gives one job: a cluster's ``max_instances`` (its
    ``scale_settings.max_node_count``), 1 for a compute instance, None if not reported."""
    maximum = getattr(compute, "max_instances", None)
    if maximum is None:
        maximum = getattr(getattr(compute, "scale_settings", None), "max_node_count", None)
    if maximum is None and str(getattr(compute, "type", "")).lower() == "computeinstance":
        return 1
    return maximum


def check_workspace(client, settings: Settings) -> WorkspaceCheck:
    """Check that the settings' workspace exists and that its compute can run the job's nodes.

    Two reads (the workspace, the compute; none for serverless compute). Raises
    :class:`AzureError` (exit code 2) for a workspace or compute that is not there and
    for a compute whose maximum node count is below ``settings.nodes``, saying how to fix it.
    """
    from azure.core.exceptions import ResourceNotFoundError

    where = f"resource group {settings.resource_group}, subscription {settings.subscription}"
    with azure_errors(f"checking workspace {settings.workspace}"):
        try:
            workspace = client.workspaces.get(settings.workspace)
        except ResourceNotFoundError:
            raise AzureError(f"workspace {settings.workspace!r} was not found in {where}: "
                             "check the subscription, resource group and workspace",
                             EXIT_USAGE) from None
        found = (settings.workspace, getattr(workspace, "location", None))
        if not settings.compute:
            return WorkspaceCheck(*found, None, None, None, settings.nodes)
        try:
            compute = client.compute.get(settings.compute)
        except ResourceNotFoundError:
            raise AzureError(f"compute {settings.compute!r} was not found in workspace "
                             f"{settings.workspace}: check the compute name (`az ml compute "
                             "list` lists them), or create the cluster", EXIT_USAGE) from None
    check = WorkspaceCheck(*found, settings.compute, getattr(compute, "type", None),
                           max_nodes_of(compute), settings.nodes)
    if check.max_nodes is not None and check.max_nodes < settings.nodes:
        raise AzureError(f"compute {settings.compute!r} runs at most {check.max_nodes} node(s) "
                         f"(its max_instances), but the job asks for {settings.nodes}: choose "
                         f"fewer nodes, or raise its maximum (`az ml compute update --name "
                         f"{settings.compute} --max-instances {settings.nodes}`)", EXIT_USAGE)
    return check


def stream_job(client, name: str) -> str:
    """Print the job's logs until it ends; returns its final status (``Completed``, ``Failed``, ...)."""
    from azure.ai.ml.exceptions import JobException

    with azure_errors(f"following job {name}"):
        try:
            client.jobs.stream(name)
        except JobException:
            pass  # the job failed; its status below says so
        return status_text(client.jobs.get(name).status) or "Unknown"


def exit_code_for(status: str | None) -> int:
    """0 for a job that completed, 1 for any other end (failed, canceled, ...)."""
    return EXIT_OK if status == COMPLETED else EXIT_FAILED
