"""The command line of ``python -m submit``: parse, resolve, check, build, then dry-run or submit.

Exit codes: 0 done (dry run written, job submitted, or followed to
``Completed``); 1 the job ended otherwise, or Azure ML refused the request;
2 bad usage, settings, placeholders, job config, input folder or
authentication, reported before anything is sent; 130 interrupted (Ctrl-C),
143 terminated (SIGTERM). Either way a temporary code folder is removed and
one line says whether a job was submitted.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from . import lifecycle
from .settings import (
    JOB,
    KEYS,
    SHAPE,
    WHERE,
    SettingsError,
    resolve,
    unfilled,
    unfilled_message,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143

DESCRIPTION = """\
Build the Azure ML command job that runs `python -m job` on N nodes and submit it,
or with --dry-run write its YAML (what `az ml job create --file` reads) without
credentials or network.

  python -m submit --nodes 5                                  # 5 nodes, one MPI rank each
  python -m submit --nodes 1                                  # one node
  python -m submit --nodes 1 --node-count 5 --node-rank 3    # node 3 of 5 only (selective node)
  python -m submit --nodes 5 --dry-run --yaml job.yml         # no Azure needed

""" + lifecycle.USAGE

EPILOG = """\
settings, highest precedence first: flags; environment variables AZURE_SUBSCRIPTION_ID,
AZURE_RESOURCE_GROUP, AZUREML_WORKSPACE_NAME, AZUREML_COMPUTE; a workspace config.json
(found as MLClient.from_config finds it); --config FILE; submit/config.yaml. The output
says which source gave each value. Values in <ANGLE_BRACKETS> are placeholders: a dry
run accepts them, a submission refuses them (exit 2).

