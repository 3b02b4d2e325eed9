"""TeamsNotifier: outbox rows delivered through the connector, errors mapped for retries."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot.notifiers import DeliveryError
from cards.model import Card, Text
from storage.models import ConversationRef, OutboxMessage
from tests.fakes.botframework import FakeConnector
from tests.harness import AppHarness
from tests.http.conftest_teams import (
    ANA_ID,
    CHANNEL,
    TENANT,
    card_of,
    message,
)

CARD = Card(title="HD-7 (P1): VPN down", body=[Text("Everyone on floor 3")], fallback="HD-7")


async def start(make_app: Any, fake: FakeConnector) -> AppHarness:
    config = {"teams": {"service_url": fake.service_url, "tenant_id": TENANT}}
    app: AppHarness = await make_app(config=config, scheduler=False)
    return app


async def deliver(app: AppHarness, kind: str, **payload: Any) -> dict[str, Any]:
    row = OutboxMessage(id=1, kind=kind, payload={"platform": "teams", **payload}, attempts=1)
    return await app.services.notifiers.deliver(row)


async def test_dm_without_reference_opens_personal_chat(make_app, connector: FakeConnector):
    app = await start(make_app, connector)
    result = await deliver(app, "dm", user=ANA_ID, card=CARD.to_dict(), text="HD-7")
    [created] = connector.created_conversations()
    assert created["members"][0]["id"] == ANA_ID
    assert created["tenantID"] == TENANT
    [posted] = connector.activities()
    assert posted["_conversation_id"] == created["_id"] == result["channel"]
    assert result["activity_id"] == posted["_id"] and result["dm"] is True
    card_of(posted)
    async with app.services.sessions() as session:
        rows = (await session.execute(select(ConversationRef))).scalars().all()
    assert {row.key for row in rows} == {f"user:{ANA_ID}", created["_id"]}
    # The next DM continues the stored chat instead of creating another one.
    await deliver(app, "dm", user=ANA_ID, text="again")
    assert len(connector.created_conversations()) == 1
    assert connector.activities()[-1]["_conversation_id"] == created["_id"]


async def test_channel_message_uses_stored_reference_and_thread(make_app, connector: FakeConnector):
    app = await start(make_app, connector)
    await app.teams(message(connector.service_url, "hello", conversation=CHANNEL))
    await connector.wait_for(lambda r: r.method == "POST")
    result = await deliver(
        app, "message", channel=CHANNEL, thread="1700000000999", text="Identity confirmed"
    )
    posted = connector.activities()[-1]
    assert (posted["_conversation_id"], posted["_reply_to_id"]) == (CHANNEL, "1700000000999")
    assert posted["text"] == "Identity confirmed" and posted["textFormat"] == "markdown"
    assert result == {"channel": CHANNEL, "activity_id": posted["_id"], "ts": posted["_id"]}

    await deliver(app, "update", channel=CHANNEL, activity_id=posted["_id"], card=CARD.to_dict())
    [update] = connector.updates()
    assert (update["_conversation_id"], update["_activity_id"]) == (CHANNEL, posted["_id"])
    card_of(update)


@pytest.mark.parametrize(
    ("status", "headers", "permanent", "retry_after", "names"),
    [
        (429, {"Retry-After": "7"}, False, 7.0, "Throttled"),
        (412, {}, False, None, "PreconditionFailed"),
        (502, {}, False, None, "ServiceError"),
        (403, {}, True, None, "BotNotInConversationRoster"),
        (404, {}, True, None, "NotFound"),
        (413, {}, True, None, "MessageSizeTooBig"),
    ],
)
async def test_connector_errors_map_to_delivery_errors(
    make_app,
    connector: FakeConnector,
    status: int,
    headers: dict[str, str],
    permanent: bool,
    retry_after: float | None,
    names: str,
):
    app = await start(make_app, connector)
    connector.fail(f"/v3/conversations/{CHANNEL}/activities", status, headers=headers)
    with pytest.raises(DeliveryError) as caught:
        await deliver(app, "message", channel=CHANNEL, text="hi")
    assert caught.value.permanent is permanent
    assert caught.value.retry_after == retry_after
    assert str(status) in str(caught.value) and names in str(caught.value)


async def test_the_connectors_own_401_text_is_what_the_technician_reads(
    make_app, connector: FakeConnector
):
    """The connector answers 401 with ASP.NET's {"message": ...}, no `error` object: the
    failure said only msrest's "Operation returned an invalid status code 'Unauthorized'"."""
    app = await start(make_app, connector)
    body = {"message": "Authorization has been denied for this request."}
    connector.fail(f"/v3/conversations/{CHANNEL}/activities", 401, body=body)
    with pytest.raises(DeliveryError) as caught:
        await deliver(app, "message", channel=CHANNEL, text="hi")
    assert "HTTP 401" in str(caught.value)
    assert "Authorization has been denied for this request." in str(caught.value)
    assert "invalid status code" not in str(caught.value)


async def test_sub_code_is_named_and_network_errors_are_retryable(
    make_app, connector: FakeConnector
):
    app = await start(make_app, connector)
    body = {"error": {"code": "Forbidden", "message": "blocked", "subCode": "MessageWritesBlocked"}}
    connector.fail(f"/v3/conversations/{CHANNEL}/activities", 403, body=body)
    with pytest.raises(DeliveryError, match="Forbidden/MessageWritesBlocked") as caught:
        await deliver(app, "message", channel=CHANNEL, text="hi")
    assert caught.value.permanent
    await connector.stop()
    with pytest.raises(DeliveryError) as network:
        await deliver(app, "message", channel=CHANNEL, text="hi")
    assert not network.value.permanent


async def test_channel_not_reachable_falls_back_to_technician_dm(
    make_app, connector: FakeConnector
):
    app = await start(make_app, connector)
    connector.fail(f"/v3/conversations/{CHANNEL}/activities", 403)
    result = await deliver(
        app, "message", channel=CHANNEL, text="HD-7 opened", fallback_user=ANA_ID
    )
    assert result["dm"] is True
    assert connector.activities()[-1]["text"] == "HD-7 opened"


async def test_no_reference_and_no_service_url_is_retried_later(make_app, connector: FakeConnector):
    app: AppHarness = await make_app(scheduler=False)
    with pytest.raises(DeliveryError, match="service_url") as caught:
        await deliver(app, "dm", user=ANA_ID, text="hi")
    assert not caught.value.permanent and caught.value.retry_after == 300.0


async def test_a_dm_in_a_chat_the_bot_opened_can_be_updated_in_place(
    make_app, connector: FakeConnector
):
    """Without `teams.service_url` a DM to someone the bot has no chat with opens one on the
    route of the latest conversation; editing that DM later (an identity request whose buttons
    stop counting) must reach the same chat, not wait for a reference that is never stored."""
    app: AppHarness = await make_app(scheduler=False)
    await app.teams(message(connector.service_url, "hello"))  # Tom: the bot's route is known
    await connector.wait_for(lambda r: r.method == "POST")
    sent = await deliver(app, "dm", user=ANA_ID, card=CARD.to_dict(), text="HD-7")
    [created] = connector.created_conversations()
    assert sent["channel"] == created["_id"]
    await deliver(
        app, "update", channel=sent["channel"], activity_id=sent["activity_id"], text="Answered"
    )
    [update] = connector.updates()
    assert (update["_conversation_id"], update["_activity_id"]) == (
        sent["channel"],
        sent["activity_id"],
    )
    assert update["text"] == "Answered"
    assert len(connector.created_conversations()) == 1
