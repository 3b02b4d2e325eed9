"""Fill the database with N tickets fast: copies of one real ticket, made by the database.

One ticket created through the app is the template; `INSERT ... SELECT` over a number series
(a recursive CTE on SQLite, generate_series on PostgreSQL) writes the rest in batches, so every
column the schema has gets a valid value. With `history`, each ticket also gets the audit event
and the delivered outbox row a real ticket has (`ticket show` reads both).

Distribution: 200 technicians (`UT0`..`UT199`), 20,000 requesters, 5 % of tickets open.
With `spread` (the report scenario) every ticket gets what `report` reads, varied by n: created
over the 90 days ending now, four priorities, six categories, 40 clients, first response and
closure times with their SLA outcomes, minutes logged, CSAT answers and surveys sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

TECHNICIANS = 200
REQUESTERS = 20_000
BATCH = 25_000


def _series(dialect: str, start: int, end: int) -> tuple[str, str]:
    """(WITH prefix, FROM item) producing column `n` from start to end inclusive."""
    if dialect == "postgresql":
        return "", f"generate_series({start}, {end}) AS s(n)"
    cte = f"WITH RECURSIVE s(n) AS (SELECT {start} UNION ALL SELECT n + 1 FROM s WHERE n < {end}) "
    return cte, "s"


async def _columns(conn: AsyncConnection, table: str) -> list[str]:
    def names(sync_conn: Connection) -> list[str]:
        return [c["name"] for c in inspect(sync_conn).get_columns(table)]

    return await conn.run_sync(names)


def _at(dialect: str, seconds: str) -> str:
    """Now plus `seconds` (an SQL integer expression), as a timestamp of the app's columns."""
    if dialect == "postgresql":
        return f"(now() + make_interval(secs => ({seconds})))"
    # SQLAlchemy keeps SQLite timestamps as 'YYYY-MM-DD HH:MM:SS.ffffff' text.
    return f"(strftime('%Y-%m-%d %H:%M:%f', 'now', ({seconds}) || ' seconds') || '000')"


def _report_columns(dialect: str) -> dict[str, str]:
    """What `report` reads, varied by n (see the module docstring)."""
    ago = "(0 - n % 7776000)"  # up to 90 days back
    closed = "((n / 200) % 20 <> 0)"
    first = "(n % 7200)"  # first response within two hours
    solved = "(n % 86400)"  # closed within a day
    categories = ("printer", "network", "email", "access", "software", "hardware")
    category = " ".join(f"WHEN {i} THEN '{c}'" for i, c in enumerate(categories))
    return {
        "created_at": _at(dialect, ago),
        "priority": "'P' || CAST(1 + n % 4 AS TEXT)",
        "category": f"CASE n % 6 {category} END",
        "client": "'Client' || CAST(n % 40 AS TEXT)",
        "respond_by": _at(dialect, f"{ago} + 3600"),
        "resolve_by": _at(dialect, f"{ago} + 43200"),
        "first_response_at": _at(dialect, f"{ago} + {first}"),
        "first_response_seconds": first,
        "respond_met": f"({first} <= 3600)",
        "closed_at": f"CASE WHEN {closed} THEN {_at(dialect, f'{ago} + {solved}')} END",
        "resolution_seconds": f"CASE WHEN {closed} THEN {solved} END",
        "resolve_met": f"CASE WHEN {closed} THEN ({solved} <= 43200) END",
        "resolution_category": (
            f"CASE WHEN {closed} THEN (CASE n % 3 WHEN 0 THEN 'Incident' WHEN 1 THEN 'Request' "
            "ELSE 'Problem' END) ELSE '' END"
        ),
        "time_minutes": "15 * (n % 8 + 1)",
        "csat_rating": f"CASE WHEN {closed} AND n % 3 = 0 THEN 1 + n % 5 END",
        "csat_sent_at": f"CASE WHEN {closed} AND n % 2 = 0 THEN {_at(dialect, ago)} END",
        "fix_confirmed_at": f"CASE WHEN {closed} AND n % 4 = 0 THEN {_at(dialect, ago)} END",
    }


