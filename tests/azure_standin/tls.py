"""A test certificate authority and server certificates from it (``trustme``)."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme

LOOPBACK_NAMES = ("127.0.0.1", "localhost")


class TestCertificates:
    """A CA whose PEM file clients trust (``REQUESTS_CA_BUNDLE``) and server contexts."""

    __test__ = False  # not a pytest test class

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._ca = trustme.CA()
        self._issued: dict[tuple[str, ...], trustme.LeafCert] = {}
        self.ca_bundle = self.folder / "test-ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_bundle))

    def server_context(self, *names: str) -> ssl.SSLContext:
        """A TLS server context whose certificate (from this CA) holds ``names``
        (default: 127.0.0.1 and localhost; ``*.blob.core.windows.net`` for a wildcard)."""
        names = names or LOOPBACK_NAMES
        if names not in self._issued:
            self._issued[names] = self._ca.issue_cert(*names)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._issued[names].configure_cert(context)
        return context
