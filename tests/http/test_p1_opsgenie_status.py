"""Opsgenie pages are confirmed, not assumed: a 202 only accepts a create or close, Opsgenie
processes it afterwards (docs.opsgenie.com/docs/alert-api, "Get Request Status"). A page whose
processing failed is a failed page: retried, and the technician told as for PagerDuty; one
still unprocessed after a short bound is in doubt and sent again (same alias)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from storage.models import OutboxMessage
from tests.fakes.pagers import FakeOpsgenie
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
STATUS = "/v2/alerts/requests/*"


async def start(make_app: Any, slack: FakeSlack, og: FakeOpsgenie) -> AppHarness:
    app: AppHarness = await make_app(slack=slack, config=CONFIG, people=SLACK_PEOPLE,
                                     env=pager_env(None, og))  # fmt: skip
    return app


def told(slack: FakeSlack, words: str) -> list[str]:
    """What the technician was told in the ticket's thread, containing `words`."""
    return [str(p.get("text")) for p in slack_posts(slack, "C0HELP") if words in json.dumps(p)]


async def row(app: AppHarness, key: str) -> OutboxMessage:
    return next(r for r in await outbox_rows(app) if r.dedup_key == key)


async def shown(app: AppHarness, number: str = "HD-1") -> str:
    return json.dumps(await (await app.slash(f"show {number}")).json())


async def test_an_opsgenie_alert_that_fails_processing_is_retried_and_the_technician_told(
    make_app: Any, slack_api: FakeSlack, opsgenie: FakeOpsgenie
) -> None:
    """On main the 202 counted as delivered: the on-call was never paged and nobody knew."""
    app = await start(make_app, slack_api, opsgenie)
    opsgenie.fail_processing("create", "Alert message is empty after the integration's rules")
    await slack_ticket(app, slack_api)
    await eventually(lambda: told(slack_api, "has not gone through yet"), timeout=10,
                     what="the technician told the alert failed")  # fmt: skip
    [failing] = told(slack_api, "has not gone through yet")
    # In the thread Tom does not follow: it starts with a mention of him.
    assert failing.startswith("<@UTECH> The Opsgenie alert for HD-1 has not gone through yet"), (
        failing
    )
    assert "Alert message is empty after the integration's rules" in failing
    assert failing.endswith("retrying.")
    await eventually(lambda: opsgenie.alerts(), timeout=10, what="the alert created on retry")
    await eventually(lambda: told(slack_api, "has gone through now"), timeout=10,
                     what="the technician told it went through")  # fmt: skip
    [through] = told(slack_api, "has gone through now")
    assert "The Opsgenie alert for HD-1 has gone through now (attempt 2)" in through
    page = await row(app, "p1:HD-1:opsgenie")
    [failed, created] = opsgenie.requests("create")
    assert (failed["ok"], created["ok"]) == (False, True)
    assert page.status == "delivered" and page.result["alert_id"] == created["alertId"]
    assert page.result["request_id"] == created["id"] and page.result["confirmed"] is True
    assert opsgenie.open_aliases() == ["HD-1"]
    assert "delivered (attempt 2)" in await shown(app)


async def test_an_alert_slow_to_process_is_confirmed_and_its_alert_id_recorded(
    make_app: Any, slack_api: FakeSlack, opsgenie: FakeOpsgenie
) -> None:
    app = await start(make_app, slack_api, opsgenie)
    opsgenie.processing_delay = 1.5
    await slack_ticket(app, slack_api)

    async def delivered() -> bool:
        return (await row(app, "p1:HD-1:opsgenie")).status == "delivered"

    await eventually(delivered, timeout=10, what="the alert confirmed")
    page = await row(app, "p1:HD-1:opsgenie")
    [request] = opsgenie.requests("create")
    assert page.attempts == 1 and page.result["confirmed"] is True
    assert (page.result["alert_id"], page.result["status"]) == (request["alertId"], "Created alert")
    polls = opsgenie.calls(STATUS)
    assert polls[0].status == 404 and polls[-1].status == 200
    await asyncio.sleep(0.5)
    assert told(slack_api, "has not gone through") == [] and len(opsgenie.alerts()) == 1
    # Nothing else waited meanwhile: the incident notice went out as usual.
    assert slack_posts(slack_api, INCIDENT_CHANNEL)


