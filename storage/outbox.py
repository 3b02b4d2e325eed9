"""The outbox: side effects written with their cause, claimed by workers, delivered once.

Claiming takes a lease (`claimed_until`) in one short transaction; delivery happens outside
any transaction; the result is recorded in another. A live worker renews its leases, so they
can be short. A worker that dies (or loses the database) mid-delivery leaves a lease that runs
out: the next claim marks the row `in_doubt` (the attempt may have arrived without being
recorded), and the notifier looks for it before sending again (Slack messages by their
metadata; pages are idempotent through their dedup key).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, event, func, insert, select, text, true, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction

from storage import statements
from storage.models import OutboxMessage, utcnow

_OUTBOX = statements.table_of(OutboxMessage)
_INSERT = insert(_OUTBOX).returning(_OUTBOX.c.id)

LEASE = timedelta(seconds=20)
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 300.0
MAX_RETRY_AFTER = 3600.0


async def enqueue(
    session: AsyncSession,
    *,
    kind: str,
    payload: dict[str, Any],
    ticket_id: int | None = None,
    due_at: datetime | None = None,
    dedup_key: str | None = None,
) -> bool:
    """Queue a side effect in the caller's transaction; False if `dedup_key` was queued before.

    A row due now, queued in a process whose worker takes hand-offs (`hand_off_on_commit`), is
    claimed by that worker in its INSERT and handed to it when the transaction commits.
    """
    now = utcnow()
    values = _new_row(Queued(kind, payload, ticket_id, due_at or now, dedup_key), now)
    # The connection first: a failure to get one (a redelivery refused at the transaction's
    # start, a cancelled wait for SQLite's connection) must not hold a reserved place.
    conn = await statements.connection(session)
    handoff: Handoff | None = getattr(session.sync_session, "outbox_handoff", None)
    # Due by the worker's clock (as its `claim_due` would judge), which tests move.
    claimed_at = handoff.clock() if handoff is not None else now
    due = values["due_at"] <= max(now, claimed_at)
    # Only at the top level: a savepoint rolled back alone would take its rows with it.
    taken = (
        handoff is not None
        and due
        and not session.sync_session.in_nested_transaction()
        and handoff.reserve()
    )
    if handoff is not None and taken:
        # The claim a worker's `claim_due` would make: its first attempt, under a lease.
        values |= {"claimed_by": handoff.worker, "claimed_until": claimed_at + handoff.lease}
        values["attempts"] = 1
    stmt = (
        _INSERT
        if dedup_key is None
        else statements.insert_new(session, _OUTBOX, "dedup_key", returning="id")
    )
    try:
        inserted = (await conn.execute(stmt, values)).first()
    except BaseException:
        if taken and handoff is not None:
            handoff.release(1)
        raise
    if inserted is None:
        if taken and handoff is not None:
            handoff.release(1)  # queued before under its dedup key: nothing to hand over
        return False
    if taken:
        session.info.setdefault(_HANDED, []).append(OutboxMessage(id=inserted[0], **values))
    elif due:
        # Wake the workers (a row due later is found by their poll when it is due).
        session.info["outbox_enqueued"] = True
        await _notify_workers(session, conn)
    return True


@dataclass(frozen=True)
class Queued:
    """One row for `enqueue_many` (the arguments of `enqueue`)."""

    kind: str
    payload: dict[str, Any]
    ticket_id: int | None = None
    due_at: datetime | None = None
    dedup_key: str | None = None


async def enqueue_many(session: AsyncSession, rows: Sequence[Queued]) -> int:
    """`enqueue` each of `rows`; returns how many were new (not queued before under their
    dedup key). Rows that are all due later and deduplicated (SLA alarms) go in one INSERT:
    no worker takes them at once and none is woken, so there is nothing else to do per row."""
    now = utcnow()
    handoff: Handoff | None = getattr(session.sync_session, "outbox_handoff", None)
    latest = max(now, handoff.clock()) if handoff is not None else now
    if len(rows) < 2 or any(
        row.dedup_key is None or row.due_at is None or row.due_at <= latest for row in rows
    ):
        queued = 0
        for row in rows:
            queued += await enqueue(
                session,
                kind=row.kind,
                payload=row.payload,
                ticket_id=row.ticket_id,
                due_at=row.due_at,
                dedup_key=row.dedup_key,
            )
        return queued
    conn = await statements.connection(session)
    stmt = statements.insert_new(session, _OUTBOX, "dedup_key", returning="id")
    values = [_new_row(row, now) for row in rows]
    return len((await conn.execute(stmt, values)).all())


def _new_row(row: Queued, now: datetime) -> dict[str, Any]:
    """The values of a new pending row."""
    return {
        "kind": row.kind,
        "payload": row.payload,
        "ticket_id": row.ticket_id,
        "due_at": row.due_at,
        "dedup_key": row.dedup_key,
        "status": "pending",
        "result": {},
        "last_error": "",
        "attempts": 0,
        "created_at": now,
        "failure_reported": False,
        "in_doubt": False,
    }


@dataclass
class Handoff:
    """A worker in this process that takes the rows its own requests queue, due now.

    Such a row is claimed in the INSERT itself (by `worker`, for `lease`, attempt 1) and
    handed over in memory when its transaction commits: no claiming transaction, no poll.
    If the process dies before the delivery is recorded, the lease runs out and any worker
    claims the row as in doubt, exactly as a row whose claim was its own statement.
    `reserve()` says whether the worker takes one more row (and counts it until it is taken
    or released); when not, rows are queued unclaimed and found by the claim that the commit
    wakes. `release(n)`: n reserved rows will not come (rolled back, or a duplicate).
    """

    worker: str
    lease: timedelta
    clock: Callable[[], datetime]
    reserve: Callable[[], bool]
    release: Callable[[int], None]
    take: Callable[[list[OutboxMessage]], None]


_HANDED = "outbox_handed"


def hand_off_on_commit(factory: async_sessionmaker[AsyncSession], handoff: Handoff) -> None:
    """Let `handoff`'s worker claim the due rows queued by sessions of `factory`."""
    sync_cls = factory.kw.get("sync_session_class", Session)
    sync_cls.outbox_handoff = handoff  # read by `enqueue`

    @event.listens_for(sync_cls, "after_commit")
    def _after_commit(session: Session) -> None:
        if session.in_nested_transaction():
            return  # a savepoint released: the rows wait for the real commit
        rows = session.info.pop(_HANDED, None)
        if rows:
            handoff.take(rows)

    @event.listens_for(sync_cls, "after_transaction_end")
    def _after_end(session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is not None:
            return
        # Still here: the transaction ended without committing (rolled back, or the session
        # closed with it open). The rows are gone with it.
        rows = session.info.pop(_HANDED, None)
        if rows:
            handoff.release(len(rows))


# PostgreSQL: workers in other processes LISTEN on this channel (bot.wakeup); the NOTIFY is
# sent in the queuing transaction, so it arrives exactly when the rows are committed.
WAKEUP_CHANNEL = "helpdesk_outbox"
_NOTIFY = text(f"SELECT pg_notify('{WAKEUP_CHANNEL}', '')")


async def _notify_workers(session: AsyncSession, conn: Any) -> None:
    if statements.dialect(session) != "postgresql":
        return
    transaction = session.sync_session.get_transaction()
    if session.info.get("outbox_notified") is transaction:
        return  # once per transaction
    await conn.execute(_NOTIFY)
    session.info["outbox_notified"] = transaction


async def claim_due(
    session: AsyncSession,
    *,
    worker: str,
    limit: int = 50,
    now: datetime | None = None,
    lease: timedelta = LEASE,
) -> Sequence[OutboxMessage]:
    """Lease up to `limit` due rows to `worker` for `lease` (SKIP LOCKED on PostgreSQL).

    Each claim counts as an attempt. A lease that runs out (the worker died) makes the row
    due again for anyone, and in doubt: its last attempt was never recorded.
    """
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
        .values(
            claimed_by=worker,
            claimed_until=now + lease,
            attempts=OutboxMessage.attempts + 1,
            # Outcomes clear the lease; one still set belongs to an attempt nobody recorded.
            in_doubt=case(
                (OutboxMessage.claimed_until.is_not(None), true()), else_=OutboxMessage.in_doubt
            ),
        )
        .returning(OutboxMessage)
        .execution_options(synchronize_session=False)
    )
    rows = (await session.execute(stmt)).scalars().all()
    return sorted(rows, key=lambda r: (r.due_at, r.id))


