"""Inbound deliveries: a request that changed something is remembered by its delivery id.

Sessions made for one delivery (`bound`) claim its id in the transaction that changes
something, so the claim commits exactly when the change does (a crash between the two cannot
happen: there is no second step). The claim is that transaction's first statement when it was
opened with `begin()` (on PostgreSQL a concurrent duplicate then waits on the key and stops
there), and is written before the commit of any other transaction that commits. One delivery
changes state in one transaction: a second one is refused as a programming error, as is any
commit from a delivery bound as read-only. `install` hooks this into a session class.

The binding also tells the dispatcher whether the delivery's change may already be saved
(`committing`, `done`) when its answer budget runs out, and once the dispatcher has given the
delivery up (`given_up`, the person told nothing was saved) no commit of it may start. A
COMMIT that was sent but never confirmed (the connection broke or timed out while waiting for
its answer) may have landed all the same: `unconfirmed`.

An id is kept for KEEP after it was claimed, then `prune` deletes it. Nothing accepts a repeat
of a delivery that late: a Slack request is refused once its signed timestamp is 5 minutes
old (Slack's retries come within minutes, each signed anew), a Bot Framework token once it
has expired (about an hour after it was issued, 5 minutes' clock tolerance), a Socket Mode
envelope is redelivered within minutes. Only a claim reads an old id (binding states are per
request).

A Teams message's answer is claimed under an id of its own (`claim`, from
dispatch.first_answer), so a redelivered activity is not answered twice. That claim is a lease:
its row's `at` is when it was taken or last renewed (`renew`), and once the answer is out, a
second row (`ANSWERED` + its key, `answered`) records it. A claim older than the lease and not
recorded as answered belongs to a process that died before its answer went out (or before it
recorded it): a redelivery takes it over (one UPDATE whose condition is the stale `at`, so of
two only one does) and answers. Until then a redelivery sees it `HELD`. A claim is taken over
once (a third row, `TAKEN` + its key, says it was): the delivery that takes it over sends at
once, so when its lease runs out too, that process died with the answer out (or on its way):
it went out once or twice already, and is not sent a third time (`REPEATED`; a Teams message
may repeat once, and only when its process died between the send and its record).

A change's answer is kept with its claim (`answer`, JSON the dispatcher writes and reads:
handlers.replay), so that a redelivery, which exists because the first answer did not count
(Slack) or may not have gone out (Teams), is answered with it rather than with nothing. The
claim's INSERT carries what is known before the change runs (who asked, where: a redelivery
from anyone else is answered nothing), `record` adds the answer once the change has committed
and its answer is known (the use case builds it after its transaction), and `recorded` is the
one look a delivery takes before its work. Where the answer is a message of its own, the
change's claim is also its answer's lease (`claim` on the delivery's own id, `answered`).
"""

from __future__ import annotations

import enum
import hashlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, event, exists, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Session, SessionTransaction, SessionTransactionOrigin

from storage import sqlite_reader, statements
from storage.models import InboundDelivery, utcnow

SessionFactory = Callable[[], AsyncSession]
_TABLE = statements.table_of(InboundDelivery)
_SEEN = select(_TABLE.c.key, _TABLE.c.answer, _TABLE.c.at).where(_TABLE.c.key == bindparam("key"))
_SEEN_SQLITE = "SELECT answer, at FROM inbound_deliveries WHERE key = ?"
_BINDING = "inbound_delivery"
_ASYNC_COMMIT = text("SET LOCAL synchronous_commit TO OFF")
# Longer ids (Teams conversation ids can be long) are stored as their hash.
MAX_KEY = 255
# How long a handled delivery's id is kept: days beyond the hour or so in which any repeat
# of it is still accepted (see the module docstring).
KEEP = timedelta(days=7)
# The oldest ids claimed before `before`, at most `limit` of them. Rows another process is
# deleting are skipped, not waited for (PostgreSQL; SQLite has one writer at a time).
_OLDEST = (
    select(_TABLE.c.key)
    .where(_TABLE.c.at < bindparam("prune_before"))
    .order_by(_TABLE.c.at)
    .limit(bindparam("prune_limit"))
    .with_for_update(skip_locked=True)
)
_PRUNE = delete(_TABLE).where(_TABLE.c.key.in_(_OLDEST))
# An answer's claim is recorded as answered by a second row: this prefix and its key.
ANSWERED = "answered:"
# ... and as taken over once (see the module docstring) by a third: this prefix and its key.
TAKEN = "taken over:"
_WAS_TAKEN = select(exists().where(_TABLE.c.key == bindparam("taken_key")))
_WAS_ANSWERED = exists().where(_TABLE.c.key == bindparam("answered_key"))
# An answer's claim whose lease ran out, never recorded as answered, taken over.
_TAKE_OVER = (
    update(_TABLE)
    .where(_TABLE.c.key == bindparam("claim_key"), _TABLE.c.at < bindparam("stale"), ~_WAS_ANSWERED)
    .values(at=bindparam("now"))
)
_RENEW = update(_TABLE).where(_TABLE.c.key == bindparam("claim_key")).values(at=bindparam("now"))
_ANSWERED_SEEN = select(_WAS_ANSWERED)
# What a change adds to its claim before its answer is kept (`note`).
_NOTE = (
    update(_TABLE).where(_TABLE.c.key == bindparam("claim_key")).values(answer=bindparam("answer"))
)
# A change's answer, kept with its claim unless a redelivery took that claim over meanwhile.
_RECORD = (
    update(_TABLE)
    .where(_TABLE.c.key == bindparam("claim_key"), _TABLE.c.at == bindparam("claimed_at"))
    .values(answer=bindparam("answer"), at=bindparam("now"))
)