async def test_an_alert_not_processed_within_the_bound_is_in_doubt_and_sent_again(
    make_app: Any, slack_api: FakeSlack, opsgenie: FakeOpsgenie
) -> None:
    """The worker does not wait for Opsgenie for ever: past the bound the attempt is in doubt
    (it may still be processed), `show` says why, and the alert is sent again, which the
    alias de-duplicates. Closing the P1 then closes it (an alert in doubt is never cancelled)."""
    app = await start(make_app, slack_api, opsgenie)
    opsgenie.processing_delay = 30.0
    await slack_ticket(app, slack_api)

    async def first_recorded() -> bool:
        page = await row(app, "p1:HD-1:opsgenie")
        return page.attempts == 1 and page.claimed_until is None and page.last_error != ""

    await eventually(first_recorded, timeout=12, what="the unconfirmed attempt recorded")
    opsgenie.processing_delay = 0.0
    page = await row(app, "p1:HD-1:opsgenie")
    assert page.status == "pending" and page.in_doubt
    assert "accepted the alert but had not processed it after 5 s" in page.last_error
    # The notice is queued with the attempt's record and posted by the worker just after it.
    await eventually(lambda: told(slack_api, "has not gone through yet"), timeout=10,
                     what="the technician told")  # fmt: skip
    [failing] = told(slack_api, "has not gone through yet")
    assert "had not processed it after 5 s" in failing
    await eventually(lambda: told(slack_api, "has gone through now"), timeout=10,
                     what="the resend confirmed")  # fmt: skip
    page = await row(app, "p1:HD-1:opsgenie")
    first, second = opsgenie.requests("create")
    assert page.status == "delivered" and page.result["alert_id"] == second["alertId"]
    assert first["alertId"] == second["alertId"]  # one alert: the alias de-duplicated it
    assert opsgenie.open_aliases() == ["HD-1"]
    await slack_close(app, slack_api, "HD-1")
    await eventually(lambda: opsgenie.closes(), timeout=10, what="the alert closed")
    assert opsgenie.open_aliases() == []


async def test_an_opsgenie_close_that_fails_processing_is_retried_like_a_resolve(
    make_app: Any, slack_api: FakeSlack, opsgenie: FakeOpsgenie
) -> None:
    app = await start(make_app, slack_api, opsgenie)
    await slack_ticket(app, slack_api)
    await eventually(lambda: opsgenie.open_aliases(), what="the alert")

    async def delivered() -> bool:
        return (await row(app, "p1:HD-1:opsgenie")).status == "delivered"

    await eventually(delivered, what="the alert recorded")
    opsgenie.fail_processing("close", "Internal error while closing the alert")
    await slack_close(app, slack_api, "HD-1")
    await eventually(lambda: told(slack_api, "has not gone through yet"), timeout=10,
                     what="the technician told the close failed")  # fmt: skip
    [failing] = told(slack_api, "has not gone through yet")
    # In the thread Tom does not follow: it starts with a mention of him.
    assert failing.startswith("<@UTECH> The Opsgenie close for HD-1 has not gone through yet"), (
        failing
    )
    assert "Internal error while closing the alert" in failing
    await eventually(lambda: opsgenie.closes(), timeout=10, what="the close on retry")
    await eventually(lambda: told(slack_api, "has gone through now"), timeout=10,
                     what="the technician told the close went through")  # fmt: skip
    assert opsgenie.open_aliases() == []
    close = await row(app, "p1:HD-1:opsgenie:resolved")
    assert close.status == "delivered" and close.result["status"] == "Closed alert"


async def test_a_p1_closed_while_its_failed_alert_waits_for_a_retry_is_not_paged(
    make_app: Any, slack_api: FakeSlack, opsgenie: FakeOpsgenie
) -> None:
    """A create that failed processing created nothing (not in doubt): closing the P1 before it
    went through gives it up as 'not paged: closed first', as for a PagerDuty page refused
    cleanly; nobody is woken for a closed incident and nothing is left to close."""
    app = await start(make_app, slack_api, opsgenie)
    opsgenie.fail_processing("create", "Alert message is empty after the integration's rules", 50)
    await slack_ticket(app, slack_api)
    await eventually(lambda: told(slack_api, "has not gone through yet"), timeout=10,
                     what="the technician told the alert failed")  # fmt: skip
    await slack_close(app, slack_api, "HD-1")

    async def given_up() -> bool:
        return (await row(app, "p1:HD-1:opsgenie")).status == "cancelled"

    await eventually(given_up, timeout=10, what="the alert given up")
    page = await row(app, "p1:HD-1:opsgenie")
    assert (page.last_error, page.in_doubt) == ("not paged: closed first", False)
    await eventually(lambda: told(slack_api, "not paged: closed first"),
                     what="the technician told nobody was paged")  # fmt: skip
    await asyncio.sleep(1.5)
    assert opsgenie.alerts() == [] and opsgenie.requests("close") == []
    assert "not paged: closed first" in await shown(app)


