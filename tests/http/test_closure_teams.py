"""Closure and CSAT over Teams HTTP: form errors on the card, proactive survey, Execute answers."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.engine import make_url

from storage import db
from storage.models import CsatSurvey, Ticket, TimeEntry
from tests.adaptive_schema import validate_adaptive_card
from tests.fakes.botframework import FakeConnector
from tests.harness import AppHarness, wait_until
from tests.http.conftest_teams import (
    ANA_ID,
    CARD_TYPE,
    PERSONAL,
    TECH_ID,
    activity,
    card_of,
    form_values,
    inputs,
    message,
    note_under,
    submit_action,
)

VIC_ID = "29:1vic"
PEOPLE = [
    {"email": "ana@example.com", "name": "Ana Lopez", "teams_id": ANA_ID},
    {"email": "tech@example.com", "name": "Tom Tech", "teams_id": TECH_ID, "technician": True},
    {"email": "vic@example.com", "name": "Vic VIP", "teams_id": VIC_ID, "vip": True},
]
CLOSURE_LABELS = ["Resolution note", "Resolution category", "Time spent", "KB article"]
GOOD_NOTE = "Cleared the print queue on PRN-0042 and reinstalled the HP UPD 7.1 driver"


async def start(make_app: Any, fake: FakeConnector) -> AppHarness:
    config = {
        "teams": {"service_url": fake.service_url, "tenant_id": "t-1"},
        "csat": {"delay": "0s", "vip_followup_delay": "2s"},
    }
    app: AppHarness = await make_app(config=config, people=PEOPLE)
    return app


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def card_text(card: dict[str, Any]) -> str:
    """Every TextBlock and fact of a card, Markdown escapes removed."""
    parts: list[str] = []
    for element in card["body"]:
        if element["type"] == "TextBlock":
            parts.append(element["text"])
        elif element["type"] == "FactSet":
            parts += [f"{f['title']}: {f['value']}" for f in element["facts"]]
    return unescape("\n".join(parts))


async def say(
    app: AppHarness, fake: FakeConnector, value: dict[str, Any] | None = None, text: str = ""
) -> dict[str, Any]:
    """Send a message (or an Action.Submit) in the technician's chat; the card answered."""
    posted = len(fake.activities(PERSONAL))

    def new_cards() -> list[dict[str, Any]]:
        # Queued notes (e.g. the identity check's) may land before or after the answer card.
        return [a for a in fake.activities(PERSONAL)[posted:] if a.get("attachments")]

    sent = activity(fake.service_url, value=value) if value else message(fake.service_url, text)
    assert (await app.teams(sent)).status == 201
    await wait_until(lambda: new_cards() != [])
    return card_of(new_cards()[0])


async def new_ticket(
    app: AppHarness, fake: FakeConnector, requester: str = "ana@example.com", priority: str = "P3"
) -> None:
    form = await say(app, fake, text="ticket new Printer jams")
    values = form_values(requester=requester, priority=priority)
    await say(app, fake, {**submit_action(form)["fallback"]["data"], **values})


async def invoke(
    app: AppHarness,
    fake: FakeConnector,
    verb: str,
    data: dict[str, Any],
    *,
    user: str = TECH_ID,
    conversation: str = PERSONAL,
) -> dict[str, Any]:
    sent = activity(
        fake.service_url,
        type="invoke",
        name="adaptiveCard/action",
        user=user,
        conversation=conversation,
        value={"action": {"type": "Action.Execute", "verb": verb, "data": data}},
    )
    response = await app.teams(sent)
    assert response.status == 200
    body = await response.json()
    assert body["statusCode"] == 200
    if body["type"] == CARD_TYPE:
        validate_adaptive_card(body["value"])
    return body


def close_values(note: str = GOOD_NOTE) -> dict[str, str]:
    return {
        "resolution_note": note,
        "resolution_category": "Incident",
        "time_spent": "1h15m",
        "kb_article": "https://kb.example.com/article/42",
    }


async def ticket(app: AppHarness) -> Ticket:
    async with app.services.sessions() as session:
        return (await session.execute(select(Ticket).order_by(Ticket.id.desc()))).scalars().first()  # type: ignore[return-value]


