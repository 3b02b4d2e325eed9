"""Block Kit rendering of neutral cards: escaping, limits, modals, view state."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from cards.model import (
    ActionId,
    Button,
    Card,
    Facts,
    Form,
    Link,
    Mention,
    NumberInput,
    Rich,
    Select,
    Text,
    TextInput,
    Typed,
    UserPicker,
)
from cards.slack import (
    MESSAGE_BLOCKS_MAX,
    MESSAGE_TEXT_BUDGET,
    action_from_id,
    block_text_size,
    could_format,
    escape_mrkdwn,
    private_metadata,
    render_message,
    render_modal,
    split_escaped,
    view_values,
)
from tests import FIXTURES
from tests.harness import INTAKE_LABELS

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"
REFERENCE_DIR = FIXTURES
NASTY = "<!channel> <@U123> <https://evil|x> & co"


def intake_card() -> Card:
    return Card(
        title="New help-desk ticket",
        body=[
            Text("Describe the problem exactly as the user reported it.", muted=True),
            UserPicker("requester", "Requester", required=True),
            TextInput("summary", "Summary", required=True, value="VPN down", max_length=150),
            TextInput("error_text", "Exact error text", multiline=True, max_length=3000),
            TextInput("doing", "What were they doing", multiline=True),
            Select(
                "reproducible",
                "Reproducible",
                [("yes", "Yes"), ("no", "No"), ("intermittent", "Intermittent")],
                required=True,
            ),
            NumberInput("users_affected", "Users affected", required=True, value=1, min=1),
            Select(
                "priority",
                "Priority",
                [(p, p) for p in ("P1", "P2", "P3", "P4")],
                required=True,
                value="P3",
            ),
            TextInput("category", "Category", required=True, placeholder="e.g. network"),
            TextInput("asset", "Asset"),
            TextInput("client", "Client", required=True),
        ],
        form=Form(ActionId.TICKET_CREATE, "Create ticket", {"channel": "C123", "src": "slash"}),
        fallback="New help-desk ticket",
    )


def ticket_card() -> Card:
    """A ticket card as the core builds one: the bot's words, typed text, people."""
    ref = {"ticket": "HD-42"}
    typed = Typed("VPN down <!channel> & Wi-Fi")
    return Card(
        title=Rich("HD-42 (P2): ", typed),
        body=[
            Facts(
                [
                    ("Ticket", "HD-42"),
                    ("Priority", "P2"),
                    ("Requester", Mention("Ana Lopez", "ana@example.com", "U0ANA", "U0ANA")),
                    ("Technician", Mention("Tom Tech", id="29:1tech")),
                    ("Summary", typed),
                    ("Exact error text", Typed("Error 809: <https://evil|reset here> **now**")),
                    ("Respond by", "2026-03-02 10:30 UTC"),
                    ("Resolve by", "2026-03-02 18:00 UTC"),
                ]
            ),
            Text("The matrix calls this P1: more than one user affected.", muted=True),
        ],
        buttons=[
            Button(ActionId.VERIFY, "Verify identity", ref, style="primary"),
            Button(ActionId.ESCALATE, "Escalate", ref),
            Button(ActionId.CLOSE, "Close", ref, style="danger"),
        ],
        fallback="HD-42 (P2): VPN down <!channel> & Wi-Fi",
    )


def assert_golden(name: str, rendered: dict[str, Any]) -> None:
    path = GOLDEN_DIR / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rendered, indent=2, ensure_ascii=False) + "\n", "utf-8")
    assert path.exists(), f"golden {name} missing; run with UPDATE_GOLDEN=1 to create it"
    expected = json.loads(path.read_text("utf-8"))
    assert rendered == expected, f"{name} differs from golden; UPDATE_GOLDEN=1 to accept"


def mrkdwn_texts(blocks: list[dict[str, Any]]) -> list[str]:
    texts = []
    for block in blocks:
        objs = [block.get("text"), *block.get("elements", [])]
        texts.extend(o["text"] for o in objs if o and o.get("type") == "mrkdwn")
    return texts


# -- goldens ---------------------------------------------------------------


def test_intake_modal_golden() -> None:
    assert_golden("intake_modal.slack.json", render_modal(intake_card()))


