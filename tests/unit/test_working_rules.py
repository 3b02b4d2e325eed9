"""Pure rules of working a ticket to the end (#15): scope, remote link, matching, numbers."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from pydantic import ValidationError

from cards.model import ActionId, Button, Card, LinkButton
from cards.slack import render_message
from cards.teams import render_card
from handlers.config import HelpdeskConfig
from handlers.diagnosis import same_error
from handlers.working.rules import (
    TIER1,
    TIER23,
    remote_url,
    same_place,
    scope_label,
    support_tier,
    ticket_numbers,
)
from tests.adaptive_schema import validate_adaptive_card


def test_support_tier_from_the_configured_scope() -> None:
    scope = ["password-reset", "MFA", "printer"]
    assert support_tier("printer", scope) == TIER1
    assert support_tier(" mfa ", scope) == TIER1
    assert support_tier("network", scope) == TIER23
    assert support_tier("", scope) == TIER23
    # No scope configured: no label, no nudge.
    assert support_tier("network", []) == ""
    assert scope_label(TIER1) == "Tier 1"
    assert scope_label(TIER23) == "Tier 2/3: escalate early"
    assert scope_label("") == ""


@pytest.mark.parametrize(
    ("asset", "url"),
    [
        ("PC-7", "https://rc.example.com/join?asset=PC-7"),
        ("LAPTOP 42/B", "https://rc.example.com/join?asset=LAPTOP%2042%2FB"),
        ("a&b=c#d?e", "https://rc.example.com/join?asset=a%26b%3Dc%23d%3Fe"),
        ("  PRN-1 ", "https://rc.example.com/join?asset=PRN-1"),
        ("Zoë", "https://rc.example.com/join?asset=Zo%C3%AB"),
    ],
)
def test_remote_url_encodes_the_asset_as_a_query_value(asset: str, url: str) -> None:
    assert remote_url("https://rc.example.com/join?asset={asset}", asset) == url


def test_no_remote_url_without_a_template_or_an_asset() -> None:
    assert remote_url(None, "PC-7") == ""
    assert remote_url("https://rc.example.com/join?asset={asset}", "   ") == ""


def test_same_place_needs_both_client_and_asset() -> None:
    assert same_place("Acme", "VPN-01", " acme ", "vpn-01")
    assert not same_place("Acme", "VPN-01", "Acme", "VPN-02")
    assert not same_place("", "VPN-01", "", "VPN-01")
    assert not same_place("Acme", "", "Acme", "")


def test_same_place_in_any_case_of_every_letter() -> None:
    # As sla.clients and the report match a client: Unicode's caseless match.
    assert same_place("Straße AG", "KASSE-1", "STRASSE AG", "kasse-1")
    assert same_place("Ärzte Nord", "PC-Ä1", "ÄRZTE NORD", "pc-ä1")


def test_same_error_by_text_or_by_code() -> None:
    # What a new ticket is matched to an open P1 by (the diagnosis domain's rule).
    assert same_error("Error 809:  The VPN failed", "error 809: the vpn failed ")
    assert same_error("Access denied (0x80070005)", "0X80070005 when saving")
    assert same_error("AADSTS50076: MFA required", "sign-in says aadsts50076")
    assert same_error("Event ID 4625 on DC1", "EventID: 4625")
    assert same_error("HTTP 503 from the portal", "got http/1.1 503")
    assert not same_error("Error 809", "Error 0x80070005")
    assert not same_error("", "")


def test_ticket_numbers_in_a_message() -> None:
    assert ticket_numbers("Screenshot for hd-7, also HD-007 and HD-12.", "HD") == ["HD-7", "HD-12"]
    assert ticket_numbers("XHD-7 and HD-x", "HD") == []
    assert ticket_numbers("IT-3 broke", "it") == ["IT-3"]


def test_a_link_button_renders_on_both_platforms() -> None:
    card = Card(
        title="HD-1",
        buttons=[Button(ActionId.CLOSE, "Close", {"ticket": "HD-1"})],
        links=[LinkButton("Remote session", "https://rc.example.com/join?asset=PC%207")],
    )
    slack = render_message(card)
    [actions] = [b for b in slack["blocks"] if b["type"] == "actions"]
    link = actions["elements"][-1]
    assert link["url"] == "https://rc.example.com/join?asset=PC%207"
    assert link["text"]["text"] == "Remote session" and "value" not in link
    # Its action id is none of the bot's: Slack's notice of the click is only acknowledged.
    assert link["action_id"] not in {a.value for a in ActionId}
    teams = render_card(card)
    validate_adaptive_card(teams)
    assert teams["actions"][-1] == {
        "type": "Action.OpenUrl",
        "title": "Remote session",
        "url": "https://rc.example.com/join?asset=PC%207",
    }
    assert Card.from_dict(card.to_dict()) == card
    with pytest.raises(ValueError):
        render_message(Card(title="x", links=[LinkButton("Remote session", "https://x/" * 400)]))


def test_config_of_the_nudge_and_the_remote_tool() -> None:
    config = HelpdeskConfig.model_validate(
        {
            "escalation": {"nudge_after": "45m"},
            "remote": {"url_template": "https://rc.example.com/join?asset={asset}"},
        }
    )
    assert config.escalation.nudge_after == timedelta(minutes=45)
    assert HelpdeskConfig().escalation.nudge_after == timedelta(minutes=30)
    assert HelpdeskConfig().remote.url_template is None
    for bad, why in (
        ("ftp://rc.example.com/{asset}", "not an http(s) URL"),
        ("https://rc.example.com/join", "has no {asset}"),
    ):
        with pytest.raises(ValidationError, match=re.escape(why)):
            HelpdeskConfig.model_validate({"remote": {"url_template": bad}})
    with pytest.raises(ValidationError):
        HelpdeskConfig.model_validate({"escalation": {"nudge_after": "soon"}})
