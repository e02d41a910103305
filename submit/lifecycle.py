"""The subcommands on a submitted job: ``python -m submit SUBCOMMAND NAME [options]``.

``status``, ``cancel``, ``logs``, ``report``, ``download``, ``resubmit`` (see
:data:`USAGE` and each one's ``--help``). The workspace comes from the same
settings as a submission (flags ``--subscription``, ``--resource-group``,
``--workspace``; ``AZURE_SUBSCRIPTION_ID``, ``AZURE_RESOURCE_GROUP``,
``AZUREML_WORKSPACE_NAME``; a workspace ``config.json``; ``--config FILE``;
``submit/config.yaml``): while one still holds a placeholder, exit 2 listing
it, before any network call.

Exit codes common to all: 2 bad usage or settings, a job name the workspace
does not have, a failed sign-in (one line, as for a submission); 1 Azure ML
or storage refused a request; 130 interrupted. Each subcommand's own
codes are in its ``--help``.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from .settings import (
    WORKSPACE_KEYS,
    Settings,
    SettingsError,
    is_placeholder,
    placeholder_lines,
    resolve,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_RUNNING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
OUTPUT_NAME = "out_dir"  # submit/build.py's OUTPUT_NAME: the job's output folder
ARTIFACTS_NAME = "default"  # Azure ML's name for a job's artifact store (its logs)
COMPLETED = "Completed"
ENDED = ("Completed", "Failed", "Canceled", "NotResponding", "Paused")  # the SDK's terminal ones
LOG_TAIL = 20
LOG_NAME = re.compile(r"user_logs/std_log(?:_node_(?P<node>\d+))?(?:_process_(?P<process>\d+))?"
                      r"(?:_ps)?\.txt")
# A rank's own error lines (job/run.py logs "2026-01-02 03:04:05 ERROR [rank 3] ..."), a
# traceback, a command line's "error: ...": not any line that holds the word ERROR.
ERROR_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:,\d+)? ERROR |"
                        r"^Traceback \(most recent call last\):|^error: ", re.MULTILINE)
SYSTEM_PROPERTY = re.compile(r"^(_|azureml\.|mlflow\.)|^(ContentSnapshotId|ProcessInfoFile|"
                             r"ProcessStatusFile|StartTimeUtc|EndTimeUtc)$")

USAGE = """\
after submitting, on a job NAME (each has --help; the workspace settings are as above):
  python -m submit status NAME              status, studio URL, nodes, times; exit 0 completed,
                                            1 failed or canceled, 3 not finished yet
  python -m submit cancel NAME              cancel the job
  python -m submit logs NAME [--rank R]     every rank's log (tail), or rank R's whole log
  python -m submit report NAME              job-wide summary of every rank's manifest; exit 1
                                            if a rank's manifest is missing or files failed
  python -m submit download NAME [--to DIR] the job's output folder
  python -m submit resubmit NAME            the same job again on the same output: it resumes
"""

DESCRIPTIONS = {
    "status": """\
Print job NAME's status, studio URL, nodes (instance_count) and start and end times.

exit codes: 0 Completed; 1 Failed or Canceled (or another end: NotResponding, Paused);
3 not finished yet (queued, starting, running, finalizing, cancel requested);
2 no such job, bad settings, sign-in failed.""",
    "cancel": """\
Cancel job NAME (Azure ML stops every node: each rank gets SIGTERM, writes its manifest
with complete: false and exits 143; `resubmit` later resumes it). A job that already
ended is left as it is.

exit codes: 0 cancel requested, or nothing to cancel; 2 no such job, bad settings.""",
    "logs": f"""\
Print the ranks' logs of job NAME (user_logs/std_log_process_R.txt in the job's artifact
store, as far as Azure ML has uploaded them; `--stream` on submission shows rank 0's only).

Without --rank: for each rank a header line `==> rank R: FILE (N lines) <==` and the last
--tail lines of its log, then the ranks whose log holds an error: a line the job logged
at level ERROR (`DATE TIME ERROR [rank R] ...`), a traceback, or a line opening `error: `.
With --rank R: rank R's whole log.

exit codes: 0 logs printed; 1 no log yet, or no log of rank R; 2 no such job, bad settings.""",
    "report": """\
