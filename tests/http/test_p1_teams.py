"""P1 over Teams HTTP: a proactive incident notice, pages, `ticket p1`, closing resolves."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from tests.fakes.botframework import FakeConnector
from tests.fakes.pagers import FakeOpsgenie, FakePagerDuty
from tests.harness import AppHarness
from tests.http.conftest_teams import (
    ANA_ID,
    PEOPLE,
    PERSONAL,
    TENANT,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)
from tests.http.p1_support import (
    BRIDGE,
    INCIDENT_CONVERSATION,
    eventually,
    pager_env,
)

CLOSE = {"resolution_note": "Restarted the VPN concentrator VPN-01 and failed over the tunnel",
         "resolution_category": "Incident", "time_spent": "1h", "kb_article": ""}  # fmt: skip


async def start(make_app: Any, fake: FakeConnector, pd: FakePagerDuty,
                og: FakeOpsgenie) -> AppHarness:  # fmt: skip
    config = {
        "teams": {"service_url": fake.service_url, "tenant_id": TENANT,
                  "incident_conversation": INCIDENT_CONVERSATION},
        "incident": {"bridge_url": BRIDGE},
    }  # fmt: skip
    app: AppHarness = await make_app(config=config, people=PEOPLE, env=pager_env(pd, og))
    return app


def shown(node: Any) -> str:
    """Every string in a card or activity, the renderer's Markdown escapes removed."""
    if isinstance(node, dict):
        return "\n".join(shown(v) for v in node.values())
    if isinstance(node, list):
        return "\n".join(shown(v) for v in node)
    return re.sub(r"\\(.)", r"\1", node) if isinstance(node, str) else ""


async def say(app: AppHarness, fake: FakeConnector, text: str = "", *, user: str | None = None,
              value: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """Send a message (or an Action.Submit) in a 1:1 chat; return the bot's answer."""
    posted = len(fake.activities(PERSONAL))
    extra = {"user": user} if user else {}
    sent = (activity(fake.service_url, value=value, **extra) if value
            else message(fake.service_url, text, **extra))  # fmt: skip
    assert (await app.teams(sent)).status == 201
    await eventually(lambda: len(fake.activities(PERSONAL)) > posted, what="the bot's answer")
    return fake.activities(PERSONAL)[-1]


async def new_ticket(app: AppHarness, fake: FakeConnector, priority: str) -> None:
    form = card_of(await say(app, fake, "ticket new VPN down"))
    values = form_values(priority=priority, users_affected="25", category="network",
                         summary="VPN down for the whole Lisbon office")  # fmt: skip
    await say(app, fake, value={**submit_action(form)["fallback"]["data"], **values})


def notices(fake: FakeConnector) -> list[dict[str, Any]]:
    return fake.activities(INCIDENT_CONVERSATION)


async def test_p1_intake_on_teams_notices_once_and_pages_once(
    make_app, connector: FakeConnector, pagerduty: FakePagerDuty, opsgenie: FakeOpsgenie
):
    app = await start(make_app, connector, pagerduty, opsgenie)
    await new_ticket(app, connector, "P1")
    await eventually(lambda: notices(connector), what="incident notice")
    await pagerduty.wait_for("/v2/enqueue")
    await opsgenie.wait_for("/v2/alerts")
    await asyncio.sleep(0.6)
    [notice] = notices(connector)
    assert notice["_reply_to_id"] is None
    text = shown(card_of(notice))
    for part in ("HD-1", BRIDGE, "VPN down for the whole Lisbon office", "25", "Ana Lopez",
                 "Tom Tech"):  # fmt: skip
        assert part in text, part
    [event] = pagerduty.events()
    assert (event["event_action"], event["dedup_key"]) == ("trigger", "HD-1")
    [alert] = opsgenie.alerts()
    assert alert["alias"] == "HD-1"


async def test_ticket_p1_on_teams_pages_once_and_refuses_non_technicians(
    make_app, connector: FakeConnector, pagerduty: FakePagerDuty, opsgenie: FakeOpsgenie
):
    app = await start(make_app, connector, pagerduty, opsgenie)
    await new_ticket(app, connector, "P3")
    refused = await say(app, connector, "ticket p1 HD-1", user=ANA_ID)
    assert "Only technicians can raise a ticket to P1" in json.dumps(refused)
    first = await say(app, connector, "ticket p1 HD-1")
    assert "HD-1 is now P1" in shown(first)
    again = await say(app, connector, "ticket p1 HD-1")
    assert "already P1" in shown(again)
    await pagerduty.wait_for("/v2/enqueue")
    await opsgenie.wait_for("/v2/alerts")
    await eventually(lambda: notices(connector), what="incident notice")
    await asyncio.sleep(0.6)
    assert len(pagerduty.events("trigger")) == 1 and len(opsgenie.alerts()) == 1
    assert len(notices(connector)) == 1


async def test_closing_on_teams_resolves_and_updates_the_notice(
    make_app, connector: FakeConnector, pagerduty: FakePagerDuty, opsgenie: FakeOpsgenie
):
    app = await start(make_app, connector, pagerduty, opsgenie)
    await new_ticket(app, connector, "P1")
    await eventually(lambda: notices(connector), what="incident notice")
    await pagerduty.wait_for("/v2/enqueue")
    [notice] = notices(connector)

    form = card_of(await say(app, connector, "ticket close HD-1"))
    await say(app, connector, value={**submit_action(form)["fallback"]["data"], **CLOSE})
    await eventually(lambda: pagerduty.events("resolve"), what="PagerDuty resolve")
    await eventually(lambda: opsgenie.closes(), what="Opsgenie close")
    # Notice and card updates (the card's first: `close` recorded the first response).
    await eventually(lambda: len(connector.updates()) == 3, what="notice and card updates")
    assert pagerduty.events("resolve")[0]["dedup_key"] == "HD-1"
    assert pagerduty.open_dedup_keys() == [] and opsgenie.open_aliases() == []
    [update] = [u for u in connector.updates() if u["_conversation_id"] == INCIDENT_CONVERSATION]
    assert update["_activity_id"] == notice["_id"]
    assert "Resolved" in shown(card_of(update))
    # The ticket card itself now says closed and has no buttons left.
    *_, card = [u for u in connector.updates() if u["_conversation_id"] != INCIDENT_CONVERSATION]
    closed = card_of(card)
    assert "closed" in shown(closed) and not closed.get("actions")
