"""Build and submit Azure ML command jobs that run ``python -m job`` on one or many nodes.

The command line is ``python -m submit`` (see ``--help``); the notebook uses
the same functions::

    import submit
    settings = submit.resolve_settings({"nodes": 5})          # flags > env > config.json > config.yaml
    prepared = submit.prepare_job(settings)                   # stage code, build the job; no network
    print(prepared.yaml())                                    # what `az ml job create --file` reads
    if not submit.unfilled(settings):                         # placeholders all filled in
        client = submit.ml_client(settings)                   # DefaultAzureCredential
        print(submit.check_workspace(client, settings).describe())  # workspace, compute, nodes
        submitted = submit.submit_job(client, prepared.job)   # name and studio URL
        submit.stream_job(client, submitted.name)             # follow the logs to the end
        print(submit.job_report(client, submitted.name, settings))  # every rank's manifest
        submit.download_output(client, submitted.name, settings, "out")  # the output folder

Importing this package does not import the Azure SDK; building or submitting a job does.
"""

from .azure import (
    AzureError,
    Submitted,
    WorkspaceCheck,
    check_workspace,
    exit_code_for,
    ml_client,
    stream_job,
    submit_job,
)
from .lifecycle import Downloaded, JobReport, download_output, job_report
from .prepare import PreparedJob, prepare_job
from .settings import Settings, SettingsError, is_placeholder, unfilled, unfilled_message
from .settings import resolve as resolve_settings

__all__ = ["AzureError", "Downloaded", "JobReport", "PreparedJob", "Settings", "SettingsError",
           "Submitted", "WorkspaceCheck", "check_workspace", "download_output", "exit_code_for",
           "is_placeholder", "job_report", "ml_client", "prepare_job", "resolve_settings",
           "stream_job", "submit_job", "unfilled", "unfilled_message"]