exit codes: 0 done; 1 the job did not complete, or Azure ML refused the request;
2 bad usage, settings, placeholders or authentication; 130 interrupted; 143 terminated.
"""


def _both(name: str) -> list[str]:
    """Both spellings of a long option: --process-count and --process_count."""
    dashed = "--" + name.replace("_", "-")
    underscored = "--" + name.replace("-", "_")
    return [dashed] if dashed == underscored else [dashed, underscored]


def _add_setting_flags(groups: dict[str, argparse._ArgumentGroup]) -> None:
    """One flag per setting of :data:`submit.settings.KEYS`, from its declaration there."""
    for key in KEYS:
        options: dict = {"metavar": key.metavar, "help": key.help, "dest": key.name}
        if key.count:
            options["type"] = int
        if key.merge:
            options["action"] = "append"
        groups[key.group].add_argument(*_both(key.flag.removeprefix("--")), **options)


def command_line_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m submit``; every option also takes its ``_`` spelling.

    The settings' flags come from :data:`submit.settings.KEYS` (name, help,
    metavar, section); the options here are those of the command itself.
    """
    parser = argparse.ArgumentParser(
        prog="python -m submit", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = {name: parser.add_argument_group(name) for name in (SHAPE, WHERE, JOB)}
    _add_setting_flags(groups)
    groups[JOB].add_argument(*_both("config"), metavar="FILE",
                             help="a submit settings file laid over submit/config.yaml")

    run = parser.add_argument_group("what to do")
    run.add_argument(*_both("dry_run"), action="store_true",
                     help="build the job and write its YAML; no credentials, no network")
    run.add_argument(*_both("yaml"), metavar="FILE",
                     help="write the job YAML to FILE (default with --dry-run: print it)")
    run.add_argument(*_both("code_dir"), metavar="DIR",
                     help="where to stage the code folder (default: FILE-code beside --yaml, "
                          "else a temporary folder, removed when done)")
    run.add_argument(*_both("stream"), action="store_true",
                     help="after submitting, follow the logs; exit 0 only if the job completed")
    return parser


class Terminated(BaseException):
    """SIGTERM, raised in the main thread as Ctrl-C raises ``KeyboardInterrupt``, so that
    what cleans up on the way out (a temporary code folder, a partial download) runs."""


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Terminated` (in the main thread only; the
    handler that was there is put back after)."""
    def terminate(signum, frame):
        raise Terminated()
    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave SIGTERM as it is
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Progress:
    """How far a submission went, for the line an interruption prints."""

    def __init__(self) -> None:
        self.sending = False  # create_or_update was called
        self.submitted: str | None = None  # the name of the job Azure ML accepted

    def interrupted(self, what: str) -> str:
        if self.submitted:
            return (f"{what}: job {self.submitted} was submitted and goes on running on Azure "
                    f"ML (python -m submit cancel {self.submitted} stops it)")
        if self.sending:
            return (f"{what} while submitting: the job may have reached Azure ML; the studio's "
                    "job list (or az ml job list) shows it")
        return f"{what}: nothing was submitted"


def _quiet_sdk_logs() -> None:
    # azure.identity logs the many-line story of a failed sign-in that `azure.py`
    # reports in one line.
    logging.getLogger("azure.identity").setLevel(logging.ERROR)


def _code_dir(args: argparse.Namespace) -> Path | None:
    """Where to stage the code; ``None``: a temporary folder, removed when done."""
    if args.code_dir:
        return Path(args.code_dir)
    if args.yaml:
        target = Path(args.yaml)
        return target.with_name(f"{target.stem}-code")
    return None


def run(args: argparse.Namespace, progress: Progress | None = None) -> int:
    """Do what the parsed command line asks; returns the exit code. Errors raise ValueError."""
    if args.stream and args.dry_run:
        raise SettingsError("--stream follows a submitted job; it cannot go with --dry-run")
    overrides = {key.name: getattr(args, key.name) for key in KEYS}
    settings = resolve(overrides, config_file=args.config)
    for warning in settings.warnings:
        print(f"warning: {warning}", file=sys.stderr)

    from .build import layout_of
    layout_of(settings)  # a bad job shape is reported before the placeholders
    if not args.dry_run and unfilled(settings):
        print(unfilled_message(settings), file=sys.stderr)
        return EXIT_USAGE

    from .azure import azure_errors
    from .prepare import prepare_job
    _quiet_sdk_logs()
    with azure_errors("building the job"):
        prepared = prepare_job(settings, _code_dir(args))
    with prepared:  # a temporary code folder goes when done
        if args.dry_run:
            return _dry_run(prepared, args)
        return _submit(prepared, args, progress or Progress())


def _empty_input_warning(prepared) -> None:
    """A local input folder with no file to upload: a dry run goes on, with one warning
    (a submission refuses it: :func:`submit.azure.check_local_inputs`)."""
    if prepared.upload is not None and prepared.upload.files == 0:
        print(f"warning: input: the local folder {str(prepared.upload.folder)!r} holds no file "
              "to upload (an .amlignore or .gitignore there may exclude them all); a "
              "submission refuses it", file=sys.stderr)


def _dry_run(prepared, args: argparse.Namespace) -> int:
    _empty_input_warning(prepared)
    if args.yaml:
        prepared.write_yaml(args.yaml)
        print(prepared.summary())
        print(f"job YAML: {args.yaml} (submit it with: az ml job create --file {args.yaml})")
        print("dry run: nothing was sent to Azure")
        return EXIT_OK
    text = prepared.checked_yaml()
    sys.stdout.write(text)
    sys.stdout.flush()
    print(prepared.summary(), file=sys.stderr)
    if prepared.temporary:
        print(f"code: {prepared.code_dir.name} is relative to where the YAML is saved; "
              "--yaml FILE stages the code beside FILE", file=sys.stderr)
    print("dry run: nothing was sent to Azure", file=sys.stderr)
    return EXIT_OK


def _submit(prepared, args: argparse.Namespace, progress: Progress) -> int:
    from .azure import (
        check_local_inputs,
        check_workspace,
        exit_code_for,
        ml_client,
        stream_job,
        submit_job,
    )

    check_local_inputs(prepared.job)
    if args.yaml:
        prepared.write_yaml(args.yaml)
    print(prepared.summary())
    client = ml_client(prepared.settings)
    print(check_workspace(client, prepared.settings).describe())
    progress.sending = True
    submitted = submit_job(client, prepared.job)
    progress.submitted = submitted.name
    print(f"submitted job: {submitted.name} (status {submitted.status})")
    print(f"studio: {submitted.studio_url}")
    if not args.stream:
        return EXIT_OK
    sys.stdout.flush()
    status = stream_job(client, submitted.name)
    lifecycle.print_report_after_stream(client, submitted.name)
    print(f"job {submitted.name} ended: {status}")
    return exit_code_for(status)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m submit`` with ``argv``; returns the exit code (errors: one line, no traceback)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    progress = Progress()
    try:
        with sigterm_raises():
            if argv and argv[0] in lifecycle.SUBCOMMANDS:  # status, cancel, logs, report, ...
                return lifecycle.main(argv)
            return _main(argv, progress)
    except Terminated:
        what = "terminated" if argv and argv[0] in lifecycle.SUBCOMMANDS else \
            progress.interrupted("terminated")
        print(what, file=sys.stderr)
        return EXIT_TERMINATED


def _main(argv: list[str], progress: Progress) -> int:
    from .azure import AzureError
    from .yaml_out import RoundTripError

    args = command_line_parser().parse_args(argv)
    try:
        return run(args, progress)
    except AzureError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except RoundTripError as error:
        print(f"internal error: {error}", file=sys.stderr)
        return EXIT_FAILED
    except ValueError as error:  # SettingsError, StageError, BuildError, PreviewError
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(progress.interrupted("interrupted"), file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
