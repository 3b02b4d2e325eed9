"""The outbox worker: an APScheduler job that claims due rows and delivers them.

The job polls every `poll` seconds; a commit that queued rows in this process wakes the
worker at once (other processes' rows are found by the poll). A run never overlaps another
in the same process, and claims are leases (see storage.outbox), so several workers on one
PostgreSQL never deliver one row twice. A worker killed mid-delivery leaves leases that run
out after `lease`; its rows are then tried again (pages are idempotent by dedup key).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.correlation import ticket_number
from bot.notifiers import DeliveryError, Notifiers
from handlers import deliveries
from storage import outbox
from storage import tickets as tickets_repo
from storage.models import OutboxMessage

log = logging.getLogger(__name__)


class DeliveryObserver(Protocol):
    """Counts outcomes (bot.metrics.Metrics has these)."""

    def delivered(self, kind: str) -> None: ...

    def failed(self, kind: str) -> None: ...


class OutboxWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        notifiers: Notifiers,
        *,
        batch: int = 20,
        concurrency: int = 20,
        poll: float = 0.5,
        lease: float = 60.0,
        observer: DeliveryObserver | None = None,
    ) -> None:
        self.sessions = sessions
        self.notifiers = notifiers
        self.observer = observer
        # Claim no more than can be in flight at once: a claimed row waiting in a local
        # queue would burn its lease.
        self.batch = min(batch, concurrency)
        self.poll = poll
        self.lease = timedelta(seconds=lease)
        self.worker_id = f"{os.getpid()}-{secrets.token_hex(3)}"
        self._limit = asyncio.Semaphore(concurrency)
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[int]] = set()
        self._again = False
        self._closed = False

    def schedule(self, scheduler: AsyncIOScheduler) -> None:
        """Declare the polling job on `scheduler` (it only starts a run; runs never overlap)."""
        self._loop = asyncio.get_running_loop()
        scheduler.add_job(
            self._tick,
            "interval",
            seconds=self.poll,
            id="outbox",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self._spawn()

    async def _tick(self) -> None:
        self._spawn()

    def wake(self) -> None:
        """Deliver soon: called after a commit that queued rows (from any thread)."""
        if self._loop is not None and not self._closed:
            self._loop.call_soon_threadsafe(self._spawn)

    def _spawn(self) -> None:
        if self._closed:
            return
        if self._lock.locked():
            self._again = True
            return
        task = asyncio.get_running_loop().create_task(self.run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Stop starting runs and let the current one finish (shutdown)."""
        self._closed = True
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def run(self) -> int:
        """Claim and deliver until nothing is due; returns how many rows were attempted."""
        if self._lock.locked():
            self._again = True
            return 0
        total = 0
        async with self._lock:
            try:
                while not self._closed:
                    self._again = False
                    done = await self.run_once()
                    total += done
                    if done < self.batch and not self._again:
                        break
            except Exception:
                log.exception("outbox run failed; will retry on the next poll")
        return total

    async def run_once(self) -> int:
        async with self.sessions() as session, session.begin():
            rows = await outbox.claim_due(
                session, worker=self.worker_id, limit=self.batch, lease=self.lease
            )
        await asyncio.gather(*(self._deliver(row) for row in rows))
        return len(rows)

    @asynccontextmanager
    async def _row_transaction(self, row: OutboxMessage) -> AsyncIterator[AsyncSession]:
        """A transaction about one row that locks its ticket first.

        Requests lock the ticket and then insert or touch its outbox rows; taking the locks
        here in the same order (ticket, then row) keeps PostgreSQL free of deadlocks.
        """
        async with self.sessions() as session, session.begin():
            if row.ticket_id is not None:
                await tickets_repo.lock(session, row.ticket_id)
            yield session

    async def _deliver(self, row: OutboxMessage) -> None:
        async with self._limit:
            ticket_number.set(str(row.payload.get("ticket", "-")))
            if deliveries.needs_preparation(row) and not await self._prepare(row):
                return
            try:
                result = await self.notifiers.deliver(row)
            except DeliveryError as exc:
                await self._failed(row, str(exc), exc.retry_after, exc.permanent)
                return
            except Exception as exc:
                log.exception("delivery of outbox row %s (%s) crashed", row.id, row.kind)
                await self._failed(row, f"{type(exc).__name__}: {exc}", None, False)
                return
            async with self._row_transaction(row) as session:
                if await outbox.mark_delivered(
                    session, message_id=row.id, worker=self.worker_id, result=result
                ):
                    await deliveries.after_delivery(session, message=row, result=result)
            if self.observer is not None:
                self.observer.delivered(row.kind)
            log.info("delivered outbox row %s (%s) on attempt %s", row.id, row.kind, row.attempts)

    async def _prepare(self, row: OutboxMessage) -> bool:
        """Complete the row's payload; False when it must wait (deferred) or never can be sent."""
        async with self._row_transaction(row) as session:
            ready = await deliveries.prepare(session, message=row)
            if ready.payload is not None:
                row.payload = ready.payload
                return True
            if ready.give_up:
                log.info("outbox row %s (%s) cancelled: %s", row.id, row.kind, ready.give_up)
                await outbox.give_up(
                    session, message_id=row.id, worker=self.worker_id, reason=ready.give_up
                )
            else:
                await outbox.defer(
                    session, message_id=row.id, worker=self.worker_id, seconds=ready.wait
                )
        return False

    async def _failed(
        self, row: OutboxMessage, error: str, retry_after: float | None, permanent: bool
    ) -> None:
        log.warning(
            "outbox row %s (%s) attempt %s failed: %s", row.id, row.kind, row.attempts, error
        )
        if self.observer is not None:
            self.observer.failed(row.kind)
        async with self._row_transaction(row) as session:
            if await outbox.mark_failed(
                session,
                message_id=row.id,
                worker=self.worker_id,
                error=error,
                attempts=row.attempts,
                retry_after=retry_after,
                permanent=permanent,
            ):
                await deliveries.after_failure(
                    session, message=row, error=error, permanent=permanent
                )
