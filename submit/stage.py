"""The code folder that goes up with the job: the ``job`` package and its config, nothing else.

Azure ML uploads the job's ``code`` folder to every node. Rather than the whole
checkout (tests, notebooks, data, the virtual environment), :func:`stage_code`
assembles a folder holding exactly::

    job/*.py, job/*.c     the runtime package (no caches), with the C kernel's source
    job_config.yaml       the config that ``python -m job --config`` reads

The job config is checked with ``job.config`` before anything is staged.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

from job import config as job_config_module
from job.config import ConfigError, JobConfig

CONFIG_NAME = "job_config.yaml"
PACKAGE_NAME = "job"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*", "*.partial")


class StageError(ValueError):
    """The code folder or the job config cannot be used; the message is one line."""


def job_package_dir() -> Path:
    """The folder of the ``job`` package that this ``submit`` runs beside (not imported)."""
    spec = importlib.util.find_spec(PACKAGE_NAME)
    if spec is None or not spec.submodule_search_locations:
        raise StageError("the job package cannot be found: install the project (pip install -e .)")
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def load_job_config(path: str | os.PathLike, ranks: int) -> JobConfig:
    """The job config at ``path``, validated as ``python -m job`` will read it on the nodes.

    ``input_dir`` and ``out_dir`` are bound by the Azure ML job, so they need
    not be in the file. A config that would make every rank take the same
    files when ``ranks`` > 1 (``distribArgs`` set, or ``run_type: local``) is
    refused: use ``--node-count``/``--node-rank`` for a selective node.
    """
    try:
        data = job_config_module.load_yaml(path)
        checked = job_config_module.build({"input_dir": "${{inputs.input_dir}}", **data})
    except ConfigError as error:
        raise StageError(f"job config: {error}") from None
    if checked.distribArgs is not None:
        raise StageError(f"job config {str(path)!r} sets distribArgs; a submission takes the ranks "
                         "from the launcher; for one selective node use --node-count N --node-rank R")
    if ranks > 1 and checked.run_type == "local":
        raise StageError(f"job config {str(path)!r} sets run_type: local, which makes all {ranks} "
                         "ranks take every file; remove it")
    return checked


def _is_staged(folder: Path) -> bool:
    names = set(os.listdir(folder))
    return names <= {PACKAGE_NAME, CONFIG_NAME}


def stage_code(destination: str | os.PathLike, job_config: str | os.PathLike) -> Path:
    """Fill ``destination`` with the ``job`` package and ``job_config`` (as ``job_config.yaml``).

    An existing ``destination`` is replaced only if it holds nothing but an
    earlier staging; otherwise :class:`StageError`, so that no other folder
    is ever deleted. Returns the folder's absolute path.
    """
    folder = Path(destination).resolve()
    if folder.exists():
        if not folder.is_dir() or not _is_staged(folder):
            raise StageError(f"code folder {str(folder)!r} already exists and holds other files; "
                             "choose another --code-dir or remove it")
        shutil.rmtree(folder)
    try:
        folder.mkdir(parents=True)
        shutil.copytree(job_package_dir(), folder / PACKAGE_NAME, ignore=IGNORED)
        shutil.copyfile(job_config, folder / CONFIG_NAME)
    except OSError as error:
        raise StageError(f"code folder {str(folder)!r} cannot be written: "
                         f"{error.strerror or error}") from None
    return folder


def staged_files(folder: str | os.PathLike) -> list[str]:
    """The files of a staged code folder, as sorted relative POSIX paths."""
    root = Path(folder)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def checkout_commit() -> str | None:
    """The git commit of the checkout the ``job`` package comes from, ``-dirty`` when the
    package differs from it; ``None`` outside a git checkout or without git."""
    package = job_package_dir()

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(package), *args], capture_output=True,
                              text=True, check=True, timeout=10).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if changed else commit