# The worker's per-row updates, built once. Parameters named after columns fill the SET
# clause; `row_id` / `row_worker` are the WHERE clause (a row still leased to this worker,
# its outcome not recorded yet: recording one clears the lease, so an outcome recorded again,
# after the answer to its first COMMIT was lost, finds nothing to change).
_HELD = update(_OUTBOX).where(
    _OUTBOX.c.id == bindparam("row_id"),
    _OUTBOX.c.claimed_by == bindparam("row_worker"),
    _OUTBOX.c.claimed_until.is_not(None),
)


async def _update_held(
    session: AsyncSession, stmt: Any, *, message_id: int, worker: str, **values: Any
) -> bool:
    conn = await statements.connection(session)
    done = await conn.execute(stmt, {"row_id": message_id, "row_worker": worker, **values})
    return bool(done.rowcount)


async def mark_delivered(
    session: AsyncSession,
    *,
    message_id: int,
    worker: str,
    result: dict[str, Any],
    now: datetime | None = None,
) -> bool:
    """Record the delivery; False when `worker` no longer holds the row (lease taken over)."""
    return await _update_held(
        session,
        _HELD,
        message_id=message_id,
        worker=worker,
        status="delivered",
        delivered_at=now or utcnow(),
        result=result,
        claimed_until=None,
        last_error="",
        in_doubt=False,
    )