async def survey_card(fake: FakeConnector, user: str) -> tuple[str, dict[str, Any]]:
    """(chat id, card) of the survey sent to `user` in a proactive 1:1 chat."""

    def chats() -> list[dict[str, Any]]:
        return [c for c in fake.created_conversations() if c["members"][0]["id"] == user]

    await wait_until(lambda: chats() != [])
    chat = chats()[0]["_id"]
    await wait_until(lambda: fake.activities(chat) != [])
    return chat, card_of(fake.activities(chat)[0])


def action(card: dict[str, Any], title: str) -> dict[str, Any]:
    return next(a for a in card["actions"] if a["title"] == title)


async def test_close_survey_and_rating_over_teams(make_app, connector: FakeConnector):
    app = await start(make_app, connector)
    await new_ticket(app, connector)
    form = await say(app, connector, text="ticket close HD-1")
    assert [i["label"] for i in inputs(form)] == CLOSURE_LABELS
    submit = submit_action(form)["fallback"]["data"]
    assert submit == {"action": "ticket.close.submit", "ticket": "HD-1", "logged": "0"}

    again = await say(app, connector, {**submit, **close_values("rebooted and it worked")})
    assert [i["label"] for i in inputs(again)] == CLOSURE_LABELS
    shown = card_text(again)
    assert "not closed" in shown and "PRN-0042" in shown
    note = next(i for i in inputs(again) if i["id"] == "resolution_note")
    assert note["value"] == "rebooted and it worked"
    # The note's problem once, under the note (no other field refused).
    assert "PRN-0042" in unescape(note_under(again, "resolution_note"))
    assert shown.count("PRN-0042") == 1, shown
    assert [note_under(again, i) for i in ("resolution_category", "time_spent")] == ["", ""]
    assert (await ticket(app)).status == "open"

    posted = len(connector.activities(PERSONAL))
    await app.teams(message(connector.service_url, "<at>Helpdesk</at> ticket time HD-1 30m"))
    await wait_until(lambda: len(connector.activities(PERSONAL)) > posted)
    assert connector.activities(PERSONAL)[-1]["text"] == "Logged 30m on HD-1 (total 30m)."

    closed = await invoke(app, connector, "ticket.close.submit", {**submit, **close_values()})
    assert closed["type"] == CARD_TYPE and "Closed HD" in json.dumps(closed["value"])
    # The card that answers shows how it was fixed, as the card does from now on.
    for part in ("Resolution", GOOD_NOTE, "Incident"):
        assert part in card_text(closed["value"]), part
    row = await ticket(app)
    assert (row.status, row.resolution_note) == ("closed", GOOD_NOTE)

    chat, card = await survey_card(connector, ANA_ID)
    assert [a["title"] for a in card["actions"]] == ["1", "2", "3", "4", "5", "Add a comment"]
    assert [i["id"] for i in inputs(card)] == ["comment"]
    four = action(card, "4")
    assert four["type"] == "Action.Execute" and four["data"]["rating"] == "4"
    data = {**four["data"], "comment": "Quick fix"}
    stranger = await invoke(app, connector, "csat.rate", data, user=TECH_ID, conversation=chat)
    assert "Only the requester" in stranger["value"]
    first = await invoke(app, connector, "csat.rate", data, user=ANA_ID, conversation=chat)
    assert first["value"] == "Thank you! You rated HD-1 4/5."
    second = await invoke(
        app, connector, "csat.rate", {**action(card, "1")["data"]}, user=ANA_ID, conversation=chat
    )
    assert "already rated HD-1 4/5" in second["value"]
    async with app.services.sessions() as session:
        survey = (await session.execute(select(CsatSurvey))).scalar_one()
    assert (survey.rating, survey.comment, survey.requester_id) == (4, "Quick fix", ANA_ID)

    details = card_text(await say(app, connector, text="ticket show HD-1"))
    for part in (
        "Time entries (total 1h 45m)",
        GOOD_NOTE,
        "Incident",
        "4/5",
        "https://kb.example.com/article/42",
        "CSAT survey to the requester",
        "delivered",
    ):
        assert part in details, part


