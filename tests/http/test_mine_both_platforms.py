"""`mine` for a person the directory knows on Slack and on Teams (one entry, both ids).

SPEC: `mine` lists "the caller's open tickets"; README: "your open tickets (as requester or
technician)". Tom works tickets from Slack at his desk and from Teams on his phone: asked on
either, `mine` lists the tickets he opened on both, and Ana's lists the tickets she is the
requester of on both. The other ids come from the directory entry found by the caller's own
chat id, never from anything typed; someone else is shown none of them.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, view_submission, wait_until
from tests.http.conftest_teams import (
    ANA_ID,
    PERSONAL,
    TECH_ID,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)
from tests.http.test_slack_intake import open_modal, states

PEOPLE = [
    {
        "email": "tom@example.com",
        "name": "Tom Tech",
        "slack_id": "UTECH",
        "teams_id": TECH_ID,
        "technician": True,
    },
    {"email": "ana@example.com", "name": "Ana Lopez", "slack_id": "UANA", "teams_id": ANA_ID},
    {"email": "sam@example.com", "name": "Sam Other", "slack_id": "USAM", "teams_id": "29:1sam"},
]
SAM_CHAT = "a:1personal-chat-with-sam"
ANA_CHAT = "a:1personal-chat-with-ana"


async def start(make_app: Any, slack: FakeSlack, connector: FakeConnector) -> AppHarness:
    config = {"teams": {"service_url": connector.service_url, "tenant_id": "t-1"}}
    app: AppHarness = await make_app(slack=slack, config=config, people=PEOPLE)
    return app


async def teams_said(
    app: AppHarness, fake: FakeConnector, body: dict[str, Any], chat: str = PERSONAL
) -> dict[str, Any]:
    before = len(fake.activities(chat))
    assert (await app.teams(body)).status == 201
    await wait_until(lambda: len(fake.activities(chat)) > before)
    return fake.activities(chat)[-1]


async def slack_mine(app: AppHarness, user: str) -> str:
    return json.dumps(await (await app.slash("mine", user=user)).json())


async def teams_mine(app: AppHarness, fake: FakeConnector, user: str, chat: str) -> str:
    sent = message(fake.service_url, "ticket mine", user=user, conversation=chat)
    return str((await teams_said(app, fake, sent, chat))["text"])


async def test_mine_lists_the_tickets_of_the_same_person_on_both_platforms(
    make_app, slack_api: FakeSlack, connector: FakeConnector
):
    app = await start(make_app, slack_api, connector)
    # HD-1: Tom on Slack, for Ana. HD-2: Tom on Teams, for Ana.
    view = await open_modal(app, slack_api)
    summary = {"type": "plain_text_input", "value": "Printer jams on floor 3"}
    response = await app.interactive(view_submission(view, states(summary=summary)))
    assert response.status == 200
    form = card_of(await teams_said(app, connector, message(connector.service_url, "ticket new")))
    values = form_values(requester="ana@example.com", summary="VPN drops every hour")
    submitted = activity(
        connector.service_url, value={**submit_action(form)["fallback"]["data"], **values}
    )
    card = await teams_said(app, connector, submitted)
    assert "HD-2" in json.dumps(card)

    for said in (
        await slack_mine(app, "UTECH"),
        await teams_mine(app, connector, TECH_ID, PERSONAL),
        await slack_mine(app, "UANA"),
        await teams_mine(app, connector, ANA_ID, ANA_CHAT),
    ):
        assert "Your open tickets (2)" in said, said
        assert "HD-1" in said and "Printer jams" in said
        assert "HD-2" in said and "VPN drops" in said
    assert "no open tickets" in await slack_mine(app, "USAM")
    assert "no open tickets" in await teams_mine(app, connector, "29:1sam", SAM_CHAT)


async def test_the_requester_sees_their_ticket_from_the_other_platform(
    make_app, slack_api: FakeSlack, connector: FakeConnector
):
    # Ana's ticket was opened on Slack (on file by her Slack id): on Teams `show` gives her
    # the card, as `mine` lists it; Sam, no technician and not the requester, is refused.
    app = await start(make_app, slack_api, connector)
    view = await open_modal(app, slack_api)
    assert (await app.interactive(view_submission(view, states()))).status == 200
    await wait_until(lambda: "HD-1" in json.dumps(slack_api.posts()))
    sent = message(connector.service_url, "ticket show HD-1", user=ANA_ID, conversation=ANA_CHAT)
    shown = await teams_said(app, connector, sent, ANA_CHAT)
    assert "Printer jams" in json.dumps(card_of(shown))
    sent = message(connector.service_url, "ticket show HD-1", user="29:1sam", conversation=SAM_CHAT)
    refused = json.dumps(await teams_said(app, connector, sent, SAM_CHAT))
    assert "Only technicians and the requester can see HD-1" in refused
