"""Finding tickets by error signature and by full text (SQLite FTS5 / PostgreSQL tsvector).

The full-text index `ticket_search` holds resolved (closed) tickets only and is kept current by
the database itself (triggers, migration 0007): on SQLite an FTS5 table over the tickets'
summary, error text, what they were doing and resolution note; on PostgreSQL a table of
`tsvector`s (weights A summary, B error text, C resolution note, D what they were doing) with a
GIN index. Statements are built once per shape and run as Core statements.

Nothing here ranks every match: FTS5's bm25 counts each word's documents over the whole index
(150 ms for a common word at 1M tickets, on the event loop), so searches walk the newest
matches of each word, which both engines do in time bounded by what they return.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    bindparam,
    func,
    insert,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession

from storage import statements
from storage.models import Ticket, TicketDiagnosis, TicketSignature

SEARCH_TABLE = "ticket_search"
_TICKETS = statements.table_of(Ticket)
_SIGNATURES = statements.table_of(TicketSignature)
_DIAGNOSIS = statements.table_of(TicketDiagnosis)
_INSERT_SIGNATURE = insert(_SIGNATURES)


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic's filter: the full-text index is made by hand in migration 0007 (FTS5 virtual
    and shadow tables, PostgreSQL table, triggers), not from the models."""
    return not (name or "").startswith(SEARCH_TABLE)


@dataclass(frozen=True)
class Found:
    """A ticket found by signature or text, with what a list of similar tickets shows."""

    id: int
    number: str
    client: str
    status: str
    summary: str
    error_text: str
    resolution_note: str
    kb_article: str
    created_at: datetime
    closed_at: datetime | None
    # Signatures it was found by (empty for a text match).
    matched: tuple[str, ...] = ()
    score: float = 0.0


_COLUMNS = (
    _TICKETS.c.id,
    _TICKETS.c.number,
    _TICKETS.c.client,
    _TICKETS.c.status,
    _TICKETS.c.summary,
    _TICKETS.c.error_text,
    _TICKETS.c.resolution_note,
    _TICKETS.c.kb_article,
    _TICKETS.c.created_at,
    _TICKETS.c.closed_at,
)


def _found(row: Any, *, matched: tuple[str, ...] = (), score: float = 0.0) -> Found:
    return Found(
        id=row.id,
        number=row.number,
        client=row.client,
        status=row.status,
        summary=row.summary,
        error_text=row.error_text,
        resolution_note=row.resolution_note,
        kb_article=row.kb_article,
        created_at=row.created_at,
        closed_at=row.closed_at,
        matched=matched,
        score=score,
    )


_INSERT_DIAGNOSIS = insert(_DIAGNOSIS)


async def add_diagnosis(
    session: AsyncSession, *, ticket_id: int, row: dict[str, Any], signatures: Sequence[str]
) -> None:
    """Store a new ticket's diagnosis row and signatures (Core statements, caller's
    transaction)."""
    conn = await session.connection()
    await conn.execute(_INSERT_DIAGNOSIS, row)
    await add_signatures(session, ticket_id=ticket_id, keys=signatures)


async def add_signatures(session: AsyncSession, *, ticket_id: int, keys: Sequence[str]) -> None:
    """Store a ticket's signatures (in the caller's transaction)."""
    if not keys:
        return
    conn = await session.connection()
    await conn.execute(
        _INSERT_SIGNATURE, [{"ticket_id": ticket_id, "signature": k} for k in dict.fromkeys(keys)]
    )


_BY_SIGNATURES: dict[tuple[int, bool], Any] = {}
# What a new ticket's card needs of earlier tickets (no texts but the resolution's start).
_BRIEF = (
    _TICKETS.c.id,
    _TICKETS.c.number,
    _TICKETS.c.client,
    _TICKETS.c.status,
    func.substr(_TICKETS.c.resolution_note, 1, 300).label("resolution_note"),
    _TICKETS.c.kb_article,
)