Download only the `_manifest/` folder of job NAME's output (out_dir) and print one
job-wide summary (as `python -m job.report OUT_DIR` does for a local folder): ranks
finished of those the job runs, files ok / skipped / failed, bytes, tokens, the slowest
rank, the failed files by name. Works while the job runs (manifests so far).

exit codes: 0 every rank wrote a complete manifest and no file failed; 1 a rank's
manifest is missing or interrupted, or files failed; 2 no such job, bad settings.""",
    "download": """\
Download job NAME's output folder (out_dir, with its _manifest/) to DIR (default ./NAME).
Files already there with the same size are kept, so a second run completes the first.
`python -m job.report DIR` then sums it up, `python -m job.check` checks it.

exit codes: 0 downloaded; 1 the output holds no file, or a blob whose name would land outside
DIR (`..`, an absolute name) was skipped (the others are downloaded; stderr names it);
2 no such job, bad settings.""",
    "resubmit": """\
Submit job NAME again: the same code, command, environment, compute, inputs, outputs,
distribution and resources, on the same output path (also when the job wrote to its
default output), so a preempted, failed or canceled run resumes: each rank skips what its
journal records as done. The new job is tagged amlshard.resubmitted_from=NAME. Prints the
new job's name and studio URL. A job that has not ended is refused (cancel it first).

exit codes: 0 submitted; 1 Azure ML refused it; 2 no such job, job not ended, bad
settings.""",
}


def _parent_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    where = parser.add_argument_group("workspace (default: as for a submission)")
    where.add_argument("--subscription", metavar="ID", help="Azure subscription ID")
    where.add_argument("--resource-group", "--resource_group", dest="resource_group",
                       metavar="NAME", help="resource group")
    where.add_argument("--workspace", metavar="NAME", help="Azure ML workspace")
    where.add_argument("--config", metavar="FILE",
                       help="a submit settings file laid over submit/config.yaml")
    return parser


def subcommand_parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``python -m submit NAME``; every option also takes its ``_`` spelling."""
    parser = argparse.ArgumentParser(
        prog=f"python -m submit {name}", description=DESCRIPTIONS[name],
        formatter_class=argparse.RawDescriptionHelpFormatter, parents=[_parent_parser()])
    parser.add_argument("job_name", metavar="NAME", help="the job's name (as submit printed it)")
    if name == "logs":
        parser.add_argument("--rank", type=int, metavar="R", help="print rank R's whole log")
        parser.add_argument("--tail", type=int, default=LOG_TAIL, metavar="N",
                            help=f"lines of each rank's log without --rank (default {LOG_TAIL}; "
                                 "0: every line)")
    if name == "download":
        parser.add_argument("--to", metavar="DIR", help="where to put the output (default ./NAME)")
    return parser


def workspace_settings(args: argparse.Namespace) -> Settings:
    """The workspace settings, resolved as for a submission (flags > env > config.json > files)."""
    overrides = {key: getattr(args, key) for key in WORKSPACE_KEYS}
    return resolve(overrides, config_file=args.config)


def unfilled_workspace(settings: Settings) -> str | None:
    """The refusal when a workspace setting still holds a placeholder, else None."""
    names = [name for name in WORKSPACE_KEYS if is_placeholder(settings.values[name])]
    if not names:
        return None
    return "\n".join([f"error: {len(names)} workspace setting(s) still hold placeholders; "
                      "nothing was sent to Azure. Set each of them:",
                      *placeholder_lines(settings, names)])


# --- reading the job --------------------------------------------------------------------------

def get_job(client, name: str, settings: Settings):
    """Job ``name``; ``AzureError`` (exit 2) when the workspace has no such job."""
    from azure.core.exceptions import ResourceNotFoundError

    from .azure import AzureError, azure_errors

    with azure_errors(f"reading job {name}"):
        try:
            return client.jobs.get(name)
        except ResourceNotFoundError:
            raise AzureError(f"no job {name!r} in workspace {settings.workspace} (resource group "
                             f"{settings.resource_group}): check the name and the workspace",
                             EXIT_USAGE) from None


def status_of(job) -> str:
    from .azure import status_text

    return status_text(job.status) or "Unknown"


