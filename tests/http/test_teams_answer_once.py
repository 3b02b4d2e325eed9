"""A redelivered Teams activity (same id, same conversation) is answered once.

Bot Framework sends an activity again, with its id, when the bot's turn took longer than the
channel waits (about 15 s) or a connector hop retried it. A Teams answer is a message of its
own, so answering the repeat shows the person the answer twice: every answer to a message
activity (read-only commands, refusals, the hint) and the welcome of a redelivered
`conversationUpdate` go out once per activity id (handlers/dispatch `first_answer`). A delivery
that failed before it had an answer is answered when it comes again; an answer the connector
refused for the moment is sent once the wait is over, and its repeat adds nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select, text

from storage.models import TimeEntry
from tests.fakes.botframework import FakeConnector
from tests.harness import AppHarness, wait_until
from tests.http.conftest_teams import (
    ANA_ID,
    BOT_ID,
    CHANNEL,
    PEOPLE,
    PERSONAL,
    TENANT,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)

HINT = "start your message with"


async def start(make_app: Any, connector: FakeConnector) -> AppHarness:
    config = {"teams": {"service_url": connector.service_url, "tenant_id": TENANT}}
    app: AppHarness = await make_app(config=config, people=PEOPLE)
    return app


async def open_ticket(app: AppHarness, connector: FakeConnector) -> None:
    """HD-1 through the intake card, its card answered in the technician's chat."""
    assert (await app.teams(message(connector.service_url, "ticket new Printer jams"))).status
    form = card_of(connector.activities(PERSONAL)[-1])
    value = {**submit_action(form)["fallback"]["data"], **form_values()}
    assert (await app.teams(activity(connector.service_url, value=value))).status == 201
    await wait_until(lambda: any("HD-1 (P" in str(a) for a in connector.activities(PERSONAL)))


def answers(connector: FakeConnector) -> tuple[int, int]:
    """How many messages the bot posted and 1:1 chats it opened, every conversation."""
    return len(connector.activities()), len(connector.created_conversations())


def since(connector: FakeConnector, before: tuple[int, int]) -> list[dict[str, Any]]:
    return [
        *connector.activities()[before[0] :],
        *connector.created_conversations()[before[1] :],
    ]


def validated(posted: list[dict[str, Any]]) -> None:
    for one in posted:
        for attachment in one.get("attachments") or []:
            if attachment.get("contentType") == "application/vnd.microsoft.card.adaptive":
                card_of({**one, "attachments": [attachment]})


async def twice(
    app: AppHarness, connector: FakeConnector, body: dict[str, Any], *, posts: int = 1
) -> list[Any]:
    """Deliver `body`, then the same activity again: the first one posts `posts` times (one
    message; a 1:1 chat opened for it counts too), the second posts nothing."""
    assert app.services.teams is not None
    before = answers(connector)
    assert (await app.teams(body)).status == 201
    await app.services.teams.bot.drain()
    first = since(connector, before)
    assert len(first) == posts, (body.get("text"), first)
    assert (await app.teams(body)).status == 201
    await app.services.teams.bot.drain()
    again = [a for a in since(connector, before) if a not in first]
    assert again == [], f"{body.get('text')!r} was answered again: {again}"
    validated(first)
    return first


async def test_a_redelivered_read_only_command_is_answered_once(
    make_app: Any, connector: FakeConnector
) -> None:
    app = await start(make_app, connector)
    await open_ticket(app, connector)
    url = connector.service_url
    for said in (
        "ticket show HD-1",
        "ticket mine",
        "ticket help",
        "ticket",
        "ticket kb printer jams",
        "ticket similar HD-1",
        "ticket new Scanner jams",  # the intake form
        "ticket show HD-99",  # a refusal
        "ticket verify HD-99",  # a state-changing command's refusal: nothing was claimed
        "ticket frobnicate",
        "good morning",  # the hint
    ):
        await twice(app, connector, message(url, said))
    # In a channel: an answer meant for one person goes to their 1:1 chat (opened once).
    channel = message(url, "ticket mine", conversation=CHANNEL)
    await twice(app, connector, channel, posts=2)  # the 1:1 chat opened, the answer in it
    assert connector.activities(CHANNEL) == []
    # A message naming a ticket that records nothing: the hint, once.
    [hint] = await twice(app, connector, message(url, "about HD-1, nothing else", user=ANA_ID))
    assert HINT in hint["text"]
    # A card's submission the bot does not know.
    await twice(app, connector, activity(url, value={"action": "no.such.action"}))