def test_ticket_card_golden() -> None:
    assert_golden("ticket_card.slack.json", render_message(ticket_card()))


# -- escaping ----------------------------------------------------------------


def test_escape_mrkdwn_only_three_characters() -> None:
    assert escape_mrkdwn("<!channel> & <@U123>") == "&lt;!channel&gt; &amp; &lt;@U123&gt;"
    assert escape_mrkdwn("*bold* _x_ ~y~ `z` \"q\" 'a'") == "*bold* _x_ ~y~ `z` \"q\" 'a'"


def test_user_text_cannot_ping_or_link() -> None:
    card = Card(
        title="t",
        body=[Text(NASTY), Facts([(NASTY, NASTY)]), Text(NASTY, muted=True)],
        fallback=NASTY,
    )
    message = render_message(card)
    texts = mrkdwn_texts(message["blocks"])
    assert len(texts) == 3
    escaped = "&lt;!channel&gt; &lt;@U123&gt; &lt;https://evil|x&gt; &amp; co"
    assert texts[0] == escaped
    assert texts[1] == f"*{escaped}:* {escaped}"
    assert texts[2] == escaped
    assert message["text"] == escaped
    for text in [*texts, message["text"]]:
        assert "<" not in text and ">" not in text
    assert "&amp;amp;" not in json.dumps(message)
    assert "&amp;lt;" not in json.dumps(message)


def test_people_are_mentions_the_bot_makes_and_typed_text_stays_escaped() -> None:
    ana = Mention("Ana Lopez", "ana@example.com", "U0ANA", "U0ANA")
    teams_only = Mention("Tom Tech", "tom@example.com", id="29:1tech")
    nobody_known = Mention(id="U0XYZ", slack_id="U0XYZ")
    card = Card(
        title=Rich("Ticket for ", ana),
        body=[
            Facts([("Requester", ana), ("Technician", teams_only), ("Caller", nobody_known)]),
            Text(Rich("Write to ", ana, " about ", Typed("<@U0BOSS> & <!here>"))),
        ],
    )
    message = render_message(card)
    assert message["blocks"][0]["text"]["text"] == "Ticket for Ana Lopez (ana@example.com)"
    assert mrkdwn_texts(message["blocks"]) == [
        "*Requester:* <@U0ANA> (ana@example.com)\n"
        "*Technician:* Tom Tech (tom@example.com)\n"
        "*Caller:* <@U0XYZ>",
        "Write to <@U0ANA> (ana@example.com) about &lt;@U0BOSS&gt; &amp; &lt;!here&gt;",
    ]


def test_a_long_text_is_never_split_inside_a_mention() -> None:
    ana = Mention("Ana Lopez", slack_id="U0ANAAAAAA")
    text = Rich("x" * 2995, ana, " and more")
    blocks = render_message(Card(title="", body=[Text(text)]))["blocks"]
    chunks = [b["text"]["text"] for b in blocks]
    assert chunks == ["x" * 2995, "<@U0ANAAAAAA> and more"]


def test_already_escaped_looking_text_is_escaped_once() -> None:
    message = render_message(Card(title="t", body=[Text("a &amp; b &lt; c")]))
    assert mrkdwn_texts(message["blocks"]) == ["a &amp;amp; b &amp;lt; c"]


def test_heading_is_plain_text_header_and_long_heading_becomes_bold_section() -> None:
    blocks = render_message(Card(title=NASTY))["blocks"]
    assert blocks == [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": escape_mrkdwn(NASTY), "emoji": True},
        }
    ]
    long_title = "<x> " + "h" * 200
    blocks = render_message(Card(title="", body=[Text(long_title, heading=True)]))["blocks"]
    assert [b["type"] for b in blocks] == ["section"]
    assert blocks[0]["text"]["text"] == f"*&lt;x&gt; {'h' * 200}*"


def literal(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "plain_text", "text": text, "emoji": False}}


def bold_lines(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text, "verbatim": True}}


def test_what_mrkdwn_could_format_in_typed_text() -> None:
    """Backticks anywhere; `*`, `_`, `~` only where a word starts or ends (Slack leaves
    `first_last` and `2*3` alone)."""
    for text in ("*urgent*", "_tmp_", "~/.config", "`code`", "*.pst", "x*", "a_", "(~x~)"):
        assert could_format(text), text
    for text in ("first_last@example.com", "2*3", "a~b", "plain words & <tags>", ""):
        assert not could_format(text), text