def exit_code_of(status: str) -> int:
    """0 Completed, 1 another end (Failed, Canceled, ...), 3 not ended yet."""
    return EXIT_OK if status == COMPLETED else EXIT_FAILED if status in ENDED else EXIT_RUNNING


def _folder_uri(job, name: str) -> str | None:
    output = (getattr(job, "outputs", None) or {}).get(name)
    path = getattr(output, "path", None)
    if not path:
        return None
    return path.replace("${{name}}", job.name).replace("${{output_name}}", name)


def output_location(client, job):
    """Where the job's out_dir is: its path, or Azure ML's default for an output without one
    (``azureml/NAME/out_dir/`` on the workspace's default datastore)."""
    from .datastore import parse_location

    uri = _folder_uri(job, OUTPUT_NAME)
    if uri is None:
        default = client.datastores.get_default().name
        uri = f"azureml://datastores/{default}/paths/azureml/{job.name}/{OUTPUT_NAME}/"
    return parse_location(uri)


def artifacts_location(job):
    """Where the job's logs are: its artifact store (the ``default`` output), as the SDK's
    ``jobs.download`` finds it."""
    from .datastore import parse_location

    uri = _folder_uri(job, ARTIFACTS_NAME) or \
        f"azureml://datastores/workspaceartifactstore/paths/ExperimentRun/dcid.{job.name}/"
    return parse_location(uri)


def expected_shards(job) -> tuple[int, list[int] | None]:
    """The shards the job's ranks write: (count, indices or None for all of them).

    A selective node (``--distribArgs.node_count N --distribArgs.node_rank R`` in the
    command) writes shard R of N; otherwise instance_count x processes per instance.
    """
    selective = re.search(r"--distribArgs\.node_count (\d+) --distribArgs\.node_rank (\d+)",
                          getattr(job, "command", "") or "")
    if selective:
        return int(selective[1]), [int(selective[2])]
    nodes = getattr(getattr(job, "resources", None), "instance_count", None) or 1
    per_node = getattr(getattr(job, "distribution", None), "process_count_per_instance", None)
    return nodes * (per_node or 1), None


def run_times(client, name: str) -> tuple[object, object]:
    """The job's start and end times from its run history (None where not reported).

    No public SDK call gives them; this is the run-history call ``jobs.stream`` uses.
    """
    from azure.core.exceptions import AzureError as CoreError

    try:
        run = client.jobs._runs_operations.get_run(name)
    except (AttributeError, CoreError):
        return None, None
    return getattr(run, "start_time_utc", None), getattr(run, "end_time_utc", None)


# --- the subcommands --------------------------------------------------------------------------

def status_command(client, args, settings: Settings) -> int:
    job = get_job(client, args.job_name, settings)
    status = status_of(job)
    started, ended = run_times(client, job.name)
    created = getattr(getattr(job, "creation_context", None), "created_at", None)
    nodes = getattr(getattr(job, "resources", None), "instance_count", None)
    print(f"job {job.name}: {status}")
    print(f"  display name: {job.display_name}  (experiment {job.experiment_name})")
    print(f"  studio: {job.studio_url}")
    print(f"  nodes: {nodes or 1} (instance_count), compute {job.compute}")
    print(f"  created: {created or 'not reported'}")
    print(f"  started: {started or 'not yet'}")
    print(f"  ended: {ended or 'not yet'}")
    return exit_code_of(status)


def cancel_command(client, args, settings: Settings) -> int:
    from .azure import azure_errors

    job = get_job(client, args.job_name, settings)
    status = status_of(job)
    if status in ENDED:
        print(f"job {job.name} already ended: {status}; nothing to cancel")
        return EXIT_OK
    with azure_errors(f"canceling job {job.name}"):
        client.jobs.begin_cancel(job.name).result()
    print(f"cancel requested: job {job.name} (it was {status}); "
          f"`python -m submit status {job.name}` says when it has ended")
    return EXIT_OK


def rank_logs(blobs) -> dict[int, object]:
    """The ranks' log files among ``blobs`` (relative to the artifact store), by rank."""
    logs = {}
    for blob in blobs:
        match = LOG_NAME.fullmatch(blob.relative)
        if match:
            rank = match["process"] if match["process"] is not None else match["node"] or 0
            logs[int(rank)] = blob
    return dict(sorted(logs.items()))


