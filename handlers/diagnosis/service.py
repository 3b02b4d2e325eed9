"""Use cases: diagnosis of a new ticket, the closure rule for patterns, the top patterns for
reports, and signatures for tickets from before they existed (`similar` and `kb`: answers).

A new ticket's signatures, earlier resolved tickets with the same error, pattern and change
hints are worked out in its intake transaction (indexed look-ups only) and stored with it; the
KB is asked afterwards, off the request, and the card is refreshed in place through the outbox
when it answers (or says it did not).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cards.model import Element, Inline, Rich, Typed
from handlers import notify
from handlers.answers import is_placeholder
from handlers.deps import Deps
from handlers.diagnosis import cards, changes, rules
from handlers.diagnosis.kb import KB_TIMEOUT, KbArticle, KbUnavailable
from storage import error_signatures, search
from storage import tickets as repo
from storage.models import Ticket, TicketDiagnosis

log = logging.getLogger(__name__)
SIMILAR_ON_CARD = 3
KB_ON_CARD = 3
EARLIER_LISTED = 10
# Tickets with one error are counted up to this many per signature (a hot error: "more than
# 100"), or up to `patterns.repeat_threshold` when that is more (else the ticket reaching a
# threshold above 100 was never counted to it): a new ticket of a frequent error costs no
# more than a rare one.
COUNT_CAP = 100
# Background KB look-ups for cards still running (the core's own; see `drain`).
_RUNNING: set[asyncio.Task[None]] = set()


# -- a new ticket -----------------------------------------------------------------------------


def ticket_signatures(error_text: str, *, summary: str) -> list[rules.Signature]:
    """A ticket's signatures. An exact error text that is only a placeholder (`n/a`, `-`,
    `tbd`, `...`: what is typed where there was no message) is no error text: it makes no
    `exact` (nor look-alike) signature, so tickets that merely left the field so are not "the
    same error" (no similar tickets, no pattern), as the open-P1 match already reads it.
    Codes in the summary still count."""
    return rules.signatures("" if is_placeholder(error_text) else error_text, summary=summary)


def _pattern_label(
    matches: Sequence[search.Found | error_signatures.Brief], keys: Sequence[str]
) -> str:
    shared = Counter(k for f in matches for k in f.matched if k in keys)
    if not shared:
        return ""
    codes = [k for k, _ in shared.most_common() if not k.startswith("exact:")]
    return rules.describe(codes[0] if codes else shared.most_common(1)[0][0])


def _suggested_kb(matches: Sequence[search.Found | error_signatures.Brief]) -> str:
    named = Counter(f.kb_article for f in matches if f.kb_article)
    if not named:
        return ""
    best = max(named.values())
    # The most named article; between equals, the one named most recently.
    return next(f.kb_article for f in matches if f.kb_article and named[f.kb_article] == best)


# A new ticket looks at this many of the newest tickets per signature (3 resolved ones for
# its card, 10 earlier ones for a pattern); more are only counted.
PER_SIGNATURE_AT_INTAKE = 12


async def on_ticket_opened(
    session: AsyncSession, deps: Deps, *, ticket: Ticket, on_card: bool = True
) -> list[Element]:
    """Store the new ticket's signatures and what its card shows to help diagnosis (similar
    resolved tickets, pattern, change hints); returns the card's diagnosis section. `on_card`
    False (opened by someone who is not a technician): the section is kept for technicians
    (`show`, the closure rule) but the card, posted where the opener typed, never shows it."""
    found = ticket_signatures(ticket.error_text, summary=ticket.summary)
    same_keys = rules.same_error_keys(found)
    row: dict[str, Any] = {
        "ticket_id": ticket.id,
        "similar": [],
        "pattern_count": 0,
        "pattern_earlier": [],
        "pattern_label": "",
        "suggested_kb": "",
        "hints": [],
        "kb_state": "none",
        "kb_source": "",
        "kb_articles": [],
        "on_card": on_card,
    }
    if same_keys:
        # The earlier tickets the card lists and, for a frequent error (a signature with
        # PER_SIGNATURE_AT_INTAKE or more), all its tickets counted up to COUNT_CAP per
        # signature: one statement (for an error that is not frequent the count is the same
        # tickets as listed).
        earlier, per_key, counted = await error_signatures.brief_and_count(
            session,
            same_keys,
            before=ticket.id,
            per=PER_SIGNATURE_AT_INTAKE,
            cap=max(COUNT_CAP, deps.config.patterns.repeat_threshold),
        )
        count = len(earlier)
        if any(n >= PER_SIGNATURE_AT_INTAKE for n in per_key.values()):
            count = max(count, counted)
        resolved = [t for t in earlier if t.status == "closed"][:SIMILAR_ON_CARD]
        older: list[error_signatures.Brief] = []
        if len(resolved) < SIMILAR_ON_CARD and any(
            n >= PER_SIGNATURE_AT_INTAKE for n in per_key.values()
        ):
            # A frequent error's newest tickets may all be open (an outage many report): its
            # fixes are further back.
            older = await error_signatures.resolved_remembered(
                session, deps.resolved_memo, same_keys, before=ticket.id, per=SIMILAR_ON_CARD
            )
            resolved = error_signatures.merged(resolved, older)[:SIMILAR_ON_CARD]
        row["similar"] = [cards.brief_item(t) for t in resolved]
        if count + 1 >= deps.config.patterns.repeat_threshold:
            row["pattern_count"] = count + 1
            row["pattern_earlier"] = sorted(
                (t.number for t in earlier[:EARLIER_LISTED]), key=_number_order
            )
            row["pattern_label"] = _pattern_label(earlier, same_keys)
            row["suggested_kb"] = _suggested_kb(earlier) or _suggested_kb(older)
    row["hints"] = changes.hints(
        deps.config.changes,
        opened=ticket.created_at,
        category=ticket.category,
        client=ticket.client,
        asset=ticket.asset,
        calendar=deps.change_calendar,
    )
    if deps.kb is not None and kb_query(ticket):
        row["kb_state"], row["kb_source"] = "pending", deps.kb.name
    await error_signatures.add_diagnosis(
        session, row=row, signatures=[s.key for s in found], ticket_id=ticket.id
    )
    return cards.card_section(TicketDiagnosis(**row), number=ticket.number) if on_card else []


def _number_order(number: str) -> tuple[str, int]:
    prefix, _, seq = number.rpartition("-")
    return (prefix, int(seq)) if seq.isascii() and seq.isdigit() else (number, 0)


def kb_query(ticket: Ticket) -> str:
    """What the KB is asked about a ticket: its error codes as articles name them (a sign-in
    error as `AADSTS50076`, not its bare number), else its summary's words."""
    found = [
        f"AADSTS{s.value}" if s.kind == "aadsts" else s.value
        for s in rules.codes(f"{ticket.error_text}\n{ticket.summary}")
    ]
    if found:
        return " ".join(found[:2])
    return " ".join(rules.terms(ticket.summary, limit=8))


