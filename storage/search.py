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
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    bindparam,
    func,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession

from storage import statements
from storage.models import Ticket

SEARCH_TABLE = "ticket_search"
_TICKETS = statements.table_of(Ticket)


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
    # The requester answered Works now (SPEC "Confirm"): the fix is known to work.
    fix_confirmed: bool = False
    # Signatures it was found by (empty for a text match).
    matched: tuple[str, ...] = ()
    score: float = 0.0


COLUMNS = (
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
    _TICKETS.c.fix_confirmed_at,
)


def found_of(row: Any, *, matched: tuple[str, ...] = (), score: float = 0.0) -> Found:
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
        fix_confirmed=row.fix_confirmed_at is not None,
        matched=matched,
        score=score,
    )


async def newest_ticket_id(session: AsyncSession) -> int:
    conn = await statements.connection(session)
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
_BY_IDS = select(*COLUMNS).where(_TICKETS.c.id.in_(bindparam("ids", expanding=True)))


# What PostgreSQL's parser may keep as one token (file and host names, e-mail addresses,
# version numbers, paths: `winword.exe`) where the bot's words split it (`winword`, `exe`).
# Since revision 0021 the index also holds the pieces (`kb winword` finds `WINWORD.EXE`);
# the whole token stays a match for what was typed with its punctuation.
# No quote or backslash: such a run is quoted in the tsquery text as it is.
_COMPOUND = re.compile(r"[^\W_]+(?:[._@/:+~-]+[^\W_]+)+")
_PIECE = re.compile(r"[^\W_]+")


def _compounds(typed: str) -> dict[str, list[str]]:
    """Each piece of a compound run in `typed` -> the runs (lower case) it is part of."""
    runs: dict[str, list[str]] = {}
    for match in _COMPOUND.finditer(typed.lower()):
        run = match.group(0)
        for piece in _PIECE.findall(run):
            if run not in runs.setdefault(piece, []):
                runs[piece].append(run)
    return runs


# One searched word, or its spellings of which any will do (`kb 0x7b` finds a note that says
# `0x7b` or `0x0000007B`): letters and digits, a spelling also with a leading `-` (a negative
# HRESULT, which PostgreSQL's parser keeps as one signed token).
Word = str | tuple[str, ...]
_SPELLING = re.compile(r"-?[^\W_]+")


def _options(word: Word) -> list[str]:
    if isinstance(word, str):
        return [word] if word.isalnum() else []
    return [w for w in dict.fromkeys(word) if _SPELLING.fullmatch(w)]


def fts_query(dialect: str, words: Sequence[Word], *, fields: Fields, typed: str = "") -> str:
    """The engine's query for all of `words` (already reduced to letters and digits; a tuple:
    its spellings, any of which matches).

    On PostgreSQL a word that is part of a compound in `typed` (what was typed: `winword.exe`)
    also matches that compound, which PostgreSQL's parser keeps as one token in the stored
    text: `('winword' | 'winword.exe') & ('exe' | 'winword.exe')`. Typed text only ever
    appears inside quotes, as a value (to_tsquery parses a quoted value with the text parser,
    so `&`, `|`, `!` there are not operators), and a compound has no quote or backslash."""
    spelled = [options for options in map(_options, words) if options]
    if dialect == "postgresql":
        weight = ":ABC" if fields == "stated" else ""
        runs = _compounds(typed)
        parts = []
        for spellings in spelled:
            options = [
                f"'{option}'{weight}"
                for w in spellings
                for option in dict.fromkeys([w, *runs.get(w, ())])
            ]
            parts.append(options[0] if len(options) == 1 else "(" + " | ".join(options) + ")")
        return " & ".join(parts)
    body = " AND ".join(
        f'"{options[0]}"'
        if len(options) == 1
        else "(" + " OR ".join(f'"{w}"' for w in options) + ")"
        for options in spelled
    )
    if fields == "stated":
        return "{summary error_text resolution_note} : (" + body + ")"
    return body


async def _newest_ids(
    session: AsyncSession,
    words: Sequence[Word],
    *,
    fields: Fields,
    limit: int,
    exclude: int,
    typed: str = "",
) -> list[int]:
    dialect = statements.dialect(session)
    stmt = _PG_NEWEST if dialect == "postgresql" else _SQLITE_NEWEST
    query = fts_query(dialect, words, fields=fields, typed=typed)
    conn = await statements.connection(session)
    rows = await conn.execute(stmt, {"query": query, "exclude": exclude, "limit": limit})
    return [int(r.id) for r in rows]


async def _tickets(session: AsyncSession, scored: dict[int, float]) -> list[Found]:
    if not scored:
        return []
    conn = await statements.connection(session)
    rows = (await conn.execute(_BY_IDS, {"ids": list(scored)})).all()
    by_id = {r.id: r for r in rows}
    return [found_of(by_id[i], score=s) for i, s in scored.items() if i in by_id]


async def newest_with_all(
    session: AsyncSession,
    words: Sequence[Word],
    *,
    fields: Fields = "stated",
    limit: int = 10,
    exclude: int = 0,
    typed: str = "",
) -> list[Found]:
    """The newest resolved tickets that have every one of `words` (in `fields`; of a tuple,
    any spelling); `typed`, the text they came from, lets PostgreSQL match its compound
    tokens (see `fts_query`)."""
    words = [w for w in words if _options(w)]
    if not words:
        return []
    ids = await _newest_ids(
        session, words, fields=fields, limit=limit, exclude=exclude, typed=typed
    )
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
