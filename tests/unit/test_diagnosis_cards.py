"""What diagnosis help shows: links on both platforms, the card section, valid Adaptive Cards."""

from __future__ import annotations

from typing import Any

from cards.model import Card, Facts, Link, Text, plain
from cards.slack import render_message
from cards.teams import render_card
from handlers.diagnosis.cards import card_section
from storage.models import TicketDiagnosis
from tests.adaptive_schema import validate_adaptive_card


def shown(elements: list[Any]) -> str:
    """The words a section shows, as one string."""
    parts: list[str] = []
    for element in elements:
        if isinstance(element, Text | Link):
            parts.append(plain(element.text))
        elif isinstance(element, Facts):
            parts += [f"{plain(k)} {plain(v)}" for k, v in element.items]
    return "\n".join(parts)


def test_links_on_slack_and_teams() -> None:
    card = Card(
        title="KB",
        body=[
            Link("VPN <!channel> *fix* [x]", "https://docs.example.com/kba/vpn-809"),
            Link("Not a web link", "javascript:alert(1)"),
            Link("Spaces", "https://docs.example.com/a b"),
        ],
    )
    blocks = render_message(card)["blocks"]
    sections = [b for b in blocks if b["type"] == "section"]
    texts = [b["text"]["text"] for b in sections]
    # The KB's title as plain text (no mrkdwn: `*fix*` stays), the page behind a link button.
    assert sections[0]["text"]["type"] == "plain_text"
    assert texts[0] == "VPN &lt;!channel&gt; *fix* [x]"
    assert sections[0]["accessory"]["url"] == "https://docs.example.com/kba/vpn-809"
    assert [s for s in sections[1:] if "accessory" in s] == []
    assert "<" not in texts[1].replace("&lt;", "") and "javascript:alert(1)" in texts[1]
    assert texts[2].startswith("Spaces (https://docs.example.com/a b)")
    rendered = render_card(card)
    validate_adaptive_card(rendered)
    links = [b["text"] for b in rendered["body"][1:]]
    # Only what would start markup is escaped (the title comes from the KB).
    assert links[0] == (r"[VPN \<!channel> \*fix\* \[x\]](https://docs.example.com/kba/vpn-809)")
    assert links[1] == "Not a web link (javascript:alert(1))"


def test_card_section_lists_everything_and_renders_valid_cards() -> None:
    row = TicketDiagnosis(
        ticket_id=1,
        similar=[
            {"number": "HD-1", "client": "acme", "resolution": "Reset the update cache",
             "kb_article": "KB0042"},
            {"number": "HD-2", "client": "", "resolution": "Re-registered DLLs", "kb_article": ""},
        ],
        pattern_count=3,
        pattern_earlier=["HD-1", "HD-2"],
        pattern_label="0x80070005",
        suggested_kb="KB0042",
        hints=["opened 2 days after Patch Tuesday (2026-12-08)"],
        kb_state="ok",
        kb_source="Hudu",
        kb_articles=[{"title": "Update 0x80070005", "url": "https://docs.example.com/kba/1"}],
    )  # fmt: skip
    section = card_section(row, number="HD-3")
    text = shown(section)
    for expected in (
        "Pattern: HD-3 is ticket 3 with this error (0x80070005). Earlier: HD-1, HD-2.",
        "Similar tickets",
        "HD-1 (acme)",
        "Reset the update cache | KB article: KB0042",
        "HD-2 (no client)",
        "Re-registered DLLs | no KB article",
        "KB articles (Hudu)",
        "Suggested KB article",
        "Change: opened 2 days after Patch Tuesday (2026-12-08)",
    ):
        assert expected in text, expected
    validate_adaptive_card(render_card(Card(title="HD-3", body=section)))
    row.kb_state = "unavailable"
    assert any(
        isinstance(e, Text) and plain(e.text).startswith("Hudu did not answer")
        for e in card_section(row, number="HD-3")
    )
    assert card_section(None, number="HD-3") == []
