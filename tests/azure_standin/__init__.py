"""Offline stand-ins for Azure, for the tests of ``submit``'s real submission path.

- :class:`Azurite`: the Azure Storage emulator (npm package ``azurite``) on a
  free loopback port; the code upload goes there.
- :class:`AzureMLStandIn`: an HTTPS server on 127.0.0.1 answering the Azure ML
  REST calls that ``MLClient.jobs.create_or_update`` and ``jobs.stream`` make,
  and a managed-identity token endpoint so that ``DefaultAzureCredential``
  signs in without a network. Its certificate comes from a test CA
  (``trustme``) that clients trust through ``REQUESTS_CA_BUNDLE``.
- :class:`BlobProxy`: an HTTPS proxy (``HTTPS_PROXY``) through which
  ``ACCOUNT.blob.core.windows.net``, where the SDK uploads a local input folder, is Azurite.

Nothing here listens on anything but 127.0.0.1.
"""

from .azurite import Azurite, AzuriteUnavailable
from .proxy import BlobProxy
from .service import AzureMLStandIn, Recorded
from .tls import TestCertificates

__all__ = ["Azurite", "AzuriteUnavailable", "AzureMLStandIn", "BlobProxy", "Recorded",
           "TestCertificates"]