def test_a_fact_line_whose_typed_part_mrkdwn_would_format_is_plain_text() -> None:
    """A file named `*x*` showed as `**x*:*`, an asset `~/x~` struck through: those lines are
    plain_text (in the card's order), the others keep their bold labels."""
    card = Card(
        title="",
        body=[
            Facts(
                [
                    ("Ticket", "HD-1"),
                    ("Asset", Typed("~/x~ <!channel>")),
                    (Typed("*x*"), Rich(Typed("https://f.example/x"), " - ", "12:00 UTC")),
                    ("Requester", Mention("Ana", "first_last@example.com", "U0ANA")),
                    ("Client", Rich(Typed("Acme & Co"), " (gold)")),
                ]
            )
        ],
    )
    assert render_message(card)["blocks"] == [
        bold_lines("*Ticket:* HD-1"),
        literal("Asset: ~/x~ &lt;!channel&gt;\n*x*: https://f.example/x - 12:00 UTC"),
        bold_lines(
            "*Requester:* <@U0ANA> (first_last@example.com)\n*Client:* Acme &amp; Co (gold)"
        ),
    ]


def test_paragraphs_quoting_typed_markup_are_plain_text_and_others_stay_mrkdwn() -> None:
    long_title = Rich("HD-1 (P2): ", Typed("*urgent* " + "p" * 200))
    card = Card(
        title="",
        body=[
            Text(Rich("Added to HD-1: ", Typed("_tmp_.log"), " (see `ticket show HD-1`).")),
            Text(Rich("Added to HD-1: ", Typed("report.pdf"), " (see `ticket show HD-1`).")),
            Text(Rich("Closed by ", Typed("`rm -rf`")), muted=True),
            Text(Rich("Closed by ", Typed("Ana")), muted=True),
            Text(long_title, heading=True),
            Text(Typed("Error: *.pst :fire:")),
        ],
    )
    blocks = render_message(card)["blocks"]
    assert blocks == [
        literal("Added to HD-1: _tmp_.log (see `/ticket show HD-1`)."),
        bold_lines("Added to HD-1: report.pdf (see `/ticket show HD-1`)."),
        {
            "type": "context",
            "elements": [{"type": "plain_text", "text": "Closed by `rm -rf`", "emoji": False}],
        },
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": "Closed by Ana", "verbatim": True}],
        },
        literal(long_title.plain()),
        literal("Error: *.pst :fire:"),
    ]


def test_literal_lines_keep_the_text_budget_and_block_limit() -> None:
    """Every fact line needing plain_text, alternating with bold ones (one block per line):
    within the total-text budget and 50 blocks, the buttons kept."""
    items: list[tuple[Any, Any]] = []
    for i in range(60):
        items.append((f"Bot {i}", "fine"))
        items.append((Typed(f"*file{i}*"), Typed("_" + "x" * 900 + "_")))
    buttons = [Button(ActionId.CLOSE, "Close", {"ticket": "HD-1"})]
    message = render_message(Card(title="t", body=[Facts(items)], buttons=buttons))
    blocks = message["blocks"]
    assert len(blocks) <= MESSAGE_BLOCKS_MAX
    assert block_text_size(blocks) <= MESSAGE_TEXT_BUDGET
    assert blocks[-1]["type"] == "actions"
    texts = mrkdwn_texts(blocks)
    assert not any("*file" in t or "_x" in t for t in texts)


# -- size limits -------------------------------------------------------------


def test_long_text_is_split_into_3000_char_sections() -> None:
    text = "x" * 7000
    blocks = render_message(Card(title="", body=[Text(text)]))["blocks"]
    chunks = [b["text"]["text"] for b in blocks]
    assert all(b["type"] == "section" for b in blocks)
    assert [len(c) for c in chunks] == [3000, 3000, 1000]
    assert "".join(chunks) == text


