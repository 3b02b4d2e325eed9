"""Teams with MicrosoftAppId set: every bad or unverifiable token is a prompt 401."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select

from bot.logs import setup_logging
from storage.models import Ticket
from tests.fakes.botframework import OUTBOUND_TOKEN, FakeBotAuth, FakeConnector
from tests.harness import AppHarness, event_kinds, only_ticket
from tests.http.conftest_teams import (
    PERSONAL,
    TECH_ID,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)
from tests.http.conftest_teams import TENANT as TEAMS_TENANT

APP_ID = "00000000-1111-2222-3333-444444444444"
PASSWORD = "s3cret-password"
TENANT = "tenant-guid"


@pytest.fixture
async def bot_auth(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeBotAuth]:
    async with FakeBotAuth() as fake:
        # msal and botbuilder's key fetch use requests, which reads the CA bundle from os.environ.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.env(APP_ID, PASSWORD)["REQUESTS_CA_BUNDLE"])
        yield fake


async def start(make_app: Any, bot_auth: FakeBotAuth, **overrides: str) -> AppHarness:
    env = {**bot_auth.env(APP_ID, PASSWORD, TENANT), **overrides}
    app: AppHarness = await make_app(env=env)
    return app


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_valid_token_is_served_and_reply_carries_outbound_token(
    make_app, bot_auth: FakeBotAuth, connector: FakeConnector
):
    app = await start(make_app, bot_auth)
    token = bot_auth.make_token(APP_ID, connector.service_url)
    for count in (1, 2):
        response = await app.teams(
            message(connector.service_url, "ticket mine"), headers=bearer(token)
        )
        assert response.status == 201
        await connector.wait_for(lambda r: r.method == "POST", count=count)
    replies = connector.activities()
    assert [r["_conversation_id"] for r in replies] == [PERSONAL, PERSONAL]
    assert {r["_authorization"] for r in replies} == {f"Bearer {OUTBOUND_TOKEN}"}
    assert replies[0]["text"] == "You have no open tickets."
    # One client per service URL: the second reply reuses the token (and the connection pool).
    assert len(bot_auth.token_requests()) == 1


@pytest.mark.parametrize(
    "header",
    [
        lambda a, svc: {},
        lambda a, svc: {"Authorization": ""},
        lambda a, svc: {"Authorization": "Bearer not.a.jwt"},
        lambda a, svc: {"Authorization": "Basic abc"},
        lambda a, svc: {"Authorization": "Bearer"},
        lambda a, svc: bearer(a.bad_signature_token(APP_ID, svc)),
        lambda a, svc: bearer(a.make_token(APP_ID, svc, expired=True)),
        lambda a, svc: bearer(a.make_token(APP_ID, svc, kid="unknown-kid")),
        lambda a, svc: bearer(a.make_token("another-app", svc)),
        lambda a, svc: bearer(a.make_token(APP_ID, "https://evil.example/")),
        lambda a, svc: bearer(a.make_token(APP_ID, svc, issuer="https://evil.example")),
    ],
    ids=["no-header", "empty", "malformed", "not-bearer", "no-token", "bad-signature",
         "expired", "unknown-kid", "wrong-audience", "wrong-serviceurl", "wrong-issuer"],
)  # fmt: skip
async def test_bad_tokens_get_401_and_nothing_is_sent(
    make_app,
    bot_auth: FakeBotAuth,
    connector: FakeConnector,
    header: Callable[[FakeBotAuth, str], dict[str, str]],
):
    app = await start(make_app, bot_auth)
    response = await app.teams(
        message(connector.service_url, "ticket new"),
        headers=header(bot_auth, connector.service_url),
    )
    assert response.status == 401
    await asyncio.sleep(0.05)
    assert connector.recorded == []
    assert bot_auth.token_requests() == []


async def test_unreachable_signing_keys_get_401_within_seconds(
    make_app, bot_auth: FakeBotAuth, connector: FakeConnector
):
    closed = FakeConnector()
    dead_url = await closed.start()
    await closed.stop()  # nothing listens there now: connection refused
    metadata = f"{dead_url}/v1/.well-known/openidconfiguration"
    app = await start(make_app, bot_auth, TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL=metadata)
    started = time.monotonic()
    response = await app.teams(
        message(connector.service_url, "ticket new"),
        headers=bearer(bot_auth.make_token(APP_ID, connector.service_url)),
    )
    assert response.status == 401
    assert time.monotonic() - started < 3
    assert connector.recorded == []


async def test_hanging_key_fetch_gets_401_in_time_and_loop_keeps_serving(
    make_app, bot_auth: FakeBotAuth, connector: FakeConnector
):
    app = await start(make_app, bot_auth)
    teams = app.services.teams
    assert teams is not None
    teams.auth_runner.limit = 0.5  # the production limit is a few seconds
    bot_auth.set_delay("/v1/.well-known/keys", 2.0)
    token = bot_auth.make_token(APP_ID, connector.service_url)
    assert app.http is not None

    async def health_latency() -> float:
        await asyncio.sleep(0.1)
        began = time.monotonic()
        async with app.http.get(f"{app.url}/healthz") as response:  # type: ignore[union-attr]
            assert response.status == 200
        return time.monotonic() - began

    started = time.monotonic()
    response, latency = await asyncio.gather(
        app.teams(message(connector.service_url, "ticket new"), headers=bearer(token)),
        health_latency(),
    )
    assert response.status == 401
    assert time.monotonic() - started < 1.5
    assert latency < 0.3  # the blocking fetch runs off the event loop
    assert connector.recorded == []


async def test_one_hung_key_fetch_does_not_refuse_later_valid_tokens(
    make_app, bot_auth: FakeBotAuth, connector: FakeConnector
):
    app = await start(make_app, bot_auth)
    teams = app.services.teams
    assert teams is not None
    teams.auth_runner.limit = 0.5
    token = bot_auth.make_token(APP_ID, connector.service_url)
    # The first fetch hangs past the limit; the fake's shutdown aborts it at teardown.
    bot_auth.set_delay("/v1/.well-known/keys", 20.0)
    first = await app.teams(message(connector.service_url, "ticket mine"), headers=bearer(token))
    assert first.status == 401
    bot_auth.set_delay("/v1/.well-known/keys", 0)
    # The thread still stuck in that fetch takes no new work: the next token is verified.
    second = await app.teams(message(connector.service_url, "ticket mine"), headers=bearer(token))
    assert second.status == 201
    await connector.wait_for(lambda r: r.method == "POST")


BO_ID = "29:1bo"
IMPERSONATION_PEOPLE = [
    {"email": "ana@example.com", "name": "Ana Lopez", "teams_id": "29:1ana"},
    {"email": "bo@example.com", "name": "Bo Boss", "teams_id": BO_ID},
    {"email": "tech@example.com", "name": "Tom Tech", "teams_id": TECH_ID, "technician": True},
]


@pytest.mark.parametrize("channel", ["webchat", "directline"])
async def test_another_bot_framework_channel_cannot_speak_as_a_teams_user(
    make_app, connector: FakeConnector, channel: str, monkeypatch: pytest.MonkeyPatch
):
    """Azure Bot resources have Web Chat (Direct Line) on by default, and there the client
    picks its own `from.id` (Microsoft's 'impersonation' warning): a validly signed activity
    from such a channel naming Tom's Teams id must not act as Tom (technician-only actions), nor
    leave a 1:1 reference for a Teams id (DMs to that person, e.g. a manager's identity
    request with its nonce, would go to the attacker's chat)."""
    async with FakeBotAuth(endorsements=("msteams", "webchat", "directline")) as auth:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", auth.env(APP_ID, PASSWORD)["REQUESTS_CA_BUNDLE"])
        app = await make_app(env=auth.env(APP_ID, PASSWORD, TENANT), people=IMPERSONATION_PEOPLE)
        teams = bearer(auth.make_token(APP_ID, connector.service_url))
        # Tom opens HD-1 from Teams, as usual.
        await app.teams(message(connector.service_url, "ticket new Printer jams"), headers=teams)
        await connector.wait_for(lambda r: r.method == "POST")
        form = card_of(connector.activities()[-1])
        value = {**submit_action(form)["fallback"]["data"], **form_values()}
        response = await app.teams(activity(connector.service_url, value=value), headers=teams)
        assert response.status == 201
        assert (await only_ticket(app)).number == "HD-1"
        before = await event_kinds(app)

        # Someone on Web Chat / Direct Line says they are Tom, then Bo.
        # (Its service URL is the fake connector's too: Web Chat's own, as signed, on main.)
        web_chat = connector.service_url
        web = bearer(auth.make_token(APP_ID, web_chat))
        forged = message(web_chat, "ticket time HD-1 45m", user=TECH_ID, conversation="a:wc-1")
        forged["channelId"] = channel
        forged["channelData"] = {"tenant": {"id": TENANT}}
        response = await app.teams(forged, headers=web)
        assert response.status == 403
        as_bo = message(web_chat, "ticket mine", user=BO_ID, conversation="a:wc-2")
        as_bo["channelId"] = channel
        response = await app.teams(as_bo, headers=web)
        assert response.status == 403

        await asyncio.sleep(0.2)
        assert await event_kinds(app) == before  # no time logged as Tom
        assert (await only_ticket(app)).time_minutes == 0
        teams_app = app.services.teams
        assert teams_app is not None
        for key in (f"user:{TECH_ID}", f"user:{BO_ID}"):
            stored = await teams_app.references.get(key)
            assert stored is None or stored["conversation"]["id"] not in ("a:wc-1", "a:wc-2")


async def test_a_user_of_another_tenant_is_not_served_when_teams_tenant_id_is_set(
    make_app, bot_auth: FakeBotAuth, connector: FakeConnector
):
    """A multi-tenant Azure Bot can be added to any tenant's Teams (a custom app naming its
    id): with `teams.tenant_id` set, someone there must not open tickets here, e.g. a
    password reset for Ana that DMs her manager an identity request naming the outsider as
    the technician (the vishing set-up the check is there to stop)."""
    app = await make_app(
        env=bot_auth.env(APP_ID, PASSWORD, TENANT),
        people=IMPERSONATION_PEOPLE,
        config={"teams": {"service_url": connector.service_url, "tenant_id": TEAMS_TENANT}},
    )
    token = bearer(bot_auth.make_token(APP_ID, connector.service_url))
    outsider = {"user": "29:1mallory", "user_name": "Tom Tech", "conversation": "a:mallory"}
    foreign = {"channelData": {"tenant": {"id": "evil-tenant"}}}

    def from_outside(body: dict[str, Any]) -> dict[str, Any]:
        body.update(foreign)
        body["conversation"]["tenantId"] = "evil-tenant"
        return body

    response = await app.teams(
        from_outside(message(connector.service_url, "ticket new Reset my password", **outsider)),
        headers=token,
    )
    assert response.status == 403
    value = {"action": "ticket.create", **form_values(category="password-reset")}
    response = await app.teams(
        from_outside(activity(connector.service_url, value=value, **outsider)), headers=token
    )
    assert response.status == 403
    await asyncio.sleep(0.3)
    assert connector.recorded == []
    async with app.services.sessions() as session:
        assert (await session.execute(select(Ticket))).scalars().all() == []

    # Our own tenant is served as before.
    response = await app.teams(message(connector.service_url, "ticket mine"), headers=token)
    assert response.status == 201


# Issuer of Azure AD v1 tokens of the botframework.com tenant: what the bot's own outbound
# token carries, and what botbuilder takes inbound as a Bot Framework Emulator token.
AAD_BOTFRAMEWORK_ISSUER = "https://sts.windows.net/d6d49420-f39b-4df7-a1dc-d59a935871db/"


@pytest.mark.parametrize(
    "audience",
    [APP_ID, "https://api.botframework.com"],
    ids=["emulator-token", "the-bots-own-outbound-token"],
)
async def test_a_token_that_does_not_vouch_for_the_service_url_is_refused(
    make_app, bot_auth: FakeBotAuth, connector: FakeConnector, audience: str
):
    """botbuilder takes an Azure AD token whose `appid` is the bot's own as an Emulator token,
    with no audience and no `serviceurl` claim checked: the bot's own outbound token (sent
    with every reply) is one. Signed so, an activity naming any serviceUrl and `msteams` was
    served: the reply, with the bot's bearer token, went to that URL, and the sender's 1:1
    reference now pointed there (later DMs too); the outbound token itself failed the turn
    (500). Teams' channel tokens always name the serviceUrl: an activity whose token does not
    is refused 401, nothing sent or stored."""
    app = await start(make_app, bot_auth)
    async with FakeConnector() as elsewhere:
        aad_token = bot_auth.make_token(
            audience,
            elsewhere.service_url,
            issuer=AAD_BOTFRAMEWORK_ISSUER,
            extra_claims={"ver": "1.0", "appid": APP_ID, "serviceurl": None},
        )
        forged = message(elsewhere.service_url, "ticket mine", user=TECH_ID)
        response = await app.teams(forged, headers=bearer(aad_token))
        assert response.status == 401
        await asyncio.sleep(0.2)
        assert elsewhere.recorded == []
        teams_app = app.services.teams
        assert teams_app is not None
        assert await teams_app.references.get(f"user:{TECH_ID}") is None
    # A channel token naming the serviceUrl is served as before.
    token = bot_auth.make_token(APP_ID, connector.service_url)
    response = await app.teams(message(connector.service_url, "ticket mine"), headers=bearer(token))
    assert response.status == 201


async def test_a_request_without_a_bearer_token_is_refused_before_its_body_is_read(
    make_app, bot_auth: FakeBotAuth, connector: FakeConnector, caplog: pytest.LogCaptureFixture
):
    """With MicrosoftAppId set, a caller offering no token had its body parsed and judged
    first: a 415 or a 400 naming what was wrong with it (`activity has no http(s)
    serviceUrl`), counted under the kind its body claimed. As Slack's signature comes before
    its body, a request with no Bearer token is a 401 whatever it carries, and nothing is
    stored or sent."""
    app = await start(make_app, bot_auth)
    assert app.http is not None
    svc = connector.service_url
    as_json = "application/json"
    cases: list[tuple[dict[str, str], bytes, str]] = [
        ({}, b"not json at all", "text/plain"),
        ({}, b"{}", as_json),
        ({"Authorization": "Basic abc"}, b"[]", as_json),
        ({"Authorization": "Bearer   "}, json.dumps({"type": "message"}).encode(), as_json),
        ({}, json.dumps(message(svc, "ticket new", serviceUrl="ftp://x")).encode(), as_json),
        ({}, json.dumps(message(svc, "ticket mine")).encode(), as_json),
    ]
    for headers, body, content_type in cases:
        caplog.clear()
        async with app.http.post(
            f"{app.url}/api/messages", data=body, headers={**headers, "Content-Type": content_type}
        ) as response:
            answer = await response.json()
        assert (response.status, answer) == (401, {"error": "unauthorized"}), (headers, body)
        assert any("(401)" in r.getMessage() for r in caplog.records), (headers, body)
    async with app.http.get(f"{app.url}/metrics") as scraped:
        metrics = await scraped.text()
    assert 'kind="unverified",platform="teams",status="401"} 6.0' in metrics
    await asyncio.sleep(0.1)
    assert connector.recorded == [] and bot_auth.token_requests() == []
    async with app.services.sessions() as session:
        assert (await session.execute(select(Ticket))).first() is None


@pytest.fixture
def text_log() -> Iterator[io.StringIO]:
    """The production logging (setup_logging, LOG_FORMAT=text, INFO), its lines kept; undone
    afterwards."""
    root = logging.getLogger()
    loggers = [
        root,
        *(x for x in logging.Logger.manager.loggerDict.values() if isinstance(x, logging.Logger)),
    ]
    saved = {logger: logger.level for logger in loggers}
    setup_logging(fmt="text", level="INFO")
    handler = next(h for h in root.handlers if getattr(h, "_helpdesk", False))
    stream = io.StringIO()
    handler.setStream(stream)  # type: ignore[attr-defined]
    yield stream
    root.removeHandler(handler)
    for logger, level in saved.items():
        logger.setLevel(level)


async def test_an_unauthenticated_activity_cannot_write_a_log_line_of_its_own(
    text_log: io.StringIO, make_app, bot_auth: FakeBotAuth, connector: FakeConnector
):
    """Found by the security review: the refusal of a bad token names the activity's id, which
    the caller chose (up to 128 characters, line breaks allowed), and the text log wrote it as
    it came. An anonymous caller could add lines of their own to the operator's log, forged
    to read as the bot's (`... INFO bot.teams.front ... served`). Control characters in what a
    line quotes are written escaped: one request, one refusal line, nothing else."""
    app = await start(make_app, bot_auth)
    forged = "2026-12-07 22:00:00,000 INFO bot.teams.front [- -] HD-1 closed by Tom"
    for brk in ("\n", "\r", "\u2028"):
        body = message(connector.service_url, "ticket mine", activity_id=f"a1{brk}{forged}")
        response = await app.teams(body, headers=bearer("not.a.jwt"))
        assert response.status == 401
    lines = text_log.getvalue().splitlines()
    refusals = [line for line in lines if "rejected activity" in line]
    assert len(refusals) == 3, lines
    assert "a1\\n2026-12-07" in refusals[0]
    assert not any(line.startswith("2026-12-07 22:00:00,000") for line in lines), lines
