"""Property tests of what people type as durations (`time`, closure's Time spent, config) and as
the `report` period: a duration the bot writes reads back as itself, and no text makes the
parsers fail otherwise than with a ValueError that says what is wrong (which the commands turn
into an answer)."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from handlers.durations import (
    format_duration,
    leading_duration,
    parse_duration,
    parse_typed_duration,
)
from handlers.reports.rules import FIRST_DAY, LAST_DAY, Period, parse_chat
from tests.typed_text import TYPED

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None)
TODAY = date(2026, 12, 7)

DURATION_WORDS = st.sampled_from(
    [
        *("1", "1.5", ".5", "0", "45", "h", "m", "min", "hours", "d", "s", "45m", "1h30m", "30"),
        *("9" * 41, "\u0663h", "1e3h", "-1h", "+1h", "1_000m", "\uff48", "1 h", "\u00a0", "\t"),
    ]
)
DURATION_TEXT = st.one_of(
    TYPED,
    st.lists(st.one_of(DURATION_WORDS, st.text(max_size=4)), max_size=8).map(" ".join),
    st.lists(DURATION_WORDS, max_size=6).map("".join),
)


@FUZZ
@given(st.integers(0, 10**12))
def test_a_formatted_duration_reads_back_as_itself(seconds: int) -> None:
    text = format_duration(timedelta(seconds=seconds))
    assert parse_duration(text) == timedelta(seconds=seconds), text
    assert parse_typed_duration(text) == seconds, text


@FUZZ
@given(DURATION_TEXT)
def test_any_text_is_a_duration_or_a_value_error(text: str) -> None:
    for parse in (parse_duration, parse_typed_duration):
        try:
            parsed = parse(text)
        except ValueError:
            continue
        assert parsed >= (timedelta(0) if parse is parse_duration else 0), (text, parsed)
    try:
        seconds, taken = leading_duration(text.split())
    except ValueError:
        return
    assert seconds >= 0 and 0 <= taken <= len(text.split())


REPORT_WORDS = st.sampled_from(
    [
        *("acme", "2026-01-01", "2026-02-30", "9999-12-31", "0001-01-01", "0000-00-00"),
        *("2026-1-1", "99999-01-01", "2026-01-01T00:00", "-", "<!here>", str(FIRST_DAY)),
    ]
)


@FUZZ
@given(st.lists(st.one_of(REPORT_WORDS, TYPED), max_size=5).map(" ".join))
def test_any_report_arguments_are_a_period_or_a_value_error(args: str) -> None:
    try:
        _client, period = parse_chat(args, today=TODAY)
    except ValueError:
        return
    assert period.since <= period.until
    assert period.start < period.end  # both ends can be computed (no date overflow)


@FUZZ
@given(
    st.dates(FIRST_DAY, LAST_DAY),
    st.dates(FIRST_DAY, LAST_DAY),
    st.sampled_from(["", "acme", "Big Client"]),
)
def test_a_typed_period_reads_back_as_itself(first: date, last: date, client: str) -> None:
    first, last = min(first, last), max(first, last)
    said, period = parse_chat(f"{client} {first} {last}", today=TODAY)
    assert (said or "", period) == (client, Period(first, last))
