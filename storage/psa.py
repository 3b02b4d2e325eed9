"""PSA sync state: the PSA's pause (Retry-After / refused credentials) and its outbox rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage import statements
from storage.models import OutboxMessage, PsaState, Ticket, utcnow

KIND_PREFIX = "psa."
_STATE = statements.table_of(PsaState)
_OUTBOX = statements.table_of(OutboxMessage)
_TICKETS = statements.table_of(Ticket)
# Built once: every PSA delivery runs these (see storage.statements for why that matters).
# Parameter names never equal a column's, or an UPDATE would take them for its SET clause.
_PSA_ROW = _OUTBOX.c.kind.like(KIND_PREFIX + "%")
_LAST_ROW = select(func.max(_OUTBOX.c.id)).where(
    _OUTBOX.c.ticket_id == bindparam("row_ticket"), _PSA_ROW
)
_GATE = select(_STATE.c.blocked_until, _STATE.c.auth_failed_at, _STATE.c.auth_error).where(
    _STATE.c.system == bindparam("psa_system")
)
_GATE_LOCKED = _GATE.with_for_update()
_ACCEPTED = (
    update(_STATE)
    .where(_STATE.c.system == bindparam("psa_system"), _STATE.c.auth_failed_at.is_not(None))
    .values(auth_failed_at=None, auth_error="", blocked_until=None, updated_at=bindparam("at"))
)
_ROW_STATE = select(_OUTBOX.c.status, _OUTBOX.c.due_at).where(_OUTBOX.c.id == bindparam("row_id"))
_TICKET_REF = select(_TICKETS.c.psa_id, _TICKETS.c.psa_number).where(
    _TICKETS.c.id == bindparam("row_ticket")
)
_NEXT = (
    select(func.min(_OUTBOX.c.id))
    .where(
        _OUTBOX.c.ticket_id == bindparam("row_ticket"),
        _OUTBOX.c.id > bindparam("row_after"),
        _OUTBOX.c.status == "pending",
        _PSA_ROW,
        _OUTBOX.c.due_at > bindparam("row_now"),
        _OUTBOX.c.claimed_until.is_(None) | (_OUTBOX.c.claimed_until < bindparam("row_now")),
    )
    .scalar_subquery()
)
_WAKE_NEXT = update(_OUTBOX).where(_OUTBOX.c.id == _NEXT).values(due_at=bindparam("wake_at"))


@dataclass(frozen=True)
class Gate:
    """The PSA's pause: no call before `blocked_until`; `auth_failed_at` while it refuses
    the credentials (with its answer)."""

    blocked_until: datetime | None
    auth_failed_at: datetime | None
    auth_error: str


def is_psa_kind(kind: str) -> bool:
    """An outbox kind that writes to the PSA (`psa.create`, `psa.note`, ...)."""
    return kind.startswith(KIND_PREFIX)


async def last_row_id(session: AsyncSession, ticket_id: int) -> int | None:
    """The newest PSA row of a ticket (the next one is delivered after it)."""
    conn = await statements.connection(session)
    value = (await conn.execute(_LAST_ROW, {"row_ticket": ticket_id})).scalar_one_or_none()
    return int(value) if value is not None else None


async def gate(session: AsyncSession, system: str, *, lock: bool = False) -> Gate | None:
    """The PSA's pause; `lock` holds its row to the end of the transaction (so the end of an
    outage waits for a write being put back, and then wakes it)."""
    conn = await statements.connection(session)
    row = (await conn.execute(_GATE_LOCKED if lock else _GATE, {"psa_system": system})).first()
    if row is None:
        return None
    return Gate(row[0], row[1], row[2] or "")


async def row_state(session: AsyncSession, message_id: int) -> tuple[str, datetime] | None:
    """(status, due_at) of an outbox row."""
    conn = await statements.connection(session)
    row = (await conn.execute(_ROW_STATE, {"row_id": message_id})).first()
    if row is None:
        return None
    return str(row[0]), row[1]


async def ticket_ref(session: AsyncSession, ticket_id: int) -> tuple[str | None, str | None]:
    """(psa_id, psa_number) of a ticket."""
    conn = await statements.connection(session)
    row = (await conn.execute(_TICKET_REF, {"row_ticket": ticket_id})).first()
    return (row[0], row[1]) if row is not None else (None, None)


async def rows_of_kind(session: AsyncSession, *, ticket_id: int, kind: str) -> list[OutboxMessage]:
    """A ticket's outbox rows of one kind, oldest first."""
    query = select(OutboxMessage).where(
        OutboxMessage.ticket_id == ticket_id, OutboxMessage.kind == kind
    )
    return list((await session.execute(query.order_by(OutboxMessage.id))).scalars())


async def state(session: AsyncSession, system: str, *, lock: bool = False) -> PsaState | None:
    """The PSA's state row (ORM), locked for the transaction when `lock`."""
    query = select(PsaState).where(PsaState.system == system)
    if lock:
        query = query.with_for_update()
    return (await session.execute(query)).scalar_one_or_none()


async def _locked_state(session: AsyncSession, system: str) -> PsaState:
    """The system's row, created when missing, locked for this transaction."""
    found = await state(session, system, lock=True)
    if found is not None:
        return found
    conn = await statements.connection(session)
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
    conn = await statements.connection(session)
    done = await conn.execute(_ACCEPTED, {"psa_system": system, "at": utcnow()})
    return bool(done.rowcount)


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
    conn = await statements.connection(session)
    done = await conn.execute(
        _WAKE_NEXT, {"row_ticket": ticket_id, "row_after": after_id, "row_now": now, "wake_at": now}
    )
    if done.rowcount:
        session.info["outbox_enqueued"] = True


async def set_payload(session: AsyncSession, message_id: int, payload: dict[str, Any]) -> None:
    """Replace a row's payload (what the next attempt must know about this one)."""
    await session.execute(
        update(OutboxMessage).where(OutboxMessage.id == message_id).values(payload=payload)
    )


def later(seconds: float) -> datetime:
    """Now plus `seconds`, as a UTC datetime."""
    return utcnow() + timedelta(seconds=seconds)