def look_up_kb_for_card(deps: Deps, ticket: Ticket) -> None:
    """Ask the KB about a new ticket in the background; its card is refreshed when it answers.
    The card itself never waits for the KB."""
    if deps.kb is None:  # no KB: not even the query is worked out
        return
    query = kb_query(ticket)
    if not query:
        return
    task = asyncio.get_running_loop().create_task(_kb_for_card(deps.detached(), ticket.id, query))
    _RUNNING.add(task)
    task.add_done_callback(_RUNNING.discard)


async def _kb_for_card(deps: Deps, ticket_id: int, query: str) -> None:
    articles, state, _ = await ask_kb(deps, query, limit=KB_ON_CARD)
    try:
        async with deps.sessions() as session, session.begin():
            await repo.lock(session, ticket_id)
            row = await session.get(TicketDiagnosis, ticket_id)
            ticket = await session.get(Ticket, ticket_id)
            if row is None or ticket is None:
                return
            row.kb_state = state
            row.kb_articles = [a.to_dict() for a in articles]
            await notify.refresh_ticket_card(session, ticket, when_posted=True)
    except Exception as exc:
        # The card keeps what it showed; `similar` asks again.
        log.warning("KB articles for ticket %s not stored: %s", ticket_id, type(exc).__name__)


async def ask_kb(deps: Deps, query: str, *, limit: int) -> tuple[list[KbArticle], str, str]:
    """(articles, `ok`, "") within KB_TIMEOUT, else ([], state, what to tell the technician):
    `unavailable` (no answer), `refused` (401/403: the key), `limited` (429: a rate limit),
    `misconfigured` (not its API at kb.url: a redirect, 404, HTML or broken JSON) or `error`
    (another error status)."""
    assert deps.kb is not None
    name = deps.kb.name
    try:
        async with asyncio.timeout(KB_TIMEOUT):
            return list(await deps.kb.search(query, limit=limit))[:limit], "ok", ""
    except TimeoutError:
        log.warning("%s did not answer within %.0f s", name, KB_TIMEOUT)
    except KbUnavailable as exc:
        log.warning("%s could not be searched: %s", name, exc)
        return [], *cards.kb_trouble(
            name, status=exc.status, retry_after=exc.retry_after, not_api=exc.not_api
        )
    except Exception:
        log.exception("%s search failed", name)
    return [], *cards.kb_trouble(name, status=None, retry_after=None)


