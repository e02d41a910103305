"""A submission made ready: settings checked, code staged, job built, plan previewed.

:func:`prepare_job` is what the command line and the notebook both call; it
makes no network call and needs no credentials.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

from job.config import JobConfig

from . import yaml_out
from .build import (
    BuildError,
    Layout,
    build_job,
    input_location,
    refuse_overlap,
    is_local_path,
    job_command,
    layout_of,
    read_environment_spec,
)
from .preview import Preview, preview
from .settings import Settings
from .stage import checkout_commit, load_job_config, stage_code, staged_files
from .upload import LocalUpload, local_upload


@dataclass
class PreparedJob:
    """Everything about one job before it is sent: the SDK job object and how it was made.

    A code folder that :func:`prepare_job` staged in a temporary folder of its
    own (``temporary``) lasts as long as ``job``, which names it: it is removed
    by :meth:`close`, when the job object is garbage-collected, or at exit.
    """

    settings: Settings
    layout: Layout
    job_config: JobConfig
    code_dir: Path
    job: object  # azure.ai.ml.entities.Command
    preview: Preview | None
    temporary: bool = False
    upload: LocalUpload | None = None  # what submitting uploads of a local input folder

    def __post_init__(self) -> None:
        self._remove = weakref.finalize(self.job, shutil.rmtree, self.code_dir.parent,
                                        ignore_errors=True) if self.temporary else None

    def close(self) -> None:
        """Remove a temporary code folder now (nothing else is ever removed)."""
        if self._remove is not None:
            self._remove()

    def __enter__(self) -> "PreparedJob":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def command(self) -> str:
        return job_command(self.settings)

    def yaml(self, base_dir: str | os.PathLike | None = None) -> str:
        """The job as ``az ml job create --file`` YAML (see :mod:`submit.yaml_out`).

        Local paths are relative to ``base_dir`` if given, else absolute; a
        temporary code folder is named by its folder name (``job-code``), as if
        the YAML lay beside it, never by its temporary path.
        """
        code = self.code_dir.name if self.temporary and base_dir is None else None
        return yaml_out.job_yaml(self.job, base_dir, code)

    def checked_yaml(self) -> str:
        """:meth:`yaml`, loaded back with ``load_job`` first (beside the code if temporary)."""
        text = self.yaml()
        with tempfile.TemporaryDirectory(prefix="amlshard-yaml-") as folder:
            path = Path(self.code_dir.parent if self.temporary else folder) / "job.yml"
            path.write_text(text, encoding="utf-8")
            try:
                yaml_out.check_round_trip(self.job, path)
            finally:
                path.unlink()
        return text

    def write_yaml(self, path: str | os.PathLike, check: bool = True) -> str:
        """Write the YAML to ``path`` and, with ``check``, load it back with ``load_job``.

        Local paths in it are relative to ``path``'s folder.
        """
        text = yaml_out.write_job_yaml(self.job, path)
        if check:
            yaml_out.check_round_trip(self.job, path)
        return text

    def environment_line(self) -> str:
        choice = self.settings.environment
        if choice == "conda":
            spec = read_environment_spec()
            return f"conda: {spec['image']} + {spec['conda_file']}"
        if choice == "docker":
            return "docker: build environment/Dockerfile on Azure ML"
        return f"registered: {choice}"

    def compute_line(self) -> str:
        """Where the job runs: ``compute NAME`` or serverless compute (and its instance type)."""
        if self.settings.compute:
            return f"compute {self.settings.compute}"
        size = self.settings.instance_type
        return "serverless compute" + (f" ({size})" if size else " (default instance type)")

    def input_line(self) -> str:
        """``input: LOCATION``; for a local folder, also what submitting uploads of it
        (file count, size, datastore: see :mod:`submit.upload`)."""
        source = self.settings.input
        if self.upload is None:
            return f"input: {source}"
        return f"input: {source} (local folder, uploaded on submission: {self.upload.describe()})"

    def summary(self) -> str:
        """A short account of the job: layout, command, code, environment, data, settings, plan."""
        settings = self.settings
        files = staged_files(self.code_dir)
        size = sum((self.code_dir / f).stat().st_size for f in files)
        where = ("a temporary folder, removed when done (--yaml FILE or --code-dir DIR keeps it)"
                 if self.temporary else str(self.code_dir))
        lines = [
            f"job: {self.layout.describe()} on {self.compute_line()}, "
            f"experiment {settings.experiment}: {self.job.display_name!r}",
            f"command: {self.command}",
            f"code: {len(files)} files, {size / 1000:.1f} KB (the job package and "
            f"job_config.yaml) in {where}",
            f"environment: {self.environment_line()}",
            self.input_line(),
            f"output: {settings.output or '(the job default output folder)'}",
            "settings (value, source):",
            settings.describe(),
        ]
        if self.preview is not None:
            lines.append(self.preview.describe())
        return "\n".join(lines)


def default_code_dir() -> Path:
    """A fresh folder for the staged code, under the system's temporary folder."""
    return Path(tempfile.mkdtemp(prefix="amlshard-code-")) / "job-code"


def refuse_code_in_input(settings: Settings, code_dir: Path, temporary: bool = False) -> None:
    """:class:`BuildError` when the code folder would be staged inside the local input
    folder: the job package would be uploaded, planned and processed as input data."""
    if not is_local_path(settings.input):
        return
    folder, code = Path(input_location(settings)), code_dir.resolve()
    if code == folder or folder in code.parents:
        how = ("set TMPDIR to a folder outside it" if temporary else
               "write --yaml FILE (or --code-dir DIR) outside it")
        raise BuildError(f"the code folder {str(code)!r} would be staged inside the local input "
                         f"folder {str(folder)!r} and uploaded as data; {how}")


def prepare_job(settings: Settings, code_dir: str | os.PathLike | None = None,
                environment_dir: str | os.PathLike | None = None) -> PreparedJob:
    """Check ``settings``, stage the code into ``code_dir``, build the job, count what a
    local input folder uploads (:func:`submit.upload.local_upload`), preview the plan.

    ``code_dir`` defaults to a new temporary folder (see :func:`default_code_dir`)
    that the returned job owns (see :class:`PreparedJob`).
    Raises ``SettingsError``, ``StageError``, ``BuildError`` or ``PreviewError``
    (all ``ValueError``), each with a one-line message.
    """
    layout = layout_of(settings)
    job_config = load_job_config(settings.job_config, layout.ranks)
    input_location(settings)  # a missing local input folder stops here, before staging
    refuse_overlap(settings)
    target = Path(code_dir) if code_dir is not None else default_code_dir()
    try:
        refuse_code_in_input(settings, target, temporary=code_dir is None)
        folder = stage_code(target, settings.job_config)
        job = build_job(settings, folder, environment_dir, checkout_commit())
        upload = local_upload(input_location(settings)) if is_local_path(settings.input) \
            else None
        plan = preview(settings.input, job_config, layout, upload.names) if upload else None
    except BaseException:
        if code_dir is None:  # our temporary folder: nothing of it is left
            shutil.rmtree(target.parent, ignore_errors=True)
        raise
    return PreparedJob(settings, layout, job_config, folder, job, plan, code_dir is None, upload)
