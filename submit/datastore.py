"""A job's folders on storage: where they are, listing them, fetching them (azure-storage-blob).

The job's output is a ``uri_folder`` on a datastore
(``azureml://datastores/NAME/paths/PATH``, or the full
``azureml://subscriptions/.../workspaces/WS/datastores/NAME/paths/PATH``), its logs
are in its artifact store (its ``default`` output). :func:`container_of` asks
Azure ML for the datastore (``ml_client.datastores.get``, with its secrets) and
opens its blob container at ``{protocol}://{account}.blob.{endpoint}``, as
the datastore declares them, with the account key or SAS token it holds, or
the user's credential for an identity-based datastore. ``https://`` and
``wasbs://`` blob URIs are opened with the user's credential.

Unlike ``ml_client.jobs.download``, this works while the job runs (logs and
manifests so far) and fetches one prefix (``_manifest/``) rather than the
whole output. Errors are the SDK's and azure-core's exceptions: callers wrap
them in ``submit.azure.azure_errors``.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

DATASTORE_URI = re.compile(r"azureml://(?:subscriptions/[^/]+/resourcegroups/[^/]+/"
                           r"(?:providers/Microsoft\.MachineLearningServices/)?workspaces/[^/]+/)?"
                           r"datastores/(?P<datastore>[^/]+)/(?:paths/)?(?P<path>.*)",
                           re.IGNORECASE)
HTTPS_URI = re.compile(r"https://(?P<account>[^./]+)\.(?P<service>blob|dfs)\.(?P<endpoint>[^/]+)/"
                       r"(?P<container>[^/]+)/?(?P<path>.*)", re.IGNORECASE)
CONTAINER_URI = re.compile(r"(?P<scheme>wasbs?|abfss?)://(?P<container>[^@/]+)@(?P<account>[^./]+)"
                           r"\.(?P<service>blob|dfs)\.(?P<endpoint>[^/]+)/?(?P<path>.*)",
                           re.IGNORECASE)


class StorageError(ValueError):
    """A storage location this module cannot read; the message is one line naming it."""


@dataclass(frozen=True)
class Location:
    """A folder on blob storage: by datastore name, or by account and container.

    ``service`` is ``blob``, or ``dfs`` for a Data Lake URI (``abfss://``,
    ``https://ACCOUNT.dfs...``), which this module does not read.
    """

    uri: str
    path: str  # inside the container: no leading '/', '' or ending in '/'
    datastore: str | None = None
    account_url: str | None = None
    container: str | None = None
    service: str = "blob"

    def place(self) -> tuple[str, str]:
        """``(store, path)``, alike for every form of one place: a datastore's name and an
        account's host are case-insensitive, the blob path is not (``.``, ``..`` and ``//``
        folded, no ``/`` at either end)."""
        if self.datastore is not None:
            store = "datastore:" + self.datastore.lower()
        else:
            host = self.account_url.removeprefix("https://").lower()
            store = f"account:{host.replace('.dfs.', '.blob.', 1)}/{self.container}"
        return store, posixpath.normpath("/" + self.path).strip("/")


def _folder(path: str) -> str:
    path = path.strip("/")
    return f"{path}/" if path else ""


def locate(uri: str) -> Location | None:
    """The folder that the storage URI ``uri`` names, or ``None`` for any other text.

    Every form Azure ML binds: a datastore's short and full ``azureml://`` forms
    (with or without ``providers/Microsoft.MachineLearningServices/``, and
    without ``paths/`` as the service writes its artifact paths), an account's
    container through ``https``, ``wasb(s)`` or ``abfs(s)``, in any cloud (the
    endpoint is kept). The query and fragment are dropped.
    """
    uri_path = uri.split("?", 1)[0].split("#", 1)[0]
    match = DATASTORE_URI.fullmatch(uri_path)
    if match:
        return Location(uri, _folder(match["path"]), datastore=match["datastore"])
    match = HTTPS_URI.fullmatch(uri_path) or CONTAINER_URI.fullmatch(uri_path)
    if match:
        service = match["service"].lower()
        return Location(uri, _folder(match["path"]), container=match["container"],
                        account_url=f"https://{match['account']}.{service}.{match['endpoint']}",
                        service=service)
    return None


def parse_location(uri: str) -> Location:
    """The blob folder that ``uri`` names; :class:`StorageError` for other URIs.

    >>> parse_location("azureml://datastores/workspaceblobstore/paths/tokens").path
    'tokens/'
    >>> parse_location("wasbs://data@acct.blob.core.windows.net/a/b/").account_url
    'https://acct.blob.core.windows.net'
    """
    location = locate(uri)
    if location is None or location.service != "blob":
        raise StorageError(f"{uri!r} is not a folder this command can read: it reads "
                           "azureml://datastores/NAME/paths/PATH, https:// and wasbs:// blob "
                           "URIs")
    return location


def _datastore_credential(datastore, fallback):
    """What opens the datastore's account: its key or SAS token, else the user's credential."""
    credentials = getattr(datastore, "credentials", None)
    key = getattr(credentials, "account_key", None)
    if key:
        return {"account_name": datastore.account_name, "account_key": key}
    sas = getattr(credentials, "sas_token", None)
    return sas if sas else fallback


def container_of(client, location: Location):
    """The ``ContainerClient`` holding ``location``, opened as its datastore says."""
    from azure.storage.blob import ContainerClient

    if location.datastore is None:
        return ContainerClient(location.account_url, location.container,
                               credential=client._credential)
    datastore = client.datastores.get(location.datastore, include_secrets=True)
    container = getattr(datastore, "container_name", None)
    if container is None:
        raise StorageError(f"datastore {location.datastore!r} is a {datastore.type} datastore; "
                           "this command reads blob datastores")
    protocol = getattr(datastore, "protocol", None) or "https"
    endpoint = getattr(datastore, "endpoint", None) or "core.windows.net"
    account_url = f"{protocol}://{datastore.account_name}.blob.{endpoint}"
    return ContainerClient(account_url, container,
                           credential=_datastore_credential(datastore, client._credential))


@dataclass(frozen=True)
class Blob:
    """One file under a folder: its path relative to the folder, and its size."""

    name: str  # the blob's full name
    relative: str
    size: int


def list_folder(container, location: Location, below: str = "") -> Iterator[Blob]:
    """The files under ``location`` (and under its subfolder ``below``), in name order."""
    prefix = location.path + _folder(below)
    for item in container.list_blobs(name_starts_with=prefix or None):
        relative = item.name[len(location.path):]
        if relative and not relative.endswith("/"):  # folder markers of a hierarchical account
            yield Blob(item.name, relative, item.size or 0)


def local_path(destination: str | os.PathLike, relative: str) -> Path:
    """Where file ``relative`` goes under ``destination``; :class:`StorageError` for a name
    that would land outside it (``..``, an absolute path)."""
    parts = PurePosixPath(relative).parts
    if not parts or relative.startswith("/") or any(p in ("..", ".") for p in parts):
        raise StorageError(f"blob name {relative!r} would land outside {str(destination)!r}")
    return Path(destination).joinpath(*parts)


def fetch(container, blob: Blob, destination: str | os.PathLike) -> tuple[Path, bool]:
    """Download ``blob`` to its place under ``destination`` (written to a temporary name,
    then renamed); a file already there with the blob's size is kept. Returns the path and
    whether it was downloaded."""
    target = local_path(destination, blob.relative)
    if target.is_file() and target.stat().st_size == blob.size:
        return target, False
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as stream:
            container.download_blob(blob.name).readinto(stream)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target, True


def read_text(container, blob: Blob) -> str:
    """The content of ``blob`` as text (UTF-8; undecodable bytes replaced)."""
    return container.download_blob(blob.name).readall().decode("utf-8", "replace")