def _by_signatures(count: int, brief: bool = False) -> Any:
    """Per signature the newest `per` tickets before `before` (one index range each, no sort
    of every match), joined to their tickets."""
    stmt = _BY_SIGNATURES.get((count, brief))
    if stmt is not None:
        return stmt
    parts = []
    for index in range(count):
        newest = (
            select(_SIGNATURES.c.signature, _SIGNATURES.c.ticket_id)
            .where(
                _SIGNATURES.c.signature == bindparam(f"s{index}"),
                _SIGNATURES.c.ticket_id < bindparam("before"),
            )
            .order_by(_SIGNATURES.c.ticket_id.desc())
            .limit(bindparam("per"))
            .subquery()
        )
        parts.append(select(newest.c.signature, newest.c.ticket_id))
    matched = union_all(*parts).subquery() if count > 1 else parts[0].subquery()
    stmt = (
        select(matched.c.signature, *(_BRIEF if brief else _COLUMNS))
        .join_from(matched, _TICKETS, _TICKETS.c.id == matched.c.ticket_id)
        .order_by(_TICKETS.c.id.desc())
    )
    _BY_SIGNATURES[(count, brief)] = stmt
    return stmt


@dataclass(frozen=True)
class Brief:
    """An earlier ticket as a new ticket's card lists it."""

    id: int
    number: str
    client: str
    status: str
    resolution_note: str
    kb_article: str
    matched: tuple[str, ...]


async def brief_with_signatures(
    session: AsyncSession, keys: Sequence[str], *, before: int, per: int
) -> tuple[list[Brief], dict[str, int]]:
    """`with_signatures` for the intake path: few columns, newest first, and how many were
    found per signature (`per` at most)."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return [], {}
    params: dict[str, Any] = {f"s{i}": k for i, k in enumerate(keys)}
    params |= {"before": before, "per": per}
    conn = await session.connection()
    rows = (await conn.execute(_by_signatures(len(keys), brief=True), params)).all()
    per_key: dict[str, int] = {}
    merged: dict[int, tuple[Any, list[str]]] = {}
    for row in rows:
        per_key[row.signature] = per_key.get(row.signature, 0) + 1
        merged.setdefault(row.id, (row, []))[1].append(row.signature)
    found = [
        Brief(r.id, r.number, r.client, r.status, r.resolution_note, r.kb_article, tuple(m))
        for r, m in merged.values()
    ]
    found.sort(key=lambda b: b.id, reverse=True)
    return found, per_key


async def with_signatures(
    session: AsyncSession, keys: Sequence[str], *, before: int, per: int = 50
) -> tuple[list[Found], set[str]]:
    """Tickets carrying any of `keys` with an id below `before`, newest first (at most `per`
    per signature), and the signatures that had more than that."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return [], set()
    params: dict[str, Any] = {f"s{i}": k for i, k in enumerate(keys)}
    params |= {"before": before, "per": per}
    conn = await session.connection()
    rows = (await conn.execute(_by_signatures(len(keys)), params)).all()
    per_key: dict[str, int] = {}
    merged: dict[int, tuple[Any, list[str]]] = {}
    for row in rows:
        per_key[row.signature] = per_key.get(row.signature, 0) + 1
        entry = merged.setdefault(row.id, (row, []))
        entry[1].append(row.signature)
    more = {key for key, n in per_key.items() if n >= per}
    found = [_found(row, matched=tuple(keys_)) for row, keys_ in merged.values()]
    found.sort(key=lambda f: f.id, reverse=True)
    return found, more


_COUNTS: dict[int, Any] = {}


