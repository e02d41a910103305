"""An HTTPS proxy on 127.0.0.1 through which ``ACCOUNT.blob.core.windows.net`` is Azurite.

The Azure ML SDK uploads a job's local input folder to
``https://ACCOUNT.blob.core.windows.net/CONTAINER/...``: it builds that URL from the
datastore's account name and the public cloud's storage suffix, whatever endpoint the
datastore declares (``azure.ai.ml._artifacts._artifact_utilities.get_datastore_info``).
A client given ``HTTPS_PROXY=http://127.0.0.1:PORT`` (azure-core's requests transport
honours it) asks this proxy to ``CONNECT ACCOUNT.blob.core.windows.net:443``; the tunnel
ends in a TLS server holding a ``*.blob.core.windows.net`` certificate from the tests' CA
(which the client trusts through ``REQUESTS_CA_BUNDLE``), and each HTTP request inside is
sent on to Azurite unchanged: Azurite reads the account from the host name of such a
production-style URL, so neither path nor signature is rewritten.

Every forwarded request is recorded (:attr:`BlobProxy.forwarded`); a tunnel to any other
host is refused with 403 and recorded (:attr:`BlobProxy.refused`). Nothing listens on
anything but 127.0.0.1, and nothing leaves this machine.
"""

from __future__ import annotations

import http.client
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from .azurite import Azurite
from .loopback import LoopbackServer
from .tls import TestCertificates

BLOB_SUFFIX = ".blob.core.windows.net"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authorization",
              "te", "trailer", "transfer-encoding", "upgrade"}


@dataclass(frozen=True)
class Forwarded:
    """One request that went through a tunnel to Azurite, and Azurite's answer."""

    method: str
    host: str
    path: str  # without the query
    status: int


class BlobProxy(LoopbackServer):
    """The proxy; use as a context manager. :meth:`environment` points a client at it."""

    def __init__(self, certificates: TestCertificates, azurite: Azurite):
        self.certificates = certificates
        self.azurite = azurite
        self.forwarded: list[Forwarded] = []
        self.refused: list[str] = []
        self._lock = threading.Lock()
        super().__init__()

    def start(self) -> "BlobProxy":
        tls = self.certificates.server_context("*" + BLOB_SUFFIX)
        proxy = self

        class Tunnel(BaseHTTPRequestHandler):
            """Answers CONNECT, then serves the HTTP inside the TLS tunnel."""

            def do_CONNECT(self):
                host, _, port = self.path.rpartition(":")
                if not host.lower().endswith(BLOB_SUFFIX) or port != "443":
                    with proxy._lock:
                        proxy.refused.append(self.path)
                    self.send_error(403, f"the test proxy tunnels only to *{BLOB_SUFFIX}:443")
                    return
                self.send_response(200, "Connection established")
                self.end_headers()
                self.wfile.flush()
                self.close_connection = True
                inner = tls.wrap_socket(self.connection, server_side=True)
                try:
                    Forwarder(inner, self.client_address, self.server)
                finally:
                    inner.close()

            def log_message(self, *args):
                pass

        class Forwarder(BaseHTTPRequestHandler):
            """Sends each request of the tunnel to Azurite, as it came, on one connection.

            A request body must carry ``Content-Length`` (azure-storage-blob's all do);
            Azurite's answer is read whole and sent back with its length.
            """

            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                self.azurite = http.client.HTTPConnection("127.0.0.1", proxy.azurite.port,
                                                          timeout=60)

            def finish(self):
                self.azurite.close()
                super().finish()

            def forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                self.azurite.putrequest(self.command, self.path, skip_host=True,
                                        skip_accept_encoding=True)
                for name, value in self.headers.items():
                    if name.lower() not in HOP_BY_HOP:
                        self.azurite.putheader(name, value)
                self.azurite.endheaders(body)
                answer = self.azurite.getresponse()
                data = answer.read()
                with proxy._lock:
                    proxy.forwarded.append(Forwarded(self.command, self.headers.get("Host", ""),
                                                     urlsplit(self.path).path, answer.status))
                self.send_response(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in HOP_BY_HOP | {"content-length"}:
                        self.send_header(name, value)
                length_sent = answer.getheader("Content-Length") if self.command == "HEAD" \
                    else str(len(data))
                if length_sent is not None:
                    self.send_header("Content-Length", length_sent)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = forward

            def log_message(self, *args):
                pass

        self._serve(ThreadingHTTPServer(("127.0.0.1", 0), Tunnel), "blob-proxy")
        return self

    def environment(self) -> dict[str, str]:
        """``HTTPS_PROXY`` (both spellings) to this proxy; loopback stays direct (``NO_PROXY``)."""
        return {"HTTPS_PROXY": self.url, "https_proxy": self.url,
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}

    def calls(self, method: str | None = None) -> list[Forwarded]:
        with self._lock:
            return [f for f in self.forwarded if method is None or f.method == method]
