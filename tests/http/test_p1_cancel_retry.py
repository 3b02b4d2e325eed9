"""A P1 page whose first attempt failed cleanly (a 429: PagerDuty did not ingest it) is
waiting for its retry when the P1 is closed, or filed under another P1: it certainly did not
reach the pager, so it is cancelled (SPEC "P1 incidents": "not paged: closed first"), not sent
to wake the on-call for a closed incident. One whose attempt may have arrived (in doubt) is
resolved after it instead."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update

from storage.models import OutboxMessage
from tests.fakes.pagers import FakePagerDuty
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness
from tests.http.p1_support import (
    INCIDENT_CHANNEL,
    SLACK_PEOPLE,
    eventually,
    outbox_rows,
    pager_env,
    slack_close,
    slack_posts,
    slack_ticket,
)

CONFIG = {"slack": {"incident_channel": INCIDENT_CHANNEL}}


def told(slack: FakeSlack, words: str) -> list[dict[str, Any]]:
    """Posts in the help channel (the ticket's thread) that contain `words`."""
    return [p for p in slack_posts(slack, "C0HELP") if words in json.dumps(p)]


async def page_row(app: AppHarness, number: str) -> OutboxMessage:
    key = f"p1:{number}:pagerduty"
    return next(r for r in await outbox_rows(app) if r.dedup_key == key)


async def waiting_for_retry(app: AppHarness, number: str) -> OutboxMessage:
    """The page once its first attempt (refused) is recorded: pending, not claimed."""

    async def recorded() -> bool:
        row = await page_row(app, number)
        return row.attempts == 1 and row.claimed_until is None and row.last_error != ""

    await eventually(recorded, what=f"{number}'s failed page recorded")
    row = await page_row(app, number)
    assert row.status == "pending" and not row.in_doubt, row
    return row


async def past_its_retry(row: OutboxMessage) -> None:
    """Wait until the row's retry was due (plus a few polls): had it not been cancelled, the
    worker would have sent it by then."""
    due = row.due_at if row.due_at.tzinfo else row.due_at.replace(tzinfo=UTC)
    await asyncio.sleep(max((due - datetime.now(UTC)).total_seconds(), 0.0) + 1.5)


async def test_p1_closed_while_its_page_waits_for_a_retry_is_not_paged(
    make_app: Any, slack_api: FakeSlack, pagerduty: FakePagerDuty
) -> None:
    app = await make_app(slack=slack_api, config=CONFIG, people=SLACK_PEOPLE,
                         env=pager_env(pagerduty, None))  # fmt: skip
    pagerduty.fail("/v2/enqueue", 429, times=1, headers={"Retry-After": "3"})
    await slack_ticket(app, slack_api)
    await pagerduty.wait_for("/v2/enqueue")
    row = await waiting_for_retry(app, "HD-1")
    assert pagerduty.events("trigger") == []
    await slack_close(app, slack_api, "HD-1")
    page = await page_row(app, "HD-1")
    assert (page.status, page.last_error) == ("cancelled", "not paged: closed first")
    await eventually(lambda: told(slack_api, "not paged: closed first"),
                     what="the technician told")  # fmt: skip
    # The notice (posted before the close: only the page was refused) is marked resolved.
    await eventually(
        lambda: any("Resolved: P1 incident HD-1" in json.dumps(u)
                    for u in slack_api.method_calls("chat.update")
                    if u.get("channel") == INCIDENT_CHANNEL),
        what="the notice, marked resolved",
    )  # fmt: skip
    await past_its_retry(row)
    assert pagerduty.events("trigger") == [], "the on-call was paged for a closed P1"
    assert pagerduty.events("resolve") == []  # nothing to resolve
    assert len(pagerduty.calls("/v2/enqueue")) == 1  # only the refused attempt
    page = await page_row(app, "HD-1")
    assert (page.status, page.last_error) == ("cancelled", "not paged: closed first")
    assert "not paged: closed first" in await (await app.slash("show HD-1")).text()


async def test_a_report_filed_while_its_page_waits_for_a_retry_is_not_paged(
    make_app: Any, slack_api: FakeSlack, pagerduty: FakePagerDuty
) -> None:
    app = await make_app(slack=slack_api, config=CONFIG, people=SLACK_PEOPLE,
                         env=pager_env(pagerduty, None))  # fmt: skip
    await slack_ticket(app, slack_api)
    await eventually(lambda: pagerduty.events("trigger"), what="HD-1's page")
    # A second P1 for the same outage: PagerDuty refuses its page once (not ingested).
    pagerduty.fail("/v2/enqueue", 429, times=1, headers={"Retry-After": "3"})
    await slack_ticket(app, slack_api, user="UTECH")
    await pagerduty.wait_for("/v2/enqueue", count=2)
    row = await waiting_for_retry(app, "HD-2")
    answer = json.dumps(await (await app.slash("link HD-2 HD-1")).json())
    assert "HD-2 is filed under HD-1" in answer, answer
    # Its technician was told the page is being retried: the answer says it no longer is.
    assert told(slack_api, "page for HD-2 has not gone through yet")
    assert "HD-2's own PagerDuty page had not gone out: it is not sent" in answer, answer
    page = await page_row(app, "HD-2")
    assert page.status == "cancelled" and "filed under another P1" in page.last_error
    await past_its_retry(row)
    # No new page: the one trigger is HD-1's.
    assert [e["dedup_key"] for e in pagerduty.events("trigger")] == ["HD-1"]
    assert len(pagerduty.calls("/v2/enqueue")) == 2


async def test_a_page_in_doubt_is_resolved_after_the_close_not_cancelled(
    make_app: Any, slack_api: FakeSlack, pagerduty: FakePagerDuty
) -> None:
    app = await make_app(slack=slack_api, config=CONFIG, people=SLACK_PEOPLE,
                         env=pager_env(pagerduty, None))  # fmt: skip
    pagerduty.fail("/v2/enqueue", 429, times=1, headers={"Retry-After": "3"})
    await slack_ticket(app, slack_api)
    await pagerduty.wait_for("/v2/enqueue")
    row = await waiting_for_retry(app, "HD-1")
    # An earlier attempt may have arrived (it timed out, as `mark_failed(uncertain=True)`
    # records it): PagerDuty may have the alert open.
    async with app.services.sessions() as session, session.begin():
        await session.execute(
            update(OutboxMessage).where(OutboxMessage.id == row.id).values(in_doubt=True)
        )
    await slack_close(app, slack_api, "HD-1")
    page = await page_row(app, "HD-1")
    assert page.status == "pending" and page.last_error != "not paged: closed first"
    # The trigger is retried (idempotent by its dedup key), and the resolve follows it.
    await eventually(lambda: pagerduty.events("resolve"), timeout=10, what="the resolve")
    calls = [c.json["event_action"] for c in pagerduty.calls("/v2/enqueue") if c.status == 202]
    assert calls == ["trigger", "resolve"]
    assert pagerduty.open_dedup_keys() == []
    assert not told(slack_api, "not paged")


async def test_a_page_refused_while_the_p1_was_being_closed_is_not_retried(
    make_app: Any, slack_api: FakeSlack, pagerduty: FakePagerDuty
) -> None:
    """The close came while the first attempt was on its way (so it could not be cancelled);
    PagerDuty then refused it (429: not ingested). The retry would wake the on-call for an
    incident already over: it is not sent, as for a page closed before any attempt."""
    app = await make_app(slack=slack_api, config=CONFIG, people=SLACK_PEOPLE,
                         env=pager_env(pagerduty, None))  # fmt: skip
    pagerduty.set_delay("/v2/enqueue", 2.0)
    pagerduty.fail("/v2/enqueue", 429, times=1, headers={"Retry-After": "2"})
    await slack_ticket(app, slack_api)
    await eventually(lambda: pagerduty.calls("/v2/enqueue"), what="the page's first attempt")
    await slack_close(app, slack_api, "HD-1")  # while PagerDuty has not answered yet
    pagerduty.set_delay("/v2/enqueue", 0)
    row = await waiting_for_retry(app, "HD-1")
    await past_its_retry(row)
    await asyncio.sleep(1.5)
    assert pagerduty.events("trigger") == [], "the on-call was paged for a closed P1"
    assert pagerduty.events("resolve") == []
    page = await page_row(app, "HD-1")
    assert (page.status, page.last_error) == ("cancelled", "not paged: closed first")
    await eventually(lambda: told(slack_api, "not paged: closed first"),
                     what="the technician told")  # fmt: skip


async def test_not_paged_says_what_became_of_the_incident_notice(
    make_app: Any, slack_api: FakeSlack, pagerduty: FakePagerDuty
) -> None:
    """The notice went out before the close (only the page was refused): it is edited to say
    resolved, not "goes out" again; with no incident channel there is no notice to speak of."""
    app = await make_app(slack=slack_api, config=CONFIG, people=SLACK_PEOPLE,
                         env=pager_env(pagerduty, None))  # fmt: skip
    pagerduty.fail("/v2/enqueue", 429, times=1, headers={"Retry-After": "5"})
    await slack_ticket(app, slack_api)
    await eventually(lambda: slack_posts(slack_api, INCIDENT_CHANNEL), what="the notice")
    await waiting_for_retry(app, "HD-1")
    await slack_close(app, slack_api, "HD-1")
    await eventually(lambda: told(slack_api, "not paged: closed first"), what="the technician")
    [post] = told(slack_api, "not paged: closed first")
    text = str(post["text"])
    assert "The incident notice is marked resolved." in text, text
    assert "goes out" not in text, text


async def test_not_paged_without_an_incident_channel_claims_no_notice(
    make_app: Any, slack_api: FakeSlack, pagerduty: FakePagerDuty
) -> None:
    app = await make_app(slack=slack_api, config={}, people=SLACK_PEOPLE,
                         env=pager_env(pagerduty, None))  # fmt: skip
    pagerduty.fail("/v2/enqueue", 429, times=1, headers={"Retry-After": "5"})
    await slack_ticket(app, slack_api)
    await waiting_for_retry(app, "HD-1")
    await slack_close(app, slack_api, "HD-1")
    await eventually(lambda: told(slack_api, "not paged: closed first"), what="the technician")
    [post] = told(slack_api, "not paged: closed first")
    text = str(post["text"])
    assert "notice" not in text, text
