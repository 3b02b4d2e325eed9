"""Error signatures in the database: stored with each ticket, and found again by index
ranges (one per signature, newest first), never by reading the tickets' texts."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from storage import statements
from storage.models import Ticket, TicketDiagnosis, TicketSignature
from storage.reports import fold
from storage.search import COLUMNS, Found, found_of

_TICKETS = statements.table_of(Ticket)
_SIGNATURES = statements.table_of(TicketSignature)
_DIAGNOSIS = statements.table_of(TicketDiagnosis)
_INSERT_SIGNATURE = insert(_SIGNATURES)

_INSERT_DIAGNOSIS = insert(_DIAGNOSIS)


async def add_diagnosis(
    session: AsyncSession, *, ticket_id: int, row: dict[str, Any], signatures: Sequence[str]
) -> None:
    """Store a new ticket's diagnosis row and signatures (Core statements, caller's
    transaction)."""
    conn = await statements.connection(session)
    await conn.execute(_INSERT_DIAGNOSIS, row)
    await add_signatures(session, ticket_id=ticket_id, keys=signatures)


async def add_signatures(session: AsyncSession, *, ticket_id: int, keys: Sequence[str]) -> None:
    """Store a ticket's signatures (in the caller's transaction)."""
    if not keys:
        return
    conn = await statements.connection(session)
    await conn.execute(
        _INSERT_SIGNATURE, [{"ticket_id": ticket_id, "signature": k} for k in dict.fromkeys(keys)]
    )


# Signatures looked up per statement. A statement has a branch per signature and is kept
# (with its compiled form) for its number of branches; a pasted dump can carry hundreds of
# codes, and SQLite refuses a compound SELECT of more than 500 terms. So longer lists are looked
# up CHUNK at a time: statements exist for 1..CHUNK signatures only.
CHUNK = 8


def _chunks(keys: list[str]) -> list[list[str]]:
    return [keys[start : start + CHUNK] for start in range(0, len(keys), CHUNK)]


def _params(keys: list[str], **more: Any) -> dict[str, Any]:
    return {f"s{i}": k for i, k in enumerate(keys)} | more


_BY_SIGNATURES: dict[tuple[int, bool], Any] = {}
# What a new ticket's card needs of earlier tickets (no texts but the resolution's start).
_BRIEF = (
    _TICKETS.c.id,
    _TICKETS.c.number,
    _TICKETS.c.client,
    _TICKETS.c.status,
    func.substr(_TICKETS.c.resolution_note, 1, 300).label("resolution_note"),
    _TICKETS.c.kb_article,
    _TICKETS.c.fix_confirmed_at,
)


def _newest(index: int, limit: str) -> Any:
    """Signature `s{index}`'s newest tickets before `before`, at most `limit` of them (one
    index range, no sort of every match)."""
    return (
        select(_SIGNATURES.c.signature, _SIGNATURES.c.ticket_id)
        .where(
            _SIGNATURES.c.signature == bindparam(f"s{index}"),
            _SIGNATURES.c.ticket_id < bindparam("before"),
        )
        .order_by(_SIGNATURES.c.ticket_id.desc())
        .limit(bindparam(limit))
        .subquery()
    )


def _joined(parts: list[Any], columns: Sequence[Any]) -> Any:
    """The (signature, ticket id) rows of `parts`, one per signature, joined to `columns` of
    their tickets, newest first."""
    matched = union_all(*parts).subquery() if len(parts) > 1 else parts[0].subquery()
    return (
        select(matched.c.signature, *columns)
        .join_from(matched, _TICKETS, _TICKETS.c.id == matched.c.ticket_id)
        .order_by(_TICKETS.c.id.desc())
    )


def _by_signatures(count: int, brief: bool = False) -> Any:
    """Per signature the newest `per` tickets before `before`, joined to their tickets."""
    stmt = _BY_SIGNATURES.get((count, brief))
    if stmt is not None:
        return stmt
    parts = []
    for index in range(count):
        newest = _newest(index, "per")
        parts.append(select(newest.c.signature, newest.c.ticket_id))
    stmt = _BY_SIGNATURES[(count, brief)] = _joined(parts, _BRIEF if brief else COLUMNS)
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
    # The requester answered Works now (SPEC "Confirm"): the fix is known to work.
    fix_confirmed: bool = False


async def brief_with_signatures(
    session: AsyncSession, keys: Sequence[str], *, before: int, per: int
) -> tuple[list[Brief], dict[str, int]]:
    """`with_signatures` for the intake path: few columns, newest first, and how many were
    found per signature (`per` at most)."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return [], {}
    conn = await statements.connection(session)
    rows: list[Any] = []
    for part in _chunks(keys):
        stmt = _by_signatures(len(part), brief=True)
        rows += (await conn.execute(stmt, _params(part, before=before, per=per))).all()
    return _briefs(rows)