async def test_comment_typed_on_the_card_is_stored(make_app, connector: FakeConnector):
    app = await start(make_app, connector)
    await new_ticket(app, connector)
    form = await say(app, connector, text="ticket close HD-1")
    await say(app, connector, {**submit_action(form)["fallback"]["data"], **close_values()})
    chat, card = await survey_card(connector, ANA_ID)
    comment = action(card, "Add a comment")
    empty = await invoke(
        app,
        connector,
        "csat.comment",
        {**comment["data"], "comment": ""},
        user=ANA_ID,
        conversation=chat,
    )
    assert "Type your comment" in empty["value"]
    done = await invoke(
        app,
        connector,
        "csat.comment",
        {**comment["data"], "comment": "Very **kind**"},
        user=ANA_ID,
        conversation=chat,
    )
    assert "Thank you for your comment" in done["value"]
    async with app.services.sessions() as session:
        survey = (await session.execute(select(CsatSurvey))).scalar_one()
    assert (survey.comment, survey.rating) == ("Very **kind**", None)


async def test_vip_reminder_reaches_the_technician_after_the_delay(make_app, connector):
    app = await start(make_app, connector)
    await new_ticket(app, connector, requester="vic@example.com")
    async with app.services.sessions() as session, session.begin():
        # VIP requesters are always identity-checked: pretend the manager approved.
        await session.execute(update(Ticket).values(identity_state="confirmed"))
    form = await say(app, connector, text="ticket close HD-1")
    closed_at = time.monotonic()
    await say(app, connector, {**submit_action(form)["fallback"]["data"], **close_values()})
    await survey_card(connector, VIC_ID)

    def reminders() -> list[dict[str, Any]]:
        return [a for a in connector.activities(PERSONAL) if "Personal follow" in json.dumps(a)]

    assert reminders() == []
    await wait_until(lambda: reminders() != [], timeout=6)
    assert time.monotonic() - closed_at >= 1.9
    card = card_of(reminders()[0])
    assert "Vic VIP" in card_text(card) and "VIP requester" in card_text(card)


async def test_p3_without_vip_gets_no_reminder(make_app, connector: FakeConnector):
    app = await start(make_app, connector)
    await new_ticket(app, connector)
    form = await say(app, connector, text="ticket close HD-1")
    await say(app, connector, {**submit_action(form)["fallback"]["data"], **close_values()})
    await survey_card(connector, ANA_ID)
    await asyncio.sleep(2.8)
    assert not any("Personal follow" in json.dumps(a) for a in connector.activities())


async def closed_survey(app: AppHarness, fake: FakeConnector) -> tuple[str, dict[str, Any]]:
    """HD-1 opened and closed in Tom's chat: (Ana's chat id, her survey card)."""
    await new_ticket(app, fake)
    form = await say(app, fake, text="ticket close HD-1")
    await say(app, fake, {**submit_action(form)["fallback"]["data"], **close_values()})
    return await survey_card(fake, ANA_ID)


async def stored_survey(app: AppHarness) -> CsatSurvey:
    async with app.services.sessions() as session:
        return (await session.execute(select(CsatSurvey))).scalar_one()


async def test_a_rating_with_an_overlong_comment_is_refused_whole_not_cut(make_app, connector):
    """A comment over 2000 characters typed with a rating is neither cut nor lost silently:
    Ana is told to shorten it, nothing is stored, and her shortened answer is kept in full."""
    app = await start(make_app, connector)
    chat, card = await closed_survey(app, connector)
    rate = action(card, "2")["data"]
    long = "The printer jammed again the next morning. " * 50  # 2150 characters
    refused = await invoke(
        app, connector, "csat.rate", {**rate, "comment": long}, user=ANA_ID, conversation=chat
    )
    assert refused["type"] == "application/vnd.microsoft.activity.message"
    assert "2000 characters" in refused["value"] and "not saved" in refused["value"]
    survey = await stored_survey(app)
    assert (survey.rating, survey.comment) == (None, "")
    assert (await ticket(app)).csat_rating is None

    shorter = long[:1999]
    done = await invoke(
        app, connector, "csat.rate", {**rate, "comment": shorter}, user=ANA_ID, conversation=chat
    )
    assert done["value"] == "Thank you! You rated HD-1 2/5."
    survey = await stored_survey(app)
    assert (survey.rating, survey.comment) == (2, shorter.strip())


