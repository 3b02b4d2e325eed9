"""SPEC "Identity confirmation": the manager is DMed on the platform the ticket came through
when they have an id there, else on their other platform. A help desk connected to both: a
Slack ticket whose requester's manager is only on Teams gets the request in a Teams 1:1 chat
(and his answer there counts); a Teams ticket whose manager is only on Slack gets a Slack DM.
The manager with ids on both platforms is asked on the ticket's platform only."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, only_ticket, wait_until
from tests.http import test_identity_slack as slack
from tests.http import test_identity_teams as teams
from tests.http.conftest_teams import PERSONAL, TECH_ID, TENANT

BO_TEAMS = "29:1bo"
TECH = {
    "email": "tom@example.com",
    "name": "Tom Tech",
    "slack_id": "UTECH",
    "teams_id": TECH_ID,
    "technician": True,
}


def people(bo: dict[str, str]) -> list[dict[str, Any]]:
    ana = {
        "email": "ana@example.com",
        "name": "Ana Lopez",
        "slack_id": "U0ANA",
        "teams_id": "29:1ana",
        "phone": "+1 555 0100",
        "manager": "bo@example.com",
    }
    return [ana, {"email": "bo@example.com", "name": "Bo Boss", **bo}, TECH]


async def start(
    make_app: Any, slack_api: FakeSlack, connector: FakeConnector, bo: dict[str, str]
) -> AppHarness:
    config = {"teams": {"service_url": connector.service_url, "tenant_id": TENANT}}
    app: AppHarness = await make_app(slack=slack_api, config=config, people=people(bo))
    return app


def bo_chats(connector: FakeConnector) -> list[dict[str, Any]]:
    return [c for c in connector.created_conversations() if c["members"][0]["id"] == BO_TEAMS]


async def test_a_slack_tickets_manager_only_on_teams_is_asked_on_teams(
    make_app: Any, slack_api: FakeSlack, connector: FakeConnector
) -> None:
    app = await start(make_app, slack_api, connector, {"teams_id": BO_TEAMS})
    await slack.new_ticket(app, slack_api)
    answer = json.dumps(await (await app.slash("verify HD-1")).json())
    assert "Bo Boss" in answer, answer
    chat, card = await teams.manager_request(connector)
    assert "HD-1" in json.dumps(card) and "Ana Lopez" in json.dumps(card)
    assert not slack.posts_to(slack_api, "DU0BO")
    assert "U0BO" not in [c.get("users") for c in slack_api.method_calls("conversations.open")]

    approved = await teams.execute(
        app, connector, card, "Approve", user=BO_TEAMS, conversation=chat
    )
    assert "confirmed the identity for HD-1" in approved
    assert (await only_ticket(app)).identity_state == "confirmed"
    # Tom hears it in the Slack ticket's thread.
    await wait_until(
        lambda: any(
            "Identity confirmed for HD-1" in json.dumps(p)
            for p in slack.posts_to(slack_api, "C0HELP")
        ),
        what="the technician told in the thread",
    )


async def test_a_teams_tickets_manager_only_on_slack_is_asked_on_slack(
    make_app: Any, slack_api: FakeSlack, connector: FakeConnector
) -> None:
    app = await start(make_app, slack_api, connector, {"slack_id": "U0BO"})
    await teams.new_ticket(app, connector)
    await app.teams(teams.message(connector.service_url, "ticket verify HD-1"))
    dm = await slack.manager_dm(slack_api)
    assert "HD-1" in json.dumps(dm["blocks"])
    assert not bo_chats(connector)
    approved = await slack.click(app, slack_api, dm, "Approve", "U0BO")
    assert "confirmed the identity for HD-1" in approved
    assert (await only_ticket(app)).identity_state == "confirmed"
    await wait_until(lambda: "Identity confirmed for HD-1" in teams.texts(connector, PERSONAL))


async def test_a_manager_on_both_is_asked_on_the_tickets_platform_only(
    make_app: Any, slack_api: FakeSlack, connector: FakeConnector
) -> None:
    app = await start(make_app, slack_api, connector, {"slack_id": "U0BO", "teams_id": BO_TEAMS})
    await teams.new_ticket(app, connector)
    await app.teams(teams.message(connector.service_url, "ticket verify HD-1"))
    _chat, card = await teams.manager_request(connector)
    assert "HD-1" in json.dumps(card)
    assert not slack.posts_to(slack_api, "DU0BO")
    assert "U0BO" not in [c.get("users") for c in slack_api.method_calls("conversations.open")]
