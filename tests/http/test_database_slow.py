"""A database that is slow for one request is not down for everyone (PostgreSQL).

On a busy PostgreSQL server an intake can wait for the ticket counter's row lock that other
intakes hold, past its answer budget: that submission is told to try again and nothing of it
is stored (SPEC "While the database cannot be reached"). The database answered all along, so
nobody else may be turned away: `/ticket new` still opens the form, `/healthz` stays 200, and
the log does not say the database cannot be reached. (Before: one such timeout marked the
database down until the probe's next ping, up to 5 s, and dropped the idle connections.)
The same holds when every pooled connection is in use by work waiting on that lock: the ping
runs on a connection of its own then, instead of waiting for the pool until it times out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from storage import db
from storage.models import Ticket
from tests.fakes.slack_api import FakeSlack
from tests.harness import view_submission, wait_until
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


BUSY = 40  # intakes at once: more than the pool holds
POOL = db.POOL_SIZE + db.MAX_OVERFLOW


@on_postgresql
async def test_a_pool_all_in_use_waiting_on_the_counters_lock_is_not_an_outage(
    make_app, pg_url: str, slack_api: FakeSlack, caplog
):
    """Every pooled connection is in use by work waiting on the ticket counter's row lock, and
    more intakes queue for the pool: a busy database, answering. A ping through the pool only
    waited for a connection to come back, gave up after its timeout and said the database
    could not be reached: `/healthz` 503, the log line, and `/ticket new` turned away for
    everyone (before: all three). The ping then runs on a connection of its own.

    What holds the pool for longer than a ping's timeout (an intake gives its connection up at
    its 2 s answer budget: a report, a commit waited for, a loaded box) is played by statements
    the test runs on the app's own pool, waiting on the same lock."""
    caplog.set_level(logging.INFO)
    app = await make_app(slack=slack_api, people=SLACK_PEOPLE)
    await slack_ticket(app, slack_api, priority="P3", users=1)  # the counter's row exists
    view = await slack_modal(app, slack_api, "new Printer jams")
    engine = app.services.engine
    pool = engine.sync_engine.pool
    outside = db.create_engine(pg_url)

    async def waiting_on_the_lock() -> None:
        async with engine.connect() as conn, conn.begin():
            await conn.execute(text("SELECT 1 FROM ticket_counters FOR UPDATE"))

    async def intake(n: int) -> tuple[str, str, float]:
        summary = f"Busy intake {n:02d}"
        values = states(summary={"type": "plain_text_input", "value": summary})
        sent = time.monotonic()
        response = await app.interactive(view_submission(view, values, view_id=f"V-BUSY-{n}"))
        assert response.status == 200
        return summary, await response.text(), time.monotonic() - sent

    async def backends(conn) -> int:  # this test's database only (the suite shares the server)
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        return int((await conn.execute(text(query))).scalar_one())

    async def everyone_else_is_served() -> None:
        status, elapsed = await timed_health(app)
        assert status == 200 and elapsed < 2, (status, elapsed)
        opened = len(slack_api.views_opened())
        body, elapsed = await timed_slash(app, "new Toner low")
        assert elapsed < 1 and UNAVAILABLE not in json.dumps(body), (elapsed, body)
        await slack_api.wait_for_method("views.open", count=opened + 1)

    try:
        async with outside.connect() as conn:
            async with conn.begin():
                await conn.execute(text("SELECT 1 FROM ticket_counters FOR UPDATE"))
                holders = [asyncio.ensure_future(waiting_on_the_lock()) for _ in range(POOL)]
                await wait_until(lambda: pool.checkedout() >= POOL, what="the pool all in use")
                intakes = [asyncio.ensure_future(intake(n)) for n in range(BUSY)]
                await asyncio.sleep(0.3)  # they queue for the pool
                await everyone_else_is_served()
                # Each intake is told to try again at its answer budget, and asks for a ping.
                answers = await asyncio.gather(*intakes)
                await asyncio.sleep(0.5)  # that ping's outcome
                assert pool.checkedout() >= POOL  # still all in use: the case at hand
                await everyone_else_is_served()
                # The pings of their own were closed: the pool and this connection, no more.
                assert await backends(conn) <= POOL + 1
            await asyncio.gather(*holders)  # the lock is gone: they had their turn
        assert not outage_lines(caplog), [r.getMessage() for r in outage_lines(caplog)]
        retry = {summary for summary, said, _ in answers if UNAVAILABLE in said}
        saved = {summary for summary, said, _ in answers if UNAVAILABLE not in said}
        assert all(elapsed < 3 for _, _, elapsed in answers), answers
        assert retry, "no intake was held past its answer budget"
        # Nothing half-saved: a summary told to retry never landed, one answered did.
        async with db.session_factory(outside)() as session:
            stored = set(
                (await session.execute(select(Ticket.summary).where(Ticket.summary.like("Busy%"))))
                .scalars()
                .all()
            )
        assert stored == saved and not stored & retry, (stored, saved, retry)
        # And intakes go through once the lock is gone.
        await slack_ticket(app, slack_api, priority="P3", users=1)
        assert await tickets(pg_url) == 2 + len(saved)
    finally:
        await outside.dispose()