def logs_command(client, args, settings: Settings) -> int:
    from .azure import azure_errors
    from .datastore import container_of, list_folder, read_text

    job = get_job(client, args.job_name, settings)
    location = artifacts_location(job)
    with azure_errors(f"reading the logs of job {job.name}"):
        container = container_of(client, location)
        logs = rank_logs(list_folder(container, location, "user_logs"))
        if not logs:
            print(f"error: job {job.name} ({status_of(job)}) has no rank logs yet in "
                  f"{location.uri}", file=sys.stderr)
            return EXIT_FAILED
        if args.rank is not None:
            if args.rank not in logs:
                print(f"error: job {job.name} has no log of rank {args.rank}; ranks with logs: "
                      f"{', '.join(map(str, logs))}", file=sys.stderr)
                return EXIT_FAILED
            sys.stdout.write(read_text(container, logs[args.rank]))
            return EXIT_OK
        with_errors = []
        for rank, blob in logs.items():
            text = read_text(container, blob)
            lines = text.splitlines()
            print(f"==> rank {rank}: {blob.relative} ({len(lines)} lines) <==")
            shown = lines if args.tail <= 0 else lines[-args.tail:]
            if len(shown) < len(lines):
                print(f"... {len(lines) - len(shown)} earlier lines (--rank {rank} prints all)")
            for line in shown:
                print(line)
            if ERROR_LINE.search(text):
                with_errors.append(rank)
    print(f"job {job.name}: {status_of(job)}; " + (
        f"ranks whose log shows an error: {', '.join(map(str, with_errors))}" if with_errors
        else "no rank's log shows an error"))
    return EXIT_OK


SHARD_NUMBERS = re.compile(r"shard-(\d+)-of-(\d+)\.json")  # job.journal's manifest names


def set_aside_unreadable(folder: str, names: dict[str, str]) -> list[tuple[str, str]]:
    """Remove from ``folder`` (a downloaded out_dir) each journal or manifest that
    ``job.check.read_bookkeeping`` cannot read, so that the others can be summed up.

    ``names`` maps each downloaded file's local path to the name to show (its URI).
    Returns ``(file shown, message with that name)`` for each file removed; a problem
    naming no downloaded file is kept with the folder's name replaced.
    """
    from job.check import read_bookkeeping

    removed: list[tuple[str, str]] = []
    while True:
        _, bad = read_bookkeeping(folder)
        found = [(path, message) for message in bad for path in names
                 if message.startswith(path + ":") and os.path.exists(path)]
        if not found:
            return removed + [(folder, message.replace(folder, "the output"))
                              for message in bad]
        for path, message in found:
            os.remove(path)
            removed.append((names[path], names[path] + message[len(path):]))


def _summary_with_unreadable(summary, text: list[str], unreadable: list[tuple[str, str]],
                             ) -> tuple[list[str], int]:
    """The summary's lines with the unreadable files named first, their ranks' lines saying
    so, and a verdict that counts them; exit 1."""
    from job.report import SHOWN

    lines = [f"cannot read the bookkeeping: {message}" for _, message in unreadable[:SHOWN]]
    ranks = {tuple(map(int, found.groups())) for name, _ in unreadable
             if (found := SHARD_NUMBERS.search(name.rsplit("/", 1)[-1]))}
    for index, count in ranks:
        head = f"  rank {index}/{count}: no manifest: "
        text = [f"{head[:-len('no manifest: ')]}manifest cannot be read (named above)"
                if line.startswith(head) else line for line in text]
    verdict = f"{len(unreadable)} journal(s) or manifest(s) cannot be read"
    last = text[-1] if text else ""
    text[-1:] = [f"FAILED: {verdict}; {last.removeprefix('FAILED: ')}"
                 if last.startswith("FAILED: ") else f"FAILED: {verdict}"]
    return lines + text, 1


