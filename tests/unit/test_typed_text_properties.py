"""Property tests: whatever a person types is shown as typed, on both platforms (SPEC, Errors
and safety), for any text, not only the cases someone thought of.

Teams: the Markdown the renderer writes is read back with a real CommonMark parser
(markdown-it-py): the typed part makes no link, image, emphasis, code, heading, list, quote,
rule or HTML, and the text a reader sees is what was typed (whitespace-normalised, see
`tests.typed_text.shown`), alone and between the bot's own words, in cards (TextBlock, FactSet,
link titles, mentions) and in text messages. Slack: mrkdwn holds no control sequence from the
typed part (no raw `<`, `>`, every `&` an entity), decodes back to the text, and what mrkdwn
could format is sent as `plain_text` instead. Each minimal case hypothesis found is kept below
as a plain regression test.
"""

from __future__ import annotations

import html
import re
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.teams.replies import text_activity
from cards.model import Card, Facts, Link, Mention, Rich, Text, Typed
from cards.slack import MARKUP_CHARS, mrkdwn, render_message
from cards.teams import MENTION_NAME_MAX, at_mention, escape_markdown, markdown, render_card
from tests.typed_text import TYPED, commonmark_text, formatting, shown, tokens

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None)
# The bot's words typed text is shown between (none of them formats).
OWN = st.sampled_from(["", " ", "\n", "HD-1 (P2): ", "Error:\n", "Note: "])


def assert_literal_markdown(rendered: str, expected: str) -> None:
    assert formatting(rendered) == [], (expected, rendered)
    assert commonmark_text(rendered) == shown(expected), (expected, rendered)


# -- Teams ---------------------------------------------------------------------------------


@FUZZ
@given(TYPED)
def test_teams_markdown_shows_typed_text_literally(typed: str) -> None:
    assert_literal_markdown(markdown(Typed(typed)), typed)
    assert_literal_markdown(escape_markdown(typed), typed)


@FUZZ
@given(TYPED, TYPED, OWN)
def test_teams_markdown_shows_typed_text_literally_among_the_bots_words(
    first: str, second: str, own: str
) -> None:
    value = Rich("before ", Typed(first), own, Typed(second), " after")
    assert_literal_markdown(markdown(value), f"before {first}{own}{second} after")
    value = Rich(own, Typed(first))
    assert_literal_markdown(markdown(value), own + first)


@FUZZ
@given(TYPED, OWN)
def test_teams_text_messages_show_typed_text_literally(typed: str, own: str) -> None:
    """A text activity: one Markdown paragraph per line, leading blanks kept."""
    assert_literal_markdown(text_activity(Typed(typed)).text, typed)
    value = Rich("before ", Typed(typed), own, " after")
    assert_literal_markdown(text_activity(value).text, f"before {typed}{own} after")


@FUZZ
@given(TYPED, TYPED)
def test_teams_cards_show_typed_text_literally(title: str, value: str) -> None:
    card = Card(
        title=Rich("HD-1 (P2): ", Typed(title)),
        body=[
            Text(Typed(value)),
            Text(Rich("Exact error: ", Typed(value)), muted=True),
            Facts([("Summary", Typed(value)), (Typed(title), "P2")]),
        ],
    )
    rendered = render_card(card)
    texts = [block["text"] for block in rendered["body"] if block["type"] == "TextBlock"]
    facts = [
        fact for block in rendered["body"] if block["type"] == "FactSet" for fact in block["facts"]
    ]
    expected = [f"HD-1 (P2): {title}", value, f"Exact error: {value}"]
    expected = [text for text in expected if text]  # an empty paragraph is left out
    assert [commonmark_text(text) for text in texts] == [shown(text) for text in expected]
    assert [commonmark_text(f["value"]) for f in facts] == [shown(value), "P2"]
    assert commonmark_text(facts[1]["title"]) == shown(title)
    for text in [*texts, *(part for fact in facts for part in fact.values())]:
        assert formatting(text) == [], text


@FUZZ
@given(TYPED)
def test_a_link_title_from_outside_is_one_link_and_shows_literally(title: str) -> None:
    rendered = render_card(Card(title="KB", body=[Link(title, "https://kb.example/a?b=1")]))
    text = rendered["body"][1]["text"]
    found = [t.type for t in tokens(text)]
    assert found.count("link_open") == 1, (title, text)
    assert [kind for kind in formatting(text) if kind != "link_open"] == [], (title, text)
    assert commonmark_text(text) == shown(title or "https://kb.example/a?b=1")


