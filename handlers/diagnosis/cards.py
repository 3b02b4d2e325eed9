"""What diagnosis help shows: the ticket card's section, `similar` and `kb` answers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cards.model import Card, Element, Facts, Link, Text
from handlers.diagnosis.kb import KbArticle
from handlers.diagnosis.rules import first_line
from storage.error_signatures import Brief
from storage.models import TicketDiagnosis
from storage.search import Found

SIMILAR_TITLE = "Similar tickets"
NO_KB = "no KB article"


def _client(client: str) -> str:
    return client.strip() or "no client"


def similar_fact(item: dict[str, Any]) -> tuple[str, str]:
    """`HD-3 (globex)`: first line of its resolution note, and its KB article value."""
    kb = item.get("kb_article") or ""
    resolution = item.get("resolution") or "(no resolution note)"
    return (
        f"{item.get('number', '')} ({_client(str(item.get('client') or ''))})",
        f"{resolution} | KB article: {kb}" if kb else f"{resolution} | {NO_KB}",
    )


def similar_item(found: Found) -> dict[str, str]:
    """What a card keeps of an earlier resolved ticket."""
    return {
        "number": found.number,
        "client": found.client,
        "resolution": first_line(found.resolution_note),
        "kb_article": found.kb_article,
    }


def brief_item(found: Brief) -> dict[str, str]:
    """`similar_item` of an earlier ticket found at intake."""
    return {
        "number": found.number,
        "client": found.client,
        "resolution": first_line(found.resolution_note),
        "kb_article": found.kb_article,
    }


def kb_elements(source: str, articles: Sequence[KbArticle]) -> list[Element]:
    if not articles:
        return []
    return [
        Text(f"KB articles ({source})", muted=True),
        *(Link(a.title or a.url, a.url) for a in articles),
    ]


# Counts of tickets with one error stop here (see service.COUNT_CAP).
COUNTED_UP_TO = 100


def pattern_text(row: TicketDiagnosis, number: str) -> str:
    earlier = ", ".join(row.pattern_earlier)
    label = f" ({row.pattern_label})" if row.pattern_label else ""
    if row.pattern_count > COUNTED_UP_TO:
        return (
            f"Pattern: {number} is one of more than {COUNTED_UP_TO} tickets with this "
            f"error{label}. Latest: {earlier}. Closing it needs a KB article."
        )
    more = row.pattern_count - 1 - len(row.pattern_earlier)
    if more > 0:
        earlier += f" and {more} more"
    return (
        f"Pattern: {number} is ticket {row.pattern_count} with this error{label}. "
        f"Earlier: {earlier}. Closing it needs a KB article."
    )


def card_section(row: TicketDiagnosis | None, *, number: str) -> list[Element]:
    """The ticket card's diagnosis section: similar tickets, KB articles, pattern, changes."""
    if row is None:
        return []
    out: list[Element] = []
    if row.pattern_count:
        out.append(Text(pattern_text(row, number)))
        if row.suggested_kb:
            out.append(Facts([("Suggested KB article", row.suggested_kb)]))
    if row.similar:
        out.append(Text(SIMILAR_TITLE, muted=True))
        out.append(Facts([similar_fact(item) for item in row.similar]))
    if row.kb_state == "ok":
        articles = [KbArticle.from_dict(a) for a in row.kb_articles]
        out += kb_elements(row.kb_source, articles)
    elif row.kb_state == "unavailable":
        out.append(
            Text(f"{row.kb_source} did not answer: try `similar {number}` later.", muted=True)
        )
    if row.hints:
        out.append(Text("Recent changes", muted=True))
        out += [Text(f"Change: {hint}") for hint in row.hints]
    return out


def found_fact(found: Found | Brief, *, why: str = "") -> tuple[str, str]:
    resolution = first_line(found.resolution_note) or "(no resolution note)"
    kb = f" | KB article: {found.kb_article}" if found.kb_article else f" | {NO_KB}"
    label = f"{found.number} ({_client(found.client)})"
    return label, f"{resolution}{kb}" + (f" | {why}" if why else "")


def results_card(
    title: str,
    sections: Sequence[tuple[str, Sequence[tuple[str, str]]]],
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
    return Card(title=title, body=body, fallback=title)
