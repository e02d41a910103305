"""The job as the YAML that ``az ml job create --file`` reads (``azure.ai.ml.load_job``).

``Command.dump()`` writes the *node* form (a ``component:`` block beside the
job's fields), which ``load_job`` rejects. The YAML here is the command job
schema's own serialization: the SDK's ``CommandJob._to_dict()`` (a marshmallow
dump of ``CommandJobSchema``) with the ``$schema`` line first, the SDK's empty
fields left out, local folders (``code``, a local input, a Docker build context)
written as paths relative to the YAML file's folder. :func:`check_round_trip`
loads the written file back with ``load_job`` and compares.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from .build import is_local_binding

SCHEMA_URL = "https://azuremlschemas.azureedge.net/latest/commandJob.schema.json"
URI_AS_ASSET = ("azureml:https://", "azureml:wasbs://", "azureml:abfss://")


class RoundTripError(RuntimeError):
    """The YAML does not load back to the same job: a bug, never a user error."""


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _prune(value: Any) -> Any:
    """Drop the empty mappings and lists the SDK writes for unset fields."""
    if isinstance(value, dict):
        pruned = {k: _prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _local_path(job, location) -> Path | None:
    """``location`` as an absolute local path, or None for a URI or an asset reference.

    ``load_job`` keeps paths relative to the YAML file's folder (the job's ``_base_path``).
    """
    if not isinstance(location, (str, os.PathLike)):
        return None
    location = os.fspath(location)
    if not is_local_binding(location):  # a URI, or an asset load_job read without 'azureml:'
        return None
    base = Path(getattr(job, "_base_path", None) or ".")
    return (base / location).resolve()


def _written(path: Path, base_dir: str | os.PathLike | None) -> str:
    """A local path as written in the YAML: relative to ``base_dir`` if given, else absolute."""
    if base_dir is not None:
        try:
            return Path(os.path.relpath(path, Path(base_dir).resolve())).as_posix()
        except ValueError:  # another drive: no relative path leads there
            pass
    return str(path)


def job_dict(job, base_dir: str | os.PathLike | None = None,
             code: str | None = None) -> dict[str, Any]:
    """The command job as a plain mapping in the YAML schema, ``$schema`` first.

    ``job`` is what ``command()`` or ``load_job`` returns. With ``base_dir``,
    local paths (``code``, a local input folder, a Docker build context) are
    written relative to it, as ``load_job`` resolves them relative to the YAML
    file's folder; without, they are absolute. ``code`` replaces what is
    written for the code folder.
    """
    as_job = job._to_job() if hasattr(job, "_to_job") else job
    data = _prune(_plain(as_job._to_dict()))
    local_code = _local_path(job, getattr(job, "code", None))
    if code is not None:
        data["code"] = code
    elif local_code is not None:
        data["code"] = _written(local_code, base_dir)
    # The SDK dumps a local input folder as "azureml:<path>", an asset reference that
    # load_job would then send as such; write the folder itself.
    for name, binding in (getattr(as_job, "inputs", None) or {}).items():
        local = _local_path(job, getattr(binding, "path", None))
        written = data.get("inputs", {}).get(name)
        if local is not None and isinstance(written, dict):
            written["path"] = _written(local, base_dir)
        elif isinstance(written, dict) and str(written.get("path", "")).startswith(URI_AS_ASSET):
            # ... and an https://, wasbs:// or abfss:// URI as "azureml:https://...", which
            # load_job reads back as the URI itself: write the URI.
            written["path"] = written["path"].removeprefix("azureml:")
    environment = data.get("environment")
    if isinstance(environment, dict) and getattr(job.environment, "_is_anonymous", False):
        # The SDK names anonymous environments itself (from a hash of their content).
        environment = {k: v for k, v in environment.items() if k not in ("name", "version")}
        build = environment.get("build")
        if isinstance(build, dict) and build.get("path") and "://" not in build["path"]:
            # the SDK dumps the build context absolute, resolved against the YAML's folder
            environment["build"] = {**build, "path": _written(Path(build["path"]), base_dir)}
        data["environment"] = environment
    return {"$schema": SCHEMA_URL, **data}


def job_yaml(job, base_dir: str | os.PathLike | None = None, code: str | None = None) -> str:
    """The command job as YAML text (see :func:`job_dict`)."""
    return yaml.safe_dump(job_dict(job, base_dir, code), sort_keys=False, width=4096,
                          default_flow_style=False)


def write_job_yaml(job, path: str | os.PathLike) -> str:
    """Write the job's YAML to ``path`` (local paths relative to its folder); returns the text."""
    target = Path(path)
    text = job_yaml(job, target.resolve().parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return text


def load_job_yaml(path: str | os.PathLike):
    """The job in a YAML file, read by the SDK exactly as ``az ml job create --file`` does."""
    from azure.ai.ml import load_job

    return load_job(source=str(path))


def check_round_trip(job, path: str | os.PathLike) -> None:
    """Load ``path`` with ``load_job`` and check it is the same job as ``job``.

    Both sides are compared in their YAML form with absolute paths; raises
    :class:`RoundTripError` naming the fields that differ.
    """
    try:
        loaded = load_job_yaml(path)
    except Exception as error:  # noqa: BLE001 - any failure here is a bug in this module
        raise RoundTripError(f"load_job rejects {str(path)!r}: {error}") from None
    want, got = job_dict(job), job_dict(loaded)
    if want != got:
        fields = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
        raise RoundTripError(f"{str(path)!r} loads back as a different job; fields: {', '.join(fields)}")
