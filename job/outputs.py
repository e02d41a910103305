"""Where a processor's outputs go, and where they may never go.

A processor names the output of input ``rel`` (:meth:`DataProcessor.output_path`);
the runner keeps it relative to ``out_dir`` in the journal, and refuses an
output that would land on an input or among the journals (:func:`landing_error`).
"""

from __future__ import annotations

import functools
import os

from .journal import MANIFEST_DIR
from .listing import folders_up, identity


def folder_prefix(folder: str) -> str:
    """``folder`` with one trailing slash: a file's path is this and its relative path."""
    return os.path.join(folder, "")


def output_of(processor, input_dir: str, rel: str) -> str | None:
    """The processor's output path for input ``rel`` (None if it names none).

    A ``pathlib.Path`` (any ``os.PathLike``) is taken as its path; anything
    else that is not text is a :class:`TypeError` that says so.
    """
    return checked_output(processor.output_path(folder_prefix(input_dir) + rel))


def checked_output(output) -> str | None:
    """A value :meth:`DataProcessor.output_path` returned, as :func:`output_of` takes it."""
    if output is None or (type(output) is str and output):
        return output
    try:
        output = os.fsdecode(output)
    except TypeError:
        raise TypeError(f"output_path() returned {type(output).__name__} {output!r:.60}, "
                        "not a path") from None
    if not output:
        raise TypeError("output_path() returned an empty path")
    return output


def known_output_of(processor, input_dir: str, rel: str) -> str | None:
    """:func:`output_of`, or None when the processor cannot say (for the rank's bookkeeping)."""
    try:
        return output_of(processor, input_dir, rel)
    except Exception:  # noqa: BLE001 - the worker reports it against the file
        return None


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder_prefix(folder))


@functools.lru_cache(maxsize=1024)
def landing_error(folder: str, input_dir: str, out_dir: str,
                  input_folders: frozenset[tuple[int, int]] = frozenset()) -> str | None:
    """Why an output may not be written in ``folder``, or None: never onto an input, never
    into ``out_dir/_manifest`` (links followed). ``input_folders`` are the identities
    (device, inode) of the folders the listing read: ``folder`` may not be one of them
    under another name (a bind mount of an input folder inside out_dir)."""
    real = os.path.realpath(folder or ".")
    inputs, outputs = os.path.realpath(input_dir), os.path.realpath(out_dir)
    if _inside(real, os.path.join(outputs, MANIFEST_DIR)):
        return f"its output folder {folder!r} is inside out_dir/{MANIFEST_DIR}, the journals' folder"
    if _inside(real, inputs) and not _inside(real, outputs):
        return f"its output folder {folder!r} is inside input_dir: outputs never land on inputs"
    if input_folders and _reaches_inputs(real, outputs, input_folders):
        return (f"its output folder {folder!r} is in a folder of input_dir reached through a "
                "mount or link: outputs never land on inputs")
    return None


def _reaches_inputs(real: str, outputs: str, input_folders: frozenset[tuple[int, int]]) -> bool:
    """Whether the folder ``real`` (resolved), or a folder above it below ``outputs``
    (above it up to ``/`` when it is not inside ``outputs``), is one of ``input_folders``.

    The folders above count because one that does not exist yet is made through them
    (``out/b/new`` where ``out/b`` is an input folder bound there).
    """
    stop = outputs if _inside(real, outputs) else None
    return any(identity(folder) in input_folders for folder in folders_up(real, stop))


def check_landing(output: str | None, input_dir: str, out_dir: str,
                   input_folders: frozenset[tuple[int, int]]) -> None:
    if output is not None:
        cut = output.rfind("/") + 1
        folder = output[:cut]  # with its slash: dirname's work, done cheaper
        error = landing_error(folder, input_dir, out_dir, input_folders)
        if (error is None and output[cut:] == MANIFEST_DIR
                and os.path.realpath(folder or ".") == os.path.realpath(out_dir)):
            error = (f"its output would be out_dir/{MANIFEST_DIR}, the journals' folder: the "
                     f"name {MANIFEST_DIR} is reserved at the top of out_dir")
        if error is not None:
            raise ValueError(f"refused to process: {error}")


def relative(output: str | None, out_dir: str, prefix: str | None = None) -> str | None:
    """``output`` relative to ``out_dir`` (``prefix``: :func:`folder_prefix` of it, if known)."""
    if output is None:
        return None
    prefix = prefix or folder_prefix(out_dir)
    return output[len(prefix):] if output.startswith(prefix) else os.path.relpath(output, prefix)


def output_rel(processor, input_dir: str, out_dir: str, rel: str) -> str | None:
    """The processor's output for input ``rel``, relative to ``out_dir`` (None if unknown)."""
    return relative(known_output_of(processor, input_dir, rel), out_dir)