@FUZZ
@given(TYPED)
def test_a_mention_name_cannot_close_the_mention_or_format(name: str) -> None:
    tag = at_mention(name)
    html_tags = [t.content for t in tokens(f"Hi {tag}") if t.type == "html_inline"]
    assert html_tags == ["<at>", "</at>"], (name, tag)
    assert [kind for kind in formatting(f"Hi {tag}") if kind != "html_inline"] == [], tag
    inner = html.unescape(tag[len("<at>") : -len("</at>")])
    whole = " ".join(name.split())
    assert inner == whole or (len(whole) > MENTION_NAME_MAX and inner.endswith("…")), tag


# Minimal cases hypothesis found (each failed before its fix).


def test_a_quote_marker_without_a_space_is_escaped() -> None:
    """`>x` is a block quote in CommonMark (the space after `>` is optional)."""
    assert escape_markdown(">x") == "\\>x"
    assert formatting(markdown(Typed("><!here>"))) == []
    assert formatting(text_activity(Typed("Error:\n>quoted")).text) == []


def test_typed_lines_indented_by_a_tab_or_four_spaces_are_no_code_block() -> None:
    """An indented line (a pasted stack trace) was an indented code block, in which the escapes
    show as backslashes: `\\<!here>`."""
    for typed in ("\t<!here>", "Error:\n\n    at Foo.bar() *x*", "a\n\n \t- b"):
        assert_literal_markdown(markdown(Typed(typed)), typed)
        assert_literal_markdown(text_activity(Typed(typed)).text, typed)
    assert escape_markdown("\tx") == "\u00a0" * 4 + "x"
    assert escape_markdown("  x") == "  x"  # three or fewer spaces change nothing


def test_a_carriage_return_ends_a_line_for_markdown_too() -> None:
    """`\\r` alone is a line break in CommonMark: `#\\r` was a heading, `a\\r- b` a list."""
    for typed in ("#\r", "a\r- b", "a\r\n# b\rc", "x\r> y"):
        assert_literal_markdown(markdown(Typed(typed)), typed)
    assert_literal_markdown(markdown(Rich(Typed("a\r"), Typed("# b"))), "a\r# b")


def test_typed_text_after_the_bots_blanks_at_a_line_start_is_escaped_there() -> None:
    """`Rich(" ", Typed("#"))` was ` #`, an (empty) heading: up to three blanks before a marker
    still make one, and with the typed blanks they may make an indented code block."""
    assert_literal_markdown(markdown(Rich(" ", Typed("#"))), " #")
    assert_literal_markdown(markdown(Rich("x\n  ", Typed("- y"))), "x\n  - y")
    assert_literal_markdown(markdown(Rich(" ", Typed("   <!here>"))), "    <!here>")


def test_markdown_reads_only_the_tail_to_know_a_line_starts() -> None:
    """Whether a typed span starts a line was read by splitting everything written so far,
    once per span: quadratic (4,000 spans, a long list: seconds on the event loop)."""
    spans = [x for i in range(4000) for x in (f"\n- HD-{i}: ", Typed(f"Printer {i} jams"))]
    started = time.perf_counter()
    rendered = markdown(Rich(*spans))
    assert time.perf_counter() - started < 1.0
    assert rendered.count("\n") == 4000


def test_a_link_title_with_a_blank_line_stays_one_link() -> None:
    """A blank line in a KB title ended the link's paragraph: `[title` and `](url)` showed
    as text and nothing linked."""
    rendered = render_card(Card(title="KB", body=[Link("VPN\r\rsetup", "https://kb.example/1")]))
    text = rendered["body"][1]["text"]
    assert text == "[VPN  setup](https://kb.example/1)"
    assert [t.type for t in tokens(text)].count("link_open") == 1


# -- Slack ---------------------------------------------------------------------------------


