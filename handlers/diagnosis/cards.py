"""What diagnosis help shows: the ticket card's section, `similar` and `kb` answers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from cards.model import Card, Element, Facts, Inline, Link, Rich, Text, Typed, plain
from handlers.diagnosis.kb import KB_TIMEOUT, KbArticle
from handlers.diagnosis.rules import first_line
from storage.error_signatures import Brief
from storage.models import TicketDiagnosis
from storage.outbox import retry_wait
from storage.search import Found

SIMILAR_TITLE = "Similar tickets"
NO_KB = "no KB article"
# An earlier ticket whose requester answered Works now: its fix is the one known to work.
FIX_CONFIRMED = "fix confirmed"


def _client(client: str) -> Inline:
    return Typed(client.strip()) if client.strip() else "no client"


def _label(number: str, client: str) -> Inline:
    return Rich(f"{number} (", _client(client), ")")


def _resolution(resolution: str, kb: str, why: str = "", *, confirmed: bool = False) -> Inline:
    """First line of the resolution note (as typed), its KB article value, whether the
    requester confirmed the fix, why it matched."""
    shown: Inline = Typed(resolution) if resolution else "(no resolution note)"
    kb_part: Inline = Rich(" | KB article: ", Typed(kb)) if kb else f" | {NO_KB}"
    return Rich(
        shown, kb_part, f" | {FIX_CONFIRMED}" if confirmed else "", f" | {why}" if why else ""
    )


def similar_fact(item: dict[str, Any]) -> tuple[Inline, Inline]:
    """`HD-3 (globex)`: first line of its resolution note, and its KB article value."""
    return (
        _label(str(item.get("number", "")), str(item.get("client") or "")),
        _resolution(
            str(item.get("resolution") or ""),
            str(item.get("kb_article") or ""),
            confirmed=bool(item.get("fix_confirmed")),
        ),
    )


def similar_item(found: Found | Brief) -> dict[str, Any]:
    """What a card keeps of an earlier resolved ticket."""
    return {
        "number": found.number,
        "client": found.client,
        "resolution": first_line(found.resolution_note),
        "kb_article": found.kb_article,
        "fix_confirmed": found.fix_confirmed,
    }


def brief_item(found: Brief) -> dict[str, Any]:
    """`similar_item` of an earlier ticket found at intake."""
    return similar_item(found)


def kb_elements(source: str, articles: Sequence[KbArticle]) -> list[Element]:
    if not articles:
        return []
    return [
        Text(f"KB articles ({source})", muted=True),
        *(Link(a.title or a.url, a.url) for a in articles),
    ]


def _credentials(name: str) -> str:
    return "KB_USERNAME and KB_API_KEY" if name == "Confluence" else "KB_API_KEY"


def kb_trouble(
    name: str, *, status: int | None, retry_after: float | None, not_api: bool = False
) -> tuple[str, str]:
    """The card's KB state and what `kb` / `similar` tell the technician when the KB gave no
    articles: a refused key, a rate limit, an address that is not the KB's API and an error
    status each say what to do."""
    # The wait the bot honours (a KB's Retry-After is capped at an hour).
    honoured = retry_wait(retry_after) if retry_after else 0.0
    wait = f"try again in {math.ceil(honoured)} s" if honoured else "try again later"
    if not_api:
        # It answered at once: waiting does not help, kb.url most likely names a web page.
        return "misconfigured", (
            f"{name} did not answer as its API (not its JSON): ask an admin to check kb.url."
        )
    if status == 404:
        return "misconfigured", (
            f"{name} has no API at that address (HTTP 404): ask an admin to check kb.url."
        )
    if status in (401, 403):
        return "refused", (
            f"{name} refused the bot's API key (HTTP {status}): ask an admin to check "
            f"{_credentials(name)}."
        )
    if status is not None and 300 <= status < 400:
        return "misconfigured", (
            f"{name} sent the bot elsewhere (HTTP {status}, a redirect): ask an admin to check "
            "kb.url."
        )
    if status == 429:
        return "limited", f"{name} is rate limiting the bot (HTTP 429): {wait}."
    if status in (400, 414, 422):
        # The KB refused this search itself: the same words later would be refused again.
        return "error", (
            f"{name} did not accept the search (HTTP {status}): try other words; if it keeps "
            f"happening, an admin finds {name}'s reason in the bot's log."
        )
    if status is not None:
        return "error", f"{name} answered with an error (HTTP {status}): {wait}."
    return "unavailable", f"{name} did not answer within {KB_TIMEOUT:.0f} s: try again later."


# Counts of tickets with one error stop here (see service.COUNT_CAP).
COUNTED_UP_TO = 100


def pattern_text(row: TicketDiagnosis, number: str) -> Inline:
    earlier = ", ".join(row.pattern_earlier)
    # The label comes from what people typed (an error code, or the error text itself).
    label: Inline = Rich(" (", Typed(row.pattern_label), ")") if row.pattern_label else ""
    if row.pattern_count > COUNTED_UP_TO:
        return Rich(
            f"Pattern: {number} is one of more than {COUNTED_UP_TO} tickets with this error",
            label,
            f". Latest: {earlier}. Closing it needs a KB article.",
        )
    more = row.pattern_count - 1 - len(row.pattern_earlier)
    if more > 0:
        earlier += f" and {more} more"
    return Rich(
        f"Pattern: {number} is ticket {row.pattern_count} with this error",
        label,
        f". Earlier: {earlier}. Closing it needs a KB article.",
    )


def card_section(row: TicketDiagnosis | None, *, number: str) -> list[Element]:
    """The ticket card's diagnosis section: similar tickets, KB articles, pattern, changes."""
    if row is None:
        return []
    out: list[Element] = []
    if row.pattern_count:
        out.append(Text(pattern_text(row, number)))
        if row.suggested_kb:
            out.append(Facts([("Suggested KB article", Typed(row.suggested_kb))]))
    if row.similar:
        out.append(Text(SIMILAR_TITLE, muted=True))
        out.append(Facts([similar_fact(item) for item in row.similar]))
    if row.kb_state == "ok":
        articles = [KbArticle.from_dict(a) for a in row.kb_articles]
        out += kb_elements(row.kb_source, articles)
    elif row.kb_state == "refused":
        out.append(
            Text(
                f"{row.kb_source} refused the bot's API key: ask an admin to check "
                f"{_credentials(row.kb_source)}.",
                muted=True,
            )
        )
    elif row.kb_state == "limited":
        out.append(
            Text(
                f"{row.kb_source} is rate limiting the bot: try `similar {number}` later.",
                muted=True,
            )
        )
    elif row.kb_state == "error":
        out.append(
            Text(
                f"{row.kb_source} answered with an error: try `similar {number}` later.",
                muted=True,
            )
        )
    elif row.kb_state == "misconfigured":
        out.append(
            Text(
                f"{row.kb_source} did not answer as its API: ask an admin to check kb.url.",
                muted=True,
            )
        )
    elif row.kb_state == "unavailable":
        out.append(
            Text(f"{row.kb_source} did not answer: try `similar {number}` later.", muted=True)
        )
    if row.hints:
        out.append(Text("Recent changes", muted=True))
        out += [Text(Rich("Change: ", Typed(hint))) for hint in row.hints]
    return out


def found_fact(found: Found | Brief, *, why: str = "") -> tuple[Inline, Inline]:
    return (
        _label(found.number, found.client),
        _resolution(
            first_line(found.resolution_note), found.kb_article, why, confirmed=found.fix_confirmed
        ),
    )


def results_card(
    title: Inline,
    sections: Sequence[tuple[str, Sequence[tuple[Inline, Inline]]]],
    *,
    empty: str,
    kb: list[Element] | None = None,
    notes: Sequence[str] = (),
) -> Card:
    """A `similar` / `kb` answer: sections of facts, KB links, notes (e.g. KB not answering)."""
    body: list[Element] = []
    for heading, facts in sections:
        if facts:
            body += [Text(heading, muted=True), Facts(list(facts))]
    if not body:
        body.append(Text(empty))
    body += kb or []
    body += [Text(note, muted=True) for note in notes]
    return Card(title=title, body=body, fallback=plain(title))