async def renew(
    session: AsyncSession,
    *,
    worker: str,
    message_ids: Sequence[int],
    lease: timedelta,
    now: datetime | None = None,
    attempts: int | None = None,
) -> int:
    """Extend the leases `worker` still holds on `message_ids`; returns how many it holds.
    `attempts`: only while the row is still at that attempt (not claimed again since, by
    anyone, this worker's own claim included)."""
    if not message_ids:
        return 0
    same_attempt = () if attempts is None else (OutboxMessage.attempts == attempts,)
    done = await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id.in_(list(message_ids)),
            OutboxMessage.claimed_by == worker,
            OutboxMessage.status == "pending",
            OutboxMessage.claimed_until.is_not(None),
            *same_attempt,
        )
        .values(claimed_until=(now or utcnow()) + lease)
        .execution_options(synchronize_session=False)
    )
    return int(done.rowcount)  # type: ignore[attr-defined]


def retry_wait(seconds: float) -> float:
    """A server's Retry-After as a wait: not negative, not NaN, at most MAX_RETRY_AFTER (the
    outbox's retries and the places' Retry-After windows alike)."""
    if math.isnan(seconds):
        return 0.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def backoff(attempts: int, *, retry_after: float | None = None) -> float:
    """Seconds before the next try: about 1, 2, 4 ... capped at 300, with jitter.

    A server's Retry-After wins when it is longer: the next try is never before it (jitter
    only adds). A shorter one does not cut the backoff: a connector answering 429 with
    `Retry-After: 0` (or 1) again and again was retried at every poll, twice a second with
    a warning each, for as long as it lasted, where every other failure backs off.
    """
    base = min(MAX_BACKOFF, FIRST_BACKOFF * 2.0 ** max(attempts - 1, 0))
    backed_off = base * random.uniform(0.75, 1.0)
    if retry_after is not None:
        wait = retry_wait(retry_after)
        return max(wait + random.uniform(0.0, min(1.0, wait * 0.1)), backed_off)
    return backed_off


async def mark_failed(
    session: AsyncSession,
    *,
    message_id: int,
    worker: str,
    error: str,
    attempts: int,
    retry_after: float | None = None,
    permanent: bool = False,
    uncertain: bool = False,
    now: datetime | None = None,
) -> bool:
    """Record a failed attempt: reschedule with backoff, or give up (`dead`) when permanent.
    `uncertain`: the attempt may have arrived (a timeout), so the row is now in doubt.

    False when `worker` no longer holds the row (its lease ran out and another worker took it).
    """
    delay = backoff(attempts, retry_after=retry_after)
    extra = {"in_doubt": True} if uncertain else {}
    return await _update_held(
        session,
        _HELD,
        message_id=message_id,
        worker=worker,
        status="dead" if permanent else "pending",
        last_error=error[:2000],
        claimed_until=None,
        due_at=(now or utcnow()) + timedelta(seconds=delay),
        # A resend in doubt whose outcome is recorded is no longer one whose sender died
        # (note_resend_in_doubt): refused cleanly it did not arrive; timed out or cut off it
        # may not have either, and is sent again as any uncertain attempt is (SPEC lets a
        # Teams message repeat once for a sender that died, and does not count these).
        result={},
        **extra,
    )


