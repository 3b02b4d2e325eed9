"""The change calendar: Patch Tuesday, config entries and iCalendar events near a ticket.

A change touches a ticket when its clients or assets name the ticket's client or asset
(case-insensitive); Patch Tuesday (the second Tuesday of the month, the whole UTC day) touches
tickets whose category is one of `changes.patch_tuesday_categories`, any client. A change that
started within `changes.window` before the ticket was opened is hinted on its card.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol

from handlers.config import ChangesConfig
from handlers.formatting import counted

MAX_HINTS = 5


@dataclass(frozen=True)
class Change:
    """One occurrence of a change: what, when it started, whom it touches."""

    title: str
    start: datetime
    clients: frozenset[str] = field(default_factory=frozenset)
    assets: frozenset[str] = field(default_factory=frozenset)
    # A whole-day change (an all-day calendar event): counted in calendar days.
    all_day: bool = False
    # The recurring event this is an occurrence of (its UID): a card names its newest only.
    series: str = ""

    def touches(self, *, client: str, asset: str) -> bool:
        """Either the client or the asset is named (case-insensitive)."""
        named = {n.strip().casefold() for n in self.clients | self.assets}
        return bool(
            (client.strip() and client.strip().casefold() in named)
            or (asset.strip() and asset.strip().casefold() in named)
        )


class ChangeCalendar(Protocol):
    """Occurrences of calendar changes (recurring events expanded), kept by the edge."""

    def changes_between(
        self, start: datetime, end: datetime, names: Collection[str] | None = None
    ) -> Sequence[Change]:
        """Occurrences that start in [start, end]; with `names` (casefolded), only of changes
        that may name one of them (the rest are not expanded)."""
        ...


def patch_tuesday(year: int, month: int) -> date:
    """Microsoft's Patch Tuesday: the second Tuesday of the month."""
    first = date(year, month, 1)
    first_tuesday = first + timedelta(days=(1 - first.weekday()) % 7)
    return first_tuesday + timedelta(days=7)


def _months_back(day: date, count: int) -> Iterable[tuple[int, int]]:
    year, month = day.year, day.month
    for _ in range(count):
        yield year, month
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)


def how_long(delta: timedelta) -> str:
    """SPEC: whole days (`1 day`), or hours under a day."""
    if delta >= timedelta(days=1):
        return counted(delta.days, "day")
    hours = int(delta.total_seconds() // 3600)
    return counted(hours, "hour") if hours else "less than an hour"


@dataclass(frozen=True)
class Hint:
    """One change hinted on a card."""

    text: str
    start: datetime


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _all_day_hint(title: str, day: date, opened: datetime, *, dated: bool) -> str:
    days = (opened.date() - day).days
    name = f"{title} ({day.isoformat()})" if dated else title
    if days <= 0:
        return f"opened on the day of {name}"
    return f"opened {counted(days, 'day')} after {name}"


def hints(
    config: ChangesConfig,
    *,
    opened: datetime,
    category: str,
    client: str,
    asset: str,
    calendar: ChangeCalendar | None,
) -> list[str]:
    """The changes within `changes.window` before `opened` that touch this ticket, newest first."""
    window = config.window
    found: list[Hint] = []
    if config.patch_tuesday and category.strip().lower() in config.patch_tuesday_categories:
        # Every month the window reaches into (a month is at least 28 days), and this one.
        for year, month in _months_back(opened.date(), window.days // 28 + 2):
            day = patch_tuesday(year, month)
            start = _day_start(day)
            # The whole UTC day counts: hinted while any of it lies within the window.
            if start <= opened and opened - window < start + timedelta(days=1):
                days = (opened.date() - day).days
                text = (
                    f"opened on Patch Tuesday ({day.isoformat()})"
                    if days == 0
                    else f"opened {counted(days, 'day')} after Patch Tuesday ({day.isoformat()})"
                )
                found.append(Hint(text, start))
    changes: list[Change] = [
        Change(e.title, e.start.astimezone(UTC), frozenset(e.clients), frozenset(e.assets))
        for e in config.entries
    ]
    names = {n.strip().casefold() for n in (client, asset) if n.strip()}
    if calendar is not None and names:
        # Only events naming this client or asset are expanded: a calendar of thousands of
        # recurring events costs a ticket what its own few cost.
        changes += calendar.changes_between(opened - window - timedelta(days=1), opened, names)
    seen: set[tuple[str, datetime]] = set()
    series: set[str] = set()
    # Newest first: of a recurring change, the occurrence just before the ticket is named (an
    # hourly sync would otherwise fill every line and hide the one-off change behind it).
    for change in sorted(changes, key=lambda c: c.start, reverse=True):
        key = (change.title, change.start)
        if key in seen or change.series in series:
            continue
        if not change.touches(client=client, asset=asset):
            continue
        if change.all_day:
            end = change.start + timedelta(days=1)
            if not (change.start <= opened and opened - window < end):
                continue
            text = _all_day_hint(change.title, change.start.date(), opened, dated=True)
        else:
            if not (change.start <= opened <= change.start + window):
                continue
            when = change.start.strftime("%Y-%m-%d %H:%M UTC")
            text = f"opened {how_long(opened - change.start)} after {change.title} ({when})"
        seen.add(key)
        if change.series:
            series.add(change.series)
        found.append(Hint(text, change.start))
    found.sort(key=lambda h: h.start, reverse=True)
    return [h.text for h in found[:MAX_HINTS]]
