"""The requester confirms the fix (#15), over Slack and Teams HTTP: `confirm HD-1` DMs the
requester with Works now / Still broken; only they can answer; Works now is recorded and shown
on the card, by `show` and on the closure form; Still broken reaches the technician with the
comment; a repeated click, Slack retry or redelivered activity records and tells nothing more.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.adaptive_schema import validate_adaptive_card
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, wait_until
from tests.http.conftest_teams import CARD_TYPE, PERSONAL, TECH_ID, activity, card_of, inputs
from tests.http.working_support import (
    DOING,
    FORM,
    PEOPLE,
    RETRY,
    TEAMS_IDS,
    SlackFlow,
    TeamsFlow,
    events,
    shown,
    teams_config,
    ticket_row,
)

ANA = TEAMS_IDS["ana"]


# -- Slack -----------------------------------------------------------------------------------


async def test_slack_works_now_is_recorded_once_shown_and_only_the_requester_answers(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    number = await s.ticket()

    assert "Only technicians" in await s.command(f"confirm {number}", user="UANA")
    asked = await s.command(f"confirm {number}")
    assert "Asked Ana User (ana@example.com) on Slack" in asked
    await wait_until(lambda: s.dms("UANA", "Works now"), what="the question to Ana")
    [question] = s.dms("UANA", "Works now")
    for part in (number, DOING, "Still broken", "<@UTECH>"):
        assert part in shown(question), part

    # The technician and an outsider are refused; nothing is recorded, both are audited.
    for intruder in ("UTECH", "UEVE"):
        refused = await s.press(question, "Works now", intruder)
        assert f"Only the requester of {number} can answer this" in refused
    assert (await ticket_row(app, number)).fix_confirmed_at is None
    assert len(await events(app, "fix.refused")) == 2

    # Ana answers; Slack retries the same request: one answer, one message to the technician.
    body = s.press_body(question, "Works now", "UANA")
    rid = s._last
    assert (await app.slack(body, content_type=FORM)).status == 200
    assert (await app.slack(body, content_type=FORM, headers=RETRY)).status == 200
    await wait_until(lambda: slack_api.responses(rid), what="the answer")
    assert "works now" in shown(slack_api.responses(rid))
    again = await s.press(question, "Works now", "UANA")
    assert "You already answered" in again and "Nothing changed" in again
    ticket = await ticket_row(app, number)
    assert ticket.fix_confirmed_at is not None and ticket.fix_confirmed_by == "UANA"
    assert len(await events(app, "fix.confirmed")) == 1
    await wait_until(lambda: s.thread(number, "confirmed the fix"), what="the technician told")
    await app.services.slack.drain()  # type: ignore[union-attr]
    assert len(s.thread(number, "confirmed the fix")) == 1
    assert len(slack_api.responses(rid)) == 1

    # The card (updated in place), `show` and the closure form say so, with who and when.
    await wait_until(
        lambda: "Fix confirmed: works now" in shown(s.card(number)), what="the card updated"
    )
    assert "<@UANA>" in shown(s.card(number))
    show = await s.command(f"show {number}")
    assert "Fix confirmed: works now (<@UANA> (ana@example.com), 20" in show
    form = await s.modal(f"close {number}")
    assert "Fix confirmed: works now" in shown(form)
    # The question itself no longer takes answers.
    await wait_until(
        lambda: any(
            u.get("channel") == "DUANA" and "Works now" not in shown(u.get("blocks"))
            for u in slack_api.method_calls("chat.update")
        ),
        what="the question retired",
    )
    # Once confirmed, there is nothing to ask again.
    assert "already confirmed" in await s.command(f"confirm {number}")
    await s.close(number)
    [closed] = await events(app, "ticket.closed")
    assert closed.data["fix_confirmed"] is True


async def test_slack_still_broken_mentions_the_technician_and_keeps_typed_mentions_escaped(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """Still broken is told to Tom in the ticket's thread, which he does not follow: it now
    starts with a mention of him, the bot's own (from the ticket's technician id). A mention
    Ana typed in her comment stays escaped text: it pings nobody."""
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    number = await s.ticket()
    await s.command(f"confirm {number}")
    await wait_until(lambda: s.dms("UANA", "Still broken"), what="the question")
    [question] = s.dms("UANA", "Still broken")
    assert await s.press(question, "Still broken", "UANA") == ""
    view = slack_api.views_opened()[-1]["view"]
    await wait_until(lambda: s.thread(number, "is still broken"), what="the technician told")
    [first] = s.thread(number, "is still broken")
    assert first["text"].startswith("<@UTECH> Ana User"), first["text"]
    comment = "<@U123> <!here> still sees blank pages"
    await s.submit(view, {"comment": {"type": "plain_text_input", "value": comment}}, "UANA")
    await wait_until(lambda: s.thread(number, "still sees blank pages"), what="the comment")
    [told] = s.thread(number, "still sees blank pages")
    assert told["text"].startswith("<@UTECH> "), told["text"]
    assert "&lt;@U123&gt; &lt;!here&gt; still sees blank pages" in told["text"]
    rendered = json.dumps(told)
    assert "<@U123>" not in rendered and "<!here>" not in rendered
    assert rendered.count("<@") == 2  # the leading mention, in the text and the first block


async def test_slack_still_broken_reaches_the_technician_with_the_comment(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    number = await s.ticket()
    await s.command(f"confirm {number}")
    await wait_until(lambda: s.dms("UANA", "Still broken"), what="the question")
    [question] = s.dms("UANA", "Still broken")

    assert await s.press(question, "Still broken", "UANA") == ""  # a form: the comment
    view = slack_api.views_opened()[-1]["view"]
    assert "What still does not work? (optional)" in shown(view)
    await wait_until(lambda: s.thread(number, "is still broken"), what="the technician told")
    comment = "The PDF still prints blank pages <!channel>"
    answer = await s.submit(
        view, {"comment": {"type": "plain_text_input", "value": comment}}, "UANA"
    )
    assert answer is not None and "your technician got your comment" in shown(answer)
    await wait_until(
        lambda: s.thread(number, "The PDF still prints blank pages"),
        what="the comment in the thread",
    )
    [told] = s.thread(number, "The PDF still prints blank pages")
    assert "still broken" in shown(told) and "<!channel>" not in shown(told)
    ticket = await ticket_row(app, number)
    assert ticket.fix_state == "broken" and ticket.fix_confirmed_at is None
    await wait_until(lambda: "said it is still broken" in shown(s.card(number)))

    # A second comment is not taken; a second click records nothing and tells nobody.
    assert "already have your comment" in shown(
        await s.submit(view, {"comment": {"type": "plain_text_input", "value": "again"}}, "UANA")
    )
    assert "You already answered" in await s.press(question, "Still broken", "UANA")
    await app.services.slack.drain()  # type: ignore[union-attr]
    assert len(s.thread(number, "is still broken after the fix")) == 1

    # Closing without a confirmation is allowed, and the closure records it.
    form = await s.modal(f"close {number}")
    assert "Fix not confirmed" in shown(form)
    # A new `confirm` asks again; the old question's buttons stop counting.
    await s.command(f"confirm {number}")
    await wait_until(
        lambda: len(s.dms("UANA", "Works now")) == 2, what="the second question", timeout=20
    )
    assert "replaced by a newer one" in await s.press(question, "Works now", "UANA")
    second = s.dms("UANA", "Works now")[-1]
    assert "works now" in await s.press(second, "Works now", "UANA")
    assert (await ticket_row(app, number)).fix_confirmed_at is not None


async def test_slack_a_comment_typed_while_the_technician_asked_again_still_reaches_them(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """Ana pressed Still broken and is typing her comment when Tom, told it is still broken,
    sends a new `confirm`: her comment still reaches him (it was answered with "There is
    nothing to add to" and lost), once; the new question is unaffected."""
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    number = await s.ticket()
    await s.command(f"confirm {number}")
    await wait_until(lambda: s.dms("UANA", "Still broken"), what="the question")
    [question] = s.dms("UANA", "Still broken")
    assert await s.press(question, "Still broken", "UANA") == ""
    view = slack_api.views_opened()[-1]["view"]
    await wait_until(lambda: s.thread(number, "is still broken"), what="the technician told")

    await s.command(f"confirm {number}")
    await wait_until(lambda: len(s.dms("UANA", "Works now")) == 2, what="the second question")
    typed = {"comment": {"type": "plain_text_input", "value": "Blank pages from the PDF"}}
    answer = await s.submit(view, typed, "UANA")
    assert answer is not None and "your technician got your comment" in shown(answer), answer
    await wait_until(lambda: s.thread(number, "Blank pages from the PDF"), what="the comment")
    assert "already have your comment" in shown(await s.submit(view, typed, "UANA"))
    await app.services.slack.drain()  # type: ignore[union-attr]
    assert len(s.thread(number, "Blank pages from the PDF")) == 1
    assert [e.data["request"] for e in await events(app, "fix.commented")]
    second = s.dms("UANA", "Works now")[-1]
    assert "works now" in await s.press(second, "Works now", "UANA")


async def test_slack_closing_unconfirmed_records_it(make_app: Any, slack_api: FakeSlack) -> None:
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    number = await s.ticket()
    assert "Fix not confirmed" in shown(await s.modal(f"close {number}"))
    await s.close(number)
    [closed] = await events(app, "ticket.closed")
    assert closed.data["fix_confirmed"] is False
    assert "is closed" in await s.command(f"confirm {number}")


# -- Teams -----------------------------------------------------------------------------------


async def test_teams_confirm_refusals_works_now_and_a_redelivered_activity(
    make_app: Any, connector: FakeConnector
) -> None:
    app: AppHarness = await make_app(config=teams_config(connector), people=PEOPLE)
    t = TeamsFlow(app, connector)
    number = await t.ticket(requester="ana@example.com")
    assert await t.say(f"ticket confirm {number}") == 201
    await wait_until(lambda: t.texts(PERSONAL, "Asked Ana User"), what="the answer")
    chat, question = await t.dm_card(ANA, "Works now")
    for part in (number, "Printing the Q3 report", "Still broken", "Tom Tech"):
        assert part in shown(question), part
    works = next(a for a in question["actions"] if a["title"] == "Works now")
    assert works["type"] == "Action.Execute" and set(works["data"]) == {"action", "confirm"}
    assert any(e.get("id") == "comment" for e in question["body"])

    for intruder, where in ((TECH_ID, PERSONAL), ("29:1eve", "a:1eve-chat")):
        refused = await t.invoke(t.invoke_body(question, "Works now", intruder, where))
        assert f"Only the requester of {number} can answer this" in refused
    assert (await ticket_row(app, number)).fix_confirmed_at is None
    assert len(await events(app, "fix.refused")) == 2

    body = t.invoke_body(question, "Works now", ANA, chat)
    assert "works now" in await t.invoke(body)
    assert "works now" in await t.invoke(body)  # the same activity again: the same answer
    assert "You already answered" in await t.invoke(t.invoke_body(question, "Works now", ANA, chat))
    ticket = await ticket_row(app, number)
    assert ticket.fix_confirmed_at is not None and ticket.fix_confirmed_by == ANA
    await wait_until(lambda: t.texts(PERSONAL, "confirmed the fix"), what="the technician")
    await wait_until(lambda: "Fix confirmed: works now" in shown(t.card(number)))
    assert "Ana User (ana@example.com)" in shown(t.card(number))
    assert len(await events(app, "fix.confirmed")) == 1
    posted = len(connector.activities(PERSONAL))
    assert await t.say(f"ticket show {number}") == 201
    await wait_until(lambda: len(connector.activities(PERSONAL)) > posted)
    assert "Fix confirmed: works now" in shown(connector.activities(PERSONAL)[posted:])
    assert len(t.texts(PERSONAL, "confirmed the fix")) == 1


async def test_teams_still_broken_with_the_comment_typed_on_the_card(
    make_app: Any, connector: FakeConnector
) -> None:
    app: AppHarness = await make_app(config=teams_config(connector), people=PEOPLE)
    t = TeamsFlow(app, connector)
    number = await t.ticket(requester="ana@example.com")
    await t.say(f"ticket confirm {number}")
    chat, question = await t.dm_card(ANA, "Still broken")
    body = t.invoke_body(question, "Still broken", ANA, chat, comment="Excel **still** crashes")
    assert "your technician was told" in await t.invoke(body)
    await wait_until(
        lambda: t.texts(PERSONAL, "Excel **still** crashes"), what="the technician told"
    )
    [told] = t.texts(PERSONAL, "Excel **still** crashes")
    assert "still broken" in told and number in told
    ticket = await ticket_row(app, number)
    assert ticket.fix_state == "broken" and ticket.fix_confirmed_at is None
    # The question card is replaced: no buttons left.
    await wait_until(
        lambda: any(u["_conversation_id"] == chat for u in connector.updates()),
        what="the question retired",
    )
    [retired] = [u for u in connector.updates() if u["_conversation_id"] == chat]
    assert "Works now" not in json.dumps(retired["attachments"][0]["content"].get("actions"))
    again = await t.invoke(t.invoke_body(question, "Still broken", ANA, chat, comment="again"))
    assert "You already answered" in again and "Your comment was not saved" in again
    assert len(t.texts(PERSONAL, "Excel **still** crashes")) == 1


async def test_teams_a_still_broken_comment_at_its_limit_in_emoji_still_reaches_the_technician(
    make_app: Any, connector: FakeConnector
) -> None:
    """A comment of 2,000 emoji (the limit counts characters; the requester's client may not
    stop there, Slack's does not): the note telling the technician, which quotes it, was over
    Teams' message size limit as botbuilder sends it (each emoji escaped as twelve
    characters), so the connector refused it (413) and it was given up; the technician only
    heard that a note had failed. The quoted comment is cut to fit (marked "…")."""
    app: AppHarness = await make_app(config=teams_config(connector), people=PEOPLE)
    t = TeamsFlow(app, connector)
    number = await t.ticket(requester="ana@example.com")
    await t.say(f"ticket confirm {number}")
    chat, question = await t.dm_card(ANA, "Still broken")
    comment = "\U0001f4a5" * 2000
    body = t.invoke_body(question, "Still broken", ANA, chat, comment=comment)
    assert "your technician was told" in await t.invoke(body)
    await wait_until(lambda: t.texts(PERSONAL, "\U0001f4a5" * 100), what="the technician told")
    [told] = t.texts(PERSONAL, "\U0001f4a5" * 100)
    assert "still broken" in told and number in told and "\u2026" in told
    assert connector.too_big == []


async def test_teams_closure_form_shown_again_still_says_whether_the_fix_was_confirmed(
    make_app: Any, connector: FakeConnector
) -> None:
    """A refused closure (a vague note) shows the form again with its errors: with the same
    summary and `Fix confirmed: works now` line as the first time, through Action.Submit and
    Action.Execute alike."""
    app: AppHarness = await make_app(config=teams_config(connector), people=PEOPLE)
    t = TeamsFlow(app, connector)
    number = await t.ticket(requester="ana@example.com", summary="Outlook crashes on start")
    await t.say(f"ticket confirm {number}")
    chat, question = await t.dm_card(ANA, "Works now")
    assert "works now" in await t.invoke(t.invoke_body(question, "Works now", ANA, chat))

    posted = len(connector.activities(PERSONAL))
    assert await t.say(f"ticket close {number}") == 201
    await wait_until(lambda: len(connector.activities(PERSONAL)) > posted, what="the form")
    form = card_of(connector.activities(PERSONAL)[-1])
    first = shown(form)
    assert "Fix confirmed: works now (Ana User (ana@example.com)" in first
    assert "Outlook crashes on start" in first
    submit = form["actions"][0]
    vague = {
        "resolution_note": "fixed",
        "resolution_category": "Incident",
        "time_spent": "30m",
        "kb_article": "",
    }

    # Action.Submit: the form comes back as a new message.
    posted = len(connector.activities(PERSONAL))
    data = {**submit["fallback"]["data"], **vague}
    assert (await app.teams(activity(connector.service_url, value=data))).status == 201
    await wait_until(lambda: len(connector.activities(PERSONAL)) > posted, what="the form again")
    again = card_of(connector.activities(PERSONAL)[-1])
    # Action.Execute: the form replaces the card.
    executed = activity(
        connector.service_url,
        type="invoke",
        name="adaptiveCard/action",
        value={"action": {"type": "Action.Execute", "verb": submit["verb"], "data": data}},
    )
    response = await app.teams(executed)
    assert response.status == 200
    body = await response.json()
    assert body["type"] == CARD_TYPE
    validate_adaptive_card(body["value"])

    for card in (again, body["value"]):
        text = shown(card)
        assert "The ticket was not closed" in text
        assert "Fix confirmed: works now (Ana User (ana@example.com)" in text
        assert "Outlook crashes on start" in text
        assert [i["label"] for i in inputs(card)] == [i["label"] for i in inputs(form)]
        note = next(i for i in inputs(card) if i["id"] == "resolution_note")
        assert note["value"] == "fixed"
    assert (await ticket_row(app, number)).status == "open"


async def test_teams_an_overlong_comment_brings_the_question_back_with_the_error_and_the_text(
    make_app: Any, connector: FakeConnector
) -> None:
    """Still broken (or Works now) with a comment over 2000 characters: nothing is recorded and
    the question comes back with the problem under the comment box and what Ana typed still in
    it, Works now / Still broken included, through Action.Execute and Action.Submit alike, so she
    can shorten it and answer from that card."""
    app: AppHarness = await make_app(config=teams_config(connector), people=PEOPLE)
    t = TeamsFlow(app, connector)
    number = await t.ticket(requester="ana@example.com")
    await t.say(f"ticket confirm {number}")
    chat, question = await t.dm_card(ANA, "Still broken")
    long = "Excel still crashes when I print the Q3 report. " * 45  # 2160 characters
    titles = [a["title"] for a in question["actions"]]

    def again_as_asked(card: dict[str, Any]) -> None:
        validate_adaptive_card(card)
        assert [a["title"] for a in card["actions"]] == titles
        [box] = inputs(card)
        assert (box["id"], box["value"]) == ("comment", long)
        text = shown(card)
        assert "Keep it under 2000 characters." in text and number in text
        assert "Printing the Q3 report" in text

    for title in ("Still broken", "Works now"):
        response = await app.teams(t.invoke_body(question, title, ANA, chat, comment=long))
        assert response.status == 200
        body = await response.json()
        assert body["type"] == CARD_TYPE, body
        again_as_asked(body["value"])
    # Action.Submit (clients without Action.Execute): the question again as a new message.
    pressed = next(a for a in question["actions"] if a["title"] == "Still broken")
    posted = len(connector.activities(chat))
    data = {**pressed["fallback"]["data"], "comment": long}
    sent = activity(connector.service_url, value=data, user=ANA, conversation=chat)
    assert (await app.teams(sent)).status == 201
    await wait_until(lambda: len(connector.activities(chat)) > posted, what="the question again")
    again_as_asked(card_of(connector.activities(chat)[-1]))
    ticket = await ticket_row(app, number)
    assert ticket.fix_state == "asked" and ticket.fix_confirmed_at is None
    assert not await events(app, "fix.still_broken")

    # Shortened, from the card shown again: recorded and the technician told.
    body = t.invoke_body(body["value"], "Still broken", ANA, chat, comment="Excel still crashes")
    assert "your technician was told" in await t.invoke(body)
    assert (await ticket_row(app, number)).fix_state == "broken"
    await wait_until(lambda: t.texts(PERSONAL, "Excel still crashes"), what="the technician told")


async def test_teams_an_overlong_comment_on_the_comment_form_brings_it_back_with_the_text(
    make_app: Any, connector: FakeConnector
) -> None:
    """Still broken from a client that leaves the empty comment box out of what it sends gets
    the comment form (Send); a comment over 2000 characters there brings that form back with
    the problem under the box and what Ana typed still in it, not a bare error card."""
    app: AppHarness = await make_app(config=teams_config(connector), people=PEOPLE)
    t = TeamsFlow(app, connector)
    number = await t.ticket(requester="ana@example.com")
    await t.say(f"ticket confirm {number}")
    chat, question = await t.dm_card(ANA, "Still broken")
    pressed = t.invoke_body(question, "Still broken", ANA, chat)
    assert "comment" not in pressed["value"]["action"]["data"]
    response = await app.teams(pressed)
    form = (await response.json())["value"]
    assert [a["title"] for a in form["actions"]] == ["Send"]
    await wait_until(lambda: t.texts(PERSONAL, "is still broken"), what="the technician told")

    long = "Excel still crashes when I print the Q3 report. " * 45  # 2160 characters
    response = await app.teams(t.invoke_body(form, "Send", ANA, chat, comment=long))
    assert response.status == 200
    body = await response.json()
    assert body["type"] == CARD_TYPE, body
    again = body["value"]
    validate_adaptive_card(again)
    assert [a["title"] for a in again["actions"]] == ["Send"]
    [box] = inputs(again)
    assert (box["id"], box["value"]) == ("comment", long)
    assert "Keep it under 2000 characters." in shown(again) and number in shown(again)
    assert not await events(app, "fix.commented")

    sent = t.invoke_body(again, "Send", ANA, chat, comment="Excel still crashes on print")
    assert "your technician got your comment" in await t.invoke(sent)
    await wait_until(
        lambda: t.texts(PERSONAL, "Excel still crashes on print"), what="the comment told"
    )


async def test_slack_an_overlong_comment_keeps_the_comment_modal_with_the_error(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """Slack's comment after Still broken is a modal: a comment over 2000 characters keeps it
    open with the problem under the box (Slack keeps what was typed); nothing is recorded."""
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    number = await s.ticket()
    await s.command(f"confirm {number}")
    await wait_until(lambda: s.dms("UANA", "Still broken"), what="the question")
    [question] = s.dms("UANA", "Still broken")
    assert await s.press(question, "Still broken", "UANA") == ""
    view = slack_api.views_opened()[-1]["view"]
    long = "The PDF still prints blank pages. " * 60  # 2040 characters
    answer = await s.submit(view, {"comment": {"type": "plain_text_input", "value": long}}, "UANA")
    assert answer == {
        "response_action": "errors",
        "errors": {"comment": "Keep it under 2000 characters."},
    }
    assert not await events(app, "fix.commented")
    answer = await s.submit(
        view, {"comment": {"type": "plain_text_input", "value": "Blank pages"}}, "UANA"
    )
    assert answer is not None and "your technician got your comment" in shown(answer)


async def test_teams_still_broken_pressed_twice_with_the_comment_does_not_say_it_was_lost(
    make_app: Any, connector: FakeConnector
) -> None:
    """Ana presses Still broken twice with the same comment (the card stays until the bot
    replaces it): the second press records and tells nothing more, and does not tell her that
    the comment her technician already has was not saved."""
    app: AppHarness = await make_app(config=teams_config(connector), people=PEOPLE)
    t = TeamsFlow(app, connector)
    number = await t.ticket(requester="ana@example.com")
    await t.say(f"ticket confirm {number}")
    chat, question = await t.dm_card(ANA, "Still broken")
    comment = "Excel still crashes on print"
    assert "your technician was told" in await t.invoke(
        t.invoke_body(question, "Still broken", ANA, chat, comment=comment)
    )
    again = await t.invoke(t.invoke_body(question, "Still broken", ANA, chat, comment=comment))
    assert "You already answered" in again
    assert "not saved" not in again and "your technician has your comment" in again.lower()
    await wait_until(lambda: t.texts(PERSONAL, comment), what="the technician told")
    await asyncio.sleep(1.5)  # the outbox delivers within about 1 s
    assert len(t.texts(PERSONAL, comment)) == 1
    assert len(await events(app, "fix.still_broken")) == 1


async def test_teams_works_now_with_a_comment_typed_on_the_card_reaches_the_technician(
    make_app: Any, connector: FakeConnector
) -> None:
    """The question card's comment box is there for Works now too: what Ana typed in it
    ("works, but only from the second tray") reaches her technician with the confirmation
    instead of being kept where nobody reads it."""
    app: AppHarness = await make_app(config=teams_config(connector), people=PEOPLE)
    t = TeamsFlow(app, connector)
    number = await t.ticket(requester="ana@example.com")
    await t.say(f"ticket confirm {number}")
    chat, question = await t.dm_card(ANA, "Works now")
    comment = "Works, but only from the second tray"
    body = t.invoke_body(question, "Works now", ANA, chat, comment=comment)
    assert "works now" in await t.invoke(body)
    await wait_until(lambda: t.texts(PERSONAL, "confirmed the fix"), what="the technician told")
    [told] = t.texts(PERSONAL, "confirmed the fix")
    assert comment in told.replace("\\", "") and number in told
    again = await t.invoke(t.invoke_body(question, "Works now", ANA, chat, comment=comment))
    assert "You already answered" in again and "not saved" not in again
    await asyncio.sleep(1.5)  # the outbox delivers within about 1 s
    assert len(t.texts(PERSONAL, "confirmed the fix")) == 1
