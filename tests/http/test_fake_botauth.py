"""Proves FakeBotAuth + FakeConnector drive botbuilder's real auth path (JWT validation on).

Pinned statuses are what botbuilder 4.17.1's ``CloudAdapter`` with the *parameterized*
``ConfigurationBotFrameworkAuthentication`` (any TO_* override set) answers by itself. Only
``PermissionError`` becomes 401; every other auth failure escapes as a 500. The app must wrap
``adapter.process`` and map those to 401 (SPEC "Errors and safety").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from botbuilder.core import ActivityHandler, TurnContext
from botbuilder.integration.aiohttp import (
    CloudAdapter,
    ConfigurationBotFrameworkAuthentication,
)

from tests.fakes.base import LoopbackTLS
from tests.fakes.botframework import OUTBOUND_TOKEN, FakeBotAuth, FakeConnector

APP_ID = "00000000-1111-2222-3333-444444444444"
PASSWORD = "s3cret"
TENANT = "tenant-guid"
CONVERSATION = "a:1xYz-AbC;messageid=1700000000000"

PostFn = Callable[[dict[str, str]], Awaitable[tuple[int, str]]]
ERRORS = web.AppKey("errors", list[BaseException])


class EchoBot(ActivityHandler):  # type: ignore[misc]
    async def on_message_activity(self, turn_context: TurnContext) -> None:
        await turn_context.send_activity(f"echo: {turn_context.activity.text}")


def activity(service_url: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": "1700000000001",
        "text": "hello",
        "channelId": "msteams",
        "serviceUrl": service_url,
        "from": {"id": "29:user-1", "name": "Ana"},
        "recipient": {"id": f"28:{APP_ID}", "name": "helpdesk"},
        "conversation": {"id": CONVERSATION, "conversationType": "personal"},
        "channelData": {"tenant": {"id": TENANT}},
    }


@pytest.fixture
async def auth(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeBotAuth]:
    async with FakeBotAuth() as fake:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.env(APP_ID, PASSWORD)["REQUESTS_CA_BUNDLE"])
        yield fake


async def bot_client(config: Any) -> TestClient[web.Request, web.Application]:
    adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(config))
    bot = EchoBot()

    async def messages(request: web.Request) -> web.Response:
        try:
            response = await adapter.process(request, bot)
        except web.HTTPException:
            raise
        except Exception as exc:  # record what escaped botbuilder, then let aiohttp 500 it
            request.app[ERRORS].append(exc)
            raise
        assert isinstance(response, web.Response)
        return response

    app = web.Application()
    app[ERRORS] = []
    app.router.add_post("/api/messages", messages)
    client: TestClient[web.Request, web.Application] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def post(auth: FakeBotAuth, connector: FakeConnector) -> AsyncIterator[PostFn]:
    """POST an activity; returns (status, name of the exception that escaped botbuilder or "")."""
    client = await bot_client(auth.config(APP_ID, PASSWORD, TENANT))

    async def send(headers: dict[str, str]) -> tuple[int, str]:
        body = activity(connector.service_url)
        errors = client.app[ERRORS]
        errors.clear()
        async with client.post("/api/messages", json=body, headers=headers) as resp:
            return resp.status, type(errors[0]).__name__ if errors else ""

    yield send
    await client.close()


@pytest.mark.parametrize("tenant", [TENANT, None], ids=["SingleTenant", "MultiTenant"])
async def test_valid_token_echo_reaches_connector_with_outbound_token(
    auth: FakeBotAuth, connector: FakeConnector, tenant: str | None
) -> None:
    client = await bot_client(auth.config(APP_ID, PASSWORD, tenant))
    token = auth.make_token(APP_ID, connector.service_url)
    try:
        resp = await client.post(
            "/api/messages",
            json=activity(connector.service_url),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status == 201
    finally:
        await client.close()

    await connector.wait_for(lambda r: r.method == "POST", timeout=5)
    [reply] = connector.activities()
    assert reply["text"] == "echo: hello"
    assert reply["_conversation_id"] == CONVERSATION  # URL-decoded
    assert reply["_reply_to_id"] == "1700000000001"
    assert reply["_authorization"] == f"Bearer {OUTBOUND_TOKEN}"

    [token_req] = auth.token_requests()
    assert token_req.form is not None
    assert token_req.form["grant_type"] == "client_credentials"
    assert token_req.form["client_id"] == APP_ID
    assert token_req.form["client_secret"] == PASSWORD
    assert token_req.form["scope"] == "https://api.botframework.com/.default"
    # botbuilder fetched the metadata and keys; msal did ADFS-style tenant discovery (no
    # instance discovery against login.microsoftonline.com).
    paths = [r.path for r in auth.recorded]
    assert paths[:2] == ["/v1/.well-known/openidconfiguration", "/v1/.well-known/keys"]
    assert "/adfs/.well-known/openid-configuration" in paths


async def test_missing_authorization_header_is_500_not_401(
    post: PostFn, connector: FakeConnector
) -> None:
    # CloudAdapter passes "" (not None) for a missing header; the parameterized path only
    # raises PermissionError for None, then hits AttributeError ('NoneType' ... 'claims').
    # The default public-cloud path (no TO_* overrides) answers 401 here instead.
    assert await post({}) == (500, "AttributeError")
    assert connector.recorded == []


def bearer(**kwargs: Any) -> Callable[[FakeBotAuth, str], str]:
    def make(auth: FakeBotAuth, service_url: str) -> str:
        if kwargs.pop("bad_signature", False):
            return "Bearer " + auth.bad_signature_token(APP_ID, service_url)
        app_id = kwargs.pop("app_id", APP_ID)
        return "Bearer " + auth.make_token(app_id, kwargs.pop("service_url", service_url), **kwargs)

    return make


@pytest.mark.parametrize(
    ("make_header", "expected"),
    [
        (lambda a, s: "Bearer not.a.jwt", (500, "DecodeError")),
        (lambda a, s: "garbage", (500, "AttributeError")),  # one word: like a missing header
        (lambda a, s: "Basic abc", (401, "")),
        (bearer(bad_signature=True), (500, "InvalidSignatureError")),
        (bearer(expired=True), (500, "ExpiredSignatureError")),
        (bearer(kid="unknown"), (500, "IndexError")),  # JwtTokenExtractor._find()[0]
        (bearer(app_id="another-app"), (401, "")),
        (bearer(service_url="https://evil.example/"), (401, "")),
        (bearer(issuer="https://evil.example"), (401, "")),
    ],
    ids=["malformed", "one-word", "not-bearer", "bad-signature", "expired", "unknown-kid",
         "wrong-aud", "wrong-serviceurl", "wrong-issuer"],
)  # fmt: skip
async def test_bad_tokens_are_rejected_with_pinned_status(
    auth: FakeBotAuth,
    connector: FakeConnector,
    post: PostFn,
    make_header: Callable[[FakeBotAuth, str], str],
    expected: tuple[int, str],
) -> None:
    header = make_header(auth, connector.service_url)
    assert await post({"Authorization": header}) == expected
    assert connector.recorded == []
    assert auth.token_requests() == []


async def test_unreachable_metadata_url_is_500(auth: FakeBotAuth, connector: FakeConnector) -> None:
    config = auth.config(APP_ID, PASSWORD, TENANT)
    dead = FakeConnector()
    dead_url = await dead.start()
    await dead.stop()  # nothing listens there any more -> connection refused at once
    config.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL = f"{dead_url}/v1/.well-known/keys-gone"
    client = await bot_client(config)
    try:
        token = auth.make_token(APP_ID, connector.service_url)
        resp = await client.post(
            "/api/messages",
            json=activity(connector.service_url),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status == 500
        assert [type(e).__name__ for e in client.app[ERRORS]] == ["ConnectionError"]  # requests'
    finally:
        await client.close()
    assert connector.recorded == []


@pytest.mark.parametrize(
    ("app_id", "with_overrides", "expected", "replies"),
    [
        ("", True, 500, 0),  # auth disabled, but "" is not None -> AttributeError
        ("", False, 201, 1),  # public-cloud path: anonymous, reply sent without a token
        (APP_ID, False, 401, 0),  # public-cloud path: PermissionError -> 401
    ],
    ids=["no-app-id+overrides", "no-app-id", "app-id-public-cloud"],
)
async def test_missing_header_other_configurations(
    auth: FakeBotAuth,
    connector: FakeConnector,
    app_id: str,
    with_overrides: bool,
    expected: int,
    replies: int,
) -> None:
    config = SimpleNamespace(APP_ID=app_id, APP_PASSWORD=PASSWORD if app_id else "")
    if with_overrides:
        config.__dict__.update(auth.overrides())
    client = await bot_client(config)
    try:
        resp = await client.post("/api/messages", json=activity(connector.service_url))
        assert resp.status == expected
    finally:
        await client.close()
    assert len(connector.activities()) == replies
    assert all(a["_authorization"] is None for a in connector.activities())


async def test_slow_key_fetch_blocks_the_event_loop(
    auth: FakeBotAuth, connector: FakeConnector, post: PostFn
) -> None:
    # botbuilder fetches keys with synchronous requests.get (no timeout) inside the loop.
    auth.set_delay("/v1/.well-known/keys", 0.6)
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    token = auth.make_token(APP_ID, connector.service_url)
    status = await post({"Authorization": f"Bearer {token}"})
    task.cancel()
    assert status == (201, "")
    assert max(gaps) >= 0.5


async def test_fake_serves_tls_with_its_own_ca(auth: FakeBotAuth) -> None:
    import aiohttp

    assert isinstance(auth.tls, LoopbackTLS)
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{auth.https_url}/adfs/.well-known/openid-configuration",
            ssl=auth.tls.client_context(),
        ) as resp,
    ):
        doc = await resp.json()
    assert doc["token_endpoint"] == f"{auth.https_url}/botframework.com/oauth2/v2.0/token"
