"""A loopback stand-in for the Azure ML REST endpoint, as the real SDK talks to it.

The calls, as ``azure-ai-ml`` makes them (read from its source and checked here
by recording every request):

``jobs.create_or_update(job)`` with a local code folder and an inline environment:

1. ``GET  .../codes/{name}/versions?hash=...``            is this code already there? (no)
2. ``POST .../codes/{name}/versions/{v}/startPendingUpload`` a SAS URI to upload to (Azurite)
3. blob uploads to that SAS URI                           (Azurite, not this server)
4. ``PUT  .../codes/{name}/versions/{v}``                 register the code version
5. ``PUT  .../environments/{name}/versions/{v}``          the anonymous environment
6. ``PUT  .../jobs/{job name}``                           the job itself

``jobs.stream(name)``: ``GET .../jobs/{name}``, ``GET .../workspaces/{ws}`` (its
discovery URL), ``GET`` the discovery document (the run history host), then
``GET /history/v1.0/.../runs/{name}/details`` until the run ends, fetching the
log files it lists. ``jobs.get(name)`` once more for the final status.

``check_workspace`` (the notebook's check, and the command line's before it submits):
``GET .../workspaces/{ws}`` and ``GET .../computes/{name}``, an ``AmlCompute`` cluster whose
``scaleSettings.maxNodeCount`` is the stand-in's ``computes[name]`` (404 for another name).

The lifecycle of a job (``python -m submit status|cancel|logs|report|download|resubmit``):
``GET .../jobs/{name}`` (404 for a job it never received), ``POST .../jobs/{name}/cancel``,
``GET /history/v1.0/.../runs/{name}`` (start and end times), and the datastores the
job's folders live on: ``GET .../datastores/{name}``, ``GET .../datastores?isDefault=true``,
``POST .../datastores/{name}/listSecrets`` (Azurite's account key). Each datastore is a
container of the real Azurite, reached as ``http://devstoreaccount1.blob.localhost:PORT``
(the datastore's ``endpoint`` is ``localhost:PORT``): clients resolve ``*.localhost`` to
the loopback address (RFC 6761), as :mod:`azure_standin.runner`'s wrapper does. Tests put
files there with :meth:`AzureMLStandIn.upload`; jobs take a status with
:meth:`AzureMLStandIn.set_status`.

``DefaultAzureCredential`` gets its token from the managed-identity endpoint
(``IDENTITY_ENDPOINT`` + ``IDENTITY_HEADER``, App Service style) served here too.
Every ARM and run-history request must carry that bearer token.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from .azurite import ACCOUNT, ACCOUNT_KEY, Azurite
from .loopback import LoopbackServer
from .tls import TestCertificates

AML_RESOURCE = "https://ml.azure.com"
WORKSPACE_PATH = (r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
                  r"Microsoft\.MachineLearningServices/workspaces/(?P<ws>[^/]+)")
ARM = re.compile(rf"^{WORKSPACE_PATH}(?P<rest>/.*)?$", re.IGNORECASE)
HISTORY = re.compile(rf"^/history/v1\.0{WORKSPACE_PATH}/runs/(?P<run>[^/]+)/details$", re.IGNORECASE)
HISTORY_RUN = re.compile(rf"^/history/v1\.0{WORKSPACE_PATH}/runs/(?P<run>[^/]+)$", re.IGNORECASE)
IN_PROGRESS = "Running"
DATASTORES = ("workspaceblobstore", "workspaceartifactstore")
DEFAULT_DATASTORE = "workspaceblobstore"
STARTED_AT = "2026-01-02T03:04:05.000000+00:00"
ENDED_AT = "2026-01-02T03:14:05.000000+00:00"


@dataclass
class Recorded:
    """One request the stand-in received."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    matched: bool = True

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class _Run:
    body: dict
    polls: int = 0
    log_lines: list[str] = field(default_factory=list)
    status: str | None = None  # set by a test or a cancel: the status, whatever the polls


