"""Teams outbound token: a token the connector stops taking before it expires is replaced.

msal (under botbuilder's MicrosoftAppCredentials) hands out its cached token for as long as
it holds it as valid; the connector may refuse it earlier (a revoked token, a rotated app
secret). The app runs with a real MicrosoftAppId: channel tokens signed by FakeBotAuth,
outbound tokens from its token endpoint, and FakeConnector refusing a token it was given.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botframework.connector.auth import ManagedIdentityAppCredentials
from msal import TokenCache
from sqlalchemy import select

from storage.models import OutboxMessage, TicketEvent
from tests.fakes.botframework import OUTBOUND_TOKEN, FakeBotAuth, FakeConnector
from tests.harness import AppHarness, only_ticket, wait_until
from tests.http.conftest_teams import (
    CARD_TYPE,
    PERSONAL,
    TECH_ID,
    TENANT,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)

APP_ID = "00000000-1111-2222-3333-444444444444"
PASSWORD = "s3cret-password"
NEW_TOKEN = "fake-outbound-token-2"
BO_ID = "29:1bo"
CONFIRMED = "Identity confirmed for HD-1"
PEOPLE = [
    {
        "email": "ana@example.com",
        "name": "Ana Lopez",
        "teams_id": "29:1ana",
        "manager": "bo@example.com",
    },
    {"email": "bo@example.com", "name": "Bo Boss", "teams_id": BO_ID},
    {"email": "tech@example.com", "name": "Tom Tech", "teams_id": TECH_ID, "technician": True},
]


@pytest.fixture
async def bot_auth(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeBotAuth]:
    async with FakeBotAuth() as fake:
        # msal reads the CA bundle (the fake's TLS token endpoint) from os.environ.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", fake.env(APP_ID, PASSWORD)["REQUESTS_CA_BUNDLE"])
        yield fake


async def send(
    app: AppHarness, auth: FakeBotAuth, fake: FakeConnector, body: dict[str, Any]
) -> Any:
    token = auth.make_token(APP_ID, fake.service_url)
    return await app.teams(body, headers={"Authorization": f"Bearer {token}"})


async def outbox(app: AppHarness) -> list[OutboxMessage]:
    async with app.services.sessions() as session:
        return list((await session.execute(select(OutboxMessage))).scalars().all())


async def settled(app: AppHarness) -> bool:
    """Every row due by now delivered (the SLA's reminders wait for later)."""
    now = datetime.now(UTC)
    due = [r for r in await outbox(app) if r.due_at <= now]
    return all(row.status == "delivered" for row in due)


async def asked_bo(app: AppHarness, auth: FakeBotAuth, fake: FakeConnector) -> tuple[str, Any]:
    """Tom opens HD-1 for Ana and asks her manager Bo to confirm her identity; returns Bo's
    chat and the request card once everything queued so far went out (with the first token)."""
    await send(app, auth, fake, message(fake.service_url, "ticket new Locked out"))
    await wait_until(lambda: len(fake.activities()) == 1, what="the intake form")
    form = card_of(fake.activities()[-1])
    value = {**submit_action(form)["fallback"]["data"], **form_values(summary="Locked out")}
    assert (await send(app, auth, fake, activity(fake.service_url, value=value))).status == 201
    await send(app, auth, fake, message(fake.service_url, "ticket verify HD-1"))
    await wait_until(lambda: fake.created_conversations(), what="Bo's chat")
    [chat] = fake.created_conversations()
    assert chat["members"][0]["id"] == BO_ID
    await wait_until(lambda: fake.activities(chat["_id"]), what="the request to Bo")
    request = card_of(fake.activities(chat["_id"])[0])

    await wait_until(lambda: settled(app), what="the outbox to be delivered")
    assert {a["_authorization"] for a in fake.activities()} == {f"Bearer {OUTBOUND_TOKEN}"}
    assert len(auth.token_requests()) == 1 and fake.unauthorized() == []
    return chat["_id"], request


async def approve(
    app: AppHarness, auth: FakeBotAuth, fake: FakeConnector, chat: str, card: Any
) -> None:
    """Bo presses Approve (Action.Execute: answered in the invoke's own HTTP response)."""
    pressed = next(a for a in card["actions"] if a["title"] == "Approve")
    invoke = activity(
        fake.service_url,
        type="invoke",
        name="adaptiveCard/action",
        user=BO_ID,
        conversation=chat,
        value={
            "action": {"type": "Action.Execute", "verb": pressed["verb"], "data": pressed["data"]},
            "trigger": "manual",
        },
    )
    response = await send(app, auth, fake, invoke)
    assert response.status == 200
    body = await response.json()
    assert body["statusCode"] == 200
    answer = json.dumps(body["value"]) if body["type"] == CARD_TYPE else str(body["value"])
    assert "confirmed the identity for HD-1" in answer


async def start(
    make_app: Any,
    auth: FakeBotAuth,
    fake: FakeConnector,
    monkeypatch: pytest.MonkeyPatch | None = None,
) -> AppHarness:
    """The app with an app secret (SingleTenant); given `monkeypatch`, with a user-assigned
    managed identity instead (msal's ManagedIdentityClient, App Service's endpoint)."""
    env = auth.env(APP_ID, PASSWORD, "tenant-guid")
    if monkeypatch is not None:
        env = auth.msi_env(APP_ID, "tenant-guid")
        for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):  # msal reads os.environ
            monkeypatch.setenv(name, env[name])
        # botbuilder keeps managed identity tokens in one cache per process: start afresh.
        monkeypatch.setattr(ManagedIdentityAppCredentials, "global_token_cache", TokenCache())
    config = {"teams": {"service_url": fake.service_url, "tenant_id": TENANT}}
    app: AppHarness = await make_app(env=env, config=config, people=PEOPLE)
    return app


