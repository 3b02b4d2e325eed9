"""Is this text a real answer? The shared placeholder rules, the escalation facts built on them,
and the closure note using the same verdict."""

from __future__ import annotations

import pytest

from cards.model import plain
from handlers.answers import MIN_WORDS, Problem, is_placeholder, problem
from handlers.closure import note_problem
from handlers.escalation.rules import FACTS, fact_problems

# SPEC's placeholders and pleas, in any case and with any punctuation, and close variants.
PLACEHOLDERS = [
    "please assist",
    "Please assist",
    "PLEASE ASSIST!!!",
    "please, assist.",
    "  please   assist  ",
    "help",
    "Help!",
    "HELP?",
    "n/a",
    "N/A",
    "n.a.",
    "N / A",
    "na",
    "-",
    "--",
    " - ",
    "tbd",
    "TBD.",
    "see ticket",
    "See ticket!",
    "see the ticket",
    "asap",
    "ASAP!!!",
    "please help asap",
    "Help please, urgent!",
    "?",
    "...",
]


def full_width(text: str) -> str:
    """`text` as an East Asian input method types it: full-width forms, the space kept."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


# The same placeholders typed in look-alike characters: full-width forms (an East Asian input
# method), mathematical letters pasted from a styled text, an invisible zero-width character
# inside the word. They read as the plea itself and give the queue no more fact.
LOOK_ALIKES = [
    *(
        full_width(plea)
        for plea in ("TBD", "N/A", "n/a", "please assist", "help!", "ASAP", "see ticket")
    ),
    "\U0001d413\U0001d401\U0001d403",  # TBD in mathematical bold
    "T\u200bBD",
    "please as\u200dsist",
    "N\u2060/A",
]
EMPTY = ["", " ", "\n\t "]
REAL = [
    "Error 809",
    "0x80070005",
    "404",
    "Help desk portal returns HTTP 500",
    "See error 809 after connecting from home",
    "The VPN client says the remote connection was denied",
    "12 people in Berlin cannot work remotely",
]


@pytest.mark.parametrize("text", PLACEHOLDERS)
def test_placeholders_and_pleas_are_not_answers(text: str) -> None:
    assert is_placeholder(text)
    assert problem(text) is Problem.PLACEHOLDER
    assert problem(text, min_words=MIN_WORDS) is Problem.PLACEHOLDER


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_placeholders_in_look_alike_characters_are_not_answers(text: str) -> None:
    assert is_placeholder(text)
    assert problem(text) is Problem.PLACEHOLDER


def test_look_alike_characters_still_count_as_words() -> None:
    assert problem(full_width("Reinstalled the client"), min_words=MIN_WORDS) is None
    assert problem("Re\u200binstalled client", min_words=MIN_WORDS) is Problem.TOO_SHORT


@pytest.mark.parametrize("text", ["1.\n2.\n3.", "1) 2) 3)", "1 - 2 - 3 - 4", "#1 #2 #3"])
def test_a_numbered_list_left_empty_is_a_placeholder_where_words_are_asked(text: str) -> None:
    """The skeleton of a list (a template left unfilled) names no step: where a fact needs
    words it is a placeholder; a number alone still answers where one word is enough."""
    assert problem(text, min_words=MIN_WORDS) is Problem.PLACEHOLDER
    assert problem("809") is None and problem("12") is None
    assert problem("Tried 3 times", min_words=MIN_WORDS) is None
    assert problem("1. Open Outlook 2. Send", min_words=MIN_WORDS) is None


@pytest.mark.parametrize("text", EMPTY)
def test_empty_text_is_empty_not_a_placeholder(text: str) -> None:
    assert not is_placeholder(text)
    assert problem(text) is Problem.EMPTY


@pytest.mark.parametrize("text", REAL)
def test_real_answers_pass(text: str) -> None:
    assert not is_placeholder(text)
    assert problem(text) is None


@pytest.mark.parametrize(
    ("text", "min_words", "expected"),
    [
        ("Reinstalled client", 3, Problem.TOO_SHORT),
        ("Rebooted", 3, Problem.TOO_SHORT),
        ("Reinstalled the client", 3, None),
        ("Rebooted", 1, None),
        ("re-installed VPN-client twice", 3, None),
        # Chinese and Japanese: no spaces between words, counted in their own words.
        ("重启电脑", 3, Problem.TOO_SHORT),  # restart (the) computer: two words
        ("再起動", 3, Problem.TOO_SHORT),  # restart
        ("リインストールした", 3, Problem.TOO_SHORT),  # reinstalled (a loanword, a verb ending)
        ("ｻｲｷﾄﾞｳ", 3, Problem.TOO_SHORT),  # half-width Katakana: one word
        ("重新安装了VPN客户端，还是同样的错误", 3, None),  # noqa: RUF001 (CJK comma)
        ("再起動しても同じエラーが出ます", 3, None),
        ("自宅からVPNに接続してOutlookを開く", 3, None),
    ],
)
def test_word_counts(text: str, min_words: int, expected: Problem | None) -> None:
    assert problem(text, min_words=min_words) is expected


# -- escalation facts --------------------------------------------------------------------------

COMPLETE = {
    "repro_steps": "Connect to VPN from home, open Outlook",
    "error_text": "Error 809",
    "already_tried": "Reinstalled the VPN client",
    "asset_link": "https://rmm.example.com/devices/LAPTOP-0192",
    "user_impact": "Cannot work remotely",
}
IDS = [fact.id for fact in FACTS]


def test_a_complete_escalation_has_no_problem() -> None:
    assert fact_problems(COMPLETE, asset="LAPTOP-0192", ticket_prefix="HD") == {}
    assert fact_problems(COMPLETE | {"asset_link": ""}, asset="", ticket_prefix="HD") == {}


@pytest.mark.parametrize("plea", ["please assist", "Please assist!", "help", "-", "see ticket"])
def test_a_bare_handoff_is_refused_field_by_field(plea: str) -> None:
    errors = fact_problems(dict.fromkeys(IDS, plea), asset="LAPTOP-0192", ticket_prefix="HD")
    assert list(errors) == IDS
    for reason in errors.values():
        assert "placeholder" in plain(reason)
    # Without an asset on the ticket, Asset link is optional and taken as typed.
    assert list(fact_problems(dict.fromkeys(IDS, plea), asset="", ticket_prefix="HD")) == [
        i for i in IDS if i != "asset_link"
    ]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("repro_steps", "", "Reproduction steps is required to escalate"),
        ("repro_steps", "Open Outlook", "at least 3 words"),
        ("repro_steps", "tbd", "placeholder"),
        ("error_text", "", "Error text is required to escalate"),
        ("error_text", "N/A", "placeholder"),
        ("already_tried", "Rebooted", "at least 3 words"),
        ("already_tried", "asap", "placeholder"),
        ("asset_link", "", "Asset link is required to escalate"),
        ("asset_link", "n/a", "placeholder"),
        ("user_impact", "  ", "User impact is required to escalate"),
        ("user_impact", "see the ticket", "placeholder"),
    ],
)
def test_each_fact_says_why(field: str, value: str, reason: str) -> None:
    errors = fact_problems(COMPLETE | {field: value}, asset="LAPTOP-0192", ticket_prefix="HD")
    assert list(errors) == [field]
    assert reason in plain(errors[field])


@pytest.mark.parametrize(
    ("field", "value"), [("error_text", "809"), ("user_impact", "Everyone"), ("asset_link", "x")]
)
def test_one_word_is_enough_where_a_word_is_a_fact(field: str, value: str) -> None:
    assert fact_problems(COMPLETE | {field: value}, asset="LAPTOP-0192", ticket_prefix="HD") == {}


# -- the closure note judges the same way -------------------------------------------------------


@pytest.mark.parametrize("note", ["tbd", "N/A", "please assist", "-", "see ticket"])
def test_a_placeholder_resolution_note_is_named_as_one(note: str) -> None:
    assert "placeholder" in plain(note_problem(note) or "")