async def defer(
    session: AsyncSession,
    *,
    message_id: int,
    worker: str,
    seconds: float,
    now: datetime | None = None,
) -> bool:
    """Put a claimed row back untried (it waits for another row): the claim is not an attempt."""
    return await _update_held(
        session,
        _HELD.values(attempts=_OUTBOX.c.attempts - 1),
        message_id=message_id,
        worker=worker,
        claimed_until=None,
        due_at=(now or utcnow()) + timedelta(seconds=max(seconds, 0.0)),
    )


# Only the claim the worker let go: not a later claim of the row (by anyone, this worker too).
_PUT_BACK = _HELD.where(_OUTBOX.c.attempts == bindparam("row_attempts")).values(
    attempts=_OUTBOX.c.attempts - 1
)


async def put_back(session: AsyncSession, *, message_id: int, worker: str, attempts: int) -> bool:
    """Put back untried a row claimed at `attempts` and let go before anything was sent: the
    claim is not an attempt, and the next claim finds nothing in doubt (a lease left to run
    out would make it in doubt). Does nothing once the row was claimed again, or recorded;
    its `in_doubt` stays what it was when it was claimed."""
    return await _update_held(
        session,
        _PUT_BACK,
        message_id=message_id,
        worker=worker,
        row_attempts=attempts,
        claimed_until=None,
    )


# In `result` while a row is not delivered yet: the attempt under way resends a row in doubt
# that nothing can look up (a Teams message: SPEC lets one repeat once). A later claim that
# finds it in doubt again knows it may have gone out twice already.
RESENT_IN_DOUBT = "resent_in_doubt"
# In `result` of a row recorded as delivered without that third send: where it landed (its
# activity id) is not known.
NOT_SENT_AGAIN = "not_sent_again"
_RESENDING = _HELD.where(_OUTBOX.c.attempts == bindparam("row_attempts"))


async def note_resend_in_doubt(
    session: AsyncSession, *, message_id: int, worker: str, attempts: int
) -> bool:
    """Record, before it goes, that the attempt `worker` holds at `attempts` resends a row in
    doubt that cannot be looked up; False when the row is no longer that attempt's."""
    return await _update_held(
        session,
        _RESENDING,
        message_id=message_id,
        worker=worker,
        row_attempts=attempts,
        result={RESENT_IN_DOUBT: True},
    )


async def give_up(session: AsyncSession, *, message_id: int, worker: str, reason: str) -> bool:
    """Cancel a claimed row that can never be sent (what it follows was never delivered)."""
    return await _update_held(
        session,
        _HELD,
        message_id=message_id,
        worker=worker,
        status="cancelled",
        last_error=reason[:2000],
        claimed_until=None,
    )


async def cancel_unsent(session: AsyncSession, *, message_id: int, reason: str) -> bool:
    """Cancel a row that certainly did not reach its receiver; False otherwise.

    That is a pending row that was never attempted, or whose every attempt so far failed
    cleanly (refused, throttled, unreachable: recorded and not `in_doubt`), waiting for its
    next try, and that nobody is attempting now. A row is attempted exactly while it is
    claimed (`claimed_until` set, from its claim or hand-off until its outcome is recorded,
    which clears it), so a claimed row is never cancelled: not under a live lease (its worker
    may be sending it this very moment, and would record the outcome over the cancel), nor
    under a lapsed one (its worker died mid-attempt, which may have arrived: it is in doubt).
    The claim and this update exclude each other (PostgreSQL row locks, SQLite's single
    writer): whichever comes second sees the other's result. A row in doubt may have reached
    its receiver, so it stays: the caller follows it up instead (a resolve after the trigger).
    """
    done = await session.execute(
        update(OutboxMessage)
        .where(
            OutboxMessage.id == message_id,
            OutboxMessage.status == "pending",
            OutboxMessage.in_doubt.is_(False),
            OutboxMessage.claimed_until.is_(None),
        )
        .values(status="cancelled", last_error=reason[:2000])
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]


