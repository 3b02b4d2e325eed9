"""Every card the core builds shows what people typed literally, on both platforms.

Each card builder gets a ticket (and people, facts, notes) whose every typed field holds a
Markdown link, emphasis, a Slack broadcast and a Slack link. Rendered for Teams, none of it may
form a link or emphasis; rendered for Slack, none of it may ping or link. The bot's own words
on the same cards carry no backslash.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from cards.model import Card, Rich, Typed
from cards.slack import render_message
from cards.teams import render_card
from handlers.closure.cards import closure_form
from handlers.commands import usage, welcome
from handlers.csat.cards import followup_card, survey_card
from handlers.diagnosis.cards import card_section, results_card, similar_fact
from handlers.directory import Person
from handlers.escalation.cards import escalation_card
from handlers.escalation.rules import FACTS as ESCALATION_FACTS
from handlers.formatting import technician
from handlers.identity.cards import outcome_card, request_card
from handlers.incidents.cards import notice, resolved_notice
from handlers.reports.cards import report_card
from handlers.reports.rules import NO_CLIENT, Period, Rate, Summary
from handlers.tickets.cards import ticket_card
from handlers.working.cards import answered_card, comment_form
from handlers.working.cards import request_card as fix_request_card
from storage.models import FixConfirmation, IdentityCheck, Ticket, TicketDiagnosis
from tests.adaptive_schema import validate_adaptive_card

HOSTILE = "[x](https://evil.example) **bold** <!channel> <https://evil.example|y>"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def hostile_ticket(**overrides: Any) -> Ticket:
    fields: dict[str, Any] = {
        "id": 7,
        "number": "HD-7",
        "prefix": "HD",
        "seq": 7,
        "status": "closed",
        "summary": HOSTILE,
        "error_text": HOSTILE,
        "doing": HOSTILE,
        "reproducible": "yes",
        "users_affected": 3,
        "priority": "P2",
        "category": HOSTILE,
        "asset": HOSTILE,
        "client": HOSTILE,
        "tier": "standard",
        "requester_id": "U0ANA",
        "requester_name": HOSTILE,
        "requester_email": "ana@example.com",
        "requester_vip": True,
        "technician_id": "29:1tech",
        "technician_name": HOSTILE,
        "technician_email": "tom@example.com",
        "source_platform": "slack",
        "source_channel": "C0HELP",
        "created_at": NOW,
        "respond_by": NOW + timedelta(hours=2),
        "resolve_by": NOW + timedelta(days=1),
        "priority_warning": "",
        "identity_state": "pending",
        "closed_at": NOW + timedelta(hours=3),
        "resolution_note": HOSTILE,
        "resolution_category": "Incident",
        "kb_article": HOSTILE,
    }
    return Ticket(**(fields | overrides))


def hostile_similar() -> dict[str, str]:
    return {"number": "HD-1", "client": HOSTILE, "resolution": HOSTILE, "kb_article": HOSTILE}


def hostile_diagnosis() -> TicketDiagnosis:
    return TicketDiagnosis(
        ticket_id=7,
        similar=[hostile_similar()],
        pattern_count=3,
        pattern_earlier=["HD-1", "HD-2"],
        pattern_label=HOSTILE,
        suggested_kb=HOSTILE,
        hints=[HOSTILE],
        kb_state="ok",
        kb_source="Hudu",
        kb_articles=[{"title": HOSTILE, "url": "https://docs.example.com/kba/1"}],
    )


def hostile_summary() -> Summary:
    """A report whose client (typed after `report` and at intake), category (named in the
    config) and top pattern (an error's first line) are all hostile."""
    return Summary(
        period=Period(date(2026, 1, 1), date(2026, 3, 31)),
        client=HOSTILE,
        opened=3,
        closed=1,
        by_category=[(HOSTILE, 2), ("-", 1)],
        by_priority=[("P1", 1), ("P2", 2), ("P3", 0), ("P4", 0)],
        by_resolution=[("Incident", 1), ("Request", 0), ("Problem", 0)],
        respond=Rate(1, 0),
        resolve=Rate(1, 0),
        respond_by_priority=[("P1", Rate(1, 0))],
        resolve_by_priority=[("P1", Rate(1, 0))],
        median_first_response=60.0,
        median_resolution=3600.0,
        ratings=(0, 0, 0, 0, 1),
        surveys_sent=1,
        minutes_by_client=[(HOSTILE, 90), (NO_CLIENT, 30)],
        minutes_total=120,
        fixes_confirmed=1,
        fixes_unconfirmed=0,
        patterns=[Rich(Typed(HOSTILE), " (3 tickets: HD-1, HD-2, HD-3)")],
    )


MANAGER = Person(email="bo@example.com", name=HOSTILE, slack_id="U0BO")
CHECK = IdentityCheck(id=1, nonce="n" * 40, created_at=NOW, expires_at=NOW + timedelta(minutes=15))
FACTS = {fact.id: HOSTILE for fact in ESCALATION_FACTS}
BUILDERS: dict[str, Callable[[], Card]] = {
    "ticket card": lambda: ticket_card(hostile_ticket()),
    "ticket card (teams)": lambda: ticket_card(hostile_ticket(source_platform="teams")),
    "incident notice": lambda: notice(hostile_ticket(), HOSTILE),
    "resolved notice": lambda: resolved_notice(hostile_ticket(), HOSTILE),
    "escalation": lambda: escalation_card(
        hostile_ticket(), FACTS, queue=HOSTILE, by=technician(hostile_ticket())
    ),
    "closure form": lambda: closure_form("HD-7", logged_minutes=30, summary=HOSTILE),
    "survey": lambda: survey_card(hostile_ticket(), "nonce"),
    "follow-up": lambda: followup_card(hostile_ticket(), ["VIP requester"]),
    "identity request": lambda: request_card(
        hostile_ticket(),
        CHECK,
        requester=Person(email="ana@example.com", name=HOSTILE),
        manager=MANAGER,
    ),
    "identity outcome": lambda: outcome_card(hostile_ticket(), "You approved this request."),
    "fix confirmation": lambda: fix_request_card(
        hostile_ticket(status="open"), FixConfirmation(id=1, nonce="n" * 40)
    ),
    "fix comment form": lambda: comment_form("HD-7", "n" * 40),
    "fix answered": lambda: answered_card(hostile_ticket(), "You said it works now."),
    "ticket card (filed, confirmed, scoped)": lambda: ticket_card(
        hostile_ticket(
            status="open",
            filed_under="HD-3",
            fix_confirmed_at=NOW,
            fix_state="works",
            support_tier="tier23",
            remote_url="https://rc.example.com/join?asset=x",
        )
    ),
    "p1 card (matching, reports filed)": lambda: ticket_card(
        hostile_ticket(status="open", priority="P1", p1_match="HD-3", filed_count=2, filed_users=5)
    ),
    "report": lambda: report_card(hostile_summary()),
    "help": lambda: usage("teams"),
    "welcome": lambda: welcome("teams"),
    "diagnosis section": lambda: Card(
        title="HD-7", body=card_section(hostile_diagnosis(), number="HD-7")
    ),
    "similar answer": lambda: results_card(
        Rich("Similar to HD-7: ", Typed(HOSTILE)),
        [("Same error", [similar_fact(hostile_similar())])],
        empty="none",
    ),
}
# A Markdown link or emphasis that Teams would render: an unescaped `[`, `**` or `*x*`.
LINK_OR_EMPHASIS = re.compile(r"(?<!\\)\[[^\]]*(?<!\\)\]\(|(?<!\\)\*\*|(?<![\\*])\*[^*\s]")


def teams_texts(card: dict[str, Any]) -> list[str]:
    texts = []
    for element in card["body"]:
        if element["type"] == "TextBlock":
            texts.append(element["text"])
        elif element["type"] == "FactSet":
            texts += [part for fact in element["facts"] for part in (fact["title"], fact["value"])]
    return texts


@pytest.mark.parametrize("name", list(BUILDERS))
def test_typed_text_never_becomes_markup(name: str) -> None:
    card = BUILDERS[name]()
    rendered = render_card(card)
    validate_adaptive_card(rendered)
    for text in teams_texts(rendered):
        assert not LINK_OR_EMPHASIS.search(text), (name, text)
    slack = str(render_message(card))
    assert "<!channel>" not in slack and "<https://evil" not in slack, name


@pytest.mark.parametrize("name", list(BUILDERS))
def test_the_bots_own_words_carry_no_backslash(name: str) -> None:
    """Whatever is left once the typed text is taken out has not been escaped."""
    rendered = render_card(BUILDERS[name]())
    validate_adaptive_card(rendered)
    for text in teams_texts(rendered):
        escaped_hostile = re.escape(r"\[x\](https://evil.example) \*\*bold\*\* \<!channel> \<")
        rest = re.sub(escaped_hostile + r"https://evil\.example\|y>", "", text)
        assert "\\" not in rest, (name, text)


def test_the_people_on_a_card_are_never_raw_ids() -> None:
    rendered = str(render_card(ticket_card(hostile_ticket(source_platform="teams"))))
    assert "29:1tech" not in rendered and "U0ANA" not in rendered
    assert "(tom@example.com)" in rendered and "(ana@example.com)" in rendered


def test_the_report_shows_typed_text_literally_and_its_own_words_as_written() -> None:
    """Teams: the client, category and pattern are escaped where they would start markup; the
    bot's labels, priorities, counts and ticket numbers beside them are not. Slack: shown
    literally (`&`, `<`, `>` escaped), never a broadcast or a link."""
    evil = "[Reset your password here](https://evil.example/login)"
    escaped = r"\[Reset your password here\](https://evil.example/login)"
    summary = hostile_summary()
    summary = Summary(
        **(
            vars(summary)
            | {
                "client": evil,
                "by_category": [(evil, 2), ("-", 1)],
                "minutes_by_client": [(evil, 90), (NO_CLIENT, 30)],
                "patterns": [Rich(Typed(evil), " (3 tickets: HD-1, HD-2, HD-3)")],
            }
        )
    )
    card = render_card(report_card(summary))
    validate_adaptive_card(card)
    title, facts = card["body"][0]["text"], card["body"][1]["facts"]
    assert title == (
        f"QBR report: {escaped}, 2026-01-01 to 2026-03-31 (UTC days, tickets by creation date)"
    )
    values = {fact["title"]: fact["value"] for fact in facts}
    assert values["By category"] == f"{escaped} 2, - 1"
    assert values["By priority"] == "P1 1, P2 2, P3 0, P4 0"
    assert values["By resolution category"] == "Incident 1, Request 0, Problem 0"
    assert values["Time logged"] == f"2h ({escaped} 1h 30m, (no client) 30m)"
    assert values["Top patterns"] == f"{escaped} (3 tickets: HD-1, HD-2, HD-3)"
    assert evil not in str(card["body"])
    # The plain-text fallback says it as typed.
    assert f"QBR report: {evil}, 2026-01-01" in card["fallbackText"]
    slack = "\n".join(slack_texts(render_message(report_card(summary))))
    assert f"Top patterns: {evil} (3 tickets: HD-1, HD-2, HD-3)" in slack
    assert f"QBR report: {evil}, 2026-01-01" in slack
    assert "\\" not in slack


def slack_texts(value: Any) -> list[str]:
    """Every `text` string in a Block Kit message."""
    if isinstance(value, dict):
        found = [value["text"]] if isinstance(value.get("text"), str) else []
        return found + [t for v in value.values() for t in slack_texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in slack_texts(v)]
    return []
