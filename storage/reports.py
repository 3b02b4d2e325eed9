"""What `report` counts, as SQL aggregates over the tickets of a period (by creation time).

One GROUP BY (priority, category, resolution category, client) gives every count, sum and
SLA outcome; each median is a LIMIT/OFFSET walk of an index kept in that order (on
PostgreSQL, percentile_cont in one more scan). On SQLite all of them read covering indexes
only (see the Ticket model) and run on read-only connections of their own, on threads: the
app's one connection, and its event loop, stay free meanwhile (WAL readers never block
writers). A report over a million tickets takes about a second on either.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    create_engine,
    event,
    func,
    or_,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from storage.models import Ticket

T = TypeVar("T")
EXPORT_BATCH = 2000


@dataclass(frozen=True)
class Scope:
    """Tickets created in [start, end) (UTC), of one client (any case) or of all."""

    start: datetime
    end: datetime
    client: str | None
    # Targets with no outcome stored are missed once overdue at `now`.
    now: datetime
    # The client's names as stored, every spelling that `fold`s to it (`resolve`). SQLite's
    # NOCASE and lower() fold ASCII only (`Ä` is not `ä`), and so does PostgreSQL's lower() in
    # a database whose LC_CTYPE is C; an IN over a few exact names also costs less per row
    # (half of NOCASE's time at 1M tickets).
    spellings: tuple[str, ...] | None = None


def fold(name: str) -> str:
    """How clients compare: surrounding spaces ignored, a run of spaces inside counted as one
    (`report Acme  Corp` reaches the bot as words), any case (Unicode's caseless match, as
    sla.clients: `STRASSE AG` is `Straße AG`)."""
    return " ".join(name.split()).casefold()


_CLIENT_NAMES = select(Ticket.client).distinct()


async def resolve(engine: AsyncEngine, scope: Scope) -> Scope:
    """`scope` with its client's stored spellings (compared in Python: no database's lower()
    is relied on to fold every letter). One scan of a narrow covering index: about 0.1 s at
    1M tickets, for a report that takes about a second."""
    if scope.client is None or scope.spellings is not None:
        return scope

    def names(conn: Connection) -> list[str]:
        return list(conn.execute(_CLIENT_NAMES).scalars())

    wanted = fold(scope.client)
    stored = await _read(engine, names)
    return replace(scope, spellings=tuple(n for n in stored if fold(n) == wanted))


@dataclass(frozen=True)
class Group:
    """The counts of one (priority, category, resolution category, client) group."""

    priority: str
    category: str
    resolution_category: str
    client: str
    opened: int
    closed: int
    respond_met: int
    respond_missed: int
    resolve_met: int
    resolve_missed: int
    minutes: int
    ratings: tuple[int, int, int, int, int]  # answers of 1 .. 5
    surveys_sent: int
    fix_confirmed: int


@dataclass(frozen=True)
class Figures:
    groups: list[Group]
    # Seconds; None when no ticket of the scope has one.
    median_first_response: float | None
    median_resolution: float | None


def _scope(scope: Scope) -> list[ColumnElement[bool]]:
    found = [Ticket.created_at >= scope.start, Ticket.created_at < scope.end]
    if scope.client is not None:
        if scope.spellings is None:
            raise ValueError("a client is matched by its spellings: resolve() first")
        found.append(Ticket.client.in_(scope.spellings))
    return found


def _count(condition: ColumnElement[bool]) -> Any:
    """`count(*) FILTER (WHERE ...)`: cheaper per row than a sum over a CASE."""
    return func.count().filter(condition)


def _groups_query(scope: Scope) -> Any:
    t = Ticket
    now = scope.now
    keys = (t.priority, t.category, t.resolution_category, t.client)
    return (
        select(
            *keys,
            func.count(),
            _count(t.status == "closed"),
            _count(t.respond_met.is_(True)),
            _count(
                or_(t.respond_met.is_(False), and_(t.respond_met.is_(None), t.respond_by < now))
            ),
            _count(t.resolve_met.is_(True)),
            _count(
                or_(t.resolve_met.is_(False), and_(t.resolve_met.is_(None), t.resolve_by < now))
            ),
            func.coalesce(func.sum(t.time_minutes), 0),
            *(_count(t.csat_rating == rating) for rating in range(1, 6)),
            _count(or_(t.csat_sent_at.is_not(None), t.csat_rating.is_not(None))),
            _count(and_(t.status == "closed", t.fix_confirmed_at.is_not(None))),
        )
        .where(*_scope(scope))
        .group_by(*keys)
    )


def _groups(conn: Connection, scope: Scope) -> list[Group]:
    rows = conn.execute(_groups_query(scope)).all()
    return [
        Group(
            priority=r[0],
            category=r[1],
            resolution_category=r[2],
            client=r[3],
            opened=int(r[4]),
            closed=int(r[5]),
            respond_met=int(r[6]),
            respond_missed=int(r[7]),
            resolve_met=int(r[8]),
            resolve_missed=int(r[9]),
            minutes=int(r[10]),
            ratings=(int(r[11]), int(r[12]), int(r[13]), int(r[14]), int(r[15])),
            surveys_sent=int(r[16]),
            fix_confirmed=int(r[17]),
        )
        for r in rows
    ]


def _median_queries(column: Any, scope: Scope) -> tuple[Any, Callable[[int], Any]]:
    """How many tickets of the scope have `column`, and the middle of them for a count."""
    where = [column.is_not(None), *_scope(scope)]
    count = select(func.count()).select_from(Ticket).where(*where)

    def middle(n: int) -> Any:
        return select(column).where(*where).order_by(column).offset((n - 1) // 2).limit(2 - n % 2)

    return count, middle


def _median(conn: Connection, column: Any, scope: Scope) -> float | None:
    """The median of `column` over the scope: the middle one, or the mean of the middle two."""
    count, middle = _median_queries(column, scope)
    n = int(conn.execute(count).scalar_one())
    if not n:
        return None
    values = [float(v) for v in conn.execute(middle(n)).scalars()]
    return sum(values) / len(values)


def _percentiles(conn: Connection, scope: Scope) -> tuple[float | None, float | None]:
    """Both medians in one scan (PostgreSQL's percentile_cont: the same middle, or mean of
    the middle two): cheaper there than two index walks that test the client on every row."""
    medians = [
        func.percentile_cont(0.5).within_group(column)
        for column in (Ticket.first_response_seconds, Ticket.resolution_seconds)
    ]
    row = conn.execute(select(*medians).where(*_scope(scope))).one()
    return (
        None if row[0] is None else float(row[0]),
        None if row[1] is None else float(row[1]),
    )


async def figures(engine: AsyncEngine, scope: Scope) -> Figures:
    """Every count of the scope's tickets and the two medians (queries side by side)."""
    scope = await resolve(engine, scope)
    if engine.dialect.name == "postgresql":
        groups, (first, resolution) = await asyncio.gather(
            _read(engine, lambda conn: _groups(conn, scope)),
            _read(engine, lambda conn: _percentiles(conn, scope)),
        )
    else:
        groups, first, resolution = await asyncio.gather(
            _read(engine, lambda conn: _groups(conn, scope)),
            _read(engine, lambda conn: _median(conn, Ticket.first_response_seconds, scope)),
            _read(engine, lambda conn: _median(conn, Ticket.resolution_seconds, scope)),
        )
    return Figures(groups=groups, median_first_response=first, median_resolution=resolution)


