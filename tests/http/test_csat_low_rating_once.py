"""SPEC "Clarified for the first wave", CSAT: the first answer is kept; a later click on the
same survey is refused with a note and changes nothing. A 1 or 2 alerts the technician once,
naming the ticket, the rating and the requester. Over HTTP, both platforms, both databases;
a later low click and a redelivered click alert nobody again."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import select

from storage.models import CsatSurvey, TicketEvent
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, block_actions, wait_until
from tests.harness import slack_button as button
from tests.http import test_closure_slack as slack
from tests.http import test_closure_teams as teams
from tests.http.conftest_teams import ANA_ID, PERSONAL, activity


async def answered(app: AppHarness) -> list[TicketEvent]:
    async with app.services.sessions() as session:
        query = select(TicketEvent).where(TicketEvent.kind == "csat.answered")
        return list((await session.execute(query)).scalars())


async def test_slack_a_low_rating_alerts_once_and_a_later_click_changes_nothing(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app = await slack.start(make_app, slack_api)
    number = await slack.new_ticket(app, slack_api)
    await slack.submit_close(app, slack_api, number)
    dm = await slack.survey_dm(slack_api)

    # The click, then Slack's retry of that very request (X-Slack-Retry-Num).
    element = button(dm, "1")
    payload = block_actions(
        element,
        user="UANA",
        channel=dm["channel"],
        n=9001,
        response_url=slack_api.response_url_for("r9001"),
        message_ts=dm.get("ts", "1.1"),
        text=dm.get("text", ""),
    )
    assert (await app.interactive(payload)).status == 200
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    assert (await app.interactive(payload, headers=retry)).status == 200
    await slack_api.wait_for("/response/r9001")
    assert "You rated HD-1 1/5" in json.dumps(slack_api.responses("r9001")[0])

    later = await slack.click(app, slack_api, dm, "2", "UANA")
    assert "already rated HD-1 1/5" in later and "first answer" in later, later
    async with app.services.sessions() as session:
        survey = (await session.execute(select(CsatSurvey))).scalar_one()
    assert survey.rating == 1
    assert [e.data["rating"] for e in await answered(app)] == [1]

    def alerts() -> list[dict[str, Any]]:
        return [p for p in slack.posts_to(slack_api, "C0HELP") if "/5 by" in json.dumps(p)]

    await wait_until(lambda: alerts() != [], what="the low-rating alert")
    await asyncio.sleep(1.0)  # a second alert would have been queued and sent by now
    [alert] = alerts()
    said = json.dumps(alert)
    assert "HD-1" in said and "1/5" in said and "Ana Lopez" in said, said
    assert alert.get("thread_ts") == (await slack.ticket_row(app, number)).source_thread


async def test_teams_a_low_rating_alerts_once_and_a_later_click_changes_nothing(
    make_app: Any, connector: FakeConnector
) -> None:
    app = await teams.start(make_app, connector)
    chat, card = await teams.closed_survey(app, connector)
    two = teams.action(card, "2")["data"]
    pressed = activity(
        connector.service_url,
        type="invoke",
        name="adaptiveCard/action",
        user=ANA_ID,
        conversation=chat,
        activity_id="csat-two-1",
        value={"action": {"type": "Action.Execute", "verb": "csat.rate", "data": two}},
    )
    first = await app.teams(pressed)
    assert first.status == 200
    assert (await first.json())["value"] == "Thank you! You rated HD-1 2/5."
    assert (await app.teams(pressed)).status == 200  # the same activity delivered again

    later = await teams.invoke(
        app, connector, "csat.rate", teams.action(card, "1")["data"], user=ANA_ID, conversation=chat
    )
    assert "already rated HD-1 2/5" in later["value"], later
    assert (await teams.stored_survey(app)).rating == 2
    assert [e.data["rating"] for e in await answered(app)] == [2]

    def alerts() -> list[str]:
        return [
            teams.unescape(json.dumps(a))
            for a in connector.activities(PERSONAL)
            if "/5 by" in teams.unescape(json.dumps(a))
        ]

    await wait_until(lambda: alerts() != [], what="the low-rating alert")
    await asyncio.sleep(1.0)
    [alert] = alerts()
    assert "HD-1" in alert and "2/5" in alert and "Ana Lopez" in alert, alert