class AzureMLStandIn(LoopbackServer):
    """The stand-in server; use as a context manager.

    ``outcome`` is the status a job ends in (``Completed``, ``Failed``, ...),
    reached after ``running_polls`` run-details polls that report ``Running``.
    With ``workspace_exists=False`` every workspace call answers 404.
    ``data_assets`` are the registered data assets, each name with its versions,
    oldest first (default: ``corpus`` versions 1 to 3). ``computes`` are the workspace's
    compute clusters, each name with its maximum node count (default: ``cpu-cluster``, 10).
    """

    SCHEME = "https"

    def __init__(self, certificates: TestCertificates, azurite: Azurite, *,
                 outcome: str = "Completed", running_polls: int = 2,
                 workspace_exists: bool = True, code_container: str | None = None,
                 data_assets: dict[str, list[str]] | None = None,
                 computes: dict[str, int] | None = None):
        self.certificates = certificates
        self.azurite = azurite
        self.outcome = outcome
        self.running_polls = running_polls
        self.workspace_exists = workspace_exists
        self.data_assets = {"corpus": ["1", "2", "3"]} if data_assets is None else data_assets
        self.computes = {"cpu-cluster": 10} if computes is None else computes
        self.code_container = code_container or f"standin-{uuid.uuid4().hex[:12]}"
        self.tenant_id = "00000000-0000-0000-0000-0000000000aa"
        self.token = _unsigned_jwt({"tid": self.tenant_id, "aud": "https://management.azure.com",
                                    "oid": str(uuid.uuid4()), "exp": int(time.time()) + 3600})
        # what a job with a user identity also sends (x-azureml-token): a token for Azure ML
        self.aml_token = _unsigned_jwt({"tid": self.tenant_id, "aud": AML_RESOURCE,
                                        "exp": int(time.time()) + 3600})
        self.identity_header = f"standin-identity-{uuid.uuid4().hex}"
        self.requests: list[Recorded] = []
        self.tokens_issued = 0
        self.codes: dict[str, dict] = {}
        self.environments: dict[str, dict] = {}
        self.runs: dict[str, _Run] = {}
        suffix = uuid.uuid4().hex[:12]
        self.containers = {name: f"{name[9:]}-{suffix}" for name in DATASTORES}
        self._lock = threading.Lock()
        super().__init__()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "AzureMLStandIn":
        self.azurite.create_container(self.code_container)
        for container in self.containers.values():
            self.azurite.create_container(container)
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                stand_in._handle(self)

            do_PUT = do_POST = do_PATCH = do_DELETE = do_GET

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.socket = self.certificates.server_context().wrap_socket(server.socket,
                                                                       server_side=True)
        self._serve(server, "azureml-standin")
        return self


    def client_environment(self) -> dict[str, str]:
        """Variables that point an unmodified SDK process at this stand-in.

        ``AZUREML_DEV_URL_MFE`` is the SDK's endpoint override; the CA bundle
        makes its HTTPS trusted; ``IDENTITY_ENDPOINT``/``IDENTITY_HEADER`` give
        ``DefaultAzureCredential`` a managed identity here; a polling minimum of
        0 makes ``jobs.stream`` poll again at once (its wait grows only after 10 s):
        a job here moves on by polls, not by time.
        """
        return {
            "AZUREML_DEV_URL_MFE": self.url + "/",
            "REQUESTS_CA_BUNDLE": str(self.certificates.ca_bundle),
            "IDENTITY_ENDPOINT": self.url + "/msi/token",
            "IDENTITY_HEADER": self.identity_header,
            "AZUREML_RUN_POLLING_INTERVAL_MIN": "0",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }

    # -- what tests read ---------------------------------------------------------------------
    def calls(self, method: str | None = None, contains: str = "") -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and contains in r.path]

    def unmatched(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if not r.matched]

    def job_bodies(self) -> dict[str, dict]:
        """The job bodies the SDK PUT, by job name."""
        with self._lock:
            return {name: run.body for name, run in self.runs.items()}

    def set_status(self, name: str, status: str) -> None:
        """Give job ``name`` (one the SDK PUT) ``status`` from now on, whatever the polls."""
        with self._lock:
            self.runs[name].status = status

    def upload(self, datastore: str, path: str, data: bytes) -> None:
        """Put a blob at ``path`` in ``datastore``'s container (in Azurite)."""
        client = self.azurite.service().get_container_client(self.containers[datastore])
        client.upload_blob(path, data, overwrite=True)

    def upload_dotted(self, datastore: str, path: str, data: bytes) -> None:
        """Put a blob whose name holds ``.`` or ``..`` segments, as another storage client
        may: sent with each dot percent-encoded, which HTTP clients do not fold away."""
        import http.client
        from urllib.parse import quote, urlsplit

        sas = urlsplit(self.azurite.container_sas_url(self.containers[datastore]))
        name = quote(path, safe="/").replace(".", "%2E")
        connection = http.client.HTTPConnection(sas.hostname, sas.port, timeout=30)
        try:
            connection.request("PUT", f"{sas.path}/{name}?{sas.query}", body=data,
                               headers={"x-ms-blob-type": "BlockBlob"})
            response = connection.getresponse()
            assert response.status == 201, (response.status, response.read())
        finally:
            connection.close()

    def datastore_blobs(self, datastore: str) -> dict[str, bytes]:
        """Every blob of ``datastore``: name -> content."""
        return self.azurite.blobs(self.containers[datastore])

    def uploaded_code(self) -> dict[str, bytes]:
        """The code blobs uploaded to Azurite, by path below the code folder's own name."""
        blobs = self.azurite.blobs(self.code_container)
        return {name.split("/", 1)[1] if "/" in name else name: data for name, data in blobs.items()}

    # -- request handling --------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        record = Recorded(handler.command, parts.path, parse_qs(parts.query),
                          {k.lower(): v for k, v in handler.headers.items()}, body)
        with self._lock:
            self.requests.append(record)
        try:
            status, payload, content_type = self._route(record)
        except Exception as error:  # noqa: BLE001 - a bug in the stand-in shows as a 500
            status, payload, content_type = 500, _error("StandInError", repr(error)), None
        if status == 404 and not isinstance(payload, dict):
            record.matched = False
            payload = _error("NotFound", f"the stand-in has no route for {record.method} "
                                         f"{record.path}")
        if isinstance(payload, (dict, list)):
            data, content_type = json.dumps(payload).encode(), "application/json"
        else:
            data = payload.encode() if isinstance(payload, str) else payload
            content_type = content_type or "text/plain; charset=utf-8"
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("x-ms-request-id", str(uuid.uuid4()))
        handler.end_headers()
        handler.wfile.write(data)

    def _route(self, r: Recorded) -> tuple[int, Any, str | None]:
        if r.path == "/msi/token":
            return self._token(r)
        if r.path == "/discovery":
            return 200, {key: self.url for key in ("api", "catalog", "experimentation", "gallery",
                                                   "history", "hyperdrive", "labeling",
                                                   "modelmanagement", "pipelines")}, None
        if r.path.startswith("/logs/"):
            return self._log(r)
        if r.headers.get("authorization") != f"Bearer {self.token}":
            return 401, _error("AuthenticationFailed", "missing or wrong bearer token"), None
        history = HISTORY.match(r.path)
        if history and r.method == "GET":
            return self._run_details(history["run"])
        history_run = HISTORY_RUN.match(r.path)
        if history_run and r.method == "GET":
            return self._run(history_run["run"])
        arm = ARM.match(r.path)
        if arm is None:
            return 404, None, None
        if not self.workspace_exists:
            return 404, _error("ResourceNotFound", f"workspace {arm['ws']!r} was not found"), None
        return self._arm(r, arm["sub"], arm["rg"], arm["ws"], arm["rest"] or "")

    def token_for(self, scope_or_resource: str) -> str:
        """The token for a scope: Azure ML's own (``https://ml.azure.com``) or the ARM one."""
        return self.aml_token if scope_or_resource.startswith(AML_RESOURCE) else self.token

    def _token(self, r: Recorded) -> tuple[int, Any, str | None]:
        if r.headers.get("x-identity-header") != self.identity_header:
            return 401, {"error": "invalid_request", "error_description": "bad identity header"}, None
        with self._lock:
            self.tokens_issued += 1
        resource = (r.query.get("resource") or [""])[0]
        token = self.token_for(resource)
        return 200, {"access_token": token, "expires_on": str(int(time.time()) + 3600),
                     "resource": resource, "token_type": "Bearer"}, None

    def _arm(self, r: Recorded, sub: str, rg: str, ws: str, rest: str) -> tuple[int, Any, str | None]:
        workspace_id = (f"/subscriptions/{sub}/resourceGroups/{rg}/providers/"
                        f"Microsoft.MachineLearningServices/workspaces/{ws}")
        routes: list[tuple[str, str, Callable[..., tuple[int, Any, str | None]]]] = [
            ("GET", r"", lambda: self._workspace(workspace_id, ws)),
            ("GET", r"/codes/(?P<name>[^/]+)/versions", lambda name: (200, {"value": []}, None)),
            ("POST", r"/codes/(?P<name>[^/]+)/versions/(?P<version>[^/]+)/startPendingUpload",
             lambda name, version: self._pending_upload()),
            ("PUT", r"/codes/(?P<name>[^/]+)/versions/(?P<version>[^/]+)",
             lambda name, version: self._put_asset(self.codes, workspace_id, "codes", name,
                                                   version, r)),
            ("PUT", r"/environments/(?P<name>[^/]+)/versions/(?P<version>[^/]+)",
             lambda name, version: self._put_asset(self.environments, workspace_id,
                                                   "environments", name, version, r)),
            ("GET", r"/data/(?P<name>[^/]+)", lambda name: self._data(workspace_id, name)),
            ("GET", r"/data/(?P<name>[^/]+)/versions/(?P<version>[^/]+)",
             lambda name, version: self._data(workspace_id, name, version)),
            ("PUT", r"/jobs/(?P<name>[^/]+)", lambda name: self._put_job(workspace_id, ws, name, r)),
            ("GET", r"/jobs/(?P<name>[^/]+)", lambda name: self._get_job(workspace_id, ws, name)),
            ("POST", r"/jobs/(?P<name>[^/]+)/cancel", lambda name: self._cancel(name)),
            ("GET", r"/computes/(?P<name>[^/]+)", lambda name: self._compute(workspace_id, name)),
            ("GET", r"/datastores", lambda: self._default_datastore(workspace_id, r)),
            ("GET", r"/datastores/(?P<name>[^/]+)",
             lambda name: self._datastore(workspace_id, name)),
            ("POST", r"/datastores/(?P<name>[^/]+)/listSecrets",
             lambda name: self._datastore_secrets(name)),
        ]
        for method, pattern, action in routes:
            match = re.fullmatch(pattern, rest)
            if match and method == r.method:
                return action(**match.groupdict())
        return 404, None, None

    def _workspace(self, workspace_id: str, ws: str) -> tuple[int, Any, str | None]:
        return 200, {
            "id": workspace_id, "name": ws, "type": "Microsoft.MachineLearningServices/workspaces",
            "location": "westeurope", "kind": "Default",
            "properties": {"friendlyName": ws, "discoveryUrl": self.url + "/discovery",
                           "workspaceId": "00000000-0000-0000-0000-00000000feed",
                           "provisioningState": "Succeeded"},
        }, None

    def _data(self, workspace_id: str, name: str, version: str | None = None
              ) -> tuple[int, Any, str | None]:
        """A data asset's container (its latest version) or one of its versions."""
        versions = self.data_assets.get(name, [])
        if not versions or (version is not None and version not in versions):
            missing = f"data asset {name}:{version or ''} was not found"
            return 404, _error("UserError", missing), None
        resource_id = f"{workspace_id}/data/{name}"
        if version is None:
            return 200, {"id": resource_id, "name": name,
                         "type": "Microsoft.MachineLearningServices/workspaces/data",
                         "properties": {"dataType": "uri_folder", "latestVersion": versions[-1],
                                        "nextVersion": str(len(versions) + 1)}}, None
        return 200, {"id": f"{resource_id}/versions/{version}", "name": version,
                     "type": "Microsoft.MachineLearningServices/workspaces/data/versions",
                     "properties": {"dataType": "uri_folder",
                                    "dataUri": f"azureml://datastores/workspaceblobstore/paths/"
                                               f"{name}/{version}/"}}, None

    def _compute(self, workspace_id: str, name: str) -> tuple[int, Any, str | None]:
        """A compute cluster (``AmlCompute``) scaling from 0 to ``computes[name]`` nodes."""
        if name not in self.computes:
            return 404, _error("ResourceNotFound", f"compute {name!r} was not found"), None
        scale = {"maxNodeCount": self.computes[name], "minNodeCount": 0,
                 "nodeIdleTimeBeforeScaleDown": "PT2M"}
        return 200, {"id": f"{workspace_id}/computes/{name}", "name": name,
                     "type": "Microsoft.MachineLearningServices/workspaces/computes",
                     "location": "westeurope",
                     "properties": {"computeType": "AmlCompute", "computeLocation": "westeurope",
                                    "provisioningState": "Succeeded",
                                    "properties": {"vmSize": "STANDARD_D4S_V3",
                                                   "vmPriority": "Dedicated",
                                                   "scaleSettings": scale}}}, None

    def _pending_upload(self) -> tuple[int, Any, str | None]:
        sas = self.azurite.container_sas_url(self.code_container)
        return 200, {
            "pendingUploadId": str(uuid.uuid4()),
            "pendingUploadType": "TemporaryBlobReference",
            "blobReferenceForConsumption": {
                "blobUri": sas.split("?", 1)[0],
                "credential": {"credentialType": "SAS", "sasUri": sas},
            },
        }, None

    def _put_asset(self, store: dict, workspace_id: str, kind: str, name: str, version: str,
                   r: Recorded) -> tuple[int, Any, str | None]:
        body = r.json() or {}
        resource = {"id": f"{workspace_id}/{kind}/{name}/versions/{version}", "name": version,
                    "type": f"Microsoft.MachineLearningServices/workspaces/{kind}/versions",
                    "properties": body.get("properties", {})}
        with self._lock:
            store[f"{name}:{version}"] = resource
        return 200, resource, None

    def _studio_url(self, ws: str, name: str, workspace_id: str) -> str:
        return f"https://ml.azure.com/runs/{name}?wsid={workspace_id}"

    def _status(self, run: _Run) -> str:
        if run.status is not None:
            return run.status
        if run.polls == 0:
            return "Starting"
        return IN_PROGRESS if run.polls <= self.running_polls else self.outcome

    def _job_resource(self, workspace_id: str, ws: str, name: str, run: _Run) -> dict:
        properties = dict(run.body.get("properties", {}))
        properties["status"] = self._status(run)
        # Azure ML also lists the job's artifact store as its "default" output; with it, the
        # SDK's jobs.stream lists logs at https://ACCOUNT.blob.core.windows.net, which no
        # stand-in can serve: left out, so logs come from the run details' logFiles here.
        properties["services"] = {"Studio": {"jobServiceType": "Studio",
                                             "endpoint": self._studio_url(ws, name, workspace_id)}}
        return {"id": f"{workspace_id}/jobs/{name}", "name": name,
                "type": "Microsoft.MachineLearningServices/workspaces/jobs",
                "properties": properties}

    def _put_job(self, workspace_id: str, ws: str, name: str, r: Recorded) -> tuple[int, Any, str | None]:
        run = _Run(r.json() or {})
        with self._lock:
            self.runs[name] = run
        return 201, self._job_resource(workspace_id, ws, name, run), None

    def _get_job(self, workspace_id: str, ws: str, name: str) -> tuple[int, Any, str | None]:
        with self._lock:
            run = self.runs.get(name)
        if run is None:
            return 404, _error("NotFound", f"job {name!r} was not found"), None
        return 200, self._job_resource(workspace_id, ws, name, run), None

    def _cancel(self, name: str) -> tuple[int, Any, str | None]:
        with self._lock:
            run = self.runs.get(name)
            if run is None:
                return 404, _error("NotFound", f"job {name!r} was not found"), None
            run.status = "Canceled"
        return 202, b"", None

    def _run(self, name: str) -> tuple[int, Any, str | None]:
        """The run history's record of a job: its status and times (polls unchanged)."""
        with self._lock:
            run = self.runs.get(name)
            status = self._status(run) if run is not None else None
        if run is None:
            return 404, _error("NotFound", f"run {name!r} was not found"), None
        ended = status in ("Completed", "Failed", "Canceled")
        return 200, {"runId": name, "status": status,
                     "startTimeUtc": STARTED_AT if status not in ("NotStarted", "Starting",
                                                                  "Queued") else None,
                     "endTimeUtc": ENDED_AT if ended else None}, None

    def _datastore_resource(self, workspace_id: str, name: str) -> dict:
        return {"id": f"{workspace_id}/datastores/{name}", "name": name,
                "type": "Microsoft.MachineLearningServices/workspaces/datastores",
                "properties": {"datastoreType": "AzureBlob", "accountName": ACCOUNT,
                               "containerName": self.containers[name],
                               "endpoint": f"localhost:{self.azurite.port}", "protocol": "http",
                               "credentials": {"credentialsType": "AccountKey"},
                               "isDefault": name == DEFAULT_DATASTORE}}

    def _datastore(self, workspace_id: str, name: str) -> tuple[int, Any, str | None]:
        if name not in self.containers:
            return 404, _error("UserError", f"datastore {name!r} was not found"), None
        return 200, self._datastore_resource(workspace_id, name), None

    def _default_datastore(self, workspace_id: str, r: Recorded) -> tuple[int, Any, str | None]:
        if r.query.get("isDefault") != ["true"]:
            return 200, {"value": [self._datastore_resource(workspace_id, name)
                                   for name in DATASTORES]}, None
        return 200, {"value": [self._datastore_resource(workspace_id, DEFAULT_DATASTORE)]}, None

    def _datastore_secrets(self, name: str) -> tuple[int, Any, str | None]:
        if name not in self.containers:
            return 404, _error("UserError", f"datastore {name!r} was not found"), None
        return 200, {"secretsType": "AccountKey", "key": ACCOUNT_KEY}, None

    def _run_details(self, name: str) -> tuple[int, Any, str | None]:
        with self._lock:
            run = self.runs.get(name)
            if run is None:
                return 404, _error("NotFound", f"run {name!r} was not found"), None
            run.polls += 1
            status = self._status(run)
            run.log_lines.append(f"[stand-in] {name}: poll {run.polls}, status {status}\n")
        details: dict[str, Any] = {
            "runId": name, "status": status, "warnings": [],
            "logFiles": {"user_logs/std_log.txt": f"{self.url}/logs/{name}/user_logs/std_log.txt"},
        }
        if status == "Failed":
            details["error"] = {"error": {"code": "UserError",
                                          "message": "the stand-in job failed on purpose"}}
        return 200, details, None

    def _log(self, r: Recorded) -> tuple[int, Any, str | None]:
        name = r.path.split("/")[2]
        with self._lock:
            run = self.runs.get(name)
            text = "".join(run.log_lines) if run else None
        if text is None:
            return 404, _error("NotFound", "no such log"), None
        return 200, text, "text/plain; charset=utf-8"


def _unsigned_jwt(claims: dict) -> str:
    """A token shaped like Entra ID's (the SDK reads its ``tid`` claim); the signature is fake."""
    def part(data: dict | bytes) -> str:
        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return ".".join((part({"alg": "RS256", "typ": "JWT"}), part(claims), part(b"stand-in")))


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


