"""SPEC "P1 incidents" on Teams: a P1 closed before its page went out is not paged, the ticket
records "not paged: closed first", the technician is told so, and the incident notice still goes
out, marked resolved. A failed page is told to the technician after its first failed attempt
and again when it goes through. Over Bot Framework activities, both databases (the Slack
side: tests/http/test_p1_closed_first.py, test_p1_slack.py)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from storage.models import TicketEvent
from tests.fakes.botframework import FakeConnector
from tests.fakes.pagers import FakeOpsgenie, FakePagerDuty
from tests.harness import AppHarness, wait_until
from tests.http.conftest_teams import PEOPLE, PERSONAL, TENANT, card_of, submit_action
from tests.http.p1_support import BRIDGE, INCIDENT_CONVERSATION, outbox_rows, pager_env
from tests.http.test_p1_teams import CLOSE, new_ticket, notices, say, shown


def config(fake: FakeConnector) -> dict[str, Any]:
    return {
        "teams": {
            "service_url": fake.service_url,
            "tenant_id": TENANT,
            "incident_conversation": INCIDENT_CONVERSATION,
        },
        "incident": {"bridge_url": BRIDGE},
    }


def told(fake: FakeConnector, words: str) -> list[str]:
    """What the technician's chat (the ticket's conversation) was told, containing `words`."""
    return [t for t in (shown(a) for a in fake.activities(PERSONAL)) if words in t]


async def test_teams_a_p1_closed_before_its_page_is_not_paged_but_its_notice_says_resolved(
    make_app: Any, connector: FakeConnector, pagerduty: FakePagerDuty, opsgenie: FakeOpsgenie
) -> None:
    env = pager_env(pagerduty, opsgenie)
    # A web process with no worker: the P1's notice and pages stay queued while it is closed.
    web: AppHarness = await make_app(
        config=config(connector), people=PEOPLE, env=env, scheduler=False
    )
    await new_ticket(web, connector, "P1")
    form = card_of(await say(web, connector, "ticket close HD-1"))
    await say(web, connector, value={**submit_action(form)["fallback"]["data"], **CLOSE})
    await web.stop()

    app: AppHarness = await make_app(config=config(connector), people=PEOPLE, env=env)
    await wait_until(lambda: notices(connector), what="the incident notice")
    await wait_until(lambda: told(connector, "not paged: closed first"), what="Tom told")
    await asyncio.sleep(1.0)
    assert pagerduty.calls("/v2/enqueue") == [] and opsgenie.alerts() == []  # nobody woken
    [notice] = notices(connector)
    text = shown(card_of(notice))
    assert "Resolved" in text and "HD-1" in text, text
    async with app.services.sessions() as session:
        kinds = (await session.execute(select(TicketEvent.kind))).scalars().all()
    assert "incident.not_paged" in kinds
    pages = [r for r in await outbox_rows(app) if r.kind.startswith("page.")]
    assert pages and all(
        (r.status, r.last_error) == ("cancelled", "not paged: closed first") for r in pages
    )
    assert "not paged: closed first" in shown(await say(app, connector, "ticket show HD-1"))


async def test_teams_a_failed_page_is_told_at_once_and_again_when_through(
    make_app: Any, connector: FakeConnector, pagerduty: FakePagerDuty
) -> None:
    env = pager_env(pagerduty, None)
    app: AppHarness = await make_app(config=config(connector), people=PEOPLE, env=env)
    pagerduty.fail("/v2/enqueue", 500, times=2)
    await new_ticket(app, connector, "P1")
    await wait_until(
        lambda: told(connector, "has not gone through yet"), timeout=5, what="the first report"
    )
    await wait_until(lambda: pagerduty.events("trigger"), timeout=10, what="the page")
    await wait_until(
        lambda: told(connector, "has gone through now"), timeout=5, what="the second report"
    )
    await asyncio.sleep(0.5)
    assert [c.status for c in pagerduty.calls("/v2/enqueue")] == [500, 500, 202]
    [failing] = told(connector, "has not gone through yet")
    assert "The PagerDuty page for HD-1 has not gone through yet" in failing
    [through] = told(connector, "has gone through now")
    assert "HD-1" in through
