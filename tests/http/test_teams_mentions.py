"""Teams notes for the technician mention them where a mention is what notifies them.

A reply in a Teams channel's reply chain notifies nobody who does not follow the chain, and
the technician who opened the ticket does not follow the bot's card: an SLA warning there
reached nobody. Such notes (the ones Slack starts with `<@U…>`) now start with `<at>Name</at>`
and carry the Bot Framework mention entity with the technician's Teams id from the ticket; in
the technician's 1:1 chat (notified anyway) and on a note about what they did themselves,
none. Over HTTP through the real app against the fake connector.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from storage.models import Ticket
from tests.fakes.botframework import FakeConnector, mentions
from tests.harness import AppHarness, wait_until
from tests.http.conftest_teams import (
    CHANNEL,
    PEOPLE,
    PERSONAL,
    TECH_ID,
    TENANT,
    card_of,
    form_values,
    message,
    submit_action,
)
from tests.http.test_sla_clock import CONFIG, arrives, say, sla_clock

SLA_CONFIG = {**CONFIG, "sla": {"warn_before": "10m"}}
TOM = "<at>Tom Tech</at>"


async def open_ticket(
    app: AppHarness, connector: FakeConnector, conversation: str, **values: Any
) -> Ticket:
    """A P1 ticket opened by Tom with `ticket new` in `conversation`; once its card is."""
    url = connector.service_url
    asked = await say(app, connector, message(url, "ticket new", conversation=conversation))
    form = card_of(asked[-1])
    data = {
        **submit_action(form)["fallback"]["data"],
        **form_values(**{"client": "", "priority": "P1", **values}),
    }
    await say(app, connector, message(url, "", conversation=conversation, value=data))

    async def carded() -> Ticket | None:
        async with app.services.sessions() as session:
            found = (await session.execute(select(Ticket))).scalar_one_or_none()
        return found if found is not None and found.card_message else None

    await wait_until(carded, what="the ticket card")
    row = await carded()
    assert row is not None
    return row


def posted(connector: FakeConnector, conversation: str, words: str) -> list[dict[str, Any]]:
    return [a for a in connector.activities(conversation) if words in json.dumps(a)]


def no_mention(posted: dict[str, Any]) -> bool:
    return not mentions(posted) and "<at>" not in json.dumps(posted)


async def test_sla_notes_in_a_channel_reply_chain_mention_the_technician(
    make_app, connector: FakeConnector
):
    """Tom opened the ticket in the help channel: the warning and the breach in the card's
    reply chain start with `<at>Tom Tech</at>` and carry the mention entity with his Teams id
    (from the ticket), their words as before. The breach's new post in the channel is for
    the channel: it names him without a mention (as on Slack)."""
    clock, t0 = sla_clock()
    app: AppHarness = await make_app(config=SLA_CONFIG, people=PEOPLE, clock=clock)
    row = await open_ticket(app, connector, CHANNEL)
    clock.set(t0 + timedelta(minutes=20))
    await arrives(lambda: posted(connector, CHANNEL, "SLA warning"), "the warning")
    [warning] = posted(connector, CHANNEL, "SLA warning")
    assert warning["_reply_to_id"] == row.card_message
    words = f"SLA warning: {row.number} (P1) is due to get its first response by"
    assert warning["text"].startswith(f"{TOM} {words}"), warning["text"]
    assert mentions(warning) == [
        {"type": "mention", "text": TOM, "mentioned": {"id": TECH_ID, "name": "Tom Tech"}}
    ]
    assert warning["textFormat"] == "markdown"

    clock.set(t0 + timedelta(minutes=30))
    await arrives(lambda: len(posted(connector, CHANNEL, "SLA breach")) == 2, "the breach")
    in_chain, in_channel = sorted(
        posted(connector, CHANNEL, "SLA breach"), key=lambda a: a["_reply_to_id"] is None
    )
    assert in_chain["_reply_to_id"] == row.card_message
    assert in_chain["text"].startswith(f"{TOM} SLA breach: {row.number} (P1) missed")
    assert [m["mentioned"]["id"] for m in mentions(in_chain)] == [TECH_ID]
    assert in_channel["_reply_to_id"] is None and no_mention(in_channel)


async def test_a_note_in_the_technicians_1_1_chat_mentions_nobody(
    make_app, connector: FakeConnector
):
    """A ticket opened in Tom's 1:1 chat with the bot: the warning there notifies him anyway
    (as a Slack DM does), so it carries no mention."""
    clock, t0 = sla_clock()
    app: AppHarness = await make_app(config=SLA_CONFIG, people=PEOPLE, clock=clock)
    row = await open_ticket(app, connector, PERSONAL)
    clock.set(t0 + timedelta(minutes=20))
    await arrives(lambda: posted(connector, PERSONAL, "SLA warning"), "the warning")
    [warning] = posted(connector, PERSONAL, "SLA warning")
    assert warning["_reply_to_id"] == row.card_message
    assert warning["text"].startswith(f"SLA warning: {row.number} (P1)"), warning["text"]
    assert no_mention(warning)


CY = {"email": "cy@example.com", "name": "Cy Solo", "teams_id": "29:1cy", "phone": "+1 555 0199"}


async def test_a_note_about_what_the_technician_did_themselves_mentions_nobody(
    make_app, connector: FakeConnector
):
    """Tom records the call-back (`ticket verify HD-1 called-back` in the channel): the note
    in the card's reply chain is about what he did himself (tell_technician mention=False),
    so it pings nobody, while a note he did not cause there (the warning) mentions him."""
    clock, t0 = sla_clock()
    config = {**SLA_CONFIG, "teams": {"service_url": connector.service_url, "tenant_id": TENANT}}
    app: AppHarness = await make_app(config=config, people=[*PEOPLE, CY], clock=clock)
    row = await open_ticket(app, connector, CHANNEL, requester="cy@example.com", priority="P2")
    url = connector.service_url
    await say(app, connector, message(url, f"ticket verify {row.number}", conversation=CHANNEL))
    answer = await say(
        app,
        connector,
        message(url, f"ticket verify {row.number} called-back", conversation=CHANNEL),
    )
    assert "confirmed by call-back" in json.dumps(answer)
    note = f"Identity confirmed for {row.number}"

    def told() -> list[dict[str, Any]]:
        return [a for a in posted(connector, CHANNEL, note) if a["_reply_to_id"]]

    await wait_until(told, what="the call-back note in the reply chain")
    [recorded] = told()
    assert recorded["_reply_to_id"] == row.card_message
    assert no_mention(recorded), recorded
    # `verify` was his first response: the resolve target's warning (P2: a day) is next.
    clock.set(t0 + timedelta(hours=23, minutes=55))
    await arrives(lambda: posted(connector, CHANNEL, "SLA warning"), "the warning")
    [warning] = posted(connector, CHANNEL, "SLA warning")
    assert warning["text"].startswith(TOM) and len(mentions(warning)) == 1


ODD = "Tom *Tech* <Ops> & R&D AT&amp;T O'Neil_Jr"
ODD_TAG = "<at>Tom &#42;Tech&#42; &lt;Ops> & R&D AT&amp;amp;T O'Neil_Jr</at>"


async def test_a_name_with_markup_characters_is_escaped_only_where_it_would_start_markup(
    make_app, connector: FakeConnector
):
    """The name is directory data: what would start markup in it (`*`, `<`, an entity's `&`)
    is a character reference in the `<at>` text, so it cannot close the mention, start a tag
    or format the message; `&` before a space, `R&D`, `'` and `_` inside a word stay as they
    are. The entity's text is the same `<at>…</at>`; its name is the name as it is."""
    clock, t0 = sla_clock()
    people = [{**p, "name": ODD} if p["teams_id"] == TECH_ID else p for p in PEOPLE]
    app: AppHarness = await make_app(config=SLA_CONFIG, people=people, clock=clock)
    row = await open_ticket(app, connector, CHANNEL)
    assert row.technician_name == ODD
    clock.set(t0 + timedelta(minutes=20))
    await arrives(lambda: posted(connector, CHANNEL, "SLA warning"), "the warning")
    [warning] = posted(connector, CHANNEL, "SLA warning")
    assert warning["text"].startswith(f"{ODD_TAG} SLA warning: {row.number}"), warning["text"]
    assert mentions(warning) == [
        {"type": "mention", "text": ODD_TAG, "mentioned": {"id": TECH_ID, "name": ODD}}
    ]