async def clients_of(
    engine: AsyncEngine, scope: Scope, *, limit: int = 10
) -> list[tuple[str, int]]:
    """The clients of tickets created in the scope's period (any client), with how many
    tickets each, most first (names as most of their tickets spell them)."""
    query = (
        select(Ticket.client, func.count())
        .where(Ticket.created_at >= scope.start, Ticket.created_at < scope.end)
        .group_by(Ticket.client)
    )
    rows = await _read(engine, lambda conn: [(str(r[0]), int(r[1])) for r in conn.execute(query)])
    counts: dict[str, dict[str, int]] = {}
    for name, count in rows:
        if name.strip():
            counts.setdefault(fold(name), {})[name.strip()] = count
    ranked = [
        (max(names, key=lambda n: (names[n], n)), sum(names.values())) for names in counts.values()
    ]
    return sorted(ranked, key=lambda nc: (-nc[1], nc[0]))[:limit]


# -- where the queries run -----------------------------------------------------------------------


async def _read(engine: AsyncEngine, work: Callable[[Connection], T]) -> T:
    """Run `work` on a connection of its own: on SQLite a read-only one on a thread (a second
    reader of the WAL file), elsewhere one from the pool."""
    url = engine.url
    on_disk = url.database not in (None, "", ":memory:") and "uri" not in url.query
    if url.get_backend_name() == "sqlite" and on_disk:
        return await asyncio.to_thread(_read_sqlite, str(url.database), work)
    async with engine.connect() as conn:
        return await conn.run_sync(work)


def _read_sqlite(database: str, work: Callable[[Connection], T]) -> T:
    reader = create_engine(
        make_url("sqlite+pysqlite://").set(database=database),
        poolclass=NullPool,
        connect_args={"timeout": 10},
    )
    event.listen(reader, "connect", _query_only)
    try:
        with reader.connect() as conn:
            return work(conn)
    finally:
        reader.dispose()


def _query_only(dbapi_connection: Any, _: Any) -> None:
    dbapi_connection.execute("PRAGMA query_only = 1")


# -- one row per ticket (the CSV export) ----------------------------------------------------------


@dataclass(frozen=True)
class TicketRow:
    number: str
    client: str
    requester: str
    priority: str
    category: str
    created_at: datetime
    respond_by: datetime
    first_response_at: datetime | None
    respond_met: bool | None
    resolve_by: datetime
    closed_at: datetime | None
    resolve_met: bool | None
    resolution_category: str
    time_minutes: int
    csat_rating: int | None


_ROW_COLUMNS = (
    Ticket.number,
    Ticket.client,
    func.coalesce(
        func.nullif(Ticket.requester_email, ""),
        func.nullif(Ticket.requester_name, ""),
        Ticket.requester_id,
    ),
    Ticket.priority,
    Ticket.category,
    Ticket.created_at,
    Ticket.respond_by,
    Ticket.first_response_at,
    Ticket.respond_met,
    Ticket.resolve_by,
    Ticket.closed_at,
    Ticket.resolve_met,
    Ticket.resolution_category,
    Ticket.time_minutes,
    Ticket.csat_rating,
)


async def each_ticket(engine: AsyncEngine, scope: Scope) -> AsyncIterator[list[TicketRow]]:
    """The scope's tickets, oldest first, in batches (streamed: a million rows fit nowhere)."""
    scope = await resolve(engine, scope)
    where = _scope(scope)
    query = select(*_ROW_COLUMNS).where(*where).order_by(Ticket.created_at, Ticket.id)
    async with engine.connect() as conn:
        result = await conn.stream(query.execution_options(yield_per=EXPORT_BATCH))
        async for batch in result.partitions(EXPORT_BATCH):
            yield [TicketRow(*row) for row in batch]
