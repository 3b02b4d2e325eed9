"""PostgreSQL with autovacuum off: the bot keeps its busiest tables analysed (bot/table_stats.py).

Found by `bench.memory` on a server running with `autovacuum = off`: `tickets` and
`ticket_signatures` were never analysed, the intake's look-up of earlier tickets with the same
error was planned as a scan of every ticket (0.45 s per intake at 17,000 tickets of one error,
under the ticket counter's lock), and intakes slowed as tickets piled up. The worker's job now
ANALYZEs them once they changed by autovacuum's own threshold, and leaves them alone otherwise.
"""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy import text

from bot.table_stats import TABLES
from storage import db
from tests.fakes.slack_api import FakeSlack
from tests.http.p1_support import SLACK_PEOPLE, slack_ticket

on_postgresql = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
COUNTS = text(
    "SELECT relname, analyze_count FROM pg_stat_user_tables "
    "WHERE schemaname = current_schema() AND relname IN ('tickets', 'ticket_signatures')"
)


async def analyse_counts(engine) -> dict[str, int]:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
        return {str(name): int(n) for name, n in (await conn.execute(COUNTS)).all()}


@on_postgresql
async def test_tables_autovacuum_leaves_alone_are_analysed_once_they_changed(
    make_app, pg_url: str, slack_api: FakeSlack, caplog
):
    caplog.set_level(logging.INFO)
    app = await make_app(slack=slack_api, people=SLACK_PEOPLE)
    job = app.services.table_stats
    assert job is not None  # scheduled by every PostgreSQL process with a scheduler
    outside = db.create_engine(pg_url)
    try:
        async with outside.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in TABLES:  # whatever the server's own setting
                await conn.execute(text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
                await conn.execute(text(f"ANALYZE {table}"))
        for _ in range(2):
            await slack_ticket(app, slack_api, priority="P3", users=1)
        assert await job.run() == []  # a few changes: below autovacuum's threshold
        # Then many: what a steady load of one error leaves behind.
        async with outside.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            for _ in range(40):
                await conn.execute(text("UPDATE tickets SET summary = summary"))
                await conn.execute(text("UPDATE ticket_signatures SET signature = signature"))
            await conn.execute(text("SELECT pg_stat_force_next_flush()"))
        before = await analyse_counts(outside)
        deadline = time.monotonic() + 10
        done: list[str] = []
        while not done and time.monotonic() < deadline:  # the counts reach the stats in time
            done = await job.run()
        assert done == ["ticket_signatures", "tickets"]
        after = await analyse_counts(outside)
        assert all(after[t] == before[t] + 1 for t in TABLES), (before, after)
        assert any("planner statistics: analysed" in r.getMessage() for r in caplog.records)
        assert await job.run() == []  # analysed: nothing until they change again
    finally:
        async with outside.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in TABLES:
                await conn.execute(text(f"ALTER TABLE {table} RESET (autovacuum_enabled)"))
        await outside.dispose()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_sqlite_has_no_such_job(make_app, slack_api: FakeSlack):
    app = await make_app(slack=slack_api, people=SLACK_PEOPLE)
    assert app.services.table_stats is None
