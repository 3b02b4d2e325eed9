"""PSA sync state: the PSA's pause (Retry-After / refused credentials) and its outbox rows."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import statements
from storage.models import OutboxMessage, PsaState, utcnow

KIND_PREFIX = "psa."
_STATE = statements.table_of(PsaState)
_OUTBOX = statements.table_of(OutboxMessage)
_LAST_ROW = select(func.max(_OUTBOX.c.id)).where(
    _OUTBOX.c.ticket_id == bindparam("ticket_id"), _OUTBOX.c.kind.like(KIND_PREFIX + "%")
)


def is_psa_kind(kind: str) -> bool:
    return kind.startswith(KIND_PREFIX)


async def last_row_id(session: AsyncSession, ticket_id: int) -> int | None:
    """The newest PSA row of a ticket (the next one is delivered after it)."""
    conn = await session.connection()
    value = (await conn.execute(_LAST_ROW, {"ticket_id": ticket_id})).scalar_one_or_none()
    return int(value) if value is not None else None


async def rows_of_kind(session: AsyncSession, *, ticket_id: int, kind: str) -> list[OutboxMessage]:
    query = select(OutboxMessage).where(
        OutboxMessage.ticket_id == ticket_id, OutboxMessage.kind == kind
    )
    return list((await session.execute(query.order_by(OutboxMessage.id))).scalars())


async def state(session: AsyncSession, system: str, *, lock: bool = False) -> PsaState | None:
    query = select(PsaState).where(PsaState.system == system)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def _locked_state(session: AsyncSession, system: str) -> PsaState:
    """The system's row, created when missing, locked for this transaction."""
    found = await state(session, system, lock=True)
    if found is not None:
        return found
    conn = await session.connection()
    await conn.execute(
        statements.insert_new(session, _STATE, "system"),
        {"system": system, "auth_error": "", "updated_at": utcnow()},
    )
    created = await state(session, system, lock=True)
    assert created is not None
    return created


async def pause(session: AsyncSession, system: str, *, until: datetime) -> None:
    """No call to the PSA before `until` (a later pause already recorded wins)."""
    row = await _locked_state(session, system)
    if row.blocked_until is None or row.blocked_until < until:
        row.blocked_until = until
    row.updated_at = utcnow()


async def credentials_refused(
    session: AsyncSession, system: str, *, error: str, recheck_at: datetime
) -> tuple[datetime, bool]:
    """Record that the PSA refuses the credentials; (outage start, True when it just began)."""
    row = await _locked_state(session, system)
    began = row.auth_failed_at is None
    if began:
        row.auth_failed_at = utcnow()
    row.auth_error = error[:500]
    if row.blocked_until is None or row.blocked_until < recheck_at:
        row.blocked_until = recheck_at
    row.updated_at = utcnow()
    assert row.auth_failed_at is not None
    return row.auth_failed_at, began


async def credentials_accepted(session: AsyncSession, system: str) -> bool:
    """The PSA took a write: end an outage of refused credentials; True when one ended."""
    done = await session.execute(
        update(PsaState)
        .where(PsaState.system == system, PsaState.auth_failed_at.is_not(None))
        .values(auth_failed_at=None, auth_error="", blocked_until=None, updated_at=utcnow())
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]


async def claim_probe(
    session: AsyncSession, system: str, *, seen: datetime | None, until: datetime
) -> bool:
    """Let exactly one write test refused credentials again (across processes): True for it."""
    done = await session.execute(
        update(PsaState)
        .where(
            PsaState.system == system,
            PsaState.blocked_until.is_(None) if seen is None else PsaState.blocked_until == seen,
        )
        .values(blocked_until=until, updated_at=utcnow())
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]


async def recheck_now(session: AsyncSession) -> bool:
    """A process starting up checks refused credentials again at once (they may be new);
    True when the PSA was refusing them."""
    done = await session.execute(
        update(PsaState).where(PsaState.auth_failed_at.is_not(None)).values(blocked_until=None)
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]


def _waiting(now: datetime) -> Any:
    return (
        (_OUTBOX.c.status == "pending")
        & _OUTBOX.c.kind.like(KIND_PREFIX + "%")
        & (_OUTBOX.c.due_at > now)
        & (_OUTBOX.c.claimed_until.is_(None) | (_OUTBOX.c.claimed_until < now))
    )


async def wake_all(session: AsyncSession) -> int:
    """Make every waiting PSA row due now (the PSA takes writes again)."""
    now = utcnow()
    done = await session.execute(update(_OUTBOX).where(_waiting(now)).values(due_at=now))
    woke = int(done.rowcount)  # type: ignore[attr-defined]
    if woke:
        session.info["outbox_enqueued"] = True  # wake this process's worker after the commit
    return woke


async def wake_next(session: AsyncSession, *, ticket_id: int, after_id: int) -> None:
    """Make the ticket's next PSA row due now (the one it waited for was just delivered)."""
    now = utcnow()
    following = (
        select(_OUTBOX.c.id)
        .where(_OUTBOX.c.ticket_id == ticket_id, _OUTBOX.c.id > after_id, _waiting(now))
        .order_by(_OUTBOX.c.id)
        .limit(1)
        .scalar_subquery()
    )
    done = await session.execute(
        update(_OUTBOX).where(_OUTBOX.c.id == following).values(due_at=now)
    )
    if done.rowcount:  # type: ignore[attr-defined]
        session.info["outbox_enqueued"] = True


async def set_payload(session: AsyncSession, message_id: int, payload: dict[str, Any]) -> None:
    """Replace a row's payload (what the next attempt must know about this one)."""
    await session.execute(
        update(OutboxMessage).where(OutboxMessage.id == message_id).values(payload=payload)
    )


def later(seconds: float) -> datetime:
    return utcnow() + timedelta(seconds=seconds)
