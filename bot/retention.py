"""Scheduler jobs that keep stored history bounded:

- `DeliveryPrune` deletes handled delivery ids once they are older than `storage.inbound.KEEP`
  (one row per state-changing request would otherwise grow for ever);
- `OutboxPrune` trims finished outbox rows to what is still read once they (and their ticket's
  closure) are older than `storage.outbox_retention.KEEP`, and deletes the finished rows
  nothing reads (each payload holds whole cards: years of them are gigabytes).

Every process with a scheduler runs them; they may run at the same time. Each batch is one
short transaction of at most `batch` rows (SQLite's write lock and a PostgreSQL transaction
are held only that long, and requests get the connection between batches), concurrent runs
skip the rows another one is working on, and a run stops after `max_batches` (the next one
goes on). A database that cannot be reached is logged and tried again at the next run: the
jobs never raise. One log line per run that changed something.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.outbox_worker import describe_failure
from storage import inbound, outbox_retention
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


class _Prune:
    """One retention job. `_batch` does one transaction's worth and says how many rows of each
    sort it changed; `_committed` counts them once that transaction has committed."""

    job_id = ""
    what = ""  # the log lines' subject: "inbound deliveries: ..."
    not_done = ""  # "..., old delivery ids not pruned"
    first_after = FIRST_AFTER

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        keep: timedelta,
        batch: int,
        max_batches: int,
        every: float,
        database: str,
        clock: Callable[[], datetime],
    ) -> None:
        self.engine = engine
        self.keep = keep
        self.batch = batch
        self.max_batches = max_batches
        self.every = every
        self.database = database
        # Wall-clock UTC, as the rows' times are written (not a test's app clock).
        self.clock = clock
        self._closed = False

    def schedule(self, scheduler: AsyncIOScheduler) -> None:
        first = utcnow() + timedelta(seconds=self.first_after)
        common: dict[str, Any] = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        scheduler.add_job(
            self.run, "interval", seconds=self.every, next_run_time=first,
            id=self.job_id, **common,
        )  # fmt: skip

    def close(self) -> None:
        """Start no further batch (shutdown: the scheduler does not cancel a running job)."""
        self._closed = True

    async def run(self) -> int:
        """Batch by batch, what is older than `keep`; how many rows were pruned."""
        before = self.clock() - self.keep
        self._start()
        total = 0
        try:
            for _ in range(self.max_batches):
                if self._closed:
                    break
                async with asyncio.timeout(DB_TIMEOUT), self.engine.begin() as conn:
                    counts = await self._batch(conn, before)
                self._committed(counts)
                total += sum(counts)
                if max(counts) < self.batch:
                    break
                await asyncio.sleep(PAUSE)
        except Exception as exc:
            if is_unavailable(exc):
                log.warning(
                    "%s: %s cannot be reached, %s (tried again in %.0f min): %s",
                    self.what,
                    self.database,
                    self.not_done,
                    self.every / 60,
                    describe_failure(exc),
                )
            else:
                log.exception("%s: pruning failed; tried again", self.what)
        if total:
            log.info("%s: %s", self.what, self._done(before))
        return total

    def _start(self) -> None:
        """A run begins: nothing counted yet."""

    async def _batch(self, conn: AsyncConnection, before: datetime) -> tuple[int, ...]:
        raise NotImplementedError

    def _committed(self, counts: tuple[int, ...]) -> None:
        """A batch's transaction committed with these counts."""

    def _done(self, before: datetime) -> str:
        raise NotImplementedError


class DeliveryPrune(_Prune):
    job_id = "inbound-prune"
    what = "inbound deliveries"
    not_done = "old delivery ids not pruned"

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
        super().__init__(
            engine,
            keep=keep,
            batch=batch,
            max_batches=max_batches,
            every=every,
            database=database,
            clock=clock,
        )
        self.pruned = 0

    def _start(self) -> None:
        self.pruned = 0

    async def _batch(self, conn: AsyncConnection, before: datetime) -> tuple[int, ...]:
        return (await inbound.prune(conn, before=before, limit=self.batch),)

    def _committed(self, counts: tuple[int, ...]) -> None:
        self.pruned += counts[0]

    def _done(self, before: datetime) -> str:
        at = before.isoformat(timespec="seconds")
        return f"pruned {self.pruned} delivery id(s) handled before {at}"


class PruneObserver(Protocol):
    """Counts what the outbox retention did (bot.metrics.Metrics has this)."""

    def outbox_pruned(self, *, trimmed: int, deleted: int) -> None: ...


# Outbox rows carry whole cards: fewer per batch than delivery ids (one SQLite writer, its WAL).
OUTBOX_BATCH = 500
# Not in the same minute as the delivery-id prune (one SQLite writer).
OUTBOX_FIRST_AFTER = 90.0


class OutboxPrune(_Prune):
    job_id = "outbox-prune"
    what = "outbox"
    not_done = "old finished rows not trimmed"
    first_after = OUTBOX_FIRST_AFTER

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        keep: timedelta = outbox_retention.KEEP,
        batch: int = OUTBOX_BATCH,
        max_batches: int = MAX_BATCHES,
        every: float = EVERY,
        database: str = "the database",
        clock: Callable[[], datetime] = utcnow,
        observer: PruneObserver | None = None,
    ) -> None:
        super().__init__(
            engine,
            keep=keep,
            batch=batch,
            max_batches=max_batches,
            every=every,
            database=database,
            clock=clock,
        )
        self.observer = observer
        self._cursor = outbox_retention.Cursor()
        self.trimmed = self.deleted = 0

    def _start(self) -> None:
        self._cursor = outbox_retention.Cursor()
        self.trimmed = self.deleted = 0

    async def _batch(self, conn: AsyncConnection, before: datetime) -> tuple[int, ...]:
        """Up to `batch` rows of no ticket deleted, then up to `batch` rows trimmed."""
        cursor = self._cursor
        deleted = await outbox_retention.delete_orphans(
            conn, before=before, limit=self.batch, cursor=cursor
        )
        trimmed = await outbox_retention.trim(
            conn, before=before, limit=self.batch, cursor=cursor, now=self.clock()
        )
        return trimmed, deleted

    def _committed(self, counts: tuple[int, ...]) -> None:
        trimmed, deleted = counts
        self.trimmed += trimmed
        self.deleted += deleted
        if self.observer is not None and (trimmed or deleted):
            self.observer.outbox_pruned(trimmed=trimmed, deleted=deleted)

    def _done(self, before: datetime) -> str:
        at = before.isoformat(timespec="seconds")
        return (
            f"trimmed {self.trimmed} finished row(s) to what `show` and their dedup keys need, "
            f"deleted {self.deleted} finished row(s) of no ticket; finished before {at}"
        )