def report_lines(client, job) -> tuple[list[str], int]:
    """Download the job's ``_manifest/`` and sum it up: the report's lines and exit code.

    A journal or manifest that cannot be read is named by its URI, and the others are
    still summed up (the exit code is then 1)."""
    import io

    from job.report import print_summary, summarize

    from .azure import azure_errors
    from .datastore import container_of, fetch, list_folder

    location = output_location(client, job)
    count, indices = expected_shards(job)
    with tempfile.TemporaryDirectory(prefix="amlshard-report-") as folder:
        names = {}
        with azure_errors(f"reading the manifests of job {job.name}"):
            container = container_of(client, location)
            for blob in list_folder(container, location, "_manifest"):
                path, _ = fetch(container, blob, folder)
                names[str(path)] = location.uri.rstrip("/") + "/" + blob.relative
        unreadable = set_aside_unreadable(folder, names)
        summary = summarize(folder, count, indices)
        summary.out_dir = location.uri.rstrip("/")
        text = io.StringIO()
        code = print_summary(summary, text)
    lines = text.getvalue().splitlines()
    if unreadable:
        lines, code = _summary_with_unreadable(summary, lines, unreadable)
    head = f"job {job.name}: {status_of(job)}; output {location.uri}"
    return [head, *lines], code


def print_report_after_stream(client, name: str) -> None:
    """The report that ends ``--stream``: printed, whatever it says (the exit code stays the
    job's status); one line if it cannot be made."""
    from .azure import AzureError, azure_errors

    try:
        with azure_errors(f"reading job {name}"):
            job = client.jobs.get(name)
        lines, _ = report_lines(client, job)
    except (AzureError, ValueError) as error:
        lines = [f"report: not available: {error}"]
    print("\n".join(lines), flush=True)


@dataclass(frozen=True)
class JobReport:
    """The job-wide summary of a job's manifests, as ``python -m submit report`` prints it."""

    job: str
    text: str
    exit_code: int  # 0: every rank wrote a complete manifest and no file failed; else 1

    def __str__(self) -> str:
        return self.text


def job_report(client, name: str, settings: Settings) -> JobReport:
    """Job ``name``'s report: every rank's manifest so far, summed up (see :func:`report_lines`)."""
    job = get_job(client, name, settings)
    lines, code = report_lines(client, job)
    return JobReport(job.name, "\n".join(lines), code)


def report_command(client, args, settings: Settings) -> int:
    report = job_report(client, args.job_name, settings)
    print(report.text)
    return report.exit_code


@dataclass(frozen=True)
class Downloaded:
    """What :func:`download_output` did."""

    job: str
    status: str  # the job's status when the download began
    source: str  # the output folder's URI
    destination: Path
    fetched: int  # files downloaded now
    kept: int  # files already there with the same size
    size: int  # bytes of all of them
    outside: tuple[str, ...] = ()  # blob names that would land outside destination: skipped

    def describe(self) -> str:
        if not self.fetched + self.kept:
            other = " that can be downloaded" if self.outside else ""
            return f"the output of job {self.job} ({self.source}) holds no file{other}"
        return (f"downloaded {self.fetched} file(s) of {self.source} to {self.destination}"
                + (f" ({self.kept} already there)" if self.kept else "")
                + f": {self.size:,} bytes\nsummary: python -m job.report {self.destination}")


def download_output(client, name: str, settings: Settings,
                    to: str | os.PathLike | None = None) -> Downloaded:
    """Download job ``name``'s output folder (out_dir, ``_manifest/`` included) to ``to``
    (default ``./NAME``); files already there with the same size are kept. A blob whose
    name would land outside ``to`` (``..``, an absolute name) is skipped and named in
    ``Downloaded.outside``; the others are downloaded."""
    from .azure import azure_errors
    from .datastore import StorageError, container_of, fetch, list_folder, local_path

    job = get_job(client, name, settings)
    location = output_location(client, job)
    destination = Path(to or job.name)
    fetched = kept = size = 0
    outside = []
    with azure_errors(f"downloading the output of job {job.name}"):
        container = container_of(client, location)
        for blob in list_folder(container, location):
            try:
                local_path(destination, blob.relative)
            except StorageError:
                outside.append(blob.name)
                continue
            _, new = fetch(container, blob, destination)
            fetched, kept, size = fetched + new, kept + (not new), size + blob.size
    return Downloaded(job.name, status_of(job), location.uri, destination, fetched, kept, size,
                      tuple(outside))