def _briefs(rows: Sequence[Any]) -> tuple[list[Brief], dict[str, int]]:
    """Brief rows (one per ticket and signature) as one Brief per ticket, newest first, and
    how many were found per signature."""
    per_key: dict[str, int] = {}
    merged: dict[int, tuple[Any, list[str]]] = {}
    # By position (signature, then _BRIEF's columns): a Row's attributes are looked up by name.
    for row in rows:
        signature, ticket_id = row[0], row[1]
        per_key[signature] = per_key.get(signature, 0) + 1
        entry = merged.get(ticket_id)
        if entry is None:
            merged[ticket_id] = (row, [signature])
        else:
            entry[1].append(signature)
    found = [
        Brief(r[1], r[2], r[3], r[4], r[5], r[6], tuple(m), fix_confirmed=r[7] is not None)
        for r, m in merged.values()
    ]
    found.sort(key=lambda b: b.id, reverse=True)
    return found, per_key


# How many of a signature's newest tickets are looked through for resolved ones, when its
# newest are all open (an outage many report): a bound on the work, whatever the count.
RESOLVED_SCAN = 1000
_RESOLVED: dict[int, Any] = {}


def _resolved_by_signatures(count: int) -> Any:
    """Per signature the newest `per` closed tickets among its newest `scan` before `before`,
    joined to their brief columns."""
    stmt = _RESOLVED.get(count)
    if stmt is not None:
        return stmt
    parts = []
    for index in range(count):
        recent = _newest(index, "scan")
        closed = (
            select(recent.c.signature, recent.c.ticket_id)
            .join_from(recent, _TICKETS, _TICKETS.c.id == recent.c.ticket_id)
            .where(_TICKETS.c.status == "closed")
            .order_by(recent.c.ticket_id.desc())
            .limit(bindparam("per"))
            .subquery()
        )
        parts.append(select(closed.c.signature, closed.c.ticket_id))
    stmt = _RESOLVED[count] = _joined(parts, _BRIEF)
    return stmt


