"""SPEC "Closure and CSAT": "A rating of 1 or 2 alerts the technician", and P1 tickets (and VIP
requesters) get a personal follow-up: "the technician is reminded ... to write to the
requester". A requester may open their own ticket (the bot lets anyone open one); they are on it
as its opener but are no technician. Their ticket's reminder and low-rating alert went to them:
the requester was reminded to write to themselves, and the thread's alert pinged the requester
about their own rating, while the technician who worked and closed it heard nothing. They go to
the technician who closed it. Over Slack HTTP, both databases."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from storage.models import Ticket
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, view_submission, wait_until
from tests.http import test_closure_slack as slack


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