async def drain(timeout: float = 6.0) -> None:  # noqa: ASYNC109
    """Wait for background KB look-ups (shutdown, tests)."""
    if _RUNNING:
        await asyncio.wait(list(_RUNNING), timeout=timeout)


async def card_elements(
    session: AsyncSession, ticket: Ticket, *, for_technician: bool = False
) -> list[Element]:
    """The ticket card's diagnosis section as stored (for refreshes and `show`): empty on the
    card of a ticket a non-technician opened, unless it is shown to a technician (`show`)."""
    row = await session.get(TicketDiagnosis, ticket.id)
    if row is not None and row.on_card is False and not for_technician:
        return []
    return cards.card_section(row, number=ticket.number)


# -- closing a pattern ticket -----------------------------------------------------------------


@dataclass(frozen=True)
class KbRequirement:
    """Why a ticket's closure needs a KB article, and the article its pattern suggests."""

    reason: Inline  # the pattern's label is taken from typed error texts: `Typed` in it
    suggested: str


async def kb_requirement(session: AsyncSession, ticket: Ticket) -> KbRequirement | None:
    """Set when the ticket is part of a pattern (SPEC: its closure then needs a KB article)."""
    row = await session.get(TicketDiagnosis, ticket.id)
    if row is None or not row.pattern_count:
        return None
    label: Inline = Rich(" (", Typed(row.pattern_label), ")") if row.pattern_label else ""
    reason = Rich(
        f"{ticket.number} is part of a pattern: {row.pattern_count} tickets with the same error",
        label,
        ". Name the KB article that documents the fix (a KB id or a link), so "
        "the next one needs no fresh diagnosis.",
    )
    return KbRequirement(reason, await _suggestion_now(session, ticket) or row.suggested_kb)


async def _suggestion_now(session: AsyncSession, ticket: Ticket) -> str:
    """The KB article the earlier tickets with the same error name now: one closed with an
    article after this ticket was opened counts too (the card's suggestion is as of then)."""
    keys = rules.same_error_keys(ticket_signatures(ticket.error_text, summary=ticket.summary))
    if not keys:
        return ""
    earlier, per_key = await error_signatures.brief_with_signatures(
        session, keys, before=ticket.id, per=PER_SIGNATURE_AT_INTAKE
    )
    named = _suggested_kb(earlier)
    if not named and any(n >= PER_SIGNATURE_AT_INTAKE for n in per_key.values()):
        # The newest with the error may all be open: the article is named further back.
        named = _suggested_kb(
            await error_signatures.resolved_with_signatures(
                session, keys, before=ticket.id, per=SIMILAR_ON_CARD
            )
        )
    return named