async def resolved_with_signatures(
    session: AsyncSession,
    keys: Sequence[str],
    *,
    before: int,
    per: int,
    scan: int = RESOLVED_SCAN,
) -> list[Brief]:
    """The newest resolved (closed) tickets below `before` carrying any of `keys`, at most
    `per` per signature, newest first: for when a signature's newest tickets (what
    `brief_with_signatures` reads) are all open."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return []
    conn = await statements.connection(session)
    rows: list[Any] = []
    for part in _chunks(keys):
        stmt = _resolved_by_signatures(len(part))
        rows += (await conn.execute(stmt, _params(part, before=before, per=per, scan=scan))).all()
    return _briefs(rows)[0]


# How long a look-up of resolved tickets behind open ones is reused for a signature set.
RESOLVED_FRESH = 30.0
RESOLVED_KEPT = 1000  # signature sets remembered at most


@dataclass
class ResolvedMemo:
    """Per signature set, the resolved tickets `resolved_with_signatures` found, reused for
    RESOLVED_FRESH seconds by the tickets opened after it. When an error's newest tickets are
    all open (an outage many report), every new ticket of it would otherwise look through a
    thousand of them, while it is reported most: a ticket resolved meanwhile shows on new cards
    up to that long after. One per app (`Deps`); not shared between processes."""

    clock: Callable[[], float] = time.monotonic
    _found: dict[tuple[tuple[str, ...], int], tuple[float, int, list[Brief]]] = field(
        default_factory=dict
    )

    def get(self, keys: Sequence[str], *, before: int, per: int) -> list[Brief] | None:
        """What was found for `keys` below an id at most `before` (every ticket it names is
        older than this one), while fresh; None: look it up."""
        kept = self._found.get((tuple(sorted(set(keys))), per))
        if kept is None or kept[0] <= self.clock() or kept[1] > before:
            return None
        return kept[2]

    def put(self, keys: Sequence[str], *, before: int, per: int, found: list[Brief]) -> None:
        now = self.clock()
        if len(self._found) >= RESOLVED_KEPT:
            self._found = {k: v for k, v in self._found.items() if v[0] > now}
            if len(self._found) >= RESOLVED_KEPT:
                self._found.clear()
        self._found[(tuple(sorted(set(keys))), per)] = (now + RESOLVED_FRESH, before, found)


async def resolved_remembered(
    session: AsyncSession, memo: ResolvedMemo, keys: Sequence[str], *, before: int, per: int
) -> list[Brief]:
    """`resolved_with_signatures`, reused from `memo` while fresh (see ResolvedMemo)."""
    found = memo.get(keys, before=before, per=per)
    if found is None:
        found = await resolved_with_signatures(session, keys, before=before, per=per)
        memo.put(keys, before=before, per=per, found=found)
    return found


def merged(first: Sequence[Brief], more: Sequence[Brief]) -> list[Brief]:
    """Both lists as one, newest first, each ticket once with every signature it matched."""
    by_id: dict[int, Brief] = {}
    for brief in [*first, *more]:
        known = by_id.get(brief.id)
        if known is None:
            by_id[brief.id] = brief
        else:
            signatures = tuple(dict.fromkeys([*known.matched, *brief.matched]))
            by_id[brief.id] = replace(known, matched=signatures)
    return sorted(by_id.values(), key=lambda b: b.id, reverse=True)


_BRIEF_COUNTED: dict[int, Any] = {}


def _brief_counted(count: int) -> Any:
    """`_by_signatures(count, brief=True)` with `count_with_signatures`' count (`cap`) as one
    more column: an uncorrelated scalar subquery, evaluated once per statement."""
    stmt = _BRIEF_COUNTED.get(count)
    if stmt is None:
        counted = _count_statement(count).scalar_subquery().label("counted")
        stmt = _BRIEF_COUNTED[count] = _by_signatures(count, brief=True).add_columns(counted)
    return stmt


async def brief_and_count(
    session: AsyncSession, keys: Sequence[str], *, before: int, per: int, cap: int
) -> tuple[list[Brief], dict[str, int], int]:
    """`brief_with_signatures` and `count_with_signatures(keys, before, cap)` in one
    statement. More than CHUNK signatures take one statement each, as those do, and are
    counted only when some signature has `per` tickets (else the count is 0: the caller's
    own count, the tickets listed, is the whole of them)."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return [], {}, 0
    if len(keys) > CHUNK:
        found, per_key = await brief_with_signatures(session, keys, before=before, per=per)
        if not any(n >= per for n in per_key.values()):
            return found, per_key, 0
        count = await count_with_signatures(session, list(per_key), before=before, cap=cap)
        return found, per_key, count
    conn = await statements.connection(session)
    stmt = _brief_counted(len(keys))
    rows = (await conn.execute(stmt, _params(keys, before=before, per=per, cap=cap))).all()
    found, per_key = _briefs(rows)
    # No row: no ticket before `before` carries any of the keys, so none is counted either.
    return found, per_key, int(rows[0].counted) if rows else 0


