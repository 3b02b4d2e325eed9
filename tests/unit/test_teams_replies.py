"""Teams text messages: every line shows on its own, as written (issue 16.6)."""

from __future__ import annotations

from bot.teams.replies import text_activity


def test_each_line_is_a_paragraph_and_typed_markup_shows_literally() -> None:
    activity = text_activity("Your open tickets (2):\nHD-1 (P2) [x](https://evil) **now**\nHD-2")
    assert activity.text_format == "markdown"
    assert activity.text.split("\n\n") == [
        "Your open tickets (2):",
        r"HD-1 (P2) \[x\](https://evil) \*\*now\*\*",
        "HD-2",
    ]


def test_indentation_and_list_markers_do_not_become_code_or_lists() -> None:
    activity = text_activity("Steps:\n    indented four\n- a dash\n1. one")
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