async def set_failure_reported(session: AsyncSession, message_id: int, value: bool = True) -> None:
    await session.execute(
        update(OutboxMessage).where(OutboxMessage.id == message_id).values(failure_reported=value)
    )


async def get(session: AsyncSession, message_id: int) -> OutboxMessage | None:
    return await session.get(OutboxMessage, message_id)


async def by_dedup_keys(session: AsyncSession, keys: Sequence[str]) -> Sequence[OutboxMessage]:
    """Rows queued under any of `keys`, oldest first."""
    query = select(OutboxMessage).where(OutboxMessage.dedup_key.in_(list(keys)))
    return (await session.execute(query.order_by(OutboxMessage.id))).scalars().all()


@dataclass(frozen=True)
class DeliveryState:
    """What `ticket show` says about one outbox row (no payload: it holds whole cards)."""

    kind: str
    purpose: str
    status: str
    attempts: int
    last_error: str
    due_at: datetime
    # Claimed by a worker: an attempt is under way (or its worker died and the lease will
    # run out), not a failed one.
    claimed: bool = False
    # A delivered PSA write that went without facts the PSA would not let the bot read.
    went_without: str = ""
    # What tells rows of one purpose apart (`ticket show` labels): whether the row is the
    # ticket card, and its dedup key (an SLA alarm's names its target).
    ticket_card: bool = False
    dedup_key: str = ""


_STATES = (
    select(
        _OUTBOX.c.kind,
        _OUTBOX.c.payload["purpose"].as_string(),
        _OUTBOX.c.status,
        _OUTBOX.c.attempts,
        _OUTBOX.c.last_error,
        _OUTBOX.c.due_at,
        _OUTBOX.c.claimed_until.is_not(None),
        _OUTBOX.c.result["went_without"].as_string(),
        _OUTBOX.c.payload["ticket_card"].as_boolean(),
        _OUTBOX.c.dedup_key,
    )
    .where(_OUTBOX.c.ticket_id == bindparam("ticket_id"))
    .order_by(_OUTBOX.c.id)
)


_CARD_PENDING = (
    select(_OUTBOX.c.due_at)
    .where(
        _OUTBOX.c.ticket_id == bindparam("ticket_id"),
        _OUTBOX.c.status == "pending",
        _OUTBOX.c.payload["ticket_card"].as_boolean() == true(),
    )
    .limit(1)
)


async def card_due(session: AsyncSession, ticket_id: int) -> datetime | None:
    """While the ticket's card is queued or being sent (not delivered, dead or cancelled):
    when it is next due (in the past while it is being sent); else None."""
    conn = await statements.connection(session)
    found = (await conn.execute(_CARD_PENDING, {"ticket_id": ticket_id})).first()
    return None if found is None else found[0]


# Ticket cards whose post may be in Slack without its message being recorded yet: being
# sent now (leased), or an attempt nobody recorded (a lease run out, an uncertain failure).
# Few at any time; scanned through the pending rows (ix_outbox_due).
MAX_CARDS_IN_DOUBT = 50
_CARDS_IN_DOUBT = (
    select(
        _OUTBOX.c.id,
        _OUTBOX.c.created_at,
        _OUTBOX.c.ticket_id,
        _OUTBOX.c.payload["channel"].as_string(),
    )
    .where(
        _OUTBOX.c.status == "pending",
        _OUTBOX.c.claimed_until.is_not(None) | (_OUTBOX.c.in_doubt == true()),
        _OUTBOX.c.ticket_id.is_not(None),
        _OUTBOX.c.payload["ticket_card"].as_boolean() == true(),
    )
    .order_by(_OUTBOX.c.id.desc())
    .limit(MAX_CARDS_IN_DOUBT)
)


@dataclass(frozen=True)
class CardInDoubt:
    """A ticket card row that may have been posted without its message being recorded."""

    id: int
    created_at: datetime
    ticket_id: int
    channel: str


