"""Durations as people type them.

Config durations are strict (`45m`, `1h30m`, `2h`, `1d`, `20s`, `0s`: SPEC's formats). Time
entries also read what technicians type: `30 min`, `1 hr`, `1.5h`, `1h 30m`, `90 minutes`, a
clock-style `1:30` (hours and minutes, as timesheets and PSAs show time), `1h30` (as French and
German write it), a decimal comma (`1,5h`) and an abbreviation's full stop (`45 min.`).
"""

from __future__ import annotations

import re
from datetime import timedelta
from fractions import Fraction

from cards.model import Inline, Rich, Typed

_PART = re.compile(r"(\d+)\s*([dhms])", re.IGNORECASE)
_WHOLE = re.compile(r"^\s*(?:\d+\s*[dhms]\s*)+$", re.IGNORECASE)
_UNIT = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> timedelta:
    """Parse `1h30m`-style text; raises ValueError naming the problem."""
    if not isinstance(text, str) or not _WHOLE.match(text):
        raise ValueError(f"{text!r} is not a duration like 45m, 1h30m, 2h or 1d")
    seconds = sum(int(n) * _UNIT[u.lower()] for n, u in _PART.findall(text))
    try:
        return timedelta(seconds=seconds)
    except OverflowError:  # more days than a timedelta holds
        raise ValueError(f"{text!r} is not a duration like 45m, 1h30m, 2h or 1d") from None


# -- time entries as typed ---------------------------------------------------------------------

_NUMBER = r"(?:\d+(?:[.,]\d+)?|\.\d+)"
_BARE = re.compile(rf"^{_NUMBER}$")
_COMPACT = re.compile(rf"^(?:{_NUMBER}[a-z]+)+$", re.IGNORECASE)
_COMPACT_PART = re.compile(rf"({_NUMBER})([a-z]+)", re.IGNORECASE)
# Hours and minutes in one word, clock-style: `1:30` (minutes 00-59; `1h30`: below).
_CLOCK = re.compile(r"^(\d{1,2}):(\d\d)$")
_UNIT_WORDS = {
    **dict.fromkeys(("d", "day", "days"), 86400),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
}
_MAX_WORD = 40  # no one worked 10^30 hours: keeps the arithmetic small
# Said right after the time, as in a sentence (`45m, swapped the toner`, `20m.`): it ends the
# duration and is no part of it.
_SENTENCE_ENDS = ".,;:"
# `1h30`: hours, then minutes without their unit, in one word (a note cannot start inside a
# word, unlike `1h 30`).
_HOURS_MINUTES = re.compile(r"^(\d+)h([0-5]?\d)$", re.IGNORECASE)


class BareNumber(ValueError):
    """A number with no unit where a duration belongs: `90` may be minutes or hours, and
    `1h 30` may be 1h 30m or an hour and a note that starts with 30. `problem` says so to the
    person, what they typed quoted as `Typed`; `str()` is the same as plain text."""

    def __init__(self, number: str, *, after: str = "") -> None:
        typed = Typed(number)
        self.problem: Inline
        if after:
            self.problem = Rich(
                "'",
                Typed(f"{after} {number}"),
                "': ",
                typed,
                " what? Write ",
                Typed(f"{after} {number}m"),
                " for minutes.",
            )
        else:
            self.problem = Rich(
                "'",
                typed,
                "' has no unit: minutes or hours? Write ",
                Typed(f"{number}m"),
                " or ",
                Typed(f"{number}h"),
                ".",
            )
        super().__init__(self.problem.plain())


def _amount(number: str) -> Fraction:
    """A typed number, its decimal comma read as a point (`1,5`)."""
    return Fraction(number.replace(",", "."))


def _unit(word: str) -> int | None:
    """Seconds of a unit word (`min`, `hrs.`, `hours,`); None when it is none."""
    return _UNIT_WORDS.get(word.lower().rstrip(".,;"))


def _word_parts(word: str) -> list[tuple[Fraction, int]] | None:
    """`30min` / `1.5h` / `1h30m` / `1h30` / `1:30` as (amount, unit seconds) parts; None when
    it is not one."""
    if len(word) > _MAX_WORD:
        return None
    if clock := _CLOCK.match(word) or _HOURS_MINUTES.match(word):
        hours, minutes = int(clock[1]), int(clock[2])
        return [(Fraction(hours), 3600), (Fraction(minutes), 60)] if minutes < 60 else None
    word = word.rstrip(".,;")
    if not _COMPACT.match(word):
        return None
    parts = []
    for number, unit in _COMPACT_PART.findall(word):
        seconds = _unit(unit)
        if seconds is None:
            return None
        parts.append((_amount(number), seconds))
    return parts


def leading_duration(words: list[str]) -> tuple[Fraction, int]:
    """The duration the leading words form, in seconds, and how many words it took (0: none).

    Parts go from the largest unit to the smallest, each unit once (`1 hr 30 min`), so a note
    that goes on with a number and a unit (`45m 2 days ago`) is not read as more time. A bare
    number that starts the words, or follows hours (`1h 30`), raises BareNumber. A word that
    ends with a full stop, comma, semicolon or colon ends the duration (`45m, swapped ...`)."""
    parts: list[tuple[Fraction, int]] = []
    taken = 0
    while taken < len(words):
        word = words[taken].rstrip(_SENTENCE_ENDS)
        ends = word != words[taken]
        found = _word_parts(word)
        step = 1
        if found is None and _BARE.match(word) and len(word) <= _MAX_WORD:
            unit = None
            if taken + 1 < len(words) and not ends:
                unit_word = words[taken + 1].rstrip(_SENTENCE_ENDS)
                unit = _unit(unit_word)
                ends = unit_word != words[taken + 1]
            if unit is None:
                if not parts:
                    raise BareNumber(word)
                if parts[-1][1] == 3600:
                    raise BareNumber(word, after=" ".join(words[:taken]))
                break
            found, step = [(_amount(word), unit)], 2
        if not found:
            break
        units = [u for _, u in parts + found]
        if units != sorted(set(units), reverse=True):
            break
        parts += found
        taken += step
        if ends:
            break
    return sum((n * u for n, u in parts), Fraction(0)), taken


def parse_typed_duration(text: str) -> Fraction:
    """Seconds of a whole text typed as a duration (`1.5 hours`); ValueError when it is not
    one, BareNumber when it is a number without a unit."""
    words = text.split()
    seconds, taken = leading_duration(words) if words else (Fraction(0), 0)
    if not taken or taken < len(words):
        raise ValueError(f"{text!r} is not a duration like 45m, 1h30m or 2h")
    return seconds


def format_duration(delta: timedelta) -> str:
    """Render as `1h 30m` / `45m` / `2d 3h`, with seconds when there are any (`20s`, `1m 5s`)."""
    total = int(delta.total_seconds())
    minutes, secs = divmod(total, 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{mins}m"] * bool(mins)
    parts += [f"{secs}s"] * bool(secs)
    return " ".join(parts) or "0m"
