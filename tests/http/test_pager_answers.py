"""Pager answers the bot does not read whole: a PagerDuty or Opsgenie URL answered by something
else (a proxy gone wrong, a download) with a body of many MB."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes.base import Recorded, stream_huge
from tests.fakes.pagers import FakeOpsgenie, FakePagerDuty
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness
from tests.http.p1_support import (
    INCIDENT_CHANNEL,
    SLACK_PEOPLE,
    eventually,
    outbox_rows,
    pager_env,
    slack_ticket,
)

CONFIG = {"slack": {"incident_channel": INCIDENT_CHANNEL}}
MB = 1024 * 1024


async def start(make_app: Any, slack: FakeSlack, pd: FakePagerDuty | None = None,
                og: FakeOpsgenie | None = None) -> AppHarness:  # fmt: skip
    app: AppHarness = await make_app(slack=slack, config=CONFIG, people=SLACK_PEOPLE,
                                     env=pager_env(pd, og))  # fmt: skip
    return app


async def test_a_page_refused_with_many_mb_is_read_for_its_status_only(
    make_app, slack_api: FakeSlack, pagerduty: FakePagerDuty
):
    # PagerDuty's URL answers the trigger with HTTP 400 and a body of many MB. Only its message
    # is wanted: before, the bot read all of it into memory (and decoded it on the event loop,
    # holding up every request meanwhile). It stops at 256 KB; the status says enough, and the
    # technician is told as for any refused page.
    sent: list[int] = []
    answer = pagerduty.handle

    async def refused(rec: Recorded, request: web.Request) -> web.StreamResponse:
        if rec.path != "/v2/enqueue":
            return await answer(rec, request)
        head, tail = b'{"status": "invalid event", "message": "', b'"}'
        response, n = await stream_huge(request, status=400, head=head, megabytes=24, tail=tail)
        sent.append(n)
        return response

    pagerduty.handle = refused  # type: ignore[method-assign]
    app = await start(make_app, slack_api, pagerduty)
    await slack_ticket(app, slack_api)

    async def dead() -> list[str]:
        rows = await outbox_rows(app)
        return [r.last_error for r in rows if r.kind == "page.pagerduty" and r.status == "dead"]

    await eventually(dead, timeout=20, what="the refused page")
    [error] = await dead()
    assert "HTTP 400" in error, error
    assert sent and all(n < 8 * MB for n in sent), [n // MB for n in sent]
    told = [p for p in slack_api.posts() if "PagerDuty" in json.dumps(p)]
    assert told, "the technician was not told"


async def test_a_page_accepted_with_many_mb_is_delivered_once(
    make_app, slack_api: FakeSlack, opsgenie: FakeOpsgenie
):
    # Opsgenie's URL accepts the alert (202) with a body of many MB: before, it was read whole.
    # The alert was accepted: the bot records it as sent (not confirmed: no request id could
    # be read) and does not send it again.
    sent: list[int] = []
    answer = opsgenie.handle

    async def accepted(rec: Recorded, request: web.Request) -> web.StreamResponse:
        if rec.method != "POST" or rec.path != "/v2/alerts" or sent:
            return await answer(rec, request)
        await answer(rec, request)  # the alert is created
        head, tail = b'{"result": "Request will be processed", "took": 0.1, "x": "', b'"}'
        response, n = await stream_huge(request, status=202, head=head, megabytes=24, tail=tail)
        sent.append(n)
        return response

    opsgenie.handle = accepted  # type: ignore[method-assign]
    app = await start(make_app, slack_api, None, opsgenie)
    await slack_ticket(app, slack_api)

    async def delivered() -> list[str]:
        rows = await outbox_rows(app)
        return [r.status for r in rows if r.kind == "page.opsgenie" and r.status == "delivered"]

    await eventually(delivered, timeout=20, what="the alert recorded")
    assert sent and all(n < 8 * MB for n in sent), [n // MB for n in sent]
    assert len([c for c in opsgenie.calls("/v2/alerts") if c.method == "POST"]) == 1


async def test_a_page_redirected_elsewhere_is_not_sent_there(
    make_app, slack_api: FakeSlack, pagerduty: FakePagerDuty
):
    # The events URL answers 307 to another host (a moved or mistyped URL, or a hostile
    # answer). Following it would POST the event again, routing key in its body, to that
    # host. The bot does not follow it: the page fails for good (sending it again cannot
    # help) and the technician is told, as for any page refused for good.
    async with FakePagerDuty() as elsewhere:
        answer = pagerduty.handle

        async def moved(rec: Recorded, request: web.Request) -> web.StreamResponse:
            if rec.path != "/v2/enqueue":
                return await answer(rec, request)
            return web.Response(status=307, headers={"Location": elsewhere.events_url})

        pagerduty.handle = moved  # type: ignore[method-assign]
        app = await start(make_app, slack_api, pagerduty)
        await slack_ticket(app, slack_api)

        async def dead() -> list[str]:
            rows = await outbox_rows(app)
            return [r.last_error for r in rows if r.kind == "page.pagerduty" and r.status == "dead"]

        await eventually(dead, timeout=20, what="the redirected page given up")
        [error] = await dead()
        assert "HTTP 307, a redirect" in error, error
        assert elsewhere.calls() == [], "the event (and its routing key) went to the other host"
        assert len(pagerduty.calls("/v2/enqueue")) == 1
        await eventually(
            lambda: [p for p in slack_api.posts() if "will not be retried" in json.dumps(p)],
            what="the technician told",
        )