def test_split_never_cuts_an_entity_and_prefers_line_breaks() -> None:
    escaped = escape_mrkdwn("a" * 2998 + "&" * 10 + "<>" * 5)
    chunks = split_escaped(escaped)
    assert "".join(chunks) == escaped
    entity = re.compile(r"&(?!amp;|lt;|gt;)")
    for chunk in chunks:
        assert len(chunk) <= 3000
        assert not entity.search(chunk)
        assert not re.search(r"&(a|am|amp|l|lt|g|gt)?$", chunk)
    assert chunks[0] == "a" * 2998

    lines = "\n".join(["word " * 100] * 20)
    chunks = split_escaped(lines)
    assert all(len(c) <= 3000 for c in chunks)
    assert chunks[0] == "\n".join(["word " * 100] * 5)


def test_message_block_limit_truncates_with_note() -> None:
    card = Card(title="t", body=[Text(f"line {i}") for i in range(80)])
    blocks = render_message(card)["blocks"]
    assert len(blocks) == 50
    assert blocks[-1] == {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": "… (truncated)", "verbatim": True}],
    }
    assert blocks[-2]["text"]["text"] == "line 47"


def test_modal_block_limit_is_100() -> None:
    card = Card(title="t", body=[Text(f"line {i}") for i in range(150)], form=intake_card().form)
    blocks = render_modal(card)["blocks"]
    assert len(blocks) == 100
    assert blocks[-1]["elements"][0]["text"] == "… (truncated)"
    assert len(render_modal(Card(title="t", body=[Text("x")] * 99))["blocks"]) == 99


def test_buttons_limits_styles_and_duplicate_action_ids() -> None:
    buttons = [Button(ActionId.CSAT_RATE, str(i), {"rating": str(i)}) for i in range(1, 31)]
    buttons.append(Button(ActionId.CLOSE, "C" * 100, style="danger"))
    blocks = render_message(Card(title="", buttons=buttons))["blocks"]
    assert [len(b["elements"]) for b in blocks] == [25, 6]
    elements = blocks[0]["elements"] + blocks[1]["elements"]
    ids = [e["action_id"] for e in elements]
    assert ids[:3] == ["csat.rate", "csat.rate:2", "csat.rate:3"]
    assert len(set(ids)) == len(ids)
    assert {action_from_id(i) for i in ids} == {"csat.rate", "ticket.close"}
    assert elements[0]["value"] == '{"rating":"1"}'
    assert "style" not in elements[0]
    assert elements[-1]["style"] == "danger"
    assert len(elements[-1]["text"]["text"]) == 75
    assert elements[-1]["text"]["text"].endswith("…")


def test_button_value_over_2000_chars_is_refused() -> None:
    card = Card(title="", buttons=[Button(ActionId.CLOSE, "Close", {"x": "y" * 2000})])
    with pytest.raises(ValueError, match="2000"):
        render_message(card)


# -- modals ------------------------------------------------------------------


def test_intake_modal_inputs_labels_ids_and_types() -> None:
    view = render_modal(intake_card())
    assert view["type"] == "modal"
    assert view["callback_id"] == "ticket.create"
    assert view["submit"]["text"] == "Create ticket"
    assert view["close"]["text"] == "Cancel"
    inputs = [b for b in view["blocks"] if b["type"] == "input"]
    assert [b["label"]["text"] for b in inputs] == INTAKE_LABELS
    for block in inputs:
        assert block["block_id"] == block["element"]["action_id"]
    by_id = {b["block_id"]: b for b in inputs}
    assert by_id["requester"]["element"]["type"] == "users_select"
    assert by_id["summary"]["element"]["initial_value"] == "VPN down"
    assert by_id["error_text"]["element"]["multiline"] is True
    assert by_id["users_affected"]["element"] == {
        "type": "number_input",
        "action_id": "users_affected",
        "is_decimal_allowed": False,
        "min_value": "1",
        "initial_value": "1",
    }
    assert by_id["priority"]["element"]["initial_option"]["value"] == "P3"
    assert "initial_option" not in by_id["reproducible"]["element"]
    assert by_id["asset"]["optional"] is True
    assert by_id["summary"]["optional"] is False


