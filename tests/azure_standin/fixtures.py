"""pytest fixtures of the stand-ins; test modules import the ones they use."""

from __future__ import annotations

import pytest

from .azurite import Azurite
from .proxy import BlobProxy
from .service import AzureMLStandIn
from .tls import TestCertificates


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    """One Azurite blob service for the session (fails, not skips, when it is not installed)."""
    with Azurite(tmp_path_factory.mktemp("azurite")) as running:
        yield running


@pytest.fixture(scope="session")
def certificates(tmp_path_factory):
    return TestCertificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def standin(certificates, azurite):
    """A fresh Azure ML stand-in whose jobs complete after two Running polls."""
    with AzureMLStandIn(certificates, azurite) as server:
        yield server


@pytest.fixture
def make_standin(certificates, azurite):
    """Build a stand-in with options (``outcome=``, ``workspace_exists=``, ...)."""
    started = []

    def make(**options) -> AzureMLStandIn:
        server = AzureMLStandIn(certificates, azurite, **options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def blob_proxy(certificates, azurite):
    """An HTTPS proxy through which ``*.blob.core.windows.net`` is the session's Azurite."""
    with BlobProxy(certificates, azurite) as proxy:
        yield proxy
