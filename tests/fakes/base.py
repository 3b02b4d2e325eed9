"""Base for loopback fake HTTP servers (aiohttp, 127.0.0.1, ephemeral port).

Records every request, scripts failures and delays per path, and runs on the caller's loop
or, with ``threaded=True``, on its own thread: needed when the code under test calls the
fake with *synchronous* HTTP from inside the event loop (botbuilder's JWT key fetch and
msal do), which would deadlock an in-loop server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Self
from urllib.parse import parse_qsl

import certifi
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from multidict import CIMultiDict

Matcher = str | Callable[["Recorded"], bool]
JSON_TYPES = ("application/json", "text/json")


@dataclass
class Recorded:
    """One request as the fake saw it. ``at`` is ``time.monotonic()`` on arrival."""

    method: str
    path: str  # percent-decoded path
    headers: CIMultiDict[str]
    query: dict[str, str]
    body_text: str
    json: Any | None
    form: dict[str, str] | None
    at: float
    raw_path: str = ""  # path as sent, still percent-encoded
    status: int | None = None  # status the fake answered with (set after handling)
    scripted: bool = False  # True when answered by fail(...)
    body: bytes = b""  # the body as sent (uploads are binary)

    def __repr__(self) -> str:
        return f"<{self.method} {self.path} -> {self.status}>"


@dataclass
class _Script:
    status: int
    remaining: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


def path_matches(pattern: str, path: str) -> bool:
    """Exact match, or shell-style match when the pattern contains ``*``."""
    return path == pattern or ("*" in pattern and fnmatchcase(path, pattern))


async def stream_huge(
    request: web.Request,
    *,
    status: int,
    head: bytes,
    megabytes: int,
    tail: bytes = b"",
    pause: float = 0.0,
) -> tuple[web.StreamResponse, int]:
    """Answer `request` with `head`, then `megabytes` MB of filler (`pause` seconds between
    MBs), then `tail` (JSON), as a server gone wrong streams it; stops when the client hangs
    up. The response (for the handler to return) and the bytes of filler sent."""
    response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
    await response.prepare(request)
    sent = 0
    try:
        await response.write(head)
        for _ in range(megabytes):
            if pause:
                await asyncio.sleep(pause)
            await response.write(b"x" * (1024 * 1024))
            sent += 1024 * 1024
        await response.write(tail)
    except (ConnectionError, RuntimeError):
        pass  # the client hung up
    return response, sent


def json_response(data: Any, status: int = 200, **kwargs: Any) -> web.Response:
    return web.json_response(data, status=status, **kwargs)


class FakeServer:
    """Recording loopback HTTP server. Subclasses implement :meth:`handle`."""

    THREADED = False

    def __init__(self, *, threaded: bool | None = None, tls: LoopbackTLS | None = None) -> None:
        self.threaded = self.THREADED if threaded is None else threaded
        self.tls = tls
        self.url = ""  # plain http base URL
        self.https_url = ""  # TLS base URL when ``tls`` is given
        self._lock = threading.Lock()
        self._recorded: list[Recorded] = []
        self._scripts: dict[str, list[_Script]] = {}
        self._delays: dict[str, float] = {}
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._transports: weakref.WeakSet[asyncio.Transport] = weakref.WeakSet()

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> str:
        if self._runner is not None:
            return self.url
        if not self.threaded:
            await self._serve()
            return self.url
        ready = threading.Event()
        errors: list[BaseException] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._thread_main(ready))
            except BaseException as exc:  # surfaced to start()
                errors.append(exc)
            finally:
                ready.set()
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=main, name=type(self).__name__, daemon=True)
        self._thread.start()
        await asyncio.to_thread(ready.wait, 10.0)
        if errors:
            raise errors[0]
        return self.url

    async def _thread_main(self, ready: threading.Event) -> None:
        stopping = self._stopping = asyncio.Event()
        await self._serve()
        ready.set()
        await stopping.wait()
        await self._shutdown()

    async def _shutdown(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        # TLS connections wait for the peer's close_notify (msal never sends one): abort them.
        for transport in list(self._transports):
            transport.abort()
        for _ in range(3):  # let aborted transports run their connection_lost callbacks
            await asyncio.sleep(0)

    async def _serve(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        sock = _loopback_socket()
        await web.SockSite(runner, sock).start()
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        if self.tls is not None:
            tls_sock = _loopback_socket()
            await web.SockSite(runner, tls_sock, ssl_context=self.tls.server_context()).start()
            self.https_url = f"https://127.0.0.1:{tls_sock.getsockname()[1]}"
        self._runner = runner

    async def stop(self) -> None:
        if not self.threaded:
            await self._shutdown()
            return
        loop, thread, stopping = self._loop, self._thread, self._stopping
        if loop is None or thread is None or stopping is None:
            return
        self._loop = self._thread = self._stopping = None
        loop.call_soon_threadsafe(stopping.set)
        await asyncio.to_thread(thread.join, 10.0)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ test controls
    def fail(
        self,
        path: str,
        status: int,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next ``times`` hits on ``path`` (``*`` wildcards ok) with ``status``,
        then behave normally; scripts queue up. ``body``: dict/list -> JSON, str/bytes as is,
        None -> :meth:`default_error_body`."""
        with self._lock:
            script = _Script(status, times, dict(headers or {}), body)
            self._scripts.setdefault(self._normalize(path), []).append(script)

    def set_delay(self, path: str, seconds: float) -> None:
        """Delay every answer on ``path`` (``*`` wildcards allowed); 0 removes the delay."""
        with self._lock:
            if seconds > 0:
                self._delays[self._normalize(path)] = seconds
            else:
                self._delays.pop(self._normalize(path), None)

    def reset(self) -> None:
        """Forget recorded requests, scripted failures, delays and subclass state."""
        with self._lock:
            self._recorded.clear()
            self._scripts.clear()
            self._delays.clear()
        self.reset_state()

    def reset_state(self) -> None:
        """Hook for subclasses to clear their own state."""

    # ------------------------------------------------------------------ queries
    @property
    def recorded(self) -> list[Recorded]:
        with self._lock:
            return list(self._recorded)

    def calls(self, path_or_predicate: Matcher | None = None) -> list[Recorded]:
        """Requests in arrival order; a str matches the path (``*`` wildcards allowed)."""
        match = self._matcher(path_or_predicate)
        return [r for r in self.recorded if match(r)]

    async def wait_for(
        self,
        predicate_or_path: Matcher,
        count: int = 1,
        timeout: float = 10.0,  # noqa: ASYNC109 - the suite's wait_for(..., timeout=) API
    ) -> list[Recorded]:
        """Wait until at least ``count`` matching requests were answered; return all matches."""
        match = self._matcher(predicate_or_path)
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.recorded if match(r) and r.status is not None]
            if len(found) >= count:
                return found
            if time.monotonic() >= deadline:
                seen = ", ".join(f"{r.method} {r.path} -> {r.status}" for r in self.recorded)
                raise AssertionError(
                    f"{type(self).__name__}: timed out after {timeout}s waiting for {count} "
                    f"request(s) matching {predicate_or_path!r}; {len(found)} matched. "
                    f"Received {len(self.recorded)}: [{seen}]"
                )
            await asyncio.sleep(0.01)

    # --------------------------------------------------------------- internals
    def _normalize(self, path: str) -> str:
        return path

    def _matcher(self, spec: Matcher | None) -> Callable[[Recorded], bool]:
        if spec is None:
            return lambda r: True
        if isinstance(spec, str):
            pattern = self._normalize(spec)
            return lambda r: path_matches(pattern, r.path)
        return spec

    def default_error_body(self, status: int) -> Any:
        return {"error": f"scripted failure {status}"}

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        if isinstance(request.transport, asyncio.Transport):
            self._transports.add(request.transport)
        rec = await _record(request)
        with self._lock:
            self._recorded.append(rec)
            delay = next((s for p, s in self._delays.items() if path_matches(p, rec.path)), 0.0)
            script = None
            for pattern, queue in self._scripts.items():
                if queue and path_matches(pattern, rec.path):
                    script = queue[0]
                    script.remaining -= 1
                    if script.remaining <= 0:
                        queue.pop(0)
                    break
        if delay:
            await asyncio.sleep(delay)
        response: web.StreamResponse
        try:
            if script is not None:
                rec.scripted = True
                response = _scripted_response(script, self.default_error_body(script.status))
            else:
                response = await self.handle(rec, request)
        except web.HTTPException as exc:
            rec.status = exc.status
            raise
        except Exception:
            rec.status = 500
            raise
        rec.status = response.status
        return response