def confirmed(activities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in activities if CONFIRMED in (a.get("text") or "")]


@pytest.mark.parametrize("credentials", ["secret", "managed-identity"])
async def test_a_token_the_connector_refuses_before_it_expires_is_replaced(
    make_app,
    bot_auth: FakeBotAuth,
    connector: FakeConnector,
    credentials: str,
    monkeypatch: pytest.MonkeyPatch,
):
    """The app secret is rotated (or the token revoked) while msal still holds the bot's
    token as valid: the proactive notice to Tom, refused once (401), goes out with a new
    token instead of being given up, and only once."""
    msi = monkeypatch if credentials == "managed-identity" else None
    app = await start(make_app, bot_auth, connector, msi)
    chat, card = await asked_bo(app, bot_auth, connector)
    connector.refuse_token(OUTBOUND_TOKEN)
    bot_auth.access_token = NEW_TOKEN  # what the token endpoint issues from now on

    await approve(app, bot_auth, connector, chat, card)
    await wait_until(lambda: confirmed(connector.activities(PERSONAL)), what="Tom's notice")
    [notice] = confirmed(connector.activities(PERSONAL))
    assert notice["_authorization"] == f"Bearer {NEW_TOKEN}"
    # The notice (POST) and the request card's update (PUT) go out side by side: whichever
    # reached the connector first was refused and replaced the token for both.
    refused = connector.unauthorized()
    assert refused and {a["_authorization"] for a in refused} == {f"Bearer {OUTBOUND_TOKEN}"}

    await wait_until(lambda: settled(app), what="every row delivered")
    assert (await only_ticket(app)).identity_state == "confirmed"
    # The request card in Bo's chat is closed too (an update, refused once as well).
    [update] = [u for u in connector.updates() if u["_conversation_id"] == chat]
    assert update["_authorization"] == f"Bearer {NEW_TOKEN}"
    # Nothing went out twice, and the new token is asked for once, not per send.
    assert len(confirmed(connector.activities(PERSONAL))) == 1
    assert len(bot_auth.token_requests()) == 2
    async with app.services.sessions() as session:
        kinds = (await session.execute(select(TicketEvent.kind))).scalars().all()
    assert "delivery.failed" not in kinds


async def test_a_connector_that_refuses_every_token_still_gives_the_row_up(
    make_app, bot_auth: FakeBotAuth, connector: FakeConnector, caplog: pytest.LogCaptureFixture
):
    """A new token refused too (the bot's registration itself is refused): the row is given
    up after that one try with a new token, as a 401 always was, not retried in a loop."""
    app = await start(make_app, bot_auth, connector)
    chat, card = await asked_bo(app, bot_auth, connector)
    connector.every_token_refused = True
    bot_auth.fresh_tokens = True  # a new token is told from the one it replaced

    await approve(app, bot_auth, connector, chat, card)

    async def notice_row() -> OutboxMessage | None:
        rows = [r for r in await outbox(app) if CONFIRMED in json.dumps(r.payload)]
        return rows[0] if rows and rows[0].status == "dead" else None

    await wait_until(notice_row, what="the notice to Tom given up")
    row = await notice_row()
    assert row is not None and row.attempts == 1 and "HTTP 401" in (row.last_error or "")
    # Tried twice: the second time with a token asked for after the first was refused.
    # (Which token the first try had depends on the other rows refused meanwhile.)
    tries = confirmed([a for a in connector.unauthorized() if a["_method"] == "POST"])
    first, second = (a["_authorization"].removeprefix("Bearer ") for a in tries)
    assert bot_auth.issued.index(second) > bot_auth.issued.index(first)
    assert confirmed(connector.activities()) == []
    failed = select(TicketEvent).where(TicketEvent.kind == "delivery.failed")
    async with app.services.sessions() as session:
        events = (await session.execute(failed)).scalars().all()
    assert any(e.data["outbox_id"] == row.id and e.data["permanent"] for e in events)

    # Tom is told as before (in his chat, which refuses the bot too: the log says so).
    async def told() -> bool:
        texts = [r.payload.get("text", "") for r in await outbox(app) if r.id > row.id]
        wanted = "for HD-1 failed and will not be retried: teams: HTTP 401"
        return any(wanted in text for text in texts)

    await wait_until(told, what="Tom told the notice was given up")
    assert not [token for token in bot_auth.issued if token in caplog.text]