async def count_with_signatures(
    session: AsyncSession, keys: Sequence[str], *, before: int, cap: int = 1000
) -> int:
    """How many tickets below `before` carry any of `keys` (at most `cap` per signature are
    looked at: each is one index range, as in `with_signatures`)."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return 0
    stmt = _COUNTS.get(len(keys))
    if stmt is None and len(keys) == 1:
        one = (
            select(_SIGNATURES.c.ticket_id)
            .where(
                _SIGNATURES.c.signature == bindparam("s0"),
                _SIGNATURES.c.ticket_id < bindparam("before"),
            )
            .limit(bindparam("cap"))
            .subquery()
        )
        stmt = _COUNTS[1] = select(func.count()).select_from(one)
    if stmt is None:
        parts = []
        for index in range(len(keys)):
            newest = (
                select(_SIGNATURES.c.ticket_id)
                .where(
                    _SIGNATURES.c.signature == bindparam(f"s{index}"),
                    _SIGNATURES.c.ticket_id < bindparam("before"),
                )
                .order_by(_SIGNATURES.c.ticket_id.desc())
                .limit(bindparam("cap"))
                .subquery()
            )
            parts.append(select(newest.c.ticket_id))
        ids = union_all(*parts).subquery() if len(parts) > 1 else parts[0].subquery()
        stmt = _COUNTS[len(keys)] = select(func.count(ids.c.ticket_id.distinct()))
    params: dict[str, Any] = {f"s{i}": k for i, k in enumerate(keys)}
    params |= {"before": before, "cap": cap}
    conn = await session.connection()
    return int((await conn.execute(stmt, params)).scalar_one())


async def signatures_of(session: AsyncSession, ticket_id: int) -> list[str]:
    conn = await session.connection()
    rows = await conn.execute(
        select(_SIGNATURES.c.signature).where(_SIGNATURES.c.ticket_id == ticket_id)
    )
    return [r[0] for r in rows]


async def tickets_after(
    session: AsyncSession, *, after: int, upto: int, limit: int
) -> list[tuple[int, str, str]]:
    """(id, error text, summary) of the tickets after `after` up to `upto`, oldest first."""
    conn = await session.connection()
    rows = await conn.execute(
        select(_TICKETS.c.id, _TICKETS.c.error_text, _TICKETS.c.summary)
        .where(_TICKETS.c.id > after, _TICKETS.c.id <= upto)
        .order_by(_TICKETS.c.id)
        .limit(limit)
    )
    return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]


async def diagnosed(session: AsyncSession, ticket_ids: Sequence[int]) -> set[int]:
    """Which of the tickets have signatures or a diagnosis row already."""
    if not ticket_ids:
        return set()
    conn = await session.connection()
    ids = list(ticket_ids)
    with_signatures = select(_SIGNATURES.c.ticket_id).where(_SIGNATURES.c.ticket_id.in_(ids))
    with_row = select(_DIAGNOSIS.c.ticket_id).where(_DIAGNOSIS.c.ticket_id.in_(ids))
    rows = await conn.execute(union_all(with_signatures, with_row))
    return {int(r[0]) for r in rows}


async def newest_ticket_id(session: AsyncSession) -> int:
    conn = await session.connection()
    return int((await conn.execute(select(func.max(_TICKETS.c.id)))).scalar_one() or 0)


# -- full text ------------------------------------------------------------------------------

# `stated`: summary, error text and resolution note (what `kb <words>` searches); `all` adds
# what they were doing.
Fields = Literal["all", "stated"]

# Newest matches first: both engines stream these without ranking every match (FTS5 walks its
# doclists from the newest rowid; PostgreSQL's planner scans the primary key backwards for
# common words and the GIN index for rare ones).
_SQLITE_NEWEST = text(
    "SELECT rowid AS id FROM ticket_search WHERE ticket_search MATCH :query "
    "AND rowid <> :exclude ORDER BY rowid DESC LIMIT :limit"
)
_PG_NEWEST = text(
    "SELECT ticket_id AS id FROM ticket_search WHERE document @@ to_tsquery('english', :query) "
    "AND ticket_id <> :exclude ORDER BY ticket_id DESC LIMIT :limit"
)
_BY_IDS = select(*_COLUMNS).where(_TICKETS.c.id.in_(bindparam("ids", expanding=True)))


def fts_query(dialect: str, words: Sequence[str], *, fields: Fields) -> str:
    """The engine's query for all of `words` (already reduced to letters and digits)."""
    words = [w for w in words if w.isalnum()]
    if dialect == "postgresql":
        weight = ":ABC" if fields == "stated" else ""
        return " & ".join(f"'{w}'{weight}" for w in words)
    body = " AND ".join(f'"{w}"' for w in words)
    if fields == "stated":
        return "{summary error_text resolution_note} : (" + body + ")"
    return body