# -- reports ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pattern:
    """One repeated error in a period: what it is, how many tickets, which, and KB articles."""

    error: str
    tickets: int
    numbers: tuple[str, ...]
    kb_articles: tuple[str, ...]


async def top_patterns(
    deps: Deps,
    *,
    since: datetime,
    until: datetime,
    client: str | None = None,
    limit: int = 5,
) -> list[Pattern]:
    """The errors that repeated most (at least `patterns.repeat_threshold` tickets) among the
    tickets opened in [since, until), for one client or all; for reports."""
    return await patterns_in(
        deps.sessions,
        threshold=deps.config.patterns.repeat_threshold,
        since=since,
        until=until,
        client=client,
        limit=limit,
    )


async def patterns_in(
    sessions: Callable[[], AsyncSession],
    *,
    threshold: int,
    since: datetime,
    until: datetime,
    client: str | None = None,
    limit: int = 5,
    clients: Sequence[str] | None = None,
) -> list[Pattern]:
    """`top_patterns` with the sessions and threshold given (the CLI report has no Deps);
    `clients`: the client's names as stored, when the caller has them (a report on SQLite)."""
    async with sessions() as session:
        counts = await error_signatures.top_signatures(
            session,
            kinds=rules.SAME_ERROR_KINDS,
            since=since,
            until=until,
            client=client,
            clients=clients,
            minimum=threshold,
            limit=limit * 3,
        )
    out: list[Pattern] = []
    covered: list[set[str]] = []
    for count in counts:
        numbers = set(count.numbers)
        # One error often carries two signatures (its code and its exact text): list it once.
        if any(numbers <= seen for seen in covered):
            continue
        label = rules.describe(count.signature)
        if count.signature.startswith("exact:"):
            example = await _example_text(sessions, count.numbers[0])
            if is_placeholder(example):
                # Stored by an earlier release for tickets whose error text was only "n/a"
                # or "-": no error (see ticket_signatures), so no pattern either.
                continue
            label = rules.first_line(example, 80) or label
        covered.append(numbers)
        out.append(Pattern(label, count.tickets, count.numbers, count.kb_articles))
        if len(out) == limit:
            break
    return out


async def _example_text(sessions: Callable[[], AsyncSession], number: str) -> str:
    async with sessions() as session:
        ticket = await repo.get_by_number(session, number)
    return ticket.error_text if ticket else ""


# -- tickets from before signatures existed -----------------------------------------------------


async def backfill_signatures(
    sessions: async_sessionmaker[AsyncSession], *, batch: int = 200
) -> int:
    """Store the signatures of tickets that have neither signatures nor a diagnosis row (those
    opened before this release), oldest first, in short transactions; returns how many got
    some. Safe to run while tickets are opened (new ones are stored with theirs)."""
    done = 0
    after = 0
    async with sessions() as session:
        upto = await search.newest_ticket_id(session)
    while after < upto:
        async with sessions() as session, session.begin():
            rows = await error_signatures.tickets_after(
                session, after=after, upto=upto, limit=batch
            )
            if not rows:
                break
            after = rows[-1][0]
            known = await error_signatures.diagnosed(session, [r[0] for r in rows])
            for ticket_id, error_text, summary in rows:
                if ticket_id in known:
                    continue
                keys = [s.key for s in ticket_signatures(error_text, summary=summary)]
                if keys:
                    await error_signatures.add_signatures(session, ticket_id=ticket_id, keys=keys)
                    done += 1
        await asyncio.sleep(0)  # other work on the event loop goes on between batches
    if done:
        log.info("signatures stored for %d earlier tickets", done)
    return done
