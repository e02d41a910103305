"""The command line of ``python -m job``: parse, validate, run, map errors to exit codes."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence

from . import config as config_module
from .config import ConfigError
from .config import parse_command_line as parse_arguments
from .run import EXIT_SIGNAL, EXIT_USAGE, UsageError, configure_logging, execute, prepare

USAGE = """\
usage: python -m job [--config PATH] [--KEY VALUE ...] [--SECTION.KEY VALUE ...]

Process this rank's shard of the files under input_dir with a pool of worker
processes. The rank comes from distribArgs, else from the launcher's
environment (mpirun / Azure ML MPI, torchrun / Azure ML PyTorch), else it is
the only rank. Values are read as YAML scalars; --key-name and --key_name are
the same key.

options:
  -h, --help            show this help and exit
  --config PATH         YAML file of keys (also --config_path, the seed's name)
  --print_config        print the resolved config as YAML and exit

keys (defaults < config file < command line):
{keys}

exit codes: 0 done; 1 failures beyond error_threshold; 2 bad usage, config,
environment or input folder; 130 SIGINT; 143 SIGTERM.
"""

def main(argv: Sequence[str] | None = None) -> int:
    """Run ``python -m job`` with ``argv``; returns the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    previous_int = signal.getsignal(signal.SIGINT)
    previous = signal.signal(signal.SIGTERM, _terminated)  # the run installs its own
    try:
        arguments = parse_arguments(argv)
        if arguments.help:
            print(USAGE.format(keys=config_module.help_text()))
            return 0
        job_config = config_module.load(arguments.config_path, arguments.overrides)
        if arguments.print_config:
            import yaml
            print(yaml.safe_dump(job_config.as_dict(), sort_keys=False), end="")
            return 0
        configure_logging(job_config.log_level)
        plan = prepare(job_config, os.environ)
        configure_logging(job_config.log_level, plan.rank)
        return execute(plan)
    except (ConfigError, UsageError) as error:
        _verdict_given()
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (KeyboardInterrupt, _Terminated) as stop:
        _verdict_given()
        name = "SIGTERM" if isinstance(stop, _Terminated) else "SIGINT"
        print(f"error: interrupted by {name} before any file was processed", file=sys.stderr)
        return EXIT_SIGNAL[signal.SIGTERM if name == "SIGTERM" else signal.SIGINT]
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)
        logging.shutdown()


def _verdict_given() -> None:
    """The command has its exit code: SIGINT and SIGTERM are ignored while it says why, so
    that neither cuts its one line short with a traceback (``mpirun`` sends SIGTERM to every
    other rank as soon as one exits 2, and they may all be refusing the same config)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


class _Terminated(Exception):
    """SIGTERM arrived while the run was being prepared."""


def _terminated(signum, frame):
    raise _Terminated()
