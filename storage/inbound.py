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
request); a Teams message's answer claims its activity id as well (`claim`, from
dispatch.first_answer), so a redelivered activity is not answered twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, event, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Session, SessionTransaction, SessionTransactionOrigin

from storage import statements
from storage.models import InboundDelivery

SessionFactory = Callable[[], AsyncSession]
_TABLE = statements.table_of(InboundDelivery)
_SEEN = select(_TABLE.c.key).where(_TABLE.c.key == bindparam("key"))
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
    # The dispatcher stopped waiting before any commit began (see GivenUp).
    given_up: bool = False
    # A COMMIT was sent and its answer never came (the connection failed meanwhile): the
    # change may have been saved, or not.
    unconfirmed: bool = False


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
    conn = await statements.connection(session)
    return (await conn.execute(_SEEN, {"key": key})).first() is not None


async def seen_before(sessions: SessionFactory, key: str) -> bool:
    """`seen`, in a connection of its own when `sessions` is a sessionmaker bound to an
    engine: no ORM session is needed for one look-up, and this one is on the path of every
    change (its session cost more than the statement). Otherwise in a session of `sessions`."""
    engine = getattr(sessions, "kw", {}).get("bind")
    if isinstance(engine, AsyncEngine):
        async with engine.connect() as conn:
            return (await conn.execute(_SEEN, {"key": key})).first() is not None
    async with sessions() as session:
        return await seen(session, key)


async def claim(session: AsyncSession, delivery_id: str) -> bool:
    """Claim `delivery_id` in the session's transaction (committed by the caller): True when
    it was new, False when a committed transaction had claimed it (on PostgreSQL a concurrent
    claim waits for that transaction, then stops here). For a delivery whose only effect is
    its answer (dispatch.first_answer); a change claims its id through `bound` sessions.
    On PostgreSQL its commit does not wait for the WAL flush (the answer waits for the
    commit): a claim lost in a server crash only lets a redelivery answer again."""
    conn = await statements.connection(session)
    if conn.dialect.name == "postgresql":
        await conn.execute(_ASYNC_COMMIT)
    stmt = statements.insert_new(session, _TABLE, "key")
    return (await conn.execute(stmt, {"key": key_for(delivery_id)})).first() is not None


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
    if connection.execute(stmt, {"key": binding.key}).first() is None:
        raise AlreadyHandled(binding.key)
    binding.pending = transaction


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