@on_postgresql
async def test_a_server_refusing_more_connections_while_the_pool_is_busy_is_not_down(
    make_app, pg_url: str, slack_api: FakeSlack, caplog
):
    """The pool is all in use (as above) and the server takes no more connections from the bot
    (its `max_connections` reached, here the bot's role's CONNECTION LIMIT: the pool's own
    connections fill it). The ping of its own was refused ("too many connections"), and a
    refusal said the database could not be reached: `/healthz` 503 and the outage line (both
    before). The server answered: it is up, and busy."""
    caplog.set_level(logging.INFO)
    role = f"hd_limited_{secrets.token_hex(4)}"
    admin = db.create_engine(pg_url)

    async def as_admin(sql: str) -> int:
        async with admin.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            found = await conn.execute(text(sql))
            return int(found.scalar_one()) if found.returns_rows else 0

    # A role of its own (not a superuser: limits do not bind those), with the tables' rights.
    await as_admin(f"CREATE ROLE {role} LOGIN IN ROLE postgres")
    url = make_url(pg_url).set(username=role).render_as_string(hide_password=False)
    try:
        app = await make_app(slack=slack_api, people=SLACK_PEOPLE, env={"DATABASE_URL": url})
        await slack_ticket(app, slack_api, priority="P3", users=1)  # the counter's row exists
        pool = app.services.engine.sync_engine.pool

        async def waiting_on_the_lock() -> None:
            async with app.services.engine.connect() as conn, conn.begin():
                await conn.execute(text("SELECT 1 FROM ticket_counters FOR UPDATE"))

        async with admin.connect() as conn, conn.begin():
            await conn.execute(text("SELECT 1 FROM ticket_counters FOR UPDATE"))
            holders = [asyncio.ensure_future(waiting_on_the_lock()) for _ in range(POOL)]
            await wait_until(lambda: pool.checkedout() >= POOL, what="the pool all in use")
            in_use = f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{role}'"
            await as_admin(f"ALTER ROLE {role} CONNECTION LIMIT {await as_admin(in_use)}")
            status, elapsed = await timed_health(app)
            assert status == 200 and elapsed < 2, (status, elapsed)
            assert any("refuses more connections" in r.getMessage() for r in caplog.records)
            await conn.rollback()
            await asyncio.gather(*holders)
        # The pool not full, one connection of it in use, none to lend, and the server
        # refusing the one it opens: answered, and the bot works, so up as well (503 before).
        await app.services.engine.dispose()
        async with app.services.engine.connect() as held:
            await held.execute(text("SELECT 1"))
            await as_admin(f"ALTER ROLE {role} CONNECTION LIMIT {await as_admin(in_use)}")
            status, _ = await timed_health(app)
            assert status == 200, status
        assert not outage_lines(caplog), [r.getMessage() for r in outage_lines(caplog)]
        # But with no connection at all the bot can serve nothing: down (SPEC: 503 when the
        # database refuses connections), as before.
        await as_admin(f"ALTER ROLE {role} CONNECTION LIMIT 0")
        await app.services.engine.dispose()
        status, _ = await timed_health(app)
        assert status == 503, status
        await as_admin(f"ALTER ROLE {role} CONNECTION LIMIT -1")

        async def healthy() -> bool:
            return (await timed_health(app))[0] == 200

        await wait_until(healthy, timeout=20, what="the database back")
        await slack_ticket(app, slack_api, priority="P3", users=1)
        assert await tickets(pg_url) == 2
        await app.stop()
    finally:
        ended = "count(pg_terminate_backend(pid))"
        await as_admin(f"SELECT {ended} FROM pg_stat_activity WHERE usename = '{role}'")
        await as_admin(f"DROP ROLE IF EXISTS {role}")
        await admin.dispose()
