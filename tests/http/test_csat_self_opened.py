"""SPEC "Closure and CSAT": "A rating of 1 or 2 alerts the technician", and P1 tickets (and VIP
requesters) get a personal follow-up: "the technician is reminded ... to write to the
requester". A requester may open their own ticket (the bot lets anyone open one); they are on it
as its opener but are no technician. Their ticket's reminder and low-rating alert went to them:
the requester was reminded to write to themselves, and the thread's alert pinged the requester
about their own rating, while the technician who worked and closed it heard nothing. They go to
the technician who closed it. Over Slack and Teams HTTP, both databases."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from storage.models import Ticket
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, view_submission, wait_until
from tests.http import conftest_teams as teams_support
from tests.http import test_closure_slack as slack
from tests.http import test_closure_teams as teams
from tests.http.conftest_teams import (
    ANA_ID,
    TECH_ID,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)


async def open_own_ticket(app: AppHarness, fake: FakeSlack, *, user: str) -> str:
    """`user` (no technician) opens a printer ticket for themselves in C0HELP."""
    opened = len(fake.views_opened())
    assert (await app.slash("new Printer jams", user=user)).status == 200
    await fake.wait_for_method("views.open", count=opened + 1)
    view = fake.views_opened()[-1]["view"]
    values = {
        "requester": {"type": "users_select", "selected_user": user},
        "summary": slack.text_state("Printer jams on floor 3"),
        "error_text": slack.text_state("Error 0x8007001F"),
        "doing": slack.text_state("Printing"),
        "reproducible": slack.select_state("yes"),
        "users_affected": {"type": "number_input", "value": "1"},
        "priority": slack.select_state("P3"),
        "category": slack.select_state("printer"),
        "asset": slack.text_state("PRN-0042"),
        "client": slack.text_state(""),
    }
    before = len(slack.posts_to(fake, "C0HELP"))
    submission = view_submission(view, values, user=user, view_id=f"VOWN-{user}")
    assert (await app.interactive(submission)).status == 200
    await wait_until(lambda: len(slack.posts_to(fake, "C0HELP")) > before)
    async with app.services.sessions() as session:
        query = select(Ticket.number).order_by(Ticket.id.desc())
        return str((await session.execute(query)).scalars().first())


def saying(fake: FakeSlack, words: str) -> list[dict[str, Any]]:
    return [p for p in fake.posts() if words in json.dumps(p)]


async def test_a_requesters_own_ticket_reminds_and_alerts_the_technician_who_closed_it(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app = await slack.start(make_app, slack_api)
    number = await open_own_ticket(app, slack_api, user="USAM")
    assert "is now P1" in json.dumps(await (await app.slash(f"p1 {number}")).json())
    assert await slack.submit_close(app, slack_api, number) == {}

    # The personal follow-up (a P1 ticket) reminds Tom, who closed it, never Sam himself.
    await wait_until(lambda: slack.followups(slack_api), timeout=15, what="the follow-up")
    reminded = saying(slack_api, "Personal follow-up")
    assert [p["channel"] for p in reminded] == ["DUTECH"], reminded

    dm = await slack.survey_dm(slack_api, "USAM")
    assert "You rated HD-1 1/5" in await slack.click(app, slack_api, dm, "1", "USAM")
    await wait_until(
        lambda: saying(slack_api, "rated 1/5 by"), timeout=15, what="the low-rating alert"
    )
    alerts = saying(slack_api, "rated 1/5 by")
    assert [p["channel"] for p in alerts] == ["DUTECH"], alerts
    assert "Sam User" in json.dumps(alerts[0]) and number in json.dumps(alerts[0])
    # Sam is pinged about neither.
    assert not [p for p in reminded + alerts if "<@USAM>" in p.get("text", "")[:8]]


ANA_CHAT = "a:1personal-chat-with-ana"


def chats_with(fake: FakeConnector, user: str) -> set[str]:
    """The 1:1 chats the bot has with `user` (the one they wrote in, and any it opened)."""
    known = {TECH_ID: teams_support.PERSONAL, ANA_ID: ANA_CHAT}
    opened = {c["_id"] for c in fake.created_conversations() if c["members"][0]["id"] == user}
    return opened | {known[user]}


def posted_saying(fake: FakeConnector, words: str) -> list[dict[str, Any]]:
    return [a for a in fake.activities() if words in json.dumps(a)]


async def test_teams_a_requesters_own_ticket_never_reminds_or_alerts_the_requester(
    make_app: Any, connector: FakeConnector
) -> None:
    # Ana opens her own ticket in her 1:1 chat with the bot: that chat is the ticket's
    # conversation. The reminder and the alert go to Tom, who closed it, not to Ana's chat.
    app = await teams.start(make_app, connector)
    url = connector.service_url
    asked = message(
        url, "ticket new Printer jams", user=ANA_ID, user_name="Ana", conversation=ANA_CHAT
    )
    assert (await app.teams(asked)).status == 201
    await wait_until(lambda: connector.activities(ANA_CHAT), what="the intake form")
    form = card_of(connector.activities(ANA_CHAT)[-1])
    data = {**submit_action(form)["fallback"]["data"], **form_values(priority="P3")}
    sent = activity(url, value=data, user=ANA_ID, user_name="Ana", conversation=ANA_CHAT)
    assert (await app.teams(sent)).status == 201
    await wait_until(lambda: any("HD-1" in json.dumps(a) for a in connector.activities(ANA_CHAT)))
    posted = len(connector.activities(teams_support.PERSONAL))
    assert (await app.teams(message(url, "ticket p1 HD-1"))).status == 201
    await wait_until(lambda: len(connector.activities(teams_support.PERSONAL)) > posted)
    assert "is now P1" in json.dumps(connector.activities(teams_support.PERSONAL)[posted:])
    form = await teams.say(app, connector, text="ticket close HD-1")
    submit = submit_action(form)["fallback"]["data"]
    closed = await teams.invoke(
        app, connector, "ticket.close.submit", {**submit, **teams.close_values()}
    )
    assert "Closed HD-1" in json.dumps(closed["value"])

    await wait_until(
        lambda: posted_saying(connector, "Personal follow-up"), timeout=15, what="the follow-up"
    )
    await wait_until(lambda: posted_saying(connector, "How did we do"), what="the survey")
    [sent_survey] = posted_saying(connector, "How did we do")
    chat, survey = sent_survey["_conversation_id"], card_of(sent_survey)
    assert chat in chats_with(connector, ANA_ID)
    one = {**teams.action(survey, "1")["data"]}
    rated = await teams.invoke(app, connector, "csat.rate", one, user=ANA_ID, conversation=chat)
    assert "You rated HD-1 1/5" in rated["value"]
    await wait_until(lambda: posted_saying(connector, "rated 1/5 by"), timeout=15, what="the alert")
    for words in ("Personal follow-up", "rated 1/5 by"):
        told = posted_saying(connector, words)
        assert {a["_conversation_id"] for a in told} <= chats_with(connector, TECH_ID), told
        assert not {a["_conversation_id"] for a in told} & chats_with(connector, ANA_ID), told


# "The bot records that each survey and reminder was delivered; an undelivered one is retried
# and reported": reported to the technician. For a ticket its requester opened, the report went
# to the ticket's thread, which is the requester's: on Teams their own chat with the bot (the
# very chat the survey could not reach), on Slack a thread note pinging them as the ticket's
# "technician". Tom, who closed it, heard nothing.


async def test_teams_an_undelivered_survey_on_a_requesters_own_ticket_is_reported_to_the_closer(
    make_app: Any, connector: FakeConnector
) -> None:
    app = await teams.start(make_app, connector)
    url = connector.service_url
    asked = message(
        url, "ticket new Printer jams", user=ANA_ID, user_name="Ana", conversation=ANA_CHAT
    )
    assert (await app.teams(asked)).status == 201
    await wait_until(lambda: connector.activities(ANA_CHAT), what="the intake form")
    form = card_of(connector.activities(ANA_CHAT)[-1])
    data = {**submit_action(form)["fallback"]["data"], **form_values(priority="P3")}
    sent = activity(url, value=data, user=ANA_ID, user_name="Ana", conversation=ANA_CHAT)
    assert (await app.teams(sent)).status == 201
    await wait_until(lambda: any("HD-1" in json.dumps(a) for a in connector.activities(ANA_CHAT)))
    # Ana's chat answers 502 four times: the survey (and maybe the closure's note) fail.
    connector.fail(f"/v3/conversations/{ANA_CHAT}/activities", 502, times=4)
    form = await teams.say(app, connector, text="ticket close HD-1")
    submit = submit_action(form)["fallback"]["data"]
    closed = await teams.invoke(
        app, connector, "ticket.close.submit", {**submit, **teams.close_values()}
    )
    assert "Closed HD-1" in json.dumps(closed["value"])
    await wait_until(
        lambda: posted_saying(connector, "has not been delivered"), timeout=40, what="the report"
    )
    await wait_until(lambda: posted_saying(connector, "How did we do"), timeout=60)
    await wait_until(lambda: posted_saying(connector, "has gone through now"), timeout=10)
    for report in posted_saying(connector, "has not been delivered") + posted_saying(
        connector, "has gone through now"
    ):
        assert report["_conversation_id"] in chats_with(connector, TECH_ID), report
        assert report["_conversation_id"] not in chats_with(connector, ANA_ID), report
    assert posted_saying(connector, "survey to the requester for HD-1 has not been delivered")


async def test_slack_an_undelivered_survey_on_a_requesters_own_ticket_is_reported_to_the_closer(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app = await slack.start(make_app, slack_api)
    number = await open_own_ticket(app, slack_api, user="USAM")
    slack_api.fail("conversations.open", 500, times=3)
    assert await slack.submit_close(app, slack_api, number) == {}
    await wait_until(lambda: saying(slack_api, "has not been delivered"), timeout=40)
    await wait_until(lambda: slack.posts_to(slack_api, "DUSAM"), timeout=40, what="the survey")
    await wait_until(lambda: saying(slack_api, "has gone through now"), timeout=10)
    reports = saying(slack_api, "has not been delivered") + saying(
        slack_api, "has gone through now"
    )
    assert reports and {p["channel"] for p in reports} == {"DUTECH"}, reports
    assert not [p for p in reports if "<@USAM>" in json.dumps(p)], reports