class Answer(enum.Enum):
    """What `claim` found of an answer's id."""

    # Claimed now (new).
    MINE = "mine"
    # Claimed now, taken over from a claim whose lease ran out with no answer recorded.
    TAKEN_OVER = "taken over"
    # An earlier delivery's answer was given (recorded by `answered`).
    ANSWERED = "answered"
    # Another delivery of it holds the claim within its lease: answering now, or dead (then
    # the lease runs out).
    HELD = "held"
    # Taken over once already, and that delivery's lease ran out too: it died having sent the
    # answer (or about to): the answer went out once or twice; now recorded as answered.
    REPEATED = "repeated"


@dataclass(frozen=True)
class Claimed:
    """A delivery id claimed by a committed transaction: what its change kept of its answer
    (None: nothing, e.g. claimed before answers were kept) and when it was claimed or last
    renewed."""

    answer: str | None
    at: datetime


class AlreadyHandled(Exception):
    """The delivery id was claimed by an earlier, committed transaction: a redelivery."""


class GivenUp(Exception):
    """The delivery's answer budget ran out before it committed: the person was told nothing
    was saved, so nothing may be."""


class UndeclaredWrite(RuntimeError):
    """A handler wrote in a way its registration does not allow (a bug, never a retry)."""


@dataclass
class Binding:
    """One inbound delivery: its key (None when it has no id) and whether it may write."""

    key: str | None
    writes: bool
    # The transaction holding the claim until it commits; `done` once it has.
    pending: SessionTransaction | None = None
    done: bool = False
    # A commit has begun and not ended (its outcome is not known yet).
    committing: bool = False
    # The claim's INSERT was sent and has not returned. On PostgreSQL it waits only while
    # another delivery of the same id holds the key in a transaction not ended yet (one that
    # may commit: then this one stops with AlreadyHandled); on a SQLite file, while another
    # process holds the write lock (which may be that delivery too).
    claiming: bool = False
    # The dispatcher stopped waiting before any commit began (see GivenUp).
    given_up: bool = False
    # A COMMIT was sent and its answer never came (the connection failed meanwhile): the
    # change may have been saved, or not.
    unconfirmed: bool = False
    # Written with the claim (who asked, where): the start of the answer `record` keeps.
    answer: str | None = None
    # The claim's `at` as written (`record` adds the answer to this claim only).
    claimed_at: datetime | None = None


def key_for(delivery_id: str) -> str:
    """The stored key of a delivery id (long ids by their SHA-256)."""
    if len(delivery_id) <= MAX_KEY:
        return delivery_id
    return "sha256:" + hashlib.sha256(delivery_id.encode()).hexdigest()


def bound(sessions: SessionFactory, binding: Binding) -> SessionFactory:
    """A session factory whose sessions belong to `binding`'s delivery."""

    def make() -> AsyncSession:
        session = sessions()
        session.sync_session.info[_BINDING] = binding
        return session

    make.unbound = sessions  # type: ignore[attr-defined]
    return make


def unbound(sessions: SessionFactory) -> SessionFactory:
    """The plain factory behind `bound` ones: for work that outlives the delivery (a
    background task started by it), which is not the delivery's change."""
    found = getattr(sessions, "unbound", None)
    return found if found is not None else sessions


async def seen(session: AsyncSession, key: str) -> bool:
    """True when a committed transaction has claimed `key` (a cheap look before the work)."""
    return await recorded(session, key) is not None


async def recorded(session: AsyncSession, key: str) -> Claimed | None:
    """The claim of `key` by a committed transaction, with the answer kept with it; None when
    there is none (one look before the work)."""
    conn = await statements.connection(session)
    row = (await conn.execute(_SEEN, {"key": key})).first()
    return None if row is None else Claimed(answer=row.answer, at=row.at)


