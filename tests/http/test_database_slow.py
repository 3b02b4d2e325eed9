"""A database that is slow for one request is not down for everyone (PostgreSQL).

On a busy PostgreSQL server an intake can wait for the ticket counter's row lock that other
intakes hold, past its answer budget: that submission is told to try again and nothing of it
is stored (SPEC "While the database cannot be reached"). The database answered all along, so
nobody else may be turned away: `/ticket new` still opens the form, `/healthz` stays 200, and
the log does not say the database cannot be reached. (Before: one such timeout marked the
database down until the probe's next ping, up to 5 s, and dropped the idle connections.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from sqlalchemy import text

from storage import db
from tests.fakes.slack_api import FakeSlack
from tests.harness import view_submission
from tests.http.p1_support import SLACK_PEOPLE, slack_modal, slack_ticket
from tests.http.test_database_outage import (
    UNAVAILABLE,
    outage_lines,
    tickets,
    timed_health,
    timed_slash,
)
from tests.http.test_slack_intake import states

on_postgresql = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@on_postgresql
async def test_an_intake_held_by_a_row_lock_does_not_turn_everyone_away(
    make_app, pg_url: str, slack_api: FakeSlack, caplog
):
    caplog.set_level(logging.INFO)
    app = await make_app(slack=slack_api, people=SLACK_PEOPLE)
    await slack_ticket(app, slack_api, priority="P3", users=1)  # the counter's row exists
    view = await slack_modal(app, slack_api, "new Printer jams")
    outside = db.create_engine(pg_url)
    try:
        async with outside.connect() as conn, conn.begin():
            # Another intake (or a long report) holds the counter's row for 3 s.
            await conn.execute(text("SELECT 1 FROM ticket_counters FOR UPDATE"))
            started = time.monotonic()
            response = await app.interactive(view_submission(view, states(), view_id="V-SLOW"))
            answer = await response.json()
            assert time.monotonic() - started < 3
            assert answer["response_action"] == "errors"
            assert UNAVAILABLE in json.dumps(answer["errors"])
            # Everyone else, at once: the database is answering.
            opened = len(slack_api.views_opened())
            body, elapsed = await timed_slash(app, "new Toner low")
            assert elapsed < 1, elapsed
            assert UNAVAILABLE not in json.dumps(body), body
            await slack_api.wait_for_method("views.open", count=opened + 1)
            status, _ = await timed_health(app)
            assert status == 200
            await asyncio.sleep(3 - (time.monotonic() - started))
        assert not outage_lines(caplog), [r.getMessage() for r in outage_lines(caplog)]
        # The held submission was given up and rolled back: one ticket, not two.
        assert await tickets(pg_url) == 1
        # And a new intake goes through once the lock is gone.
        await slack_ticket(app, slack_api, priority="P3", users=1)
        assert await tickets(pg_url) == 2
    finally:
        await outside.dispose()


@on_postgresql
async def test_a_timeout_met_after_the_probe_stopped_starts_no_ping(make_app, slack_api: FakeSlack):
    """Shutdown stops the probe, then drains what is still answering (Teams answers, KB
    look-ups, given-up turns finishing): a timeout one of them meets then must not start a
    ping that nobody awaits, on an engine being disposed (a task destroyed pending, a
    connection opened after the pool was closed)."""
    app = await make_app(slack=slack_api, people=SLACK_PEOPLE)
    await app.services.database.stop()  # as stop_services does before its later steps
    before = asyncio.all_tasks()
    app.services.deps.database_trouble(TimeoutError("no answer within 2.0 s"))
    assert asyncio.all_tasks() - before == set()