async def with_signatures(
    session: AsyncSession, keys: Sequence[str], *, before: int, per: int = 50
) -> tuple[list[Found], set[str]]:
    """Tickets carrying any of `keys` with an id below `before`, newest first (at most `per`
    per signature), and the signatures that had more than that."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return [], set()
    conn = await statements.connection(session)
    rows: list[Any] = []
    for part in _chunks(keys):
        stmt = _by_signatures(len(part))
        rows += (await conn.execute(stmt, _params(part, before=before, per=per))).all()
    per_key: dict[str, int] = {}
    merged: dict[int, tuple[Any, list[str]]] = {}
    for row in rows:
        per_key[row.signature] = per_key.get(row.signature, 0) + 1
        entry = merged.setdefault(row.id, (row, []))
        entry[1].append(row.signature)
    more = {key for key, n in per_key.items() if n >= per}
    found = [found_of(row, matched=tuple(keys_)) for row, keys_ in merged.values()]
    found.sort(key=lambda f: f.id, reverse=True)
    return found, more


_COUNTS: dict[int, Any] = {}
_IDS: dict[int, Any] = {}


def _newest_ids(count: int) -> Any:
    """Per signature the ids of the newest `cap` tickets before `before`, as one subquery."""
    parts = []
    for index in range(count):
        newest = _newest(index, "cap")
        parts.append(select(newest.c.ticket_id))
    return union_all(*parts).subquery() if count > 1 else parts[0].subquery()


def _count_statement(count: int) -> Any:
    stmt = _COUNTS.get(count)
    if stmt is None and count == 1:
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
        ids = _newest_ids(count)
        stmt = _COUNTS[count] = select(func.count(ids.c.ticket_id.distinct()))
    return stmt


def _ids_statement(count: int) -> Any:
    stmt = _IDS.get(count)
    if stmt is None:
        ids = _newest_ids(count)
        stmt = _IDS[count] = select(ids.c.ticket_id).distinct()
    return stmt


async def count_with_signatures(
    session: AsyncSession, keys: Sequence[str], *, before: int, cap: int = 1000
) -> int:
    """How many tickets below `before` carry any of `keys` (at most `cap` per signature are
    looked at: each is one index range, as in `with_signatures`)."""
    keys = list(dict.fromkeys(keys))
    if not keys:
        return 0
    conn = await statements.connection(session)
    if len(keys) <= CHUNK:
        stmt = _count_statement(len(keys))
        return int((await conn.execute(stmt, _params(keys, before=before, cap=cap))).scalar_one())
    # More signatures than one statement takes: the ids themselves, counted once each.
    found: set[int] = set()
    for part in _chunks(keys):
        stmt = _ids_statement(len(part))
        found.update((await conn.execute(stmt, _params(part, before=before, cap=cap))).scalars())
    return len(found)


async def signatures_of(session: AsyncSession, ticket_id: int) -> list[str]:
    conn = await statements.connection(session)
    rows = await conn.execute(
        select(_SIGNATURES.c.signature).where(_SIGNATURES.c.ticket_id == ticket_id)
    )
    return [r[0] for r in rows]


async def tickets_after(
    session: AsyncSession, *, after: int, upto: int, limit: int
) -> list[tuple[int, str, str]]:
    """(id, error text, summary) of the tickets after `after` up to `upto`, oldest first."""
    conn = await statements.connection(session)
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
    conn = await statements.connection(session)
    ids = list(ticket_ids)
    with_signatures = select(_SIGNATURES.c.ticket_id).where(_SIGNATURES.c.ticket_id.in_(ids))
    with_row = select(_DIAGNOSIS.c.ticket_id).where(_DIAGNOSIS.c.ticket_id.in_(ids))
    rows = await conn.execute(union_all(with_signatures, with_row))
    return {int(r[0]) for r in rows}


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
    clients: Sequence[str] | None = None,
) -> list[SignatureCount]:
    """The signatures (of `kinds`) most tickets opened in [since, until) carry, for one
    client (any case, Unicode: as sla.clients) or all, with at least `minimum` tickets.
    `clients`: that client's names as stored, when the caller has them (see
    storage.reports.resolve); they are looked up otherwise, and compared in Python: SQLite's
    lower() folds ASCII only (`Ä` is not `ä`), and so does PostgreSQL's in a database whose
    LC_CTYPE is C."""
    conditions = [
        _TICKETS.c.created_at >= since,
        _TICKETS.c.created_at < until,
        or_(*[_SIGNATURES.c.signature.like(f"{kind}:%") for kind in kinds]),
    ]
    joined = _SIGNATURES.join(_TICKETS, _TICKETS.c.id == _SIGNATURES.c.ticket_id)
    conn = await statements.connection(session)
    if client:
        if clients is None:
            # The names of the tickets this counts: no more rows than the count reads.
            names = select(_TICKETS.c.client).distinct().select_from(joined).where(*conditions)
            stored = (await conn.execute(names)).scalars()
            clients = [n for n in stored if fold(n) == fold(client)]
        conditions.append(_TICKETS.c.client.in_(list(clients)))
    counted = (
        select(_SIGNATURES.c.signature, func.count().label("n"))
        .select_from(joined)
        .where(*conditions)
        .group_by(_SIGNATURES.c.signature)
        .having(func.count() >= minimum)
        .order_by(func.count().desc(), _SIGNATURES.c.signature)
        .limit(limit)
    )
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
