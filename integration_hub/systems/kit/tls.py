"""How every hub HTTP client verifies certificates: one place reads the CA bundle (`settings.ca_bundle`).

The dlt `RESTClient` sessions and probes (requests) take `verify()`; the writers' httpx
clients take `ssl_context()`, built once per bundle (loading a CA store per client is slow).
Verification is never switched off: a system with a private CA is trusted by adding its CA to
a bundle and pointing `HUB_CA_BUNDLE` at it.
"""

from __future__ import annotations

import functools
import ssl

import certifi

from integration_hub import settings


def verify() -> str | bool:
    """What requests' `verify` takes: the configured bundle's path, else True (certifi's CAs)."""
    return settings.ca_bundle() or True


def ssl_context() -> ssl.SSLContext:
    """A verifying TLS context over the configured bundle (certifi's CAs when none is configured)."""
    return _context(settings.ca_bundle() or certifi.where())


@functools.cache
def _context(bundle: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=bundle)
