"""What Azure ML uploads for a local input folder, counted before it does so.

``jobs.create_or_update`` uploads a job input that is a local folder to the datastore
``workspaceblobstore`` (the workspace's default blob store), under
``LocalUpload/<hash>/<folder name>/``, and binds the job to that
``azureml://datastores/workspaceblobstore/paths/...`` folder. ``<hash>`` is a hash of the
files' names and contents: a folder uploaded before, unchanged, is found there and not
uploaded again (the SDK still reads every file to hash it).

The SDK uploads every file under the folder, dotfiles included (``python -m job`` skips
those when it lists its input), following symbolic links, except what the folder's own
``.amlignore`` (else ``.gitignore``) excludes. :func:`local_upload` counts the files with
the SDK's own walk and ignore rules, so the count is what goes up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .preview import size_text

DATASTORE = "workspaceblobstore"  # where the SDK puts a local input (its WORKSPACE_BLOB_STORE)
IGNORE_FILES = (".amlignore", ".gitignore")  # the first found applies (SDK's get_ignore_file)


@dataclass(frozen=True)
class LocalUpload:
    """The files of a local input folder that the SDK uploads, and their total size."""

    folder: Path
    names: tuple[str, ...]  # relative POSIX paths below ``folder``, sorted
    size: int
    ignore_file: str | None  # the folder's .amlignore or .gitignore, which the SDK applies

    @property
    def files(self) -> int:
        return len(self.names)

    def describe(self) -> str:
        """``5 files, 1.2 MB to datastore workspaceblobstore (.gitignore applied)``."""
        noun = "file" if self.files == 1 else "files"
        applied = f" ({self.ignore_file} applied)" if self.ignore_file else ""
        return f"{self.files} {noun}, {size_text(self.size)} to datastore {DATASTORE}{applied}"


def local_upload(folder: str | os.PathLike) -> LocalUpload:
    """Count what ``jobs.create_or_update`` uploads for the local input ``folder``.

    Uses the SDK's own listing (``get_upload_files_from_folder`` with the folder's
    ignore file, as ``upload_directory`` calls it); sizes are those of the files that
    links point to, as the SDK counts them. Imports the SDK; reads no file's content.
    """
    from azure.ai.ml._utils._asset_utils import get_ignore_file, get_upload_files_from_folder

    root = Path(folder).resolve()
    paths = get_upload_files_from_folder(root, prefix="", ignore_file=get_ignore_file(root))
    names = tuple(sorted(PurePosixPath(remote).as_posix().lstrip("/") for _, remote in paths))
    size = sum(os.path.getsize(local) for local, _ in paths)
    applied = next((name for name in IGNORE_FILES if (root / name).exists()), None)
    return LocalUpload(root, names, size, applied)
