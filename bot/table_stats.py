"""Planner statistics of the busiest tables, on a PostgreSQL server whose autovacuum is off.

The intake looks up earlier tickets with the same error (`storage.error_signatures`): a few
index ranges, capped, on tables PostgreSQL's planner knows through the statistics that
autovacuum's ANALYZE keeps. On a server running with `autovacuum = off` (some CI and test
servers are set up so; a table can be too, `autovacuum_enabled = false`) those tables are
never analysed, and the look-up was measured planned as a backward scan of every ticket,
repeated per intake under the ticket counter's row lock: 0.45 s at 17,000 tickets of one error
(1 ms once analysed), so a steady load of one error slowed every intake as tickets piled up.
There, this job ANALYZEs `tickets` and `ticket_signatures` itself once they have changed by
autovacuum's own default threshold (50 rows plus a tenth of the table). With autovacuum on
(PostgreSQL's default) it does nothing. Every process with a scheduler runs it; two ANALYZEs
of one table at once only wait for each other. Never raises: a database that cannot be
reached is tried again at the next run.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.outbox_worker import describe_failure
from storage.errors import is_unavailable
from storage.models import utcnow

log = logging.getLogger(__name__)
TABLES = ("tickets", "ticket_signatures")
EVERY = 60.0
FIRST_AFTER = 20.0
DB_TIMEOUT = 30.0
# The tables (of TABLES, in this schema) that autovacuum does not analyse and that have changed
# by more than its default threshold since they were last analysed.
_STALE = text(
    """
    SELECT s.relname
    FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid
    WHERE s.schemaname = current_schema() AND s.relname IN ('tickets', 'ticket_signatures')
      AND (current_setting('autovacuum') = 'off'
           OR coalesce(c.reloptions, '{}') @> ARRAY['autovacuum_enabled=false'])
      AND s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0)
    ORDER BY s.relname
    """
)


class TableStats:
    job_id = "table-stats"

    def __init__(self, engine: AsyncEngine, *, database: str, every: float = EVERY) -> None:
        self.engine = engine
        self.database = database
        self.every = every
        self._told = False

    def schedule(self, scheduler: AsyncIOScheduler) -> None:
        scheduler.add_job(
            self.run, "interval", seconds=self.every, id=self.job_id,
            next_run_time=utcnow() + timedelta(seconds=FIRST_AFTER),
            max_instances=1, coalesce=True, misfire_grace_time=None,
        )  # fmt: skip

    async def run(self) -> list[str]:
        """ANALYZE what needs it (see the module docstring); the tables analysed."""
        if self.engine.dialect.name != "postgresql":
            return []
        done: list[str] = []
        try:
            async with asyncio.timeout(DB_TIMEOUT), self.engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                stale = [str(name) for name in (await conn.execute(_STALE)).scalars()]
                for name in stale:
                    if name in TABLES:  # never anything but these two names into SQL
                        await conn.execute(text(f"ANALYZE {name}"))
                        done.append(name)
        except Exception as exc:
            if is_unavailable(exc):
                log.warning(
                    "planner statistics: %s cannot be reached (tried again in %.0f s): %s",
                    self.database,
                    self.every,
                    describe_failure(exc),
                )
            else:
                log.exception("planner statistics: ANALYZE failed; tried again")
        if done:
            level = logging.INFO if self._told else logging.WARNING
            self._told = True
            log.log(
                level,
                "planner statistics: analysed %s (PostgreSQL's autovacuum is off for them; "
                "turn it on to leave this to PostgreSQL)",
                ", ".join(done),
            )
        return done