async def test_a_worker_stopping_while_opsgenie_confirms_records_the_alert_in_doubt(
    make_app: Any, slack_api: FakeSlack, opsgenie: FakeOpsgenie, caplog: Any
) -> None:
    """A stop (a redeploy) while the alert waits for Opsgenie's confirmation ends the wait at
    once: the attempt is recorded in doubt (accepted, perhaps processed), not left claimed, and
    the next process sends it again, one alert. On main shutdown waited out its 3 s bound for
    the worker, then the poll ran into the closed HTTP session: a traceback, and 'RuntimeError:
    Session is closed' was the reason show gave and the technician read."""
    caplog.set_level(logging.INFO)
    app = await start(make_app, slack_api, opsgenie)
    opsgenie.processing_delay = 30.0
    await slack_ticket(app, slack_api)
    await eventually(lambda: opsgenie.calls(STATUS), what="the confirmation asked for")
    loop = asyncio.get_running_loop()
    began = loop.time()
    await app.stop()
    assert loop.time() - began < 2.0
    page = await row(app, "p1:HD-1:opsgenie")
    assert (page.status, page.attempts, page.in_doubt) == ("pending", 1, True)
    assert page.claimed_until is None
    assert "accepted the alert, but the bot stopped before Opsgenie had processed it" in (
        page.last_error
    )
    assert not [r.getMessage() for r in caplog.records if r.exc_info], "no traceback"
    assert not [r for r in caplog.records if "did not stop within" in r.getMessage()]

    opsgenie.processing_delay = 0.0
    second = await start(make_app, slack_api, opsgenie)

    async def delivered() -> bool:
        return (await row(second, "p1:HD-1:opsgenie")).status == "delivered"

    await eventually(delivered, timeout=10, what="the alert sent again and confirmed")
    page = await row(second, "p1:HD-1:opsgenie")
    first, again = opsgenie.requests("create")
    assert page.attempts == 2 and first["alertId"] == again["alertId"]
    assert opsgenie.open_aliases() == ["HD-1"]
    await eventually(lambda: told(slack_api, "has gone through now"), timeout=10,
                     what="the technician told it went through")  # fmt: skip
    [failing] = told(slack_api, "has not gone through yet")
    assert "the bot stopped before Opsgenie had processed it" in failing, failing
    assert "Session is closed" not in json.dumps(
        slack_api.calls("/api/chat.postMessage"), default=str
    )


async def test_closing_a_p1_whose_alert_was_deleted_in_opsgenie_is_done_not_retried(
    make_app: Any, slack_api: FakeSlack, opsgenie: FakeOpsgenie
) -> None:
    """Someone deleted the alert in Opsgenie: the close is processed as 'Alert does not exist'.
    Nothing is left open under the alias, so the close is done (recorded with that status). On
    main it was a failed attempt retried for ever (every 5 minutes at most), the technician
    told it 'has not gone through yet ... retrying' and never that it had."""
    app = await start(make_app, slack_api, opsgenie)
    await slack_ticket(app, slack_api)

    async def delivered(key: str) -> bool:
        return (await row(app, key)).status == "delivered"

    await eventually(lambda: delivered("p1:HD-1:opsgenie"), what="the alert confirmed")
    opsgenie.delete_alert("HD-1")
    await slack_close(app, slack_api, "HD-1")
    await eventually(lambda: opsgenie.requests("close"), what="the close sent")
    await eventually(lambda: delivered("p1:HD-1:opsgenie:resolved"), timeout=10,
                     what="the close recorded as done")  # fmt: skip
    close = await row(app, "p1:HD-1:opsgenie:resolved")
    assert close.attempts == 1 and close.result["status"] == "Alert does not exist"
    await asyncio.sleep(1.5)
    assert len(opsgenie.requests("close")) == 1
    assert told(slack_api, "has not gone through") == []
