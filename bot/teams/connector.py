"""Bot Framework connector plumbing for botbuilder 4.17: fewer rebuilds, one connection pool.

Stock botbuilder builds a new `ConnectorClient` for every turn and every proactive send. Each
one costs a msrest retry policy (slow, see `patch_msrest_retry_policy`), a new
`requests.Session` (a new TCP+TLS connection per reply, run in the default thread pool) and
new credentials whose msal app starts with an empty token cache (a token request per turn,
synchronously inside the event loop). `PooledAuthentication` wraps botbuilder's
authentication so every connector factory it hands out reuses one client per (app id,
service URL, audience), and those clients send through the app's shared aiohttp session
(keep-alive, the app's timeouts) with the bearer token fetched in a worker thread and reused.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

from aiohttp import ClientSession
from botbuilder.schema import Activity
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import (
    AuthenticateRequestResult,
    AuthenticationConstants,
    BotFrameworkAuthentication,
    ClaimsIdentity,
    ConnectorFactory,
    ManagedIdentityAppCredentials,
    UserTokenClient,
)
from botframework.connector.skills import BotFrameworkClient
from msal import TokenCache
from msrest.pipeline import AsyncHTTPPolicy, AsyncHTTPSender, AsyncPipeline, Request, Response
from msrest.pipeline.universal import RawDeserializer
from msrest.universal_http import ClientRequest, HTTPClientResponse
from multidict import CIMultiDict
from yarl import URL

log = logging.getLogger(__name__)
MAX_CLIENTS = 256
# Reuse a fetched bearer token this long before asking msal again (tokens live ~1 h; msal
# answers from its cache until shortly before expiry).
TOKEN_REUSE_SECONDS = 300.0


def patch_msrest_retry_policy() -> None:
    """Make msrest's ClientRetryPolicy cheap to build (called once, at import).

    msrest 0.7.1 (`msrest/universal_http/requests.py`) builds a `ClientRetryPolicy` for every
    client configuration, and its `__init__` computes
    `[i for i in range(999) if i not in self.safe_codes]` where `safe_codes` is a ~500-item
    *list*: about half a million comparisons, ~4 ms per connector/token client. The same
    codes as a frozenset make that ~0.05 ms; the resulting policy is identical.
    """
    from msrest.universal_http.requests import ClientRetryPolicy

    if not isinstance(ClientRetryPolicy.safe_codes, frozenset):
        ClientRetryPolicy.safe_codes = frozenset(ClientRetryPolicy.safe_codes)  # type: ignore[assignment]


patch_msrest_retry_policy()


class _BufferedResponse(HTTPClientResponse):  # type: ignore[misc]
    """A fully read response in the shape msrest's deserializers and errors expect."""

    def __init__(
        self,
        request: ClientRequest,
        status: int,
        reason: str | None,
        headers: CIMultiDict[str],
        body: bytes,
    ) -> None:
        super().__init__(request, None)
        # msrest's HttpOperationError keeps `internal_response`: make it this object, so
        # callers find status_code, headers (Retry-After) and the body text on the error.
        self.internal_response = self
        self.status_code = status
        self.reason = reason
        self.headers = headers
        self._body = body

    def body(self) -> bytes:
        return self._body


class _SharedSessionSender(AsyncHTTPSender):  # type: ignore[misc]
    """Sends msrest requests through the app's aiohttp session (pooled, keep-alive)."""

    def __init__(self, http: ClientSession) -> None:
        self._http = http

    async def __aenter__(self) -> _SharedSessionSender:
        return self

    async def __aexit__(self, *exc_details: object) -> None:
        return None  # the app owns the session and closes it on shutdown

    async def send(self, request: Request, **config: Any) -> Response:
        http_request: ClientRequest = request.http_request
        if http_request.files:
            raise NotImplementedError("multipart uploads are not used by the helpdesk bot")
        async with self._http.request(
            http_request.method,
            http_request.url,
            headers=dict(http_request.headers),
            data=http_request.data,
        ) as resp:
            body = await resp.read()
            headers = CIMultiDict(resp.headers)
        return Response(
            request, _BufferedResponse(http_request, resp.status, resp.reason, headers, body)
        )


