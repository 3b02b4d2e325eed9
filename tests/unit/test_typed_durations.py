"""Time entries typed the way technicians type them (`30 min`, `1.5h`, `1 hr 30 min`)."""

from __future__ import annotations

import pytest

from handlers.closure import entry_minutes
from handlers.durations import BareNumber, leading_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("45m", 45),
        ("1h30m", 90),
        ("2h", 120),
        ("1h 30m", 90),
        ("30 min", 30),
        ("30mins", 30),
        ("30 Minutes", 30),
        ("1 hr", 60),
        ("2 hrs", 120),
        ("1.5h", 90),
        ("0.25h", 15),
        ("1.5 hours", 90),
        (".5h", 30),
        ("90 minutes", 90),
        ("2 hours", 120),
        ("1 hour 30 minutes", 90),
        ("1 hr 30 min", 90),
        ("1h 5 mins", 65),
        ("120s", 2),
        ("1 day", 1440),
        ("1:30", 90),
        ("0:45", 45),
        ("1h30", 90),
        ("1H05", 65),
        ("1,5h", 90),
        ("1,5 hours", 90),
        ("45 min.", 45),
        ("2 hrs.", 120),
        ("\u0661:\u0663\u0660", 90),  # Arabic-Indic digits
    ],
)
def test_a_time_entry_reads_what_technicians_type(text: str, minutes: int) -> None:
    assert entry_minutes(text) == minutes


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("90", "'90' has no unit: minutes or hours? Write 90m or 90h."),
        ("1.5", "'1.5' has no unit"),
        ("1h 30", "'1h 30': 30 what? Write 1h 30m for minutes."),
        ("0.33h", "whole minutes: '0.33h' is not; log 19m or 20m"),
        ("1.5m", "whole minutes: '1.5m' is not; log 1m or 2m"),
        ("0.001h", "at least 1 minute"),
        ("25 hours", "at most 24h"),
        ("1.5.5h", "not a duration"),
        ("30m 1h", "not a duration"),
        ("3w", "not a duration"),
        ("1 5m", "'1' has no unit"),
        ("-1h", "not a duration"),
        ("-1:30", "not a duration"),
        ("1:75", "not a duration"),
        ("1h60", "not a duration"),
        ("1:30:00", "not a duration"),
        ("25:00", "at most 24h"),
        ("0:00", "at least 1 minute"),
        ("h", "not a duration"),
        ("", "not a duration"),
    ],
)
def test_what_is_not_a_time_entry_is_refused_saying_why(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as refused:
        entry_minutes(text)
    assert problem in str(refused.value)


@pytest.mark.parametrize(
    ("words", "taken"),
    [
        ("30 min fixed printer", 2),
        ("30min fixed printer", 1),
        ("1 hr 30 min checked the spooler", 4),
        ("45m 3 printers replaced", 1),
        ("45m 2 days ago it broke", 1),  # units only go down: the note's days are not time
        ("45m, swapped the fuser", 1),
        ("1:30 swapped the fuser", 1),
        ("45m 10:30 call with Ana", 1),
        ("1.5h m365 licence", 1),
        ("2 hours s/n 123", 2),
        ("fixed it", 0),
    ],
)
def test_only_the_leading_words_that_form_a_duration_are_taken(words: str, taken: int) -> None:
    assert leading_duration(words.split())[1] == taken


def test_a_leading_bare_number_is_asked_about_not_guessed() -> None:
    with pytest.raises(BareNumber, match="'30' has no unit"):
        leading_duration("30 m365 tenant".split())


@pytest.mark.parametrize("text", ["30 min", "1.5h", "1 hr", "90 minutes"])
def test_config_durations_keep_specs_strict_forms(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)
