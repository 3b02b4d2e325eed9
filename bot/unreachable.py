"""What to say when an outside service (PSA, KB) could not be reached: where and why, in one
line that an operator can act on, never the URL's path, query or credentials."""

from __future__ import annotations

import os

import aiohttp


def connect_failure(exc: aiohttp.ClientConnectorError) -> str:
    """`cannot connect to host:port (Connection refused)`: aiohttp's own message quotes the
    address twice and Python's exception name alone (`ClientConnectorError`) says neither."""
    where = f"{exc.host}:{exc.port}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot connect to {where}: the host name {exc.host} does not resolve"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"cannot connect to {where}: its TLS certificate was not accepted"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"cannot connect to {where}: the TLS handshake failed"
    error = exc.os_error
    if error.errno:
        reason = os.strerror(error.errno)
    else:
        reason = type(error).__name__
    return f"cannot connect to {where} ({reason})"