class _BearerTokenPolicy(AsyncHTTPPolicy):  # type: ignore[misc]
    """Adds `Authorization: Bearer …` from botbuilder's AppCredentials.

    msal's token request is synchronous (requests), so it runs in a worker thread; the
    header is reused for TOKEN_REUSE_SECONDS. msal hands out its cached token until it
    expires, also one the connector stopped taking earlier (a revoked token, a rotated
    secret): a 401 drops that token (here and in msal's cache) and the call is made once
    more with a new one. The connector took nothing on a 401, so nothing is sent twice.
    """

    def __init__(self, credentials: Any) -> None:
        super().__init__()
        self._credentials = credentials
        self._header: str | None = None
        self._until = 0.0
        self._lock = asyncio.Lock()

    def _needs_token(self) -> bool:
        app_id = getattr(self._credentials, "microsoft_app_id", None)
        return bool(app_id) and app_id != AuthenticationConstants.ANONYMOUS_SKILL_APP_ID

    async def _authorization(self) -> str | None:
        if not self._needs_token():
            return None
        if self._header is not None and time.monotonic() < self._until:
            return self._header
        async with self._lock:
            if self._header is None or time.monotonic() >= self._until:
                token = await asyncio.to_thread(self._credentials.get_access_token)
                self._header = f"Bearer {token}"
                self._until = time.monotonic() + TOKEN_REUSE_SECONDS
            return self._header

    async def _drop(self, refused: str) -> None:
        """The connector refused `refused` (a header): forget its token unless another call
        already replaced it, so the next _authorization gets a new one."""
        async with self._lock:
            if self._header == refused:
                self._header = None
            try:
                await asyncio.to_thread(
                    drop_cached_token, self._credentials, refused.removeprefix("Bearer ")
                )
            except Exception as exc:  # the next token request tells what is wrong
                log.warning("Teams: could not drop the refused token: %s", type(exc).__name__)

    async def _send(self, request: Request, header: str | None, **kwargs: Any) -> Response:
        if header is not None:
            request.http_request.headers["Authorization"] = header
        return await self.next.send(request, **kwargs)  # type: ignore[no-any-return,union-attr]

    async def send(self, request: Request, **kwargs: Any) -> Response:
        header = await self._authorization()
        response = await self._send(request, header, **kwargs)
        if response.http_response.status_code != 401 or header is None:
            return response
        http_request: ClientRequest = request.http_request
        log.warning(
            "Teams connector: HTTP 401 to %s %s, getting a new token and trying once more",
            http_request.method,
            URL(http_request.url).path,
        )
        await self._drop(header)
        # A second 401 is the connector's answer: the caller takes it as it is.
        return await self._send(request, await self._authorization(), **kwargs)


def drop_cached_token(credentials: Any, token: str) -> bool:
    """Remove `token` from the msal cache of botbuilder's `credentials`, if it is there.

    botbuilder 4.17: MicrosoftAppCredentials (and the certificate ones) keep a msal
    ConfidentialClientApplication in `app`, built on first use, whose `token_cache` holds
    the token get_access_token hands out; ManagedIdentityAppCredentials share the class's
    `global_token_cache`. Only an entry holding this very token is removed, so one another
    call already replaced stays. Blocking (msal's lock): run in a worker thread."""
    if isinstance(credentials, ManagedIdentityAppCredentials):
        cache: Any = ManagedIdentityAppCredentials.global_token_cache
    else:
        cache = getattr(getattr(credentials, "app", None), "token_cache", None)
    if not isinstance(cache, TokenCache):
        return False
    kind = TokenCache.CredentialType.ACCESS_TOKEN
    entries = list(cache.search(kind, query={"secret": token}))
    for entry in entries:
        cache.remove_at(entry)
    return bool(entries)