async def test_a_comment_typed_with_a_rating_that_is_not_kept_is_said_so(make_app, connector):
    """The first rating and the first comment are kept (SPEC CSAT): a comment typed with a
    later click, or with a rating after a comment was already sent, changes nothing, and Ana
    is told that it was not saved (and, while there is no comment yet, how to send it)."""
    app = await start(make_app, connector)
    chat, card = await closed_survey(app, connector)
    first = await invoke(
        app, connector, "csat.rate", action(card, "4")["data"], user=ANA_ID, conversation=chat
    )
    assert first["value"] == "Thank you! You rated HD-1 4/5."

    later = {**action(card, "1")["data"], "comment": "Actually it broke again"}
    again = await invoke(app, connector, "csat.rate", later, user=ANA_ID, conversation=chat)
    assert "already rated HD-1 4/5" in again["value"]
    assert "Your comment was not saved" in again["value"]
    assert "Add a comment" in again["value"]
    survey = await stored_survey(app)
    assert (survey.rating, survey.comment) == (4, "")

    sent = {**action(card, "Add a comment")["data"], "comment": "Quick and friendly"}
    added = await invoke(app, connector, "csat.comment", sent, user=ANA_ID, conversation=chat)
    assert "Thank you for your comment" in added["value"]
    once_more = await invoke(app, connector, "csat.rate", later, user=ANA_ID, conversation=chat)
    assert "already rated HD-1 4/5" in once_more["value"]
    assert "Your comment was not saved: we already have your comment" in once_more["value"]
    survey = await stored_survey(app)
    assert (survey.rating, survey.comment) == (4, "Quick and friendly")


async def test_a_rating_after_the_comment_keeps_the_first_comment_and_says_so(make_app, connector):
    app = await start(make_app, connector)
    chat, card = await closed_survey(app, connector)
    sent = {**action(card, "Add a comment")["data"], "comment": "Quick and friendly"}
    await invoke(app, connector, "csat.comment", sent, user=ANA_ID, conversation=chat)
    rated = await invoke(
        app,
        connector,
        "csat.rate",
        {**action(card, "5")["data"], "comment": "Second thoughts"},
        user=ANA_ID,
        conversation=chat,
    )
    assert rated["value"].startswith("Thank you! You rated HD-1 5/5.")
    assert "Your comment was not saved: we already have your comment" in rated["value"]
    survey = await stored_survey(app)
    assert (survey.rating, survey.comment) == (5, "Quick and friendly")


async def test_an_overlong_comment_brings_the_survey_back_with_the_error_and_the_text(
    make_app, connector
):
    """'Add a comment' with a comment over 2000 characters: the survey card comes back with
    the problem under the comment box and what Ana typed still in it, rating buttons
    included, so she can still rate (or shorten and send) from that card."""
    app = await start(make_app, connector)
    chat, card = await closed_survey(app, connector)
    long = "The printer jammed again the next morning. " * 50  # 2150 characters
    sent = {**action(card, "Add a comment")["data"], "comment": long}
    refused = await invoke(app, connector, "csat.comment", sent, user=ANA_ID, conversation=chat)
    assert refused["type"] == CARD_TYPE
    again = refused["value"]
    assert [a["title"] for a in again["actions"]] == ["1", "2", "3", "4", "5", "Add a comment"]
    [box] = inputs(again)
    assert (box["id"], box["value"]) == ("comment", long)
    shown = card_text(again)
    assert "Keep it under 2000 characters." in shown and "HD-1" in shown
    survey = await stored_survey(app)
    assert (survey.rating, survey.comment) == (None, "")

    rated = await invoke(
        app, connector, "csat.rate", action(again, "3")["data"], user=ANA_ID, conversation=chat
    )
    assert rated["value"] == "Thank you! You rated HD-1 3/5."
    assert (await stored_survey(app)).rating == 3


