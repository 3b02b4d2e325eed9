"""Teams text messages: every line shows on its own, as written (issue 16.6)."""

from __future__ import annotations

from bot.teams.replies import card_activity, text_activity, with_mention
from cards.model import Card, Rich, Text, Typed
from cards.teams import at_mention
from tests.adaptive_schema import validate_adaptive_card


def test_each_line_is_a_paragraph_and_typed_markup_shows_literally() -> None:
    typed = Typed("[x](https://evil) **now**\n- typed dash")
    activity = text_activity(Rich("Your open tickets (2):\nHD-1 (P2) ", typed, "\nHD-2"))
    assert activity.text_format == "markdown"
    assert activity.text.split("\n\n") == [
        "Your open tickets (2):",
        r"HD-1 (P2) \[x\](https://evil) \*\*now\*\*",
        r"\- typed dash",
        "HD-2",
    ]


def test_the_bots_own_words_are_never_escaped() -> None:
    """Issue #16 part 4: the bot's words reach Teams as written (backticks are code there),
    with no backslash; a `<placeholder>` would be taken for an HTML tag and dropped."""
    said = "Try `ticket time HD-7 45m [note]` (durations like 45m) or `kb <words>`.\n- HD-1 (P2)"
    activity = text_activity(said)
    assert "\\" not in activity.text
    assert activity.text.split("\n\n") == [
        "Try `ticket time HD-7 45m [note]` (durations like 45m) or `kb \u2039words\u203a`.",
        "- HD-1 (P2)",
    ]


def test_a_link_in_the_bots_words_can_only_be_typed_text_left_unmarked() -> None:
    """The bot never writes a Markdown link: one in its words is typed text a caller forgot to
    mark as such, and it is shown literally all the same."""
    assert text_activity("Summary: [click](https://evil.example)").text == (
        r"Summary: \[click\](https://evil.example)"
    )


def test_indentation_and_list_markers_do_not_become_code_or_lists() -> None:
    activity = text_activity(Typed("Steps:\n    indented four\n- a dash\n1. one"))
    assert activity.text.split("\n\n") == [
        "Steps:",
        "\u00a0\u00a0\u00a0\u00a0indented four",
        r"\- a dash",
        r"1\. one",
    ]


def test_a_one_line_text_is_unchanged_but_for_what_would_start_markup() -> None:
    assert (
        text_activity("Logged 30m on HD-1 (total 30m).").text == "Logged 30m on HD-1 (total 30m)."
    )


def test_a_mention_leads_a_text_note_with_its_entity() -> None:
    activity = with_mention(
        text_activity("SLA warning: HD-1 (P1)\nsecond line"), user_id="29:1tom", name="Tom Tech"
    )
    assert activity.text == "<at>Tom Tech</at> SLA warning: HD-1 (P1)\n\nsecond line"
    assert activity.text_format == "markdown"
    assert activity.serialize()["entities"] == [
        {
            "type": "mention",
            "text": "<at>Tom Tech</at>",
            "mentioned": {"id": "29:1tom", "name": "Tom Tech"},
        }
    ]


def test_a_card_note_gets_the_mention_as_its_text_and_its_card_stays_schema_valid() -> None:
    """The schema forbids `msteams` on an AdaptiveCard (additionalProperties false): the
    mention goes in the message's text and entities, beside the card, which is unchanged."""
    card = Card(title="HD-1", body=[Text(Typed("Outlook *crashes*"))], fallback="HD-1")
    plain = card_activity(card).serialize()
    activity = with_mention(card_activity(card), user_id="29:1tom", name="Tom Tech").serialize()
    assert activity["attachments"] == plain["attachments"]
    validate_adaptive_card(activity["attachments"][0]["content"])
    assert "msteams" not in activity["attachments"][0]["content"]
    assert activity["text"] == "<at>Tom Tech</at>"
    assert [e["text"] for e in activity["entities"]] == ["<at>Tom Tech</at>"]


def test_a_mentions_name_is_escaped_only_where_it_would_start_markup() -> None:
    assert at_mention("Tom Tech") == "<at>Tom Tech</at>"
    assert at_mention("O'Brien-Smith & R&D snake_case a > b") == (
        "<at>O'Brien-Smith & R&D snake_case a > b</at>"
    )
    # A name cannot close the element, open a tag, hold an entity, or format the message.
    assert at_mention("x</at><at>y") == "<at>x&lt;/at>&lt;at>y</at>"
    assert at_mention("AT&amp;T &#42;") == "<at>AT&amp;amp;T &amp;#42;</at>"
    assert at_mention("*b* _i_ `c` [l](u) ~~s~~ \\*") == (
        "<at>&#42;b&#42; &#95;i&#95; &#96;c&#96; &#91;l&#93;(u) "
        "&#126;&#126;s&#126;&#126; &#92;&#42;</at>"
    )
    assert at_mention("Tom\nTech ") == "<at>Tom Tech</at>"
    assert at_mention("x" * 300) == f"<at>{'x' * 99}…</at>"