def _use_shared_session(client: ConnectorClient, http: ClientSession) -> None:
    config = client.config
    policies = [
        config.user_agent_policy,
        _BearerTokenPolicy(config.credentials),
        RawDeserializer(),
        config.http_logger_policy,
    ]
    # client._client.config is the same object: its async_send runs this pipeline.
    config.pipeline = AsyncPipeline(policies, _SharedSessionSender(http))


class ConnectorPool:
    """One ConnectorClient per (app id, service URL, audience), on the shared session."""

    def __init__(self, http: ClientSession, *, max_clients: int = MAX_CLIENTS) -> None:
        self.http = http
        self.max_clients = max_clients
        self._clients: OrderedDict[tuple[str, str, str], ConnectorClient] = OrderedDict()

    def wrap(self, inner: ConnectorFactory) -> ConnectorFactory:
        return _PooledConnectorFactory(inner, self)

    async def get(
        self, inner: ConnectorFactory, service_url: str, audience: str | None
    ) -> ConnectorClient:
        # botbuilder's _ConnectorFactoryImpl keeps the app id and default scope privately;
        # anything else (streaming factories) is not pooled.
        app_id = getattr(inner, "_app_id", None)
        scope = audience or getattr(inner, "_to_channel_from_bot_oauth_scope", None)
        if not isinstance(scope, str) or not (app_id is None or isinstance(app_id, str)):
            return await inner.create(service_url, audience)
        key = (app_id or "", service_url, scope)
        client = self._clients.get(key)
        if client is not None:
            self._clients.move_to_end(key)
            return client
        client = await inner.create(service_url, audience)
        _use_shared_session(client, self.http)
        self._clients[key] = client
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)
        return client


class _PooledConnectorFactory(ConnectorFactory):  # type: ignore[misc]
    def __init__(self, inner: ConnectorFactory, pool: ConnectorPool) -> None:
        self._inner = inner
        self._pool = pool

    async def create(self, service_url: str, audience: str | None = None) -> ConnectorClient:
        return await self._pool.get(self._inner, service_url, audience)


class PooledAuthentication(BotFrameworkAuthentication):  # type: ignore[misc]
    """Delegates to botbuilder's authentication; hands out pooled connector factories."""

    def __init__(self, inner: BotFrameworkAuthentication, pool: ConnectorPool) -> None:
        self._inner = inner
        self._pool = pool
        self._user_token_clients: dict[str, UserTokenClient] = {}

    async def authenticate_request(
        self, activity: Activity, auth_header: str | None
    ) -> AuthenticateRequestResult:
        result = await self._inner.authenticate_request(activity, auth_header)
        if result.connector_factory is not None:
            result.connector_factory = self._pool.wrap(result.connector_factory)
        return result

    async def authenticate_streaming_request(
        self, auth_header: str, channel_id_header: str
    ) -> AuthenticateRequestResult:
        return await self._inner.authenticate_streaming_request(auth_header, channel_id_header)

    def create_connector_factory(self, claims_identity: ClaimsIdentity) -> ConnectorFactory:
        return self._pool.wrap(self._inner.create_connector_factory(claims_identity))

    async def create_user_token_client(self, claims_identity: ClaimsIdentity) -> UserTokenClient:
        # Built on every turn by botbuilder and never used here (no OAuth prompts): one per app.
        app_id = str(
            claims_identity.get_claim_value(AuthenticationConstants.AUDIENCE_CLAIM)
            or claims_identity.get_claim_value(AuthenticationConstants.APP_ID_CLAIM)
            or ""
        )
        client = self._user_token_clients.get(app_id)
        if client is None:
            client = await self._inner.create_user_token_client(claims_identity)
            self._user_token_clients[app_id] = client
        return client

    def create_bot_framework_client(self) -> BotFrameworkClient:
        return self._inner.create_bot_framework_client()

    def get_originating_audience(self) -> str:
        return str(self._inner.get_originating_audience())

    async def authenticate_channel_request(self, auth_header: str) -> ClaimsIdentity:
        return await self._inner.authenticate_channel_request(auth_header)
