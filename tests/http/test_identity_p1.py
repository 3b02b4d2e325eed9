"""A P1 whose requester's identity is not confirmed says so to the incident channel and the
on-call: the vishing call ("I'm the CEO, I'm locked out of everything, it's urgent") is the
one that gets raised to P1, and the on-call who joins must not reset anything for the caller."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import select

from storage.models import Ticket, TicketEvent
from tests.fakes.pagers import FakePagerDuty
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, only_ticket, wait_until
from tests.http.p1_support import BRIDGE, INCIDENT_CHANNEL, pager_env, slack_posts
from tests.http.test_identity_slack import CONFIG, PEOPLE, click, manager_dm, new_ticket

GATE = "identity.gate_refused"
P1_CONFIG: dict[str, Any] = {
    **CONFIG,
    "slack": {"incident_channel": INCIDENT_CHANNEL},
    "incident": {"bridge_url": BRIDGE},
}


async def notice_updates(fake: FakeSlack) -> list[dict[str, Any]]:
    return [u for u in fake.method_calls("chat.update") if u.get("channel") == INCIDENT_CHANNEL]


async def test_a_p1_raised_before_the_identity_is_confirmed_says_so_until_it_is(
    make_app, slack_api: FakeSlack, pagerduty: FakePagerDuty
):
    app: AppHarness = await make_app(
        slack=slack_api, config=P1_CONFIG, people=PEOPLE, env=pager_env(pagerduty, None)
    )
    # Vic (a VIP) "calls": any category is checked; Tom raises it to P1 before Bo answers.
    await new_ticket(app, slack_api, requester="U0VIC", category="outlook")
    dm = await manager_dm(slack_api)
    answer = json.dumps(await (await app.slash("p1 HD-1")).json())
    assert "P1" in answer
    await wait_until(lambda: slack_posts(slack_api, INCIDENT_CHANNEL))
    [notice] = slack_posts(slack_api, INCIDENT_CHANNEL)
    shown = json.dumps(notice)
    assert "Identity" in shown and "NOT CONFIRMED" in shown, shown
    assert "do not reset passwords" in shown
    await pagerduty.wait_for("/v2/enqueue")
    [page] = pagerduty.events()
    assert "NOT CONFIRMED" in page["payload"]["custom_details"]["identity"]

    # Bo approves: the notice is edited in place to say so (no new notice, no new page).
    assert "confirmed the identity" in await click(app, slack_api, dm, "Approve", "U0BO")
    assert (await only_ticket(app)).identity_state == "confirmed"

    async def edited() -> bool:
        updates = await notice_updates(slack_api)
        return bool(updates) and "NOT CONFIRMED" not in json.dumps(updates[-1])

    await wait_until(edited)
    last = json.dumps((await notice_updates(slack_api))[-1])
    assert "Identity" in last and "confirmed" in last
    assert len(slack_posts(slack_api, INCIDENT_CHANNEL)) == 1 and len(pagerduty.events()) == 1


async def test_a_p1_whose_requester_was_denied_says_so(
    make_app, slack_api: FakeSlack, pagerduty: FakePagerDuty
):
    app: AppHarness = await make_app(
        slack=slack_api, config=P1_CONFIG, people=PEOPLE, env=pager_env(pagerduty, None)
    )
    await new_ticket(app, slack_api, requester="U0VIC", category="outlook")
    dm = await manager_dm(slack_api)
    await app.slash("p1 HD-1")
    await wait_until(lambda: slack_posts(slack_api, INCIDENT_CHANNEL))
    assert "stopped" in await click(app, slack_api, dm, "Deny", "U0BO")

    async def edited() -> bool:
        updates = await notice_updates(slack_api)
        return bool(updates) and "impersonation" in json.dumps(updates[-1])

    await wait_until(edited)
    assert "DENIED" in json.dumps((await notice_updates(slack_api))[-1])


async def test_a_p1_that_a_verify_puts_under_a_check_says_so(
    make_app, slack_api: FakeSlack, pagerduty: FakePagerDuty
):
    app: AppHarness = await make_app(
        slack=slack_api, config=P1_CONFIG, people=PEOPLE, env=pager_env(pagerduty, None)
    )
    await new_ticket(app, slack_api)  # Ana, printer: no check needed
    await app.slash("p1 HD-1")
    await wait_until(lambda: slack_posts(slack_api, INCIDENT_CHANNEL))
    [notice] = slack_posts(slack_api, INCIDENT_CHANNEL)
    assert "Identity" not in json.dumps(notice)
    await app.slash("verify HD-1")  # Tom has doubts: from now on it is checked
    await manager_dm(slack_api)

    async def edited() -> bool:
        updates = await notice_updates(slack_api)
        return bool(updates) and "NOT CONFIRMED" in json.dumps(updates[-1])

    await wait_until(edited)


async def test_a_ticket_whose_requester_was_denied_is_not_raised_to_p1_nor_filed_under_one(
    make_app, slack_api: FakeSlack, pagerduty: FakePagerDuty
):
    # Bo pressed Deny on HD-1 (possible impersonation; the technician is told not to
    # proceed). Raising it would page the on-call and open a bridge for the caller; filing it
    # under a live P1 would add the caller's claimed users to the incident and tell the real
    # requester their report is part of it. Both are refused, told why and audited, like the
    # other work on a denied ticket.
    app: AppHarness = await make_app(
        slack=slack_api, config=P1_CONFIG, people=PEOPLE, env=pager_env(pagerduty, None)
    )
    await new_ticket(app, slack_api, category="password-reset")  # HD-1
    dm = await manager_dm(slack_api)
    assert "stopped" in await click(app, slack_api, dm, "Deny", "U0BO")
    await new_ticket(app, slack_api, requester="U0CY")  # HD-2: Cy, printer, no check
    await app.slash("p1 HD-2")
    await wait_until(lambda: slack_posts(slack_api, INCIDENT_CHANNEL))
    await pagerduty.wait_for("/v2/enqueue")

    for command in ("p1 HD-1", "link HD-1 HD-2"):
        refused = json.dumps(await (await app.slash(command)).json())
        assert "possible impersonation" in refused, (command, refused)
    async with app.services.sessions() as session:
        hd1, hd2 = (await session.execute(select(Ticket).order_by(Ticket.id))).scalars().all()
        gate = (
            (await session.execute(select(TicketEvent).where(TicketEvent.kind == GATE)))
            .scalars()
            .all()
        )
    assert (hd1.priority, hd1.filed_under, hd2.filed_count) == ("P2", None, 0)
    assert sorted(e.data["action"] for e in gate) == ["link", "p1"]
    assert all(e.ticket_id == hd1.id and e.channel == "C0HELP" for e in gate)
    await asyncio.sleep(0.5)
    assert len(slack_posts(slack_api, INCIDENT_CHANNEL)) == 1 and len(pagerduty.events()) == 1