async def test_a_low_rating_alert_quotes_the_comment_kept_not_the_one_refused(make_app, connector):
    """A 1 after Ana already sent a comment: her new text is not saved (the first comment is
    kept), so the technician's alert quotes the comment on file, not the one thrown away."""
    app = await start(make_app, connector)
    chat, card = await closed_survey(app, connector)
    sent = {**action(card, "Add a comment")["data"], "comment": "Quick and friendly"}
    await invoke(app, connector, "csat.comment", sent, user=ANA_ID, conversation=chat)
    later = {**action(card, "1")["data"], "comment": "Actually it broke again"}
    rated = await invoke(app, connector, "csat.rate", later, user=ANA_ID, conversation=chat)
    assert "Your comment was not saved: we already have your comment" in rated["value"]
    assert (await stored_survey(app)).comment == "Quick and friendly"

    def alerts() -> list[str]:
        return [
            unescape(json.dumps(a))
            for a in connector.activities(PERSONAL)
            if "rated 1/5" in json.dumps(a)
        ]

    await wait_until(lambda: alerts() != [])
    [alert] = alerts()
    assert "Quick and friendly" in alert
    assert "Actually it broke again" not in alert


async def test_a_comment_landing_while_a_rating_with_a_comment_is_stored_stays_the_first(
    make_app, connector, db_url: str
):
    """'Add a comment' and a 2 pressed with a comment land at once: the comment is committed
    after the rating read the survey (no comment yet) and before it writes. The first comment
    is the one kept (SPEC CSAT) whatever the interleaving: the rating does not overwrite it,
    Ana is told hers was not saved, and Tom's alert quotes the comment kept.

    The comment is written by a second connection holding the survey row (PostgreSQL) or
    SQLite's write lock until the rating is waiting for it. On SQLite the rating's transaction
    takes the write lock before it reads (its delivery claim), so it reads the comment
    committed; on PostgreSQL it reads the survey before and waits only at its UPDATE."""
    app = await start(make_app, connector)
    chat, card = await closed_survey(app, connector)
    survey_id = (await stored_survey(app)).id
    first = "Quick and friendly"
    comment_sql = "UPDATE csat_surveys SET comment = :c WHERE id = :id AND comment = ''"
    rate = {**action(card, "2")["data"], "comment": "Second thoughts"}

    if db.is_sqlite(db_url):
        other = sqlite3.connect(str(make_url(db_url).database), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        other.execute(comment_sql.replace(":c", "?").replace(":id", "?"), (first, survey_id))
        rating = asyncio.ensure_future(
            invoke(app, connector, "csat.rate", rate, user=ANA_ID, conversation=chat)
        )
        await asyncio.sleep(0.5)
        other.execute("COMMIT")
        other.close()
        rated = await rating
    else:
        engine = db.create_engine(db_url)
        try:
            async with engine.connect() as watch, engine.connect() as other:
                await watch.execution_options(isolation_level="AUTOCOMMIT")
                trans = await other.begin()
                await other.execute(text(comment_sql), {"c": first, "id": survey_id})
                rating = asyncio.ensure_future(
                    invoke(app, connector, "csat.rate", rate, user=ANA_ID, conversation=chat)
                )

                async def rating_waits_for_the_row() -> bool:
                    waiting = await watch.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND wait_event_type = 'Lock' "
                            "AND query ILIKE 'UPDATE csat_surveys%'"
                        )
                    )
                    return bool(waiting.scalar())

                await wait_until(rating_waits_for_the_row, timeout=1.5)
                await trans.commit()
                rated = await rating
        finally:
            await engine.dispose()

    assert rated["value"].startswith("Thank you! You rated HD-1 2/5."), rated["value"]
    assert "Your comment was not saved: we already have your comment" in rated["value"]
    survey = await stored_survey(app)
    assert (survey.rating, survey.comment) == (2, first)

    def alerts() -> list[str]:
        return [
            unescape(json.dumps(a))
            for a in connector.activities(PERSONAL)
            if "rated 2/5" in json.dumps(a)
        ]

    await wait_until(lambda: alerts() != [])
    [alert] = alerts()
    assert first in alert and "Second thoughts" not in alert


