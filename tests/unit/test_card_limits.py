"""Cards with long lists (a P1 with hundreds of filed reports, a ticket with hundreds of files)
stay within Slack's 50 blocks and Teams' card size, and keep their buttons."""

from __future__ import annotations

from cards.model import Card, Facts, Mention, Rich, Text
from cards.slack import render_message
from cards.teams import MAX_PAYLOAD_BYTES, card_size, render_card
from handlers.tickets.cards import ticket_card
from handlers.working.attachments import more_line
from tests.adaptive_schema import validate_adaptive_card
from tests.unit.test_card_text_safety import hostile_ticket

TITLES = {"Verify identity", "Escalate", "Close"}


def p1_show_card(reports: int) -> Card:
    """`ticket show` of an open P1 with `reports` rows listed (as working/details.py builds)."""
    p1 = hostile_ticket(status="open", priority="P1", summary="VPN down", filed_count=reports)
    lines = [
        (
            f"HD-{1000 + i}",
            Rich(
                Mention(name=f"User {i}", email=f"user{i}@example.com", slack_id=f"U{i:08d}"),
                " - 1 affected - open",
            ),
        )
        for i in range(reports)
    ]
    extra = [Text(f"Reports filed under HD-7 ({reports})", muted=True), Facts(lines)]
    return ticket_card(p1, extra=extra)


def test_a_teams_card_with_too_many_rows_is_cut_below_the_size_limit_and_keeps_its_buttons():
    rendered = render_card(p1_show_card(500))
    validate_adaptive_card(rendered)
    assert card_size(rendered) <= MAX_PAYLOAD_BYTES, card_size(rendered)
    titles = {a.get("title") for a in rendered.get("actions", [])}
    assert TITLES <= titles, titles
    assert "… (truncated)" in str(rendered["body"])


def test_a_slack_card_with_too_many_blocks_keeps_its_buttons():
    blocks = render_message(p1_show_card(2000))["blocks"]
    assert len(blocks) <= 50
    assert blocks[-1]["type"] == "actions"
    shown = {e["text"]["text"] for b in blocks if b["type"] == "actions" for e in b["elements"]}
    assert TITLES <= shown, shown
    assert any("truncated" in str(b) for b in blocks if b["type"] == "context")


def test_more_line_says_how_many_are_not_listed():
    assert more_line(50, 50) == []
    [line] = more_line(73, 50)
    assert isinstance(line, Text) and "… and 23 more (the first 50 are listed)" in str(line.text)