async def recorded_before(sessions: SessionFactory, key: str) -> Claimed | None:
    """`recorded`, on the path of every change, so as cheaply as it can be read: where
    `sessions` is a sessionmaker bound to an engine, on a SQLite file through its reader
    (storage.sqlite_reader: not queued behind the changes in flight on the engine's one
    connection), else in a connection of its own (an ORM session cost more than the
    statement); otherwise in a session of `sessions`. What this misses (a claim committing
    meanwhile, a reader that could not read) the change's own claim still finds."""
    engine = getattr(sessions, "kw", {}).get("bind")
    if isinstance(engine, AsyncEngine):
        reader = sqlite_reader.of(engine)
        if reader is not None:
            try:
                rows = reader.rows(_SEEN_SQLITE, (key,))
            except sqlite3.Error:
                pass  # busy for a moment, or not migrated yet: the engine answers
            else:
                if not rows:
                    return None
                answer, at = rows[0]
                return Claimed(answer=answer, at=sqlite_reader.from_text(at))
        async with engine.connect() as conn:
            row = (await conn.execute(_SEEN, {"key": key})).first()
        return None if row is None else Claimed(answer=row.answer, at=row.at)
    async with sessions() as session:
        return await recorded(session, key)


async def record(session: AsyncSession, binding: Binding, answer: str) -> bool:
    """Keep `answer` with the claim `binding`'s change committed, and renew it (an answer's
    lease starts when its answer is known), in the session's transaction: False when a
    redelivery took the claim over first (its lease ran out before this: that one answers)."""
    assert binding.key is not None and binding.claimed_at is not None
    conn = await _answer_bookkeeping(session)
    params = {"claim_key": binding.key, "claimed_at": binding.claimed_at}
    result = await conn.execute(_RECORD, {**params, "answer": answer, "now": utcnow()})
    if result.rowcount == 1:
        binding.claimed_at = None  # renewed from now on (`renew`): no longer what was written
        return True
    return False


async def note(session: AsyncSession, **facts: Any) -> None:
    """Add `facts` to what the claim of the session's delivery holds before its answer is
    kept (who asked, where), in the change's own transaction: a redelivery that finds no kept
    answer (its process died between the commit and `record`) still reads them (the ticket the
    change opened). Nothing for a session bound to no delivery, or one with nothing to keep."""
    binding = _binding(session.sync_session)
    if binding is None or binding.key is None or binding.answer is None:
        return
    binding.answer = json.dumps({**json.loads(binding.answer), **facts})
    if binding.pending is not None and binding.pending is session.sync_session.get_transaction():
        conn = await statements.connection(session)
        await conn.execute(_NOTE, {"claim_key": binding.key, "answer": binding.answer})


async def claim(session: AsyncSession, delivery_id: str, *, lease: timedelta) -> Answer:
    """Claim the answer to `delivery_id` in the session's transaction (committed by the
    caller), for `lease` unless renewed: MINE when it was new, TAKEN_OVER when its claim's
    lease ran out with no answer recorded (REPEATED when it had been taken over before: then it
    is recorded as answered), ANSWERED when an earlier delivery's answer was recorded,
    HELD while another delivery's claim is within its lease (on PostgreSQL a concurrent claim
    waits for that transaction, then stops here). For a delivery whose only effect is its
    answer (dispatch.first_answer); a change claims its id through `bound` sessions.
    On PostgreSQL its commit does not wait for the WAL flush (the answer waits for the
    commit): a claim lost in a server crash only lets a redelivery answer again."""
    conn = await _answer_bookkeeping(session)
    key, now = key_for(delivery_id), utcnow()
    stmt = statements.insert_new(session, _TABLE, "key")
    if (await conn.execute(stmt, {"key": key, "at": now})).first() is not None:
        return Answer.MINE
    params = {"claim_key": key, "answered_key": ANSWERED + key, "now": now, "stale": now - lease}
    if (await conn.execute(_TAKE_OVER, params)).rowcount == 1:
        if await conn.scalar(_WAS_TAKEN, {"taken_key": TAKEN + key}):
            await conn.execute(stmt, {"key": ANSWERED + key, "at": now})
            return Answer.REPEATED
        await conn.execute(stmt, {"key": TAKEN + key, "at": now})
        return Answer.TAKEN_OVER
    return Answer.ANSWERED if await conn.scalar(_ANSWERED_SEEN, params) else Answer.HELD


async def renew(session: AsyncSession, delivery_id: str) -> None:
    """Extend the lease of the answer claimed for `delivery_id` (its answer is still going
    out), in the session's transaction."""
    conn = await _answer_bookkeeping(session)
    await conn.execute(_RENEW, {"claim_key": key_for(delivery_id), "now": utcnow()})