async def _newest_ids(
    session: AsyncSession, words: Sequence[str], *, fields: Fields, limit: int, exclude: int
) -> list[int]:
    dialect = statements.dialect(session)
    stmt = _PG_NEWEST if dialect == "postgresql" else _SQLITE_NEWEST
    query = fts_query(dialect, words, fields=fields)
    conn = await session.connection()
    rows = await conn.execute(stmt, {"query": query, "exclude": exclude, "limit": limit})
    return [int(r.id) for r in rows]


async def _tickets(session: AsyncSession, scored: dict[int, float]) -> list[Found]:
    if not scored:
        return []
    conn = await session.connection()
    rows = (await conn.execute(_BY_IDS, {"ids": list(scored)})).all()
    by_id = {r.id: r for r in rows}
    return [_found(by_id[i], score=s) for i, s in scored.items() if i in by_id]


async def newest_with_all(
    session: AsyncSession,
    words: Sequence[str],
    *,
    fields: Fields = "stated",
    limit: int = 10,
    exclude: int = 0,
) -> list[Found]:
    """The newest resolved tickets that have every one of `words` (in `fields`)."""
    words = [w for w in words if w.isalnum()]
    if not words:
        return []
    ids = await _newest_ids(session, words, fields=fields, limit=limit, exclude=exclude)
    return await _tickets(session, {i: 0.0 for i in ids})


async def ranked_with_any(
    session: AsyncSession,
    words: Sequence[str],
    *,
    limit: int = 10,
    per_word: int = 150,
    exclude: int = 0,
) -> list[Found]:
    """Resolved tickets that have some of `words`, best first: each word's newest `per_word`
    matches are candidates, and a ticket scores the weights of the words it was found by, a
    word found in fewer tickets weighing more (so the work is bounded however big the index)."""
    words = list(dict.fromkeys(w for w in words if w.isalnum()))
    scores: dict[int, float] = {}
    for word in words:
        ids = await _newest_ids(session, [word], fields="all", limit=per_word, exclude=exclude)
        if not ids:
            continue
        weight = math.log(1.0 + per_word / len(ids))
        for ticket_id in ids:
            scores[ticket_id] = scores.get(ticket_id, 0.0) + weight
    best = sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)[:limit]
    return await _tickets(session, dict(best))


# -- patterns for reports -------------------------------------------------------------------


@dataclass(frozen=True)
class SignatureCount:
    signature: str
    tickets: int
    numbers: tuple[str, ...]
    kb_articles: tuple[str, ...]


async def top_signatures(
    session: AsyncSession,
    *,
    kinds: Sequence[str],
    since: datetime,
    until: datetime,
    client: str | None,
    minimum: int,
    limit: int,
) -> list[SignatureCount]:
    """The signatures (of `kinds`) most tickets opened in [since, until) carry, for one
    client (case-insensitive) or all, with at least `minimum` tickets."""
    conditions = [
        _TICKETS.c.created_at >= since,
        _TICKETS.c.created_at < until,
        or_(*[_SIGNATURES.c.signature.like(f"{kind}:%") for kind in kinds]),
    ]
    if client:
        conditions.append(func.lower(_TICKETS.c.client) == client.strip().lower())
    joined = _SIGNATURES.join(_TICKETS, _TICKETS.c.id == _SIGNATURES.c.ticket_id)
    counted = (
        select(_SIGNATURES.c.signature, func.count().label("n"))
        .select_from(joined)
        .where(*conditions)
        .group_by(_SIGNATURES.c.signature)
        .having(func.count() >= minimum)
        .order_by(func.count().desc(), _SIGNATURES.c.signature)
        .limit(limit)
    )
    conn = await session.connection()
    top = (await conn.execute(counted)).all()
    out: list[SignatureCount] = []
    for signature, count in top:
        rows = (
            await conn.execute(
                select(_TICKETS.c.number, _TICKETS.c.kb_article)
                .select_from(joined)
                .where(_SIGNATURES.c.signature == signature, *conditions[:2], *conditions[3:])
                .order_by(_TICKETS.c.id)
            )
        ).all()
        kb = tuple(dict.fromkeys(r.kb_article for r in rows if r.kb_article))
        out.append(SignatureCount(signature, int(count), tuple(r.number for r in rows), kb))
    return out
