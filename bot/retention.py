"""The scheduler job that deletes handled delivery ids once they are older than
`storage.inbound.KEEP` (one row per state-changing request would otherwise grow for ever).

Every process with a scheduler runs it; they may run it at the same time. Each batch is one
short transaction of at most `batch` rows (SQLite's write lock and a PostgreSQL transaction
are held only that long, and requests get the connection between batches), concurrent runs
skip the rows another one is deleting, and a run stops after `max_batches` (the next one goes
on). A database that cannot be reached is logged and tried again at the next run: the job
never raises.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.outbox_worker import describe_failure
from storage import inbound
from storage.errors import is_unavailable
from storage.models import utcnow

log = logging.getLogger(__name__)
EVERY = 600.0
# The first run, this long after start-up (processes restarted more often than EVERY prune too).
FIRST_AFTER = 60.0
BATCH = 1000
MAX_BATCHES = 50
# A batch that has not answered by then is given up (its connection is replaced).
DB_TIMEOUT = 10.0
# Between batches: other work gets the (SQLite: only) connection.
PAUSE = 0.05


class DeliveryPrune:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        keep: timedelta = inbound.KEEP,
        batch: int = BATCH,
        max_batches: int = MAX_BATCHES,
        every: float = EVERY,
        database: str = "the database",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.keep = keep
        self.batch = batch
        self.max_batches = max_batches
        self.every = every
        self.database = database
        # Wall-clock UTC, as the ids' `at` is written (not a test's app clock).
        self.clock = clock
        self._closed = False

    def schedule(self, scheduler: AsyncIOScheduler) -> None:
        first = utcnow() + timedelta(seconds=FIRST_AFTER)
        common: dict[str, Any] = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        scheduler.add_job(
            self.run, "interval", seconds=self.every, next_run_time=first,
            id="inbound-prune", **common,
        )  # fmt: skip

    def close(self) -> None:
        """Start no further batch (shutdown: the scheduler does not cancel a running job)."""
        self._closed = True

    async def run(self) -> int:
        """Delete ids handled more than `keep` ago, batch by batch; how many went."""
        before = self.clock() - self.keep
        total = 0
        try:
            for _ in range(self.max_batches):
                if self._closed:
                    break
                async with asyncio.timeout(DB_TIMEOUT), self.engine.begin() as conn:
                    done = await inbound.prune(conn, before=before, limit=self.batch)
                total += done
                if done < self.batch:
                    break
                await asyncio.sleep(PAUSE)
        except Exception as exc:
            if is_unavailable(exc):
                log.warning(
                    "inbound deliveries: %s cannot be reached, old delivery ids not pruned "
                    "(tried again in %.0f min): %s",
                    self.database,
                    self.every / 60,
                    describe_failure(exc),
                )
            else:
                log.exception("inbound deliveries: pruning old delivery ids failed; tried again")
        if total:
            log.info(
                "inbound deliveries: pruned %d delivery id(s) handled before %s",
                total,
                before.isoformat(timespec="seconds"),
            )
        return total