def _scripted_response(script: _Script, default_body: Any) -> web.Response:
    body = default_body if script.body is None else script.body
    if isinstance(body, str | bytes):
        return web.Response(status=script.status, body=body, headers=script.headers)
    return web.json_response(body, status=script.status, headers=script.headers)


async def _record(request: web.Request) -> Recorded:
    body = await request.read()
    try:
        body_text = body.decode(request.charset or "utf-8", errors="replace")
    except LookupError:  # a charset nobody knows
        body_text = body.decode("utf-8", errors="replace")
    ctype = request.content_type
    parsed_json: Any | None = None
    form: dict[str, str] | None = None
    if body_text and (ctype in JSON_TYPES or body_text.lstrip()[:1] in ("{", "[")):
        try:
            parsed_json = json.loads(body_text)
        except ValueError:
            parsed_json = None
    if ctype == "application/x-www-form-urlencoded":
        form = dict(parse_qsl(body_text, keep_blank_values=True))
    head = (request.method, request.path, CIMultiDict(request.headers), dict(request.query))
    raw_path = request.raw_path.split("?", 1)[0]
    return Recorded(*head, body_text, parsed_json, form, time.monotonic(), raw_path, body=body)


def _loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class LoopbackTLS:
    """A throwaway CA and a server certificate for 127.0.0.1, in a temp dir.

    ``ca_bundle`` is certifi's bundle plus this CA, for ``REQUESTS_CA_BUNDLE``.
    """

    def __init__(self) -> None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        key = ec.generate_private_key(ec.SECP256R1())
        ca_name = _x509_name("helpdesk-bot test CA")
        ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
        ca = _issue(ca_name, ca_name, ca_key, ca_key.public_key(), [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True),
            (ca_ski, False),
        ])  # fmt: skip
        cert = _issue(_x509_name("127.0.0.1"), ca_name, ca_key, key.public_key(), [
            (x509.SubjectAlternativeName([x509.IPAddress(_LOOPBACK)]), False),
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False),
        ])  # fmt: skip
        pem = serialization.Encoding.PEM
        key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, _NO_ENCRYPTION)
        self.dir = tempfile.mkdtemp(prefix="fake-tls-")
        self.cert_file = self._write("server.pem", cert.public_bytes(pem))
        self.key_file = self._write("server.key", key_pem)
        self.ca_file = self._write("ca.pem", ca.public_bytes(pem))
        with open(certifi.where(), "rb") as fh:
            self.ca_bundle = self._write("bundle.pem", fh.read() + b"\n" + ca.public_bytes(pem))

    def _write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "wb") as fh:
            fh.write(data)
        return path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """For aiohttp clients in tests: ``session.get(url, ssl=tls.client_context())``."""
        return ssl.create_default_context(cafile=self.ca_file)

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


_NO_ENCRYPTION = serialization.NoEncryption()
_LOOPBACK = ipaddress.ip_address("127.0.0.1")


def _x509_name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: x509.Name,
    issuer: x509.Name,
    signer: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    extensions: list[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(signer, hashes.SHA256())
