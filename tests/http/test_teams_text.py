"""What Teams sends as a message's text: `ticket …` commands as people really type them
(after a mention, with no-break spaces, on several lines, ending a sentence) and the HTML
character references Teams puts in the text; stored and prefilled as typed."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from storage.models import TimeEntry
from tests.fakes.botframework import FakeConnector
from tests.harness import AppHarness, only_ticket
from tests.http.conftest_teams import (
    ANA_ID,
    BOT_ID,
    CHANNEL,
    CONFIG,
    PEOPLE,
    PERSONAL,
    activity,
    card_of,
    form_values,
    inputs,
    message,
    submit_action,
)


async def say(app: AppHarness, fake: FakeConnector, text: str) -> dict[str, Any]:
    """Send `text` in the technician's 1:1 chat; the bot's answer."""
    before = len(fake.activities())
    response = await app.teams(message(fake.service_url, text))
    assert response.status == 201, text
    await fake.wait_for(lambda r: r.method == "POST", count=before + 1)
    return fake.activities()[-1]


async def with_ticket(make_app: Any, fake: FakeConnector) -> AppHarness:
    app: AppHarness = await make_app(config=CONFIG, people=PEOPLE)
    form = card_of(await say(app, fake, "ticket new"))
    value = {**submit_action(form)["fallback"]["data"], **form_values()}
    assert (await app.teams(activity(fake.service_url, value=value))).status == 201
    await fake.wait_for(lambda r: r.method == "POST", count=2)
    assert (await only_ticket(app)).number == "HD-1"
    return app


def card_title(answer: dict[str, Any]) -> str:
    assert answer.get("attachments"), f"no card but {answer.get('text')!r}"
    return str(card_of(answer)["body"][0]["text"])


async def test_commands_typed_as_sentences_and_on_several_lines(
    make_app: Any, connector: FakeConnector
) -> None:
    """`ticket mine.` was the help card and `ticket show HD-1?` "Which ticket?"; a line break
    or a tab after `ticket` (Shift+Enter) made the message no command at all (the hint)."""
    app = await with_ticket(make_app, connector)
    for text in (
        "<at>Helpdesk</at>&nbsp;TICKET SHOW hd-1.",
        "ticket show HD-1?",
        "ticket show (HD-1)",
        "ticket\nshow HD-1",
        "Ticket:\r\n\tshow\u00a0HD-1!",
    ):
        assert card_title(await say(app, connector, text)).startswith("HD-1 (P2)"), text
    for text in ("ticket mine.", "<at>Helpdesk</at> ticket\nmine?", "ticket MINE!"):
        answer = await say(app, connector, text)
        assert answer["text"].startswith("Your open tickets (1):"), (text, answer)
    # Words that only look like a command are still not one.
    assert card_title(await say(app, connector, "ticket minefield")) == "Help desk commands"
    answer = await say(app, connector, "ticketing is slow today")
    assert "start your message with" in answer["text"]


async def test_html_character_references_are_decoded_before_storing(
    make_app: Any, connector: FakeConnector
) -> None:
    """Typed `ticket new R&D <VPN> it's "down"`: Teams sends `&amp;`, `&lt;`, `&#39;` and
    `&quot;`, which were prefilled and stored as such. A bare `&` (`AT&T`), a name without its
    `;` and a typed `&lt;at&gt;` (no mention) stay as typed."""
    app = await with_ticket(make_app, connector)
    typed = "R&amp;D &lt;VPN&gt; it&#39;s &quot;down&quot; for AT&T &copy &lt;at&gt;x&lt;/at&gt;"
    form = card_of(await say(app, connector, f"<at>Helpdesk</at> ticket new {typed}"))
    summary = next(i for i in inputs(form) if i["id"] == "summary")
    assert summary["value"] == 'R&D <VPN> it\'s "down" for AT&T &copy <at>x</at>'

    answer = await say(app, connector, "ticket time HD-1 30m swapped &lt;toner&gt; &amp; drum")
    assert "30m" in answer["text"], answer
    async with app.services.sessions() as session:
        note = (await session.execute(select(TimeEntry.note))).scalar_one()
    assert note == "swapped <toner> & drum"


async def test_first_response_says_where_in_teams_in_words_not_a_conversation_id(
    make_app: Any, connector: FakeConnector
) -> None:
    """Seen in the Agents Playground: every card after the first response said `via teams
    (74402055-bfcb-4c6b-9f57-c7add6c91c2f)`, the Teams conversation's id, which tells a
    technician nothing."""

    async def shown(number: str) -> str:
        card = card_of(await say(app, connector, f"ticket show {number}"))
        line = next(e["text"] for e in card["body"] if "First response" in e.get("text", ""))
        return str(line)

    app = await with_ticket(make_app, connector)
    await say(app, connector, "ticket time HD-1 30m")
    first = await shown("HD-1")
    assert first.endswith("via Teams, in the ticket's conversation"), first
    assert PERSONAL not in first

    # A second ticket, opened in the 1:1 chat, answered from a channel.
    form = card_of(await say(app, connector, "ticket new Scanner"))
    value = {**submit_action(form)["fallback"]["data"], **form_values(summary="Scanner")}
    posted = len(connector.activities())
    assert (await app.teams(activity(connector.service_url, value=value))).status == 201
    await connector.wait_for(lambda r: r.method == "POST", count=posted + 1)
    sent = message(connector.service_url, "ticket time HD-2 15m", conversation=CHANNEL)
    assert (await app.teams(sent)).status == 201
    await connector.wait_for(lambda r: r.method == "POST", count=posted + 2)
    second = await shown("HD-2")
    assert second.endswith("via Teams, in a channel"), second
    assert CHANNEL not in second


async def test_a_time_entry_on_show_has_the_date_as_its_label_and_who_in_the_value(
    make_app: Any, connector: FakeConnector
) -> None:
    """Seen in the Agents Playground: `show` listed a time entry under a label holding the
    date, the technician's name and e-mail (`2026-12-07 08:38 UTC Alex Wilber (alexw@example.c
    om)`), run together in the narrow bold column with the address broken in two."""
    app = await with_ticket(make_app, connector)
    await say(app, connector, "ticket time HD-1 30m checked the spooler")
    card = card_of(await say(app, connector, "ticket show HD-1"))
    at = card["body"].index(
        next(e for e in card["body"] if e.get("text", "").startswith("Time entries"))
    )
    [entry] = card["body"][at + 1]["facts"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", entry["title"]), entry
    assert entry["value"] == "30m by Tom Tech (tech@example.com) - checked the spooler"


async def test_the_bots_own_mention_anywhere_in_the_text_is_not_part_of_the_command(
    make_app, connector: FakeConnector
):
    """In a channel the bot hears only messages that @mention it, and people put the mention
    where they like: at the end (`ticket new Printer jams @Helpdesk`) it became part of the
    summary (`Printer jams Helpdesk`), and `ticket @Helpdesk` was `ticket Helpdesk`, the usage
    instead of the intake form. The mention entities name the bot (`recipient.id`); a person's
    mention stays as their name."""
    app: AppHarness = await make_app(config=CONFIG, people=PEOPLE)
    bot = "<at>Helpdesk</at>"
    ana = "<at>Ana Lopez</at>"
    entities = [
        {"type": "mention", "text": bot, "mentioned": {"id": BOT_ID, "name": "Helpdesk"}},
        {"type": "mention", "text": ana, "mentioned": {"id": ANA_ID, "name": "Ana Lopez"}},
        {"type": "clientInfo", "locale": "en-US"},
    ]

    async def form_in_channel(text: str) -> dict[str, Any]:
        before = len(connector.activities())
        body = message(connector.service_url, text, conversation=CHANNEL, entities=entities)
        assert (await app.teams(body)).status == 201
        await connector.wait_for(lambda r: r.method == "POST", count=before + 1)
        [answer] = connector.activities()[before:]
        assert answer["_conversation_id"] == CHANNEL, answer.get("text")
        assert card_title(answer) == "New ticket", text
        return card_of(answer)

    def summary(card: dict[str, Any]) -> Any:
        return next(i for i in inputs(card) if i["id"] == "summary").get("value")

    assert summary(await form_in_channel(f"ticket new Printer jams {bot}")) == "Printer jams"
    assert summary(await form_in_channel(f"ticket new {bot} Printer jams")) == "Printer jams"
    assert not summary(await form_in_channel(f"ticket {bot}"))
    card = await form_in_channel(f"{bot} ticket new VPN down for {ana} {bot}")
    assert summary(card) == "VPN down for Ana Lopez"