def download_command(client, args, settings: Settings) -> int:
    downloaded = download_output(client, args.job_name, settings, args.to)
    if downloaded.status not in ENDED:
        print(f"note: job {downloaded.job} is {downloaded.status}: its output is not complete "
              "yet", file=sys.stderr)
    for name in downloaded.outside:
        print(f"error: blob {name!r} would land outside {str(downloaded.destination)!r}; "
              "skipped it", file=sys.stderr)
    if not downloaded.fetched + downloaded.kept:
        print(f"error: {downloaded.describe()}", file=sys.stderr)
        return EXIT_FAILED
    print(downloaded.describe())
    return EXIT_FAILED if downloaded.outside else EXIT_OK


def resubmission_of(job, output_uri: str, tags: dict[str, str]):
    """Job ``job`` (a ``Command`` as ``jobs.get`` returns it) made a new submission: the same
    fields, less what Azure ML set (name, id, status, services, creation context, system
    properties, the ``default`` output), its out_dir bound to ``output_uri``, ``tags`` added.

    The SDK sends a ``Command`` as ``Command._to_job()`` makes it, whose inputs and outputs
    are the job bindings it was loaded with (``_job_inputs``, ``_job_outputs``); no public
    setter reaches those, nor the name-less copy: the attributes are set here.
    """
    job.name = None  # named anew when sent; without a name (and an id) create_or_update
    job._id = None   # does not take the fetched job for a metadata update of the old one
    job._status = None
    job._creation_context = None
    job.services = None
    job.properties = {key: value for key, value in (job.properties or {}).items()
                      if not SYSTEM_PROPERTY.search(key)}
    job.tags = {**(job.tags or {}), **tags}
    outputs = job._job_outputs
    outputs.pop(ARTIFACTS_NAME, None)
    outputs[OUTPUT_NAME].path = output_uri
    return job


def resubmit_command(client, args, settings: Settings) -> int:
    from .azure import AzureError, submit_job

    job = get_job(client, args.job_name, settings)
    status = status_of(job)
    if status not in ENDED:
        raise AzureError(f"job {job.name} is {status}: two runs would share its output; cancel "
                         f"it first (python -m submit cancel {job.name}) or wait", EXIT_USAGE)
    if OUTPUT_NAME not in (getattr(job, "_job_outputs", None) or {}):
        raise AzureError(f"job {job.name} has no {OUTPUT_NAME} output: it was not submitted "
                         "by python -m submit", EXIT_USAGE)
    old = job.name
    location = output_location(client, job)
    copy = resubmission_of(job, location.uri, {"amlshard.resubmitted_from": old})
    submitted = submit_job(client, copy)
    print(f"resubmitted job {old} ({status}) as: {submitted.name} (status {submitted.status})")
    print(f"studio: {submitted.studio_url}")
    print(f"output: {location.uri} (the same: ranks resume from their journals)")
    return EXIT_OK


COMMANDS: dict[str, Callable[..., int]] = {
    "status": status_command, "cancel": cancel_command, "logs": logs_command,
    "report": report_command, "download": download_command, "resubmit": resubmit_command,
}
SUBCOMMANDS = tuple(COMMANDS)


def run(argv: Sequence[str]) -> int:
    """Run subcommand ``argv[0]`` with ``argv[1:]``; errors raise (see :func:`main`)."""
    name = argv[0]
    args = subcommand_parser(name).parse_args(list(argv[1:]))
    if not args.job_name.strip():  # the request would go to the jobs list instead
        raise SettingsError("the job name is empty: give the name python -m submit printed")
    settings = workspace_settings(args)
    for warning in settings.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    refusal = unfilled_workspace(settings)
    if refusal:
        print(refusal, file=sys.stderr)
        return EXIT_USAGE
    import logging

    from .azure import ml_client
    from .build import quiet_sdk_notices
    logging.getLogger("azure.identity").setLevel(logging.ERROR)  # azure.py reports it in one line
    quiet_sdk_notices()  # a fetched job's experimental classes (resubmit)
    return COMMANDS[name](ml_client(settings), args, settings)


def main(argv: Sequence[str]) -> int:
    """``python -m submit SUBCOMMAND ...``; returns the exit code (errors: one line)."""
    from .azure import AzureError

    try:
        return run(argv)
    except AzureError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except ValueError as error:  # SettingsError, StorageError
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:  # writing a download
        print(f"error: {error.filename or 'a file'}: {error.strerror or error}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