async def load_tickets(
    engine: AsyncEngine,
    count: int,
    *,
    history: bool = True,
    spread: bool = False,
    progress: Callable[[str], None] = print,
    columns: dict[str, str] | None = None,
    join: str = "",
) -> tuple[int, int, float]:
    """Add `count` tickets; returns (first seq, last seq, seconds).

    `columns` gives SQL expressions for some columns (over `n`, the template `t` and whatever
    `join` adds, e.g. `JOIN variants AS v ON v.k = n % 1000`), so the copies can differ."""
    dialect = engine.dialect.name
    started = time.perf_counter()
    async with engine.connect() as conn:
        template = (
            await conn.execute(text("SELECT id, prefix FROM tickets ORDER BY id LIMIT 1"))
        ).one()
        tid, prefix = int(template[0]), str(template[1])
        last = (
            await conn.execute(
                text("SELECT COALESCE(MAX(seq), 0) FROM tickets WHERE prefix = :p"), {"p": prefix}
            )
        ).scalar_one()
        ticket_cols = [c for c in await _columns(conn, "tickets") if c != "id"]
        event_cols = [c for c in await _columns(conn, "ticket_events") if c != "id"]
        outbox_cols = [c for c in await _columns(conn, "outbox") if c != "id"]
    first = int(last) + 1
    final = first + count - 1
    overrides = {
        "number": f"'{prefix}-' || CAST(n AS TEXT)",
        "seq": "n",
        "status": "CASE WHEN (n / 200) % 20 = 0 THEN 'open' ELSE 'closed' END",
        "technician_id": f"'UT' || CAST(n % {TECHNICIANS} AS TEXT)",
        "requester_id": f"'UR' || CAST(n % {REQUESTERS} AS TEXT)",
        "source_thread": "NULL",
        **(_report_columns(dialect) if spread else {}),
        **(columns or {}),
    }
    select_list = ", ".join(overrides.get(c, f"t.{c}") for c in ticket_cols)
    for start in range(first, final + 1, BATCH):
        end = min(final, start + BATCH - 1)
        with_prefix, series = _series(dialect, start, end)
        sql = (
            f"{with_prefix}INSERT INTO tickets ({', '.join(ticket_cols)}) "
            f"SELECT {select_list} FROM {series} "
            f"CROSS JOIN (SELECT * FROM tickets WHERE id = {tid}) AS t {join}"
        )
        async with engine.begin() as conn:
            await conn.execute(text(sql))
            if dialect == "postgresql":
                # Fresh statistics (its own rows count): otherwise the foreign-key checks of the
                # history rows are planned for an empty table (a scan each) and time out.
                await conn.execute(text("ANALYZE tickets"))
            if history:
                await _history(conn, prefix, start, end, event_cols, outbox_cols, tid)
        progress(f"  tickets {end - first + 1:,}/{count:,} ({time.perf_counter() - started:.0f}s)")
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE ticket_counters SET last_value = :v WHERE prefix = :p"),
            {"v": final, "p": prefix},
        )
        if dialect == "postgresql":
            await conn.execute(text("ANALYZE"))
    return first, final, time.perf_counter() - started


async def _history(
    conn: AsyncConnection,
    prefix: str,
    start: int,
    end: int,
    event_cols: list[str],
    outbox_cols: list[str],
    tid: int,
) -> None:
    """One `ticket.opened` event and one delivered card row per new ticket, like the app writes."""
    new = f"(SELECT id FROM tickets WHERE prefix = '{prefix}' AND seq BETWEEN {start} AND {end})"
    event_sel = ", ".join("nt.id" if c == "ticket_id" else f"e.{c}" for c in event_cols)
    sample_event = f"(SELECT * FROM ticket_events WHERE ticket_id = {tid} ORDER BY id LIMIT 1)"
    # The sample rows are read once (MATERIALIZED): a planner without statistics yet (a fresh
    # PostgreSQL schema) would otherwise read them again for every new ticket.
    await conn.execute(
        text(
            f"WITH e AS MATERIALIZED {sample_event} "
            f"INSERT INTO ticket_events ({', '.join(event_cols)}) SELECT {event_sel} "
            f"FROM {new} AS nt CROSS JOIN e"
        )
    )
    outbox_over = {"ticket_id": "nt.id", "dedup_key": "NULL", "status": "'delivered'"}
    outbox_sel = ", ".join(outbox_over.get(c, f"o.{c}") for c in outbox_cols)
    sample_row = f"(SELECT * FROM outbox WHERE ticket_id = {tid} ORDER BY id LIMIT 1)"
    await conn.execute(
        text(
            f"WITH o AS MATERIALIZED {sample_row} "
            f"INSERT INTO outbox ({', '.join(outbox_cols)}) SELECT {outbox_sel} "
            f"FROM {new} AS nt CROSS JOIN o"
        )
    )