def test_modal_initial_user_and_callback_override() -> None:
    card = Card(title="Escalate", body=[UserPicker("who", "Who", value="U777")])
    view = render_modal(card, callback_id="custom")
    assert view["callback_id"] == "custom"
    assert view["blocks"][0]["element"]["initial_user"] == "U777"
    assert view["submit"]["text"] == "Submit"


def test_modal_title_is_truncated_to_24_chars() -> None:
    title = "Escalate ticket HD-12345 to second line"
    view = render_modal(Card(title=title, form=Form(ActionId.ESCALATE_SUBMIT, "Escalate now!" * 3)))
    assert len(view["title"]["text"]) == 24
    assert view["title"]["text"] == title[:23] + "…"
    assert len(view["submit"]["text"]) == 24
    assert view["blocks"][0]["text"]["text"] == title  # the full title is still shown
    assert render_modal(Card(title="Close HD-7"))["title"]["text"] == "Close HD-7"


def test_private_metadata_round_trip_and_limit() -> None:
    context = {"ticket": "HD-7", "channel": "C1", "note": 'quotes " and ünïcode'}
    view = render_modal(Card(title="Close", form=Form(ActionId.CLOSE_SUBMIT, "Close", context)))
    assert len(view["private_metadata"]) <= 3000
    assert " " not in view["private_metadata"].replace('quotes \\" and ünïcode', "")
    assert json.loads(view["private_metadata"]) == context
    assert private_metadata(view) == context
    assert private_metadata({"private_metadata": "This is for you!"}) == {}
    too_big = Form(ActionId.CLOSE_SUBMIT, "Close", {"x": "y" * 3000})
    with pytest.raises(ValueError, match="private_metadata"):
        render_modal(Card(title="Close", form=too_big))


# -- view state ----------------------------------------------------------------


def test_view_values_on_reference_fixture() -> None:
    body = json.loads((REFERENCE_DIR / "slack/view_submission.json").read_text("utf-8"))
    assert view_values(body["view"]["state"]["values"]) == {
        "maBWU": "test",
        "priority_select": "p2",
    }


def test_view_values_element_types_and_empty_values() -> None:
    state = {
        "summary": {"summary": {"type": "plain_text_input", "value": None}},
        "users_affected": {"users_affected": {"type": "number_input", "value": "3"}},
        "priority": {"priority": {"type": "static_select", "selected_option": None}},
        "requester": {"requester": {"type": "users_select", "selected_user": "U123"}},
        "kind": {"kind": {"type": "radio_buttons", "selected_option": {"value": "incident"}}},
    }
    assert view_values(state) == {
        "summary": "",
        "users_affected": "3",
        "priority": "",
        "requester": "U123",
        "kind": "incident",
    }
    assert view_values(render_to_state(intake_card())) == {i.id: "" for i in intake_card().inputs()}


def render_to_state(card: Card) -> dict[str, Any]:
    """An empty `state.values` shaped like Slack's for the rendered modal."""
    view = render_modal(card)
    return {
        b["block_id"]: {b["element"]["action_id"]: {"type": b["element"]["type"]}}
        for b in view["blocks"]
        if b["type"] == "input"
    }


@pytest.mark.parametrize(
    "card",
    [
        intake_card(),
        ticket_card(),
        Card(title="x" * 200, body=[Text("y & " * 2000), Facts([("k", "<v>" * 1500)])]),
        Card(title="t", buttons=[Button(ActionId.CSAT_RATE, str(i)) for i in range(40)]),
        Card(
            title=Rich("HD-1: ", Typed("*urgent* " * 30)),
            body=[
                Facts([("Asset", Typed("~/x~")), (Typed("*x*"), "y" * 3500)]),
                Text(Rich("See ", Typed("`code`")), muted=True),
                Link("Fix *all*", "https://kb.example/1"),
            ],
        ),
    ],
    ids=["intake", "ticket", "long", "many-buttons", "literal"],
)
def test_rendered_blocks_pass_slack_sdk_validators(card: Card) -> None:
    """slack_sdk's model validators encode Block Kit limits (platform-facts §6)."""
    from slack_sdk.models.blocks import Block as SdkBlock
    from slack_sdk.models.views import View

    for block in render_message(card)["blocks"]:
        SdkBlock.parse(block).validate_json()  # type: ignore[union-attr]
    View(**render_modal(card)).validate_json()
