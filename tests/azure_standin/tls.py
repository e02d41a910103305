"""A test certificate authority and a server certificate for 127.0.0.1 (``trustme``)."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme


class TestCertificates:
    """A CA whose PEM file clients trust (``REQUESTS_CA_BUNDLE``) and a server context."""

    __test__ = False  # not a pytest test class

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._ca = trustme.CA()
        self._server = self._ca.issue_cert("127.0.0.1", "localhost")
        self.ca_bundle = self.folder / "test-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_bundle))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server.configure_cert(context)
        return context