async def test_time_typed_the_way_technicians_type_it_over_teams(make_app, connector):
    app = await start(make_app, connector)
    await new_ticket(app, connector)

    async def typed(text: str) -> str:
        posted = len(connector.activities(PERSONAL))
        await app.teams(message(connector.service_url, f"<at>Helpdesk</at> ticket {text}"))
        await wait_until(lambda: len(connector.activities(PERSONAL)) > posted)
        return str(connector.activities(PERSONAL)[-1].get("text", ""))

    assert await typed("time HD-1 1 hr 30 min checked the spooler") == (
        "Logged 1h 30m on HD-1 (total 1h 30m)."
    )
    assert "'2' has no unit" in await typed("time HD-1 2 printers")
    async with app.services.sessions() as session:
        entries = (await session.execute(select(TimeEntry))).scalars().all()
    assert [(e.minutes, e.note) for e in entries] == [(90, "checked the spooler")]

    form = await say(app, connector, text="ticket close HD-1")
    submit = submit_action(form)["fallback"]["data"]
    again = await say(app, connector, {**submit, **close_values(), "time_spent": "0.33h"})
    assert "Time is logged in whole minutes: '0.33h' is not; log 19m or 20m." in card_text(again)
    done = {**submit, **close_values(), "time_spent": "0.25 hours"}
    closed = await invoke(app, connector, "ticket.close.submit", done)
    assert "Closed HD-1" in json.dumps(closed["value"])
    assert ((await ticket(app)).status, (await ticket(app)).time_minutes) == ("closed", 105)


async def test_a_comment_sent_after_a_low_rating_reaches_the_technician(make_app, connector):
    """Ana presses 2 with the box empty, then types why and presses 'Add a comment': Tom,
    already alerted of the 2, gets her comment in the ticket's conversation too, once."""
    app = await start(make_app, connector)
    chat, card = await closed_survey(app, connector)
    rated = await invoke(
        app, connector, "csat.rate", action(card, "2")["data"], user=ANA_ID, conversation=chat
    )
    assert rated["value"] == "Thank you! You rated HD-1 2/5."
    sent = {**action(card, "Add a comment")["data"], "comment": "Took three days to reply"}
    done = await invoke(app, connector, "csat.comment", sent, user=ANA_ID, conversation=chat)
    assert "Thank you for your comment" in done["value"]

    def told() -> list[str]:
        return [
            unescape(json.dumps(a))
            for a in connector.activities(PERSONAL)
            if "Took three days" in unescape(json.dumps(a))
        ]

    await wait_until(lambda: told() != [], what="the comment told to Tom")
    [note] = told()
    assert "2/5" in note and "HD-1" in note and "Ana Lopez" in note
    again = await invoke(app, connector, "csat.comment", sent, user=ANA_ID, conversation=chat)
    assert "already have your comment" in again["value"]
    await asyncio.sleep(0.5)
    assert len(told()) == 1


async def test_the_close_button_keeps_its_form_on_a_ticket_with_no_response_yet(
    make_app, connector: FakeConnector
):
    """Seen in the Agents Playground: **Close** on a new ticket's card showed the closure form
    for an instant, then the ticket card came back. The click is the ticket's first response,
    which queued a refresh of the ticket card; Action.Execute's answer had just put the form
    in that very message, so the refresh overwrote it and the button seemed to do nothing."""
    app = await start(make_app, connector)
    await new_ticket(app, connector)
    row = await ticket(app)
    assert row.card_message and row.first_response_at is None
    card = card_of(next(a for a in connector.activities(PERSONAL) if a["_id"] == row.card_message))
    close = action(card, "Close")
    sent = activity(
        connector.service_url,
        type="invoke",
        name="adaptiveCard/action",
        value={"action": {"type": "Action.Execute", "verb": close["verb"], "data": close["data"]}},
        replyToId=row.card_message,  # Teams: the clicked card's message
    )
    answer = await (await app.teams(sent)).json()
    assert answer["type"] == CARD_TYPE, answer
    validate_adaptive_card(answer["value"])
    assert [i["label"] for i in inputs(answer["value"])] == CLOSURE_LABELS
    assert (await ticket(app)).first_response_at is not None
    # The form stays where it was answered: no refresh of the ticket card replaces it.
    with pytest.raises(AssertionError, match="timed out"):
        await wait_until(
            lambda: any(u["_activity_id"] == row.card_message for u in connector.updates()),
            timeout=1.0,
        )
