"""Trust for the Dynamics and authority hosts: the system's CAs plus, optionally, the
operator's own (LEARNEXA_DYNAMICS_CA_BUNDLE; the simulator's CA in the demo and tests).

Environment variables such as REQUESTS_CA_BUNDLE are deliberately ignored: requests lets
them override an explicit `verify=`, which would silently change whom we trust.
"""

from __future__ import annotations

import hashlib
import ssl
import tempfile
from functools import cache
from pathlib import Path

import certifi
from django.conf import settings


def extra_ca_file() -> str:
    return settings.LEARNEXA_DYNAMICS_CA_BUNDLE


@cache
def _ssl_context(extra: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certifi.where())
    if extra:
        context.load_verify_locations(cafile=extra)
    return context


def ssl_context() -> ssl.SSLContext:
    """For httpx."""
    return _ssl_context(extra_ca_file())


@cache
def _combined_bundle(extra: str, extra_digest: str) -> str:
    # requests wants one file; write certifi's bundle plus the extra CAs once per content.
    bundle = Path(tempfile.gettempdir()) / f"learnexa-ca-{extra_digest[:16]}.pem"
    if not bundle.exists():
        content = Path(certifi.where()).read_bytes() + b"\n" + Path(extra).read_bytes()
        tmp = bundle.with_suffix(".tmp")
        tmp.write_bytes(content)
        tmp.replace(bundle)
    return str(bundle)


def requests_verify() -> str:
    """For requests (MSAL's HTTP client): the CA bundle file to verify with."""
    extra = extra_ca_file()
    if not extra:
        return certifi.where()
    return _combined_bundle(extra, hashlib.sha256(Path(extra).read_bytes()).hexdigest())