async def answered(session: AsyncSession, delivery_id: str) -> None:
    """Record that the answer claimed for `delivery_id` went out (or was handed over to the
    outbox), in the session's transaction: no redelivery takes its claim over."""
    conn = await _answer_bookkeeping(session)
    stmt = statements.insert_new(session, _TABLE, "key")
    await conn.execute(stmt, {"key": ANSWERED + key_for(delivery_id), "at": utcnow()})


async def _answer_bookkeeping(session: AsyncSession) -> AsyncConnection:
    conn = await statements.connection(session)
    if conn.dialect.name == "postgresql":
        await conn.execute(_ASYNC_COMMIT)
    return conn


async def prune(conn: AsyncConnection, *, before: datetime, limit: int) -> int:
    """Delete at most `limit` ids claimed before `before`, oldest first; how many went.
    One statement: the caller commits, so a batch holds its locks only that long."""
    result = await conn.execute(_PRUNE, {"prune_before": before, "prune_limit": limit})
    return int(result.rowcount)


def holds(session: AsyncSession, key: str) -> bool:
    """True when this session's open transaction has claimed `key` itself."""
    binding = session.sync_session.info.get(_BINDING)
    return (
        isinstance(binding, Binding)
        and binding.key == key_for(key)
        and binding.pending is not None
        and binding.pending is session.sync_session.get_transaction()
    )


def _claim(binding: Binding, connection: Connection, transaction: SessionTransaction) -> None:
    assert binding.key is not None
    if binding.done:
        raise UndeclaredWrite(
            f"delivery {binding.key} changed state in a second transaction: one delivery "
            "must make its change in one transaction"
        )
    stmt = statements.insert_new_on(connection.dialect.name, _TABLE, "key")
    now = utcnow()
    row = {"key": binding.key, "at": now, "answer": binding.answer}
    binding.claiming = True
    try:
        claimed = connection.execute(stmt, row).first() is not None
    finally:
        binding.claiming = False
    if not claimed:
        raise AlreadyHandled(binding.key)
    binding.pending, binding.claimed_at = transaction, now


def _binding(session: Session) -> Binding | None:
    found = session.info.get(_BINDING)
    return found if isinstance(found, Binding) else None


def _after_begin(session: Session, transaction: SessionTransaction, connection: Any) -> None:
    binding = _binding(session)
    if (
        binding is not None
        and binding.writes
        and binding.key is not None
        and transaction.origin is SessionTransactionOrigin.BEGIN
        and transaction.parent is None
    ):
        _claim(binding, connection, transaction)


def _before_commit(session: Session) -> None:
    binding = _binding(session)
    if binding is None:
        return
    if not binding.writes:
        raise UndeclaredWrite("a read-only request tried to commit a change")
    if binding.given_up:
        raise GivenUp(f"delivery {binding.key} was given up before it committed")
    transaction = session.get_transaction()
    if binding.key is not None and transaction is not None and binding.pending is not transaction:
        connection = session.connection()  # an explicit begin() claims here if it had not yet
        if binding.pending is not transaction:
            _claim(binding, connection, transaction)
    # What is pending is written now, so that a failure from here on is the COMMIT's own.
    session.flush()
    # From here the change may land whatever happens to the task or its connection (a
    # COMMIT on its way to the server is not taken back by cancelling the await, and a
    # connection that breaks before its answer arrives does not say whether it landed).
    if not session.in_nested_transaction():
        binding.committing = True


def _after_commit(session: Session) -> None:
    binding = _binding(session)
    if binding is None:
        return
    if not session.in_nested_transaction():
        binding.committing = False  # confirmed
    if binding.pending is not None and binding.pending.session is session:
        binding.pending, binding.done = None, True


def _after_transaction_end(session: Session, transaction: SessionTransaction) -> None:
    binding = _binding(session)
    if binding is None:
        return
    if transaction.parent is None and binding.committing:
        # Its COMMIT was sent and never confirmed (the commit failed on its way back).
        binding.committing, binding.unconfirmed = False, True
    if binding.pending is transaction:
        binding.pending = None  # rolled back: the claim went with it


def install(session_class: type[Session]) -> None:
    """Claim deliveries for sessions of `session_class` made by `bound` (once per class)."""
    # Not `event.contains`: SQLAlchemy keys listeners by id(), and a new class may reuse the
    # id of a collected one.
    if session_class.__dict__.get("_claims_deliveries"):
        return
    session_class._claims_deliveries = True  # type: ignore[attr-defined]
    event.listen(session_class, "after_begin", _after_begin)
    event.listen(session_class, "before_commit", _before_commit)
    event.listen(session_class, "after_commit", _after_commit)
    event.listen(session_class, "after_transaction_end", _after_transaction_end)
