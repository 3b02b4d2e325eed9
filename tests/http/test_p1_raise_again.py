"""`p1 HD-1` on a ticket that is P1 already says how its notice and pages stand: delivered,
still being retried, or given up (reach the on-call another way), never that a page went out
when nobody was paged."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.pagers import FakePagerDuty
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness
from tests.http.p1_support import (
    INCIDENT_CHANNEL,
    SLACK_PEOPLE,
    eventually,
    outbox_rows,
    pager_env,
    slack_posts,
    slack_ticket,
)

CONFIG = {"slack": {"incident_channel": INCIDENT_CHANNEL}}


async def page_is(app: AppHarness, status: str, *, failed: bool = False) -> bool:
    return any(
        r.dedup_key == "p1:HD-1:pagerduty"
        and r.status == status
        and (not failed or (r.attempts == 1 and r.claimed_until is None))
        for r in await outbox_rows(app)
    )


async def raise_again(app: AppHarness) -> str:
    return json.dumps(await (await app.slash("p1 HD-1")).json())


async def test_raise_again_after_a_dead_page_does_not_claim_it_went_out(
    make_app: Any, slack_api: FakeSlack, pagerduty: FakePagerDuty
) -> None:
    app = await make_app(slack=slack_api, config=CONFIG, people=SLACK_PEOPLE,
                         env=pager_env(pagerduty, None))  # fmt: skip
    pagerduty.fail("/v2/enqueue", 400, times=1)
    await slack_ticket(app, slack_api)

    async def dead() -> bool:
        return await page_is(app, "dead")

    await eventually(dead, what="the page given up")
    await eventually(lambda: slack_posts(slack_api, INCIDENT_CHANNEL), what="the notice")
    assert pagerduty.events("trigger") == []
    answer = await raise_again(app)
    assert "page went out before" not in answer, answer
    assert "HD-1 is already P1" in answer
    assert "The PagerDuty page failed and will not be retried: pagerduty: HTTP 400" in answer
    assert "Reach the on-call another way." in answer
    assert "The incident notice (Slack) went out before." in answer
    assert pagerduty.events("trigger") == []  # raising again pages nobody


async def test_raise_again_while_the_page_is_retried_says_so(
    make_app: Any, slack_api: FakeSlack, pagerduty: FakePagerDuty
) -> None:
    app = await make_app(slack=slack_api, config=CONFIG, people=SLACK_PEOPLE,
                         env=pager_env(pagerduty, None))  # fmt: skip
    pagerduty.fail("/v2/enqueue", 429, times=1, headers={"Retry-After": "60"})
    await slack_ticket(app, slack_api)

    async def waiting() -> bool:
        return await page_is(app, "pending", failed=True)

    await eventually(waiting, what="the page waiting for its retry")
    answer = await raise_again(app)
    assert "page went out before" not in answer, answer
    assert "The PagerDuty page has not gone through yet (pagerduty: HTTP 429" in answer
    assert "still being retried." in answer


async def test_raise_again_after_everything_went_out(
    make_app: Any, slack_api: FakeSlack, pagerduty: FakePagerDuty
) -> None:
    app = await make_app(slack=slack_api, config=CONFIG, people=SLACK_PEOPLE,
                         env=pager_env(pagerduty, None))  # fmt: skip
    await slack_ticket(app, slack_api)

    async def paged() -> bool:
        return await page_is(app, "delivered")

    await eventually(paged, what="the page")
    await eventually(lambda: slack_posts(slack_api, INCIDENT_CHANNEL), what="the notice")

    async def notice_recorded() -> bool:
        rows = await outbox_rows(app)
        return any(r.dedup_key == "p1:HD-1:notice:slack" and r.status == "delivered"
                   for r in rows)  # fmt: skip

    await eventually(notice_recorded, what="the notice recorded")
    answer = await raise_again(app)
    assert "HD-1 is already P1: its incident notice and page went out before." in answer


async def test_raise_again_with_nothing_configured_does_not_claim_anything_went_out(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app = await make_app(slack=slack_api, people=SLACK_PEOPLE)
    await slack_ticket(app, slack_api)
    answer = await raise_again(app)
    assert "went out" not in answer, answer
    assert "No pager is configured" in answer and "No incident channel" in answer
