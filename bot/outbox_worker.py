"""The outbox worker: an APScheduler job that claims due rows and delivers them.

Polls every `poll` seconds and is woken at once by commits that queued rows (in-process);
other processes' rows are found by the poll. Claims are leases (see storage.outbox), so
several workers on one PostgreSQL never deliver one row twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from datetime import UTC, datetime

from apscheduler.job import Job
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.correlation import ticket_number
from bot.notifiers import DeliveryError, Notifiers
from handlers import deliveries
from storage import outbox
from storage.models import OutboxMessage

log = logging.getLogger(__name__)


class OutboxWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        notifiers: Notifiers,
        *,
        batch: int = 100,
        concurrency: int = 16,
        poll: float = 0.5,
    ) -> None:
        self.sessions = sessions
        self.notifiers = notifiers
        self.batch = batch
        self.poll = poll
        self.worker_id = f"{os.getpid()}-{secrets.token_hex(3)}"
        self._limit = asyncio.Semaphore(concurrency)
        self._job: Job | None = None
        self._running = False
        self._again = False

    def schedule(self, scheduler: AsyncIOScheduler) -> None:
        """Declare the polling job on `scheduler`."""
        self._job = scheduler.add_job(
            self.run, "interval", seconds=self.poll, id="outbox", max_instances=1,
            coalesce=True, misfire_grace_time=None, next_run_time=datetime.now(UTC),
        )

    def wake(self) -> None:
        """Deliver soon: called after a commit that queued rows."""
        if self._running:
            self._again = True
        elif self._job is not None:
            self._job.modify(next_run_time=datetime.now(UTC))

    async def run(self) -> int:
        """Claim and deliver until nothing is due; returns how many rows were attempted."""
        self._running = True
        total = 0
        try:
            while True:
                self._again = False
                done = await self.run_once()
                total += done
                if done < self.batch and not self._again:
                    return total
        except Exception:
            log.exception("outbox run failed; will retry on the next poll")
            return total
        finally:
            self._running = False

    async def run_once(self) -> int:
        async with self.sessions() as session, session.begin():
            rows = await outbox.claim_due(session, worker=self.worker_id, limit=self.batch)
        await asyncio.gather(*(self._deliver(row) for row in rows))
        return len(rows)

    async def _deliver(self, row: OutboxMessage) -> None:
        async with self._limit:
            ticket_number.set(str(row.payload.get("ticket", "-")))
            try:
                result = await self.notifiers.deliver(row)
            except DeliveryError as exc:
                await self._failed(row, str(exc), exc.retry_after, exc.permanent)
                return
            except Exception as exc:
                log.exception("delivery of outbox row %s (%s) crashed", row.id, row.kind)
                await self._failed(row, f"{type(exc).__name__}: {exc}", None, False)
                return
            async with self.sessions() as session, session.begin():
                await outbox.mark_delivered(
                    session, message_id=row.id, worker=self.worker_id, result=result
                )
                await deliveries.after_delivery(session, message=row, result=result)
            log.info("delivered outbox row %s (%s) on attempt %s", row.id, row.kind, row.attempts)

    async def _failed(
        self, row: OutboxMessage, error: str, retry_after: float | None, permanent: bool
    ) -> None:
        log.warning("outbox row %s (%s) attempt %s failed: %s", row.id, row.kind, row.attempts,
                    error)
        async with self.sessions() as session, session.begin():
            await outbox.mark_failed(
                session, message_id=row.id, worker=self.worker_id, error=error,
                attempts=row.attempts, retry_after=retry_after, permanent=permanent,
            )
            await deliveries.after_failure(
                session, message=row, error=error, permanent=permanent
            )
