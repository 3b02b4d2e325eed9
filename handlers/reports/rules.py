"""The report's pure rules: its period (UTC days, both inclusive), how `report` is typed in
chat, and the summary made from the database's group counts."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from cards.model import Inline, Rich, Typed, kept_text, plain, read_kept_text
from storage.reports import Figures, fold

DEFAULT_DAYS = 90
PRIORITIES = ("P1", "P2", "P3", "P4")
RESOLUTIONS = ("Incident", "Request", "Problem")
NO_CLIENT = "(no client)"
DATE_LIKE = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}$")
# A day written some other way (31/03/2026, 2026.03.31, an ISO time): a malformed date in
# `report`, never part of a client's name.
DATE_SHAPED = re.compile(
    r"^(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4})(?:T\S*)?$"
)
# The days a period can start or end on: the day after its end, and the 90 days before an end
# given alone, must be dates too.
FIRST_DAY = date.min + timedelta(days=DEFAULT_DAYS - 1)
LAST_DAY = date.max - timedelta(days=1)
CHAT_USAGE = (
    "Try `report [client] [YYYY-MM-DD YYYY-MM-DD]`, e.g. `report acme 2026-01-01 2026-03-31`."
)


@dataclass(frozen=True)
class Period:
    """UTC days `since` .. `until`, both inclusive."""

    since: date
    until: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.since, time(), tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """The first moment after the period."""
        return datetime.combine(self.until + timedelta(days=1), time(), tzinfo=UTC)

    def __str__(self) -> str:
        return f"{self.since.isoformat()} to {self.until.isoformat()}"


def default_period(today: date) -> Period:
    """The 90 days ending today."""
    return Period(today - timedelta(days=DEFAULT_DAYS - 1), today)


class BadPeriod(ValueError):
    """A period typed wrong; `words` says so, quoting what was typed (shown literally)."""

    def __init__(self, words: Inline) -> None:
        super().__init__(plain(words))
        self.words = words


def parse_date(text: str) -> date:
    """`2026-03-31`; ValueError says what a date looks like."""
    try:
        if DATE_LIKE.match(text.strip()):
            year, month, day = (int(part) for part in text.strip().split("-"))
            parsed = date(year, month, day)
        else:
            parsed = None
    except ValueError:
        parsed = None
    if parsed is None:
        raise BadPeriod(Rich("'", Typed(text), "' is not a date like 2026-03-31 (YYYY-MM-DD)"))
    if not FIRST_DAY <= parsed <= LAST_DAY:
        raise BadPeriod(Rich("'", Typed(text), f"' is out of range ({FIRST_DAY} to {LAST_DAY})"))
    return parsed


def period_of(since: date | None, until: date | None, *, today: date) -> Period:
    """The period from either end, or both, or neither (the 90 days ending today); ValueError
    when it ends before it starts."""
    if since is None and until is None:
        return default_period(today)
    if until is None:
        until = today
    if since is None:
        since = until - timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise ValueError(f"{since.isoformat()} is after {until.isoformat()}")
    return Period(since, until)


def parse_chat(args: str, *, today: date) -> tuple[str | None, Period]:
    """`report [client] [YYYY-MM-DD YYYY-MM-DD]` -> (client or None for all, period)."""
    words = args.split()
    for word in words:
        if DATE_SHAPED.match(word) and not DATE_LIKE.match(word):
            parse_date(word)  # raises, saying what a date looks like
    dates = [w for w in words[-2:] if DATE_LIKE.match(w)]
    if len(words) >= 2 and len(dates) == 2:
        first, last = (parse_date(w) for w in words[-2:])
        if first > last:
            raise ValueError(
                f"The period starts after it ends ({first.isoformat()} is after "
                f"{last.isoformat()}). {CHAT_USAGE}"
            )
        words, period = words[:-2], Period(first, last)
    elif dates and words[-1] == dates[-1]:
        parse_date(dates[-1])  # a malformed one is named as such
        raise ValueError(f"Give both days of the period, first and last. {CHAT_USAGE}")
    else:
        period = default_period(today)
    if any(DATE_LIKE.match(w) for w in words):
        # `report 2026-01-01 2026-03-31 acme` would otherwise report a client of that name
        # (none) over the default period: an empty QBR that looks like a real one.
        raise ValueError(f"The client goes first and the period's two days last. {CHAT_USAGE}")
    client = " ".join(words).strip()
    return (client or None), period


# -- the summary ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    met: int
    missed: int

    @property
    def decided(self) -> int:
        return self.met + self.missed


@dataclass(frozen=True)
class Summary:
    period: Period
    client: str | None
    opened: int
    closed: int
    by_category: list[tuple[str, int]]
    by_priority: list[tuple[str, int]]
    by_resolution: list[tuple[str, int]]
    respond: Rate
    resolve: Rate
    respond_by_priority: list[tuple[str, Rate]]
    resolve_by_priority: list[tuple[str, Rate]]
    median_first_response: float | None
    median_resolution: float | None
    ratings: tuple[int, int, int, int, int]
    surveys_sent: int
    minutes_by_client: list[tuple[str, int]]
    minutes_total: int
    fixes_confirmed: int
    fixes_unconfirmed: int
    # A repeated error (its label as typed) and its tickets: `0x80070005 (3 tickets: HD-1, ...)`.
    patterns: list[Inline]
    # For a client with no ticket in the period: the clients that have some, most first.
    other_clients: tuple[tuple[str, int], ...] = ()

    @property
    def answers(self) -> int:
        return sum(self.ratings)


def _ranked(counts: dict[str, int]) -> list[tuple[str, int]]:
    return sorted(((k, v) for k, v in counts.items() if v), key=lambda kv: (-kv[1], kv[0]))


def _in_order(counts: dict[str, int], order: tuple[str, ...]) -> list[tuple[str, int]]:
    known = [(k, counts.get(k, 0)) for k in order]
    return known + _ranked({k: v for k, v in counts.items() if k not in order})


def summarize(
    figures: Figures, *, period: Period, client: str | None, patterns: list[Inline]
) -> Summary:
    """The report from the database's group counts (a few hundred rows at most, whatever the
    number of tickets)."""
    groups = figures.groups
    categories: dict[str, int] = defaultdict(int)
    priorities: dict[str, int] = defaultdict(int)
    resolutions: dict[str, int] = defaultdict(int)
    respond: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    resolve: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    minutes: dict[str, int] = defaultdict(int)
    names: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    ratings = [0, 0, 0, 0, 0]
    for g in groups:
        categories[g.category or "-"] += g.opened
        priorities[g.priority] += g.opened
        if g.resolution_category:
            resolutions[g.resolution_category] += g.closed
        respond[g.priority][0] += g.respond_met
        respond[g.priority][1] += g.respond_missed
        resolve[g.priority][0] += g.resolve_met
        resolve[g.priority][1] += g.resolve_missed
        key = fold(g.client)
        minutes[key] += g.minutes
        names[key][g.client.strip() or NO_CLIENT] += g.opened
        for index, count in enumerate(g.ratings):
            ratings[index] += count

    def label(key: str) -> str:
        spellings = names[key]
        return max(spellings, key=lambda name: (spellings[name], name))

    def rates(by: dict[str, list[int]]) -> list[tuple[str, Rate]]:
        return [(p, Rate(*by[p])) for p in [*PRIORITIES, *sorted(set(by) - set(PRIORITIES))]]

    def total(by: dict[str, list[int]]) -> Rate:
        return Rate(sum(v[0] for v in by.values()), sum(v[1] for v in by.values()))

    closed = sum(g.closed for g in groups)
    confirmed = sum(g.fix_confirmed for g in groups)
    by_client = sorted(
        ((label(k), m) for k, m in minutes.items() if m), key=lambda cm: (-cm[1], cm[0])
    )
    return Summary(
        period=period,
        client=client,
        opened=sum(g.opened for g in groups),
        closed=closed,
        by_category=_ranked(categories),
        by_priority=_in_order(priorities, PRIORITIES),
        by_resolution=_in_order(resolutions, RESOLUTIONS),
        respond=total(respond),
        resolve=total(resolve),
        respond_by_priority=rates(respond),
        resolve_by_priority=rates(resolve),
        median_first_response=figures.median_first_response,
        median_resolution=figures.median_resolution,
        ratings=(ratings[0], ratings[1], ratings[2], ratings[3], ratings[4]),
        surveys_sent=sum(g.surveys_sent for g in groups),
        minutes_by_client=by_client,
        minutes_total=sum(minutes.values()),
        fixes_confirmed=confirmed,
        fixes_unconfirmed=closed - confirmed,
        patterns=patterns,
    )


# -- the summary kept as JSON (the chart's outbox row: drawn when it is uploaded) ---------------


def summary_data(summary: Summary) -> dict[str, Any]:
    """`summary` as JSON-safe data (`read_summary` reads it back): what an outbox row keeps to
    draw the chart from when it is delivered. Patterns keep whose words they are."""
    return {
        "since": summary.period.since.isoformat(),
        "until": summary.period.until.isoformat(),
        "client": summary.client,
        "opened": summary.opened,
        "closed": summary.closed,
        "by_category": [list(pair) for pair in summary.by_category],
        "by_priority": [list(pair) for pair in summary.by_priority],
        "by_resolution": [list(pair) for pair in summary.by_resolution],
        "respond": _rate_data(summary.respond),
        "resolve": _rate_data(summary.resolve),
        "respond_by_priority": [[p, _rate_data(r)] for p, r in summary.respond_by_priority],
        "resolve_by_priority": [[p, _rate_data(r)] for p, r in summary.resolve_by_priority],
        "median_first_response": summary.median_first_response,
        "median_resolution": summary.median_resolution,
        "ratings": list(summary.ratings),
        "surveys_sent": summary.surveys_sent,
        "minutes_by_client": [list(pair) for pair in summary.minutes_by_client],
        "minutes_total": summary.minutes_total,
        "fixes_confirmed": summary.fixes_confirmed,
        "fixes_unconfirmed": summary.fixes_unconfirmed,
        "patterns": [kept_text(p) for p in summary.patterns],
        "other_clients": [list(pair) for pair in summary.other_clients],
    }


def read_summary(data: Mapping[str, Any]) -> Summary:
    """The summary `summary_data` kept; KeyError, TypeError or ValueError when `data` is not
    one."""

    def counts(key: str) -> list[tuple[str, int]]:
        return [(str(name), int(count)) for name, count in data[key]]

    def rates(key: str) -> list[tuple[str, Rate]]:
        return [(str(name), _read_rate(rate)) for name, rate in data[key]]

    def median(key: str) -> float | None:
        value = data[key]
        return None if value is None else float(value)

    one, two, three, four, five = (int(r) for r in data["ratings"])
    return Summary(
        period=Period(date.fromisoformat(data["since"]), date.fromisoformat(data["until"])),
        client=None if data["client"] is None else str(data["client"]),
        opened=int(data["opened"]),
        closed=int(data["closed"]),
        by_category=counts("by_category"),
        by_priority=counts("by_priority"),
        by_resolution=counts("by_resolution"),
        respond=_read_rate(data["respond"]),
        resolve=_read_rate(data["resolve"]),
        respond_by_priority=rates("respond_by_priority"),
        resolve_by_priority=rates("resolve_by_priority"),
        median_first_response=median("median_first_response"),
        median_resolution=median("median_resolution"),
        ratings=(one, two, three, four, five),
        surveys_sent=int(data["surveys_sent"]),
        minutes_by_client=counts("minutes_by_client"),
        minutes_total=int(data["minutes_total"]),
        fixes_confirmed=int(data["fixes_confirmed"]),
        fixes_unconfirmed=int(data["fixes_unconfirmed"]),
        patterns=[read_kept_text(p) for p in data.get("patterns") or []],
        other_clients=tuple(counts("other_clients")) if "other_clients" in data else (),
    )


def _rate_data(rate: Rate) -> list[int]:
    return [rate.met, rate.missed]


def _read_rate(data: Any) -> Rate:
    met, missed = data
    return Rate(int(met), int(missed))