async def cards_in_doubt(session: AsyncSession, *, channel: str) -> list[CardInDoubt]:
    """The ticket card rows for `channel` (or for a channel given by `#name`, whose id is not
    known until it is posted) that may be in Slack unrecorded, newest first."""
    conn = await statements.connection(session)
    rows = await conn.execute(_CARDS_IN_DOUBT)
    return [
        CardInDoubt(int(r[0]), r[1], int(r[2]), str(r[3] or ""))
        for r in rows
        if r[3] == channel or str(r[3] or "").startswith("#")
    ]


# A ticket card refresh (rendered when it is delivered) that waits, unclaimed: it will show
# the ticket as it is then, whatever other refreshes were queued before it.
_REFRESH = _OUTBOX.c.payload["refresh_ticket_card"].as_boolean() == true()
_OTHER_REFRESH_WAITING = (
    select(_OUTBOX.c.id)
    .where(
        _OUTBOX.c.ticket_id == bindparam("ticket_id"),
        _OUTBOX.c.id != bindparam("row_id"),
        _OUTBOX.c.status == "pending",
        _OUTBOX.c.claimed_until.is_(None),
        _REFRESH,
    )
    .limit(1)
)


async def other_card_refresh(session: AsyncSession, *, ticket_id: int, row_id: int) -> int | None:
    """Another refresh of the ticket's card waiting to be sent (pending, not claimed by any
    worker), besides row `row_id`: its id, else None. Claimed rows are left out, so of two
    refreshes looking at each other at once neither counts on the other."""
    conn = await statements.connection(session)
    found = (
        await conn.execute(_OTHER_REFRESH_WAITING, {"ticket_id": ticket_id, "row_id": row_id})
    ).first()
    return None if found is None else int(found[0])


_RELEASE_REFRESHES = (
    update(_OUTBOX)
    .where(
        _OUTBOX.c.ticket_id == bindparam("of_ticket"),
        _OUTBOX.c.status == "pending",
        _OUTBOX.c.claimed_until.is_(None),
        # Held, never tried: a row waiting for its retry (a Retry-After) keeps its time.
        _OUTBOX.c.attempts == 0,
        _OUTBOX.c.due_at > bindparam("release_at"),
        _REFRESH,
    )
    .values(due_at=bindparam("release_at"))
)


async def release_card_refreshes(session: AsyncSession, *, ticket_id: int, now: datetime) -> int:
    """Make the ticket card's refreshes held for a later time (a form in the card's place)
    due `now`; returns how many there were."""
    conn = await statements.connection(session)
    done = await conn.execute(_RELEASE_REFRESHES, {"of_ticket": ticket_id, "release_at": now})
    return int(done.rowcount)


async def states_for(session: AsyncSession, ticket_id: int) -> list[DeliveryState]:
    """The ticket's outbox rows, oldest first."""
    conn = await statements.connection(session)
    rows = await conn.execute(_STATES, {"ticket_id": ticket_id})
    return [
        DeliveryState(
            r[0],
            r[1] or "",
            r[2],
            r[3],
            r[4],
            r[5],
            bool(r[6]),
            r[7] or "",
            bool(r[8]),
            r[9] or "",
        )
        for r in rows
    ]


@dataclass(frozen=True)
class Depth:
    """What the outbox holds: rows due (or being retried), since when, and rows waiting for
    their time (SLA warnings, delayed surveys and reminders)."""

    due: int
    oldest: datetime | None
    scheduled: int


async def stats(session: AsyncSession, *, now: datetime | None = None) -> Depth:
    """Undelivered rows that are due or were tried, when the oldest of them became due (its
    creation, once it has been tried), and rows not due yet."""
    now = now or utcnow()
    late = (OutboxMessage.due_at <= now) | (OutboxMessage.attempts > 0)
    since = case((OutboxMessage.attempts > 0, OutboxMessage.created_at), else_=OutboxMessage.due_at)
    row = (
        await session.execute(
            select(
                func.count().filter(late),
                func.min(since).filter(late),
                func.count().filter(~late),
            ).where(OutboxMessage.status == "pending")
        )
    ).one()
    oldest = row[1]
    if isinstance(oldest, str):  # SQLite gives min() over a CASE back as text
        oldest = datetime.fromisoformat(oldest).replace(tzinfo=UTC)
    return Depth(due=int(row[0]), oldest=oldest, scheduled=int(row[2]))


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
