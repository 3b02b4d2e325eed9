"""Adaptive Card rendering of neutral cards: schema validity, escaping, actions, size."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cards.model import ActionId, Button, Card, Facts, Form, Mention, Rich, Text, TextInput, Typed
from cards.slack import render_modal
from cards.teams import (
    MAX_PAYLOAD_BYTES,
    escape_markdown,
    invoke_json,
    invoke_size,
    markdown,
    render_card,
    submitted_values,
)
from tests import FIXTURES
from tests.adaptive_schema import validate_adaptive_card
from tests.unit.test_cards_slack import INTAKE_LABELS, assert_golden, intake_card, ticket_card

REFERENCE_DIR = FIXTURES


def inputs(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in card["body"] if e["type"].startswith("Input.")]


# -- goldens and schema --------------------------------------------------------


def test_intake_card_golden() -> None:
    rendered = render_card(intake_card())
    validate_adaptive_card(rendered)
    assert_golden("intake_card.teams.json", rendered)


def test_ticket_card_golden() -> None:
    rendered = render_card(ticket_card())
    validate_adaptive_card(rendered)
    assert_golden("ticket_card.teams.json", rendered)


@pytest.mark.parametrize("execute", [True, False])
@pytest.mark.parametrize(
    "card",
    [
        intake_card(),
        ticket_card(),
        Card(title=""),
        Card(title="Long", body=[Text("z" * 60_000), Facts([("k", "v" * 30_000)])]),
    ],
    ids=["intake", "ticket", "empty", "huge"],
)
def test_every_rendered_card_validates(card: Card, execute: bool) -> None:
    validate_adaptive_card(render_card(card, execute=execute))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c["body"].append({"type": "Input.Bogus", "id": "x"}), "body/"),
        (lambda c: c["actions"].append({"type": "Action.Http", "title": "x"}), "actions/"),
        (lambda c: c.update(unexpected=True), "Additional properties"),
        (lambda c: c.update(type="NotACard"), "AdaptiveCard"),
        (lambda c: c.pop("version"), "version"),
        (lambda c: c.update(version="2.0"), "version"),
    ],
    ids=["bogus-input", "bogus-action", "extra-prop", "wrong-type", "no-version", "bad-version"],
)
def test_broken_card_fails_validation(mutate: Any, message: str) -> None:
    rendered = render_card(intake_card())
    mutate(rendered)
    with pytest.raises(AssertionError, match=message):
        validate_adaptive_card(rendered)


def test_choice_without_value_reports_path() -> None:
    rendered = render_card(intake_card())
    choice_set = next(e for e in rendered["body"] if e["type"] == "Input.ChoiceSet")
    del choice_set["choices"][0]["value"]
    with pytest.raises(AssertionError, match="'value' is a required property"):
        validate_adaptive_card(rendered)


# -- content ---------------------------------------------------------------------


def test_inputs_carry_the_same_labels_as_slack() -> None:
    rendered = render_card(intake_card())
    assert [i["label"] for i in inputs(rendered)] == INTAKE_LABELS
    slack_labels = [
        b["label"]["text"] for b in render_modal(intake_card())["blocks"] if b["type"] == "input"
    ]
    assert slack_labels == INTAKE_LABELS
    requester = inputs(rendered)[0]
    assert requester["type"] == "Input.Text"
    assert requester["style"] == "Email"
    assert requester["placeholder"] == "name@example.com"
    assert requester["isRequired"] is True
    assert requester["errorMessage"]
    by_id = {i["id"]: i for i in inputs(rendered)}
    assert by_id["users_affected"] == {
        "type": "Input.Number",
        "id": "users_affected",
        "label": "Users affected",
        "isRequired": True,
        "min": 1,
        "value": 1,
        "errorMessage": "Users affected is required.",
    }
    assert by_id["priority"]["style"] == "compact"
    assert by_id["priority"]["value"] == "P3"
    assert by_id["priority"]["choices"][0] == {"title": "P1", "value": "P1"}
    assert by_id["error_text"]["isMultiline"] is True
    assert by_id["summary"]["maxLength"] == 150
    assert "errorMessage" not in by_id["asset"]


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        # Links, images, emphasis, code, HTML: escaped wherever they are.
        ("[x](https://evil)", r"\[x\](https://evil)"),
        ("![img](https://evil/i.png)", r"!\[img\](https://evil/i.png)"),
        ("**bold** and *it*", r"\*\*bold\*\* and \*it\*"),
        ("_it_ but ERROR_ACCESS_DENIED", r"\_it\_ but ERROR_ACCESS_DENIED"),
        ("~~struck~~ ~5 min", r"\~\~struck\~\~ ~5 min"),
        ("`code`", r"\`code\`"),
        ("<b>hi</b> <https://evil>", r"\<b>hi\</b> \<https://evil>"),
        ("AT&T &amp; &#60;", r"AT&T \&amp; \&#60;"),
        (r"C:\Users\ana", r"C:\Users\ana"),
        (r"a \*not emphasis\*", r"a \\\*not emphasis\\\*"),
        # Line starts: lists, headings, quotes, rules; not the same characters elsewhere.
        ("- item", r"\- item"),
        ("+ item", r"\+ item"),
        ("1. first", r"1\. first"),
        ("2) second", r"2\) second"),
        ("# heading", r"\# heading"),
        ("> quote", r"\> quote"),
        ("---", r"\---"),
        ("line\n===", "line\n\\==="),
        ("a\n- b\n3. c", "a\n\\- b\n3\\. c"),
        ("#hashtag, 1.5, -5 C, a - b, x > y", "#hashtag, 1.5, -5 C, a - b, x > y"),
        ("Outlook keeps crashing (again) - v2.0!", "Outlook keeps crashing (again) - v2.0!"),
    ],
)
def test_only_what_would_start_markup_is_escaped(typed: str, shown: str) -> None:
    assert escape_markdown(typed) == shown


def test_line_start_markers_count_only_at_a_line_start() -> None:
    assert escape_markdown("- not a list here", line_start=False) == "- not a list here"
    assert escape_markdown("x\n- but here", line_start=False) == "x\n\\- but here"
    assert markdown(Rich("HD-1 (P2): ", Typed("- dash"))) == "HD-1 (P2): - dash"
    assert markdown(Rich("Note:\n", Typed("- dash"))) == "Note:\n\\- dash"


def test_the_bots_words_are_never_escaped_and_typed_text_shows_literally() -> None:
    card = Card(
        title=Rich("HD-1 (P2): ", Typed("Outlook keeps crashing")),
        body=[
            Text(Rich("Try `ticket verify HD-1` for ", Typed("**bold** [x](https://evil)"))),
            Facts([("Requester", Mention("Ana Lopez", "ana@example.com", id="29:1ana"))]),
            Facts([("Error", Typed("[k](u) *v*")), ("Users affected", "12")]),
            TextInput("summary", "Summary [required]", value="**as typed**", placeholder="a_b"),
        ],
        buttons=[Button(ActionId.CLOSE, "Close (for good)", {"ticket": "HD-1"})],
        fallback="HD-1 (P2) Outlook keeps crashing - [x](https://evil)",
    )
    rendered = render_card(card)
    validate_adaptive_card(rendered)
    title, text, people, facts, field = rendered["body"]
    assert title["text"] == "HD-1 (P2): Outlook keeps crashing"
    assert text["text"] == r"Try `ticket verify HD-1` for \*\*bold\*\* \[x\](https://evil)"
    assert people["facts"] == [{"title": "Requester", "value": "Ana Lopez (ana@example.com)"}]
    assert facts["facts"] == [
        {"title": "Error", "value": r"\[k\](u) \*v\*"},
        {"title": "Users affected", "value": "12"},
    ]
    # Plain-text fields carry the text as given.
    assert (field["label"], field["value"], field["placeholder"]) == (
        "Summary [required]",
        "**as typed**",
        "a_b",
    )
    assert rendered["actions"][0]["title"] == "Close (for good)"
    assert rendered["fallbackText"] == "HD-1 (P2) Outlook keeps crashing - [x](https://evil)"


def test_a_card_queued_by_an_earlier_release_shows_its_text_literally() -> None:
    """Before the model said whose words a string was, every card string was literal."""
    old = {
        "title": "HD-9 (P3): [x](https://evil)",
        "body": [
            {"kind": "text", "text": "**bold**", "heading": False, "muted": False},
            {"kind": "facts", "items": [["Requester", "Ana Lopez (29:1ana)"]]},
        ],
        "buttons": [],
        "form": None,
        "fallback": "HD-9",
    }
    rendered = render_card(Card.from_dict(old))
    assert [b.get("text") for b in rendered["body"][:2]] == [
        r"HD-9 (P3): \[x\](https://evil)",
        r"\*\*bold\*\*",
    ]


def test_rich_text_survives_the_outbox_round_trip() -> None:
    card = ticket_card()
    again = Card.from_dict(json.loads(json.dumps(card.to_dict())))
    assert again == card
    assert render_card(again) == render_card(card)


def test_text_styles() -> None:
    body = render_card(Card(title="", body=[Text("h", heading=True), Text("m", muted=True)]))
    assert body["body"] == [
        {"type": "TextBlock", "text": "h", "wrap": True, "size": "Large", "weight": "Bolder"},
        {"type": "TextBlock", "text": "m", "wrap": True, "isSubtle": True, "size": "Small"},
    ]
    assert "fallbackText" not in body


# -- actions -----------------------------------------------------------------------


def test_form_submit_is_execute_with_submit_fallback() -> None:
    actions = render_card(intake_card())["actions"]
    assert len(actions) == 1
    data = {"action": "ticket.create", "channel": "C123", "src": "slash"}
    assert actions[0]["type"] == "Action.Execute"
    assert actions[0]["verb"] == "ticket.create"
    assert actions[0]["title"] == "Create ticket"
    assert actions[0]["data"] == data
    assert actions[0]["fallback"]["type"] == "Action.Submit"
    assert actions[0]["fallback"]["data"] == data
    plain = render_card(intake_card(), execute=False)["actions"]
    assert plain == [actions[0]["fallback"]]


def test_buttons_keep_titles_and_styles() -> None:
    actions = render_card(ticket_card())["actions"]
    assert [a["title"] for a in actions] == ["Verify identity", "Escalate", "Close"]
    assert [a["verb"] for a in actions] == ["ticket.verify", "ticket.escalate", "ticket.close"]
    assert [a.get("style") for a in actions] == ["positive", None, "destructive"]
    assert actions[2]["data"] == {"action": "ticket.close", "ticket": "HD-42"}
    assert actions[2]["fallback"] == {
        "type": "Action.Submit",
        "title": "Close",
        "data": {"action": "ticket.close", "ticket": "HD-42"},
        "style": "destructive",
    }
    plain = render_card(ticket_card(), execute=False)["actions"]
    assert [a["type"] for a in plain] == ["Action.Submit"] * 3


def test_button_value_cannot_override_action() -> None:
    card = Card(title="", buttons=[Button(ActionId.CLOSE, "Close", {"action": "identity.approve"})])
    assert render_card(card)["actions"][0]["data"] == {"action": "ticket.close"}


def test_input_id_action_is_reserved() -> None:
    card = Card(title="", body=[TextInput("action", "Action")], form=Form(ActionId.CLOSE, "Go"))
    with pytest.raises(ValueError, match="reserved"):
        render_card(card)


def test_very_long_text_is_truncated_below_the_size_limit() -> None:
    card = Card(
        title="Big",
        body=[Text("*" * 50_000), Facts([("Error", "é" * 50_000)]), Text("short")],
        fallback="f" * 50_000,
    )
    rendered = render_card(card)
    size = 2 * len(json.dumps(rendered))  # UTF-16 bytes of the JSON as botbuilder sends it
    assert size <= MAX_PAYLOAD_BYTES
    assert size > MAX_PAYLOAD_BYTES * 0.8  # cut no more than needed
    assert rendered["body"][1]["text"].endswith("…")
    assert rendered["body"][2]["facts"][0]["value"].endswith("…")
    assert rendered["body"][3]["text"] == "short"
    assert rendered["body"][2]["facts"][0]["title"] == "Error"  # the bot's words are not cut
    validate_adaptive_card(rendered)


# -- submissions -----------------------------------------------------------------


def test_submitted_values_from_action_submit() -> None:
    activity = json.loads((REFERENCE_DIR / "teams/message_action_submit.json").read_text("utf-8"))
    assert submitted_values(activity["value"]) == (
        "ticket.create",
        {
            "title": "VPN down in Berlin office",
            "description": "Nobody on floor 3 can connect since 09:10",
            "priority": "p2",
        },
    )


def test_submitted_values_from_action_execute() -> None:
    invoke = json.loads(
        (REFERENCE_DIR / "teams/invoke_adaptive_card_action.json").read_text("utf-8")
    )
    action, data = submitted_values(invoke["value"]["action"]["data"])
    assert action == "ticket.create"
    assert action == invoke["value"]["action"]["verb"]
    assert data["priority"] == "p2"
    assert set(data) == {"title", "description", "priority"}


def test_submitted_values_edge_cases() -> None:
    assert submitted_values({"asset": None, "users_affected": 3}) == (
        None,
        {"asset": "", "users_affected": "3"},
    )
    assert submitted_values(None) == (None, {})
    assert submitted_values("text") == (None, {})


def test_an_invoke_response_carries_its_characters_as_themselves() -> None:
    body = {"value": '无法连接 💥 "q"\n'}
    assert invoke_json(body) == '{"value": "无法连接 💥 \\"q\\"\\n"}'
    assert invoke_size(body) == len(invoke_json(body).encode("utf-16-le"))
    # A lone surrogate (typed text can hold one) cannot be sent as itself: all escaped.
    lone = {"value": "a\ud800b"}
    assert invoke_json(lone) == '{"value": "a\\ud800b"}'
    assert invoke_json(lone).encode("utf-8")
