"""SPEC "Identity confirmation": `verify` on a ticket whose check is still pending sends the
manager a fresh request; the earlier one's buttons stop counting. Over HTTP, both platforms,
both databases: the old Approve/Deny changes nothing (the manager is told to use the latest
message), the fresh one decides. The answer window counts from when the request was sent, and
after a late answer the check can be restarted: on Slack, and on Teams with the manager
answering by Action.Execute or Action.Submit."""

from __future__ import annotations

import asyncio
import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from storage.models import OutboxMessage, TicketEvent
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, TestClock, event_kinds, only_ticket, wait_until
from tests.harness import slack_button as button
from tests.http import test_identity_slack as slack
from tests.http import test_identity_teams as teams
from tests.http.conftest_teams import PERSONAL, TENANT, activity


async def test_slack_a_second_verify_retires_the_first_requests_buttons(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app = await slack.start(make_app, slack_api)
    await slack.new_ticket(app, slack_api)
    await app.slash("verify HD-1")
    first = await slack.manager_dm(slack_api)
    await app.slash("verify HD-1")  # still pending: ask again
    fresh = await slack.manager_dm(slack_api, count=2)
    assert button(fresh, "Approve")["value"] != button(first, "Approve")["value"]
    assert (await only_ticket(app)).identity_state == "pending"

    for title in ("Deny", "Approve"):
        stale = await slack.click(app, slack_api, first, title, "U0BO")
        assert "replaced by a newer one" in stale, stale
    assert (await only_ticket(app)).identity_state == "pending"
    kinds = await event_kinds(app)
    assert "identity.denied" not in kinds and "identity.approved" not in kinds
    assert "ticket.flagged" not in kinds and not slack.posts_to(slack_api, "C0SECURITY")

    assert "confirmed the identity for HD-1" in await slack.click(
        app, slack_api, fresh, "Approve", "U0BO"
    )
    assert (await only_ticket(app)).identity_state == "confirmed"
    # The old request still changes nothing once the fresh one was answered.
    late = await slack.click(app, slack_api, first, "Deny", "U0BO")
    assert "replaced by a newer one" in late, late
    assert (await only_ticket(app)).identity_state == "confirmed"
    assert "identity.denied" not in await event_kinds(app)


async def test_teams_a_second_verify_retires_the_first_requests_buttons(
    make_app: Any, connector: FakeConnector
) -> None:
    app = await teams.start(make_app, connector)
    await teams.new_ticket(app, connector)
    await app.teams(teams.message(connector.service_url, "ticket verify HD-1"))
    chat, first = await teams.manager_request(connector)
    await app.teams(teams.message(connector.service_url, "ticket verify HD-1"))
    same_chat, fresh = await teams.manager_request(connector, count=2)
    assert same_chat == chat
    old_check = teams.action(first, "Approve")["data"]["check"]
    assert teams.action(fresh, "Approve")["data"]["check"] != old_check

    for title in ("Deny", "Approve"):
        stale = await teams.execute(
            app, connector, first, title, user=teams.BO_ID, conversation=chat
        )
        assert "replaced by a newer one" in stale, stale
    assert (await only_ticket(app)).identity_state == "pending"
    kinds = await event_kinds(app)
    assert "identity.denied" not in kinds and "identity.approved" not in kinds

    approved = await teams.execute(
        app, connector, fresh, "Approve", user=teams.BO_ID, conversation=chat
    )
    assert "confirmed the identity for HD-1" in approved
    assert (await only_ticket(app)).identity_state == "confirmed"
    await wait_until(lambda: "Identity confirmed for HD-1" in teams.texts(connector, PERSONAL))


async def test_slack_the_answer_window_counts_from_when_the_request_was_sent(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """identity.approval_ttl 2s; Slack holds the DM back for 3 s (429, Retry-After: 3). Bo's
    answer 0.5 s after it reached him is in time (SPEC: counted from when it was sent), though
    more than 2 s after `verify`; an answer 2.5 s after it reached him is not."""
    app = await slack.start(make_app, slack_api, approval_ttl="2s")
    await slack.new_ticket(app, slack_api)
    slack_api.fail("conversations.open", 429, times=1, headers={"Retry-After": "3"})
    asked = time.monotonic()
    await app.slash("verify HD-1")
    await slack_api.wait_for_method("conversations.open", count=2, timeout=10)
    await wait_until(lambda: slack.posts_to(slack_api, "DU0BO"), what="the request")
    dm = slack.posts_to(slack_api, "DU0BO")[0]
    assert time.monotonic() - asked > 2.5
    await asyncio.sleep(0.5)
    assert "confirmed the identity for HD-1" in await slack.click(
        app, slack_api, dm, "Approve", "U0BO"
    )
    assert (await only_ticket(app)).identity_state == "confirmed"


async def test_slack_a_request_held_back_shows_the_deadline_counted_from_its_send(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """Slack holds the manager's DM back (429) while 40 minutes pass on the bot's clock: the
    request Bo gets says to answer by 40 minutes after the queuing plus the 30 minute window
    (SPEC: counted from when it was sent), not by a time already passed when it arrived; and
    his answer 5 minutes after it reached him counts."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    clock = TestClock(start)
    app: AppHarness = await make_app(
        slack=slack_api,
        config={**slack.CONFIG, "identity": {"approval_ttl": "30m"}},
        people=slack.PEOPLE,
        clock=clock,
    )
    await slack.new_ticket(app, slack_api)
    slack_api.fail("conversations.open", 429, times=1, headers={"Retry-After": "2"})
    await app.slash("verify HD-1")
    await slack_api.wait_for_method("conversations.open", count=1, timeout=10)
    clock.set(start + timedelta(minutes=40))  # the outbox holds only the DM, waiting
    await wait_until(lambda: slack.posts_to(slack_api, "DU0BO"), what="the request", timeout=15)
    dm = slack.posts_to(slack_api, "DU0BO")[0]
    shown = answer_by(dm)
    sent = start + timedelta(minutes=40)
    assert sent + timedelta(minutes=29) <= shown <= sent + timedelta(minutes=31), shown
    clock.set(sent + timedelta(minutes=5))  # past the deadline counted from the queuing
    answered = await slack.click(app, slack_api, dm, "Approve", "U0BO")
    assert "you confirmed the identity for HD-1" in answered, answered
    assert (await only_ticket(app)).identity_state == "confirmed"


def answer_by(post: dict[str, Any]) -> datetime:
    """The request's Answer by, as shown in its Block Kit."""
    text = json.dumps(post.get("blocks"))
    found = re.search(r"Answer by\*?[^0-9]*(\d{4}-\d\d-\d\d \d\d:\d\d) UTC", text)
    assert found, text
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


# -- Teams: the manager answers with Action.Execute or Action.Submit -------------------------


async def submit(
    app: AppHarness, fake: FakeConnector, card: dict[str, Any], title: str, chat: str
) -> None:
    """Bo presses `title` as an Action.Submit (a message activity carrying the data)."""
    data = teams.action(card, title)["data"]
    sent = activity(fake.service_url, value=data, user=teams.BO_ID, conversation=chat)
    assert (await app.teams(sent)).status in (200, 201)


def card_answer_by(card: dict[str, Any]) -> datetime:
    """The request's Answer by, as shown on its Adaptive Card."""
    text = json.dumps(card).replace("\\\\", "")
    found = re.search(r"Answer by[^0-9]*(\d{4}-\d\d-\d\d \d\d:\d\d) UTC", text)
    assert found, text
    return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


async def test_teams_the_answer_window_counts_from_when_the_request_was_sent(
    make_app: Any, connector: FakeConnector
) -> None:
    """identity.approval_ttl 2s; the connector holds back the chat with Bo for 3 s (429,
    Retry-After: 3). Bo's Execute 0.5 s after the request reached him is in time, though more
    than 2 s after `verify`."""
    app = await teams.start(make_app, connector, approval_ttl="2s")
    await teams.new_ticket(app, connector)
    connector.fail("/v3/conversations", 429, times=1, headers={"Retry-After": "3"})
    asked = time.monotonic()
    await app.teams(teams.message(connector.service_url, "ticket verify HD-1"))
    chat, card = await teams.manager_request(connector)
    assert time.monotonic() - asked > 2.5
    await asyncio.sleep(0.5)
    approved = await teams.execute(
        app, connector, card, "Approve", user=teams.BO_ID, conversation=chat
    )
    assert "confirmed the identity for HD-1" in approved, approved
    assert (await only_ticket(app)).identity_state == "confirmed"


async def test_teams_a_request_held_back_shows_the_deadline_counted_from_its_send(
    make_app: Any, connector: FakeConnector
) -> None:
    """The chat with Bo is held back (429) while 40 minutes pass on the bot's clock: his card
    says to answer by 40 minutes after the queuing plus the 30 minute window, and his Submit
    5 minutes after it reached him counts."""
    start = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    clock = TestClock(start)
    config = {
        "teams": {"service_url": connector.service_url, "tenant_id": TENANT},
        "queues": {"security": {"teams": teams.SECURITY}},
        "identity": {"approval_ttl": "30m"},
    }
    app: AppHarness = await make_app(config=config, people=teams.PEOPLE, clock=clock)
    await teams.new_ticket(app, connector)
    connector.fail("/v3/conversations", 429, times=1, headers={"Retry-After": "2"})
    await app.teams(teams.message(connector.service_url, "ticket verify HD-1"))
    await wait_until(lambda: connector.calls("/v3/conversations") != [], timeout=10)
    clock.set(start + timedelta(minutes=40))  # the outbox holds only the request, waiting
    chat, card = await teams.manager_request(connector)
    shown = card_answer_by(card)
    sent = start + timedelta(minutes=40)
    assert sent + timedelta(minutes=29) <= shown <= sent + timedelta(minutes=31), shown
    clock.set(sent + timedelta(minutes=5))  # past the deadline counted from the queuing
    await submit(app, connector, card, "Approve", chat)
    await wait_until(
        lambda: "Identity confirmed for HD-1" in teams.texts(connector, PERSONAL),
        what="the technician told",
    )
    assert (await only_ticket(app)).identity_state == "confirmed"


async def test_teams_late_answer_is_refused_audited_and_verify_restarts(
    make_app: Any, connector: FakeConnector
) -> None:
    """A late Deny (Action.Submit) is refused, audited as a Deny with who and where, and the
    technician told it was a Deny; `verify` then sends a fresh request to the same chat, whose
    Approve (Action.Execute) confirms, while the expired one's buttons still change nothing."""
    app = await teams.start(make_app, connector, approval_ttl="1s")
    await teams.new_ticket(app, connector)
    await app.teams(teams.message(connector.service_url, "ticket verify HD-1"))
    chat, first = await teams.manager_request(connector)
    await asyncio.sleep(1.5)
    await submit(app, connector, first, "Deny", chat)
    await wait_until(lambda: "expired" in teams.said(connector, chat), what="Bo told it was late")
    await wait_until(
        lambda: "pressed Deny after the request expired" in teams.said(connector, PERSONAL),
        what="the technician told of the late Deny",
    )
    assert (await only_ticket(app)).identity_state == "required"
    async with app.services.sessions() as session:
        query = select(TicketEvent).where(TicketEvent.kind == "identity.expired")
        [expired] = (await session.execute(query)).scalars().all()
    assert (expired.actor_platform, expired.actor_id, expired.channel) == (
        "teams",
        teams.BO_ID,
        chat,
    )
    assert expired.data["answer"] == "deny"
    assert "ticket.flagged" not in await event_kinds(app)

    await app.teams(teams.message(connector.service_url, "ticket verify HD-1"))
    same_chat, fresh = await teams.manager_request(connector, count=2)
    assert same_chat == chat
    old = teams.action(first, "Approve")["data"]["check"]
    assert teams.action(fresh, "Approve")["data"]["check"] != old
    stale = await teams.execute(
        app, connector, first, "Approve", user=teams.BO_ID, conversation=chat
    )
    assert "has expired, so your answer was not recorded" in stale, stale
    assert (await only_ticket(app)).identity_state == "pending"
    approved = await teams.execute(
        app, connector, fresh, "Approve", user=teams.BO_ID, conversation=chat
    )
    assert "confirmed the identity for HD-1" in approved, approved
    assert (await only_ticket(app)).identity_state == "confirmed"


async def _request_rows(app: AppHarness) -> list[OutboxMessage]:
    """The managers' requests queued so far (oldest first)."""
    async with app.services.sessions() as session:
        query = (
            select(OutboxMessage)
            .where(OutboxMessage.dedup_key.like("identity:%"))
            .order_by(OutboxMessage.id)
        )
        return list((await session.execute(query)).scalars().all())


async def _stale_one_dropped(app: AppHarness) -> bool:
    rows = await _request_rows(app)
    return len(rows) == 2 and [r.status for r in rows] == ["cancelled", "delivered"]


async def test_slack_a_request_held_back_and_replaced_is_never_sent(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """Slack holds the first request back (429); `verify` again before it went out. The
    replaced request reached Bo anyway, beside (here after) the fresh one, with buttons that
    no longer count: it is not sent at all, and only the fresh one reaches him."""
    app = await slack.start(make_app, slack_api)
    await slack.new_ticket(app, slack_api)
    slack_api.fail("conversations.open", 429, times=1, headers={"Retry-After": "2"})
    await app.slash("verify HD-1")
    await slack_api.wait_for_method("conversations.open", count=1, timeout=10)
    await app.slash("verify HD-1")
    for _ in range(200):
        if await _stale_one_dropped(app):
            break
        await asyncio.sleep(0.05)
    assert await _stale_one_dropped(app)
    await asyncio.sleep(3)  # past the first request's Retry-After: still nothing more
    [only] = slack.posts_to(slack_api, "DU0BO")
    assert "confirmed the identity for HD-1" in await slack.click(
        app, slack_api, only, "Approve", "U0BO"
    )
    assert (await only_ticket(app)).identity_state == "confirmed"


async def test_teams_a_request_held_back_and_replaced_is_never_sent(
    make_app: Any, connector: FakeConnector
) -> None:
    config = {
        "teams": {"service_url": connector.service_url, "tenant_id": TENANT},
        "queues": {"security": {"teams": teams.SECURITY}},
    }
    app: AppHarness = await make_app(config=config, people=teams.PEOPLE)
    await teams.new_ticket(app, connector)
    connector.fail("/v3/conversations", 429, times=1, headers={"Retry-After": "2"})
    await app.teams(teams.message(connector.service_url, "ticket verify HD-1"))
    await wait_until(lambda: connector.calls("/v3/conversations") != [], timeout=10)
    await app.teams(teams.message(connector.service_url, "ticket verify HD-1"))
    for _ in range(200):
        if await _stale_one_dropped(app):
            break
        await asyncio.sleep(0.05)
    assert await _stale_one_dropped(app)
    await asyncio.sleep(3)
    chat, card = await teams.manager_request(connector)
    requests = [a for a in connector.activities(chat) if a.get("attachments")]
    assert len(requests) == 1
    await submit(app, connector, card, "Approve", chat)
    await wait_until(
        lambda: "Identity confirmed for HD-1" in teams.texts(connector, PERSONAL),
        what="the technician told",
    )
