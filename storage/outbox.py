"""The outbox: side effects written with their cause, claimed by workers, delivered once.

Claiming takes a lease (`claimed_until`) in one short transaction; delivery happens outside
any transaction; the result is recorded in another. A worker that dies mid-delivery leaves a
lease that expires, and the row is tried again (pages stay idempotent through their dedup key).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from storage.models import OutboxMessage, utcnow
from storage.tickets import _insert_ignore

LEASE = timedelta(seconds=60)
MAX_BACKOFF = 300.0


async def enqueue(
    session: AsyncSession,
    *,
    kind: str,
    payload: dict[str, Any],
    ticket_id: int | None = None,
    due_at: datetime | None = None,
    dedup_key: str | None = None,
) -> bool:
    """Queue a side effect in the caller's transaction; False if `dedup_key` was queued before."""
    values = {
        "kind": kind,
        "payload": payload,
        "ticket_id": ticket_id,
        "due_at": due_at or utcnow(),
        "dedup_key": dedup_key,
        "status": "pending",
        "result": {},
        "last_error": "",
        "attempts": 0,
        "created_at": utcnow(),
        "failure_reported": False,
    }
    stmt = _insert_ignore(session, OutboxMessage).values(**values)
    if dedup_key is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=["dedup_key"])
    result = await session.execute(stmt.returning(OutboxMessage.id))
    inserted = result.scalar_one_or_none() is not None
    if inserted:
        session.info["outbox_enqueued"] = True
    return inserted


async def claim_due(
    session: AsyncSession, *, worker: str, limit: int = 50, now: datetime | None = None
) -> Sequence[OutboxMessage]:
    """Lease up to `limit` due rows to `worker` (SKIP LOCKED on PostgreSQL)."""
    now = now or utcnow()
    due = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status == "pending",
            OutboxMessage.due_at <= now,
            (OutboxMessage.claimed_until.is_(None)) | (OutboxMessage.claimed_until < now),
        )
        .order_by(OutboxMessage.due_at, OutboxMessage.id)
        .limit(limit)
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    stmt = (
        update(OutboxMessage)
        .where(OutboxMessage.id.in_(due.scalar_subquery()))
        .values(claimed_by=worker, claimed_until=now + LEASE, attempts=OutboxMessage.attempts + 1)
        .returning(OutboxMessage)
        .execution_options(synchronize_session=False)
    )
    rows = (await session.execute(stmt)).scalars().all()
    return sorted(rows, key=lambda r: (r.due_at, r.id))


async def mark_delivered(
    session: AsyncSession, *, message_id: int, worker: str, result: dict[str, Any]
) -> None:
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.claimed_by == worker)
        .values(
            status="delivered",
            delivered_at=utcnow(),
            result=result,
            claimed_until=None,
            last_error="",
        )
    )


def backoff(attempts: int, *, retry_after: float | None = None) -> float:
    """Seconds to wait before the next try: 2, 4, 8 ... 300 with jitter; Retry-After wins."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), 3600.0)
    base = min(MAX_BACKOFF, 2.0 ** max(attempts, 1))
    return base * random.uniform(0.75, 1.0)


async def mark_failed(
    session: AsyncSession,
    *,
    message_id: int,
    worker: str,
    error: str,
    attempts: int,
    retry_after: float | None = None,
    permanent: bool = False,
) -> None:
    """Record a failed attempt: reschedule with backoff, or give up (`dead`) when permanent."""
    delay = backoff(attempts, retry_after=retry_after)
    await session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id, OutboxMessage.claimed_by == worker)
        .values(
            status="dead" if permanent else "pending",
            last_error=error[:2000],
            claimed_until=None,
            due_at=utcnow() + timedelta(seconds=delay),
        )
    )


async def for_ticket(session: AsyncSession, ticket_id: int) -> Sequence[OutboxMessage]:
    query = (
        select(OutboxMessage).where(OutboxMessage.ticket_id == ticket_id).order_by(OutboxMessage.id)
    )
    return (await session.execute(query)).scalars().all()


async def stats(session: AsyncSession) -> tuple[int, datetime | None]:
    """Undelivered row count and the creation time of the oldest one."""
    row = (
        await session.execute(
            select(func.count(), func.min(OutboxMessage.created_at)).where(
                OutboxMessage.status == "pending"
            )
        )
    ).one()
    return int(row[0]), row[1]


def on_enqueue_commit(
    factory: async_sessionmaker[AsyncSession], callback: Callable[[], None]
) -> None:
    """Call `callback` after any commit that queued outbox rows (in-process worker wake-up)."""
    sync_cls = factory.kw.get("sync_session_class", Session)

    @event.listens_for(sync_cls, "after_commit")
    def _after_commit(session: Session) -> None:
        if session.info.pop("outbox_enqueued", False):
            callback()

    @event.listens_for(sync_cls, "after_rollback")
    def _after_rollback(session: Session) -> None:
        session.info.pop("outbox_enqueued", None)