async def test_a_redelivery_while_the_first_answer_is_still_on_its_way_is_not_answered(
    make_app: Any, connector: FakeConnector
) -> None:
    """The slow answer Teams redelivers after: the repeat arrives while the first delivery is
    still sending its answer."""
    app = await start(make_app, connector)
    await open_ticket(app, connector)
    before = len(connector.activities(PERSONAL))
    connector.set_delay("/v3/conversations/*", 1.0)
    body = message(connector.service_url, "ticket show HD-1")
    first = asyncio.ensure_future(app.teams(body))
    await asyncio.sleep(0.3)
    second = await app.teams(body)
    assert second.status == 201 and (await first).status == 201
    connector.set_delay("/v3/conversations/*", 0)
    [shown] = connector.activities(PERSONAL)[before:]
    assert "HD-1" in str(card_of(shown))


async def test_an_answer_refused_for_the_moment_is_sent_once_and_not_again_for_the_repeat(
    make_app: Any, connector: FakeConnector
) -> None:
    app = await start(make_app, connector)
    await open_ticket(app, connector)
    before = len(connector.activities(PERSONAL))
    connector.throttle(PERSONAL, retry_after=1.0)
    body = message(connector.service_url, "ticket show HD-1")
    assert (await app.teams(body)).status == 201
    assert connector.activities(PERSONAL)[before:] == []  # refused: owed through the outbox
    assert (await app.teams(body)).status == 201
    await wait_until(lambda: len(connector.activities(PERSONAL)) > before, timeout=10)
    await asyncio.sleep(1.5)  # nothing more comes
    [shown] = connector.activities(PERSONAL)[before:]
    assert "HD-1" in str(card_of(shown))


async def test_a_delivery_that_failed_before_its_answer_is_answered_when_it_comes_again(
    make_app: Any, connector: FakeConnector, db_url: str
) -> None:
    if not db_url.startswith("sqlite"):
        pytest.skip("breaks the schema on purpose: done on the per-test SQLite copy only")
    app = await start(make_app, connector)
    await open_ticket(app, connector)
    before = len(connector.activities(PERSONAL))
    body = message(connector.service_url, "ticket show HD-1")
    async with app.services.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE tickets RENAME TO tickets_gone"))
    assert (await app.teams(body)).status == 201
    [failed] = connector.activities(PERSONAL)[before:]
    assert "Something went wrong" in failed["text"]
    async with app.services.engine.begin() as conn:
        await conn.execute(text("ALTER TABLE tickets_gone RENAME TO tickets"))
    assert (await app.teams(body)).status == 201
    [shown] = connector.activities(PERSONAL)[before + 1 :]
    assert "HD-1" in str(card_of(shown))
    assert (await app.teams(body)).status == 201
    assert len(connector.activities(PERSONAL)) == before + 2


async def test_a_redelivered_conversation_update_welcomes_once(
    make_app: Any, connector: FakeConnector
) -> None:
    app = await start(make_app, connector)
    added = activity(
        connector.service_url,
        type="conversationUpdate",
        conversation=CHANNEL,
        membersAdded=[{"id": BOT_ID}],
    )
    for _ in range(2):
        assert (await app.teams(added)).status == 201
    [welcome] = connector.activities(CHANNEL)
    assert card_of(welcome)["body"][0]["text"] == "Hi, I am the help-desk bot"
    # Another install (its own activity id) is welcomed.
    assert (await app.teams({**added, "id": "1700000009999"})).status == 201
    assert len(connector.activities(CHANNEL)) == 2


async def test_one_id_reused_for_different_messages_has_each_answered(
    make_app: Any, connector: FakeConnector
) -> None:
    """A redelivery is the same activity, content and all: a sender that gives different
    messages one id (a client or test suite built from one sample activity) is answered for
    each, and a true repeat of any of them still is not."""
    app = await start(make_app, connector)
    url = connector.service_url
    said = ("ticket help", "ticket mine", "ticket show HD-99")
    for text_said in said:
        await twice(app, connector, {**message(url, text_said), "id": "1485983408511"})
    assert len(connector.activities(PERSONAL)) == len(said)


async def test_one_id_reused_for_different_changes_makes_each_once(
    make_app: Any, connector: FakeConnector
) -> None:
    """The same holds for changes: two different `time` entries sent under one activity id are
    both recorded, and a true repeat of the second records nothing more."""
    app = await start(make_app, connector)
    await open_ticket(app, connector)
    url = connector.service_url

    async def entries() -> int:
        async with app.services.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(TimeEntry)) or 0)

    first = {**message(url, "ticket time HD-1 10m"), "id": "1485983408511"}
    second = {**message(url, "ticket time HD-1 15m"), "id": "1485983408511"}
    for body in (first, second, second):
        assert (await app.teams(body)).status == 201
    assert await entries() == 2