def unescape_slack(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def assert_no_control_sequence(text: str) -> None:
    """No `<`/`>` at all (the cards here mention nobody) and every `&` one of the three."""
    assert "<" not in text and ">" not in text, text[:300]
    assert not re.search(r"&(?!amp;|lt;|gt;)", text), text[:300]


def markup_at_a_word_edge(text: str) -> bool:
    """Whether mrkdwn `text` holds a backtick, or `*`, `_`, `~` not between letters/digits."""
    for index, char in enumerate(text):
        if char == "`":
            return True
        if char in MARKUP_CHARS:
            before = text[index - 1] if index else " "
            after = text[index + 1] if index + 1 < len(text) else " "
            if not (before.isalnum() and after.isalnum()):
                return True
    return False


def text_objects(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        found = [value] if value.get("type") in ("mrkdwn", "plain_text") else []
        return found + [obj for item in value.values() for obj in text_objects(item)]
    if isinstance(value, list):
        return [obj for item in value for obj in text_objects(item)]
    return []


# Long texts too: a paragraph over 3,000 characters is split into several sections.
LONG = st.tuples(TYPED, st.integers(0, 300), TYPED).map(lambda t: t[0] * t[1] + t[2])


@FUZZ
@given(TYPED)
def test_slack_mrkdwn_escapes_typed_text(typed: str) -> None:
    rendered = mrkdwn(Rich("before ", Typed(typed), " after"))
    assert_no_control_sequence(rendered)
    assert unescape_slack(rendered) == f"before {typed} after"
    # The bot's own mention is the one control sequence, and typed text cannot fake one.
    mentioned = mrkdwn(Rich(Mention("Ana", slack_id="U0ANA"), " ", Typed(typed)))
    assert mentioned.startswith("<@U0ANA> ")
    assert_no_control_sequence(mentioned.removeprefix("<@U0ANA> "))


@settings(max_examples=100, deadline=None, derandomize=True, database=None)
@given(st.one_of(TYPED, LONG), st.sampled_from(["paragraph", "muted", "heading", "facts"]))
def test_slack_messages_never_ping_link_or_format_typed_text(typed: str, where: str) -> None:
    value = Rich("before ", Typed(typed), " after")
    if where == "facts":
        card = Card(title="T", body=[Facts([("Summary", value)])])
    else:
        card = Card(
            title="T", body=[Text(value, muted=where == "muted", heading=where == "heading")]
        )
    message = render_message(card)
    assert_no_control_sequence(message["text"])
    shown_parts = []
    for obj in text_objects(message["blocks"]):
        text = obj["text"]
        assert_no_control_sequence(text)
        if obj["type"] == "mrkdwn":
            # The bot's own bold: a fact's label, a long heading's section.
            text = text.replace("*Summary:* ", "Summary: ")
            if where == "heading" and text.startswith("*") and text.endswith("*"):
                text = text[1:-1]
            assert not markup_at_a_word_edge(text), (typed[:80], obj["text"][:300])
        if text != "T":
            shown_parts.append(unescape_slack(text))
    # Split sections drop the blank they were split at: compare without whitespace. Over the
    # message's budget the typed text is cut, ending with "…".
    expected = re.sub(
        r"\s", "", ("Summary: " if where == "facts" else "") + f"before {typed} after"
    )
    got = re.sub(r"\s", "", "".join(shown_parts))
    if "…" in got and "…" not in typed:
        head, _, tail = got.partition("…")
        assert expected.startswith(head) and expected.endswith(tail), got[:300]
    else:
        assert got == expected


def test_a_long_paragraph_is_not_split_next_to_a_markup_character() -> None:
    """A paragraph of 3,000+ characters without a blank is cut at a fixed place: `a~b` (left
    alone by mrkdwn inside a word) became sections ending `a~` or starting `~b`, where it may
    strike (hypothesis: `0000~0<!here>…` repeated). The cut moves off it; where it cannot
    (`0~0~0…`), the sections on either side of it are plain text."""
    for length in (2991, 2992):  # the cut lands after, then before, the `~`
        typed = "x" * length + "a~b" + "y" * 100
        message = render_message(Card(title="T", body=[Text(Rich("before ", Typed(typed)))]))
        sections = [b["text"] for b in message["blocks"] if b["type"] == "section"]
        assert len(sections) == 2 and all(s["type"] == "mrkdwn" for s in sections)
        for section in sections:
            assert not markup_at_a_word_edge(section["text"]), section["text"][-10:]
        assert "".join(s["text"] for s in sections) == f"before {typed}"
    typed = "0~" * 1600
    for muted in (False, True):
        card = Card(title="T", body=[Text(Rich("before ", Typed(typed), " after"), muted=muted)])
        blocks = render_message(card)["blocks"][1:]
        texts = [b["text"] if b["type"] == "section" else b["elements"][0] for b in blocks]
        assert len(texts) == 2 and [t["type"] for t in texts] == ["plain_text"] * 2
        assert "".join(t["text"] for t in texts) == f"before {typed} after"
