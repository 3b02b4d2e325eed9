"""The change calendar file or URL (`changes.calendar`): iCalendar read with `icalendar`,
recurring events (RRULE, RDATE, EXDATE) expanded with `recurring-ical-events`.

A file is read at start-up and again when it changes (looked at every few seconds); a URL is
fetched at start-up and every 10 minutes on the app's HTTP session. A broken edit or an
unreachable URL keeps the last good copy and logs a warning. Expanded occurrences are kept per
month, so a ticket's look-up is a few list reads.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import icalendar
import recurring_ical_events

from bot.settings import calendar_path
from handlers.diagnosis import Change

log = logging.getLogger(__name__)
URL_REFRESH = 600.0
FILE_CHECK = 5.0
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=10)
MAX_BYTES = 5 * 1024 * 1024


def _categories(event: Any) -> list[str]:
    raw = event.get("CATEGORIES")
    if raw is None:
        return []
    values = raw if isinstance(raw, list) else [raw]
    names: list[str] = []
    for value in values:
        cats = getattr(value, "cats", None)
        if cats is None:
            cats = str(value).split(",")
        names += [str(c).strip() for c in cats if str(c).strip()]
    return names


def _start(value: Any) -> tuple[datetime, bool] | None:
    """(start in UTC, all day) of a DTSTART value."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC), False
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC), True
    return None


def parse(text: bytes | str) -> icalendar.Calendar:
    """A calendar, or ValueError saying why the text is not one."""
    try:
        calendar = icalendar.Calendar.from_ical(text)
    except Exception as exc:
        raise ValueError(f"not an iCalendar file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(calendar, icalendar.Calendar):
        raise ValueError("not an iCalendar file (no VCALENDAR)")
    return calendar


def occurrences(calendar: icalendar.Calendar, year: int, month: int) -> list[Change]:
    """Every event occurrence that starts in the month, recurring ones expanded."""
    first = (year, month, 1)
    after = (year + 1, 1, 1) if month == 12 else (year, month + 1, 1)
    found: list[Change] = []
    for event in recurring_ical_events.of(calendar).between(first, after):
        start = _start(event.get("DTSTART").dt if event.get("DTSTART") else None)
        if start is None:
            continue
        named = frozenset(_categories(event))
        title = str(event.get("SUMMARY") or "").strip() or "Unnamed change"
        found.append(Change(title, start[0], clients=named, assets=named, all_day=start[1]))
    return found


async def _read_all(response: aiohttp.ClientResponse) -> bytes:
    """The whole body, or ValueError past MAX_BYTES (`content.read(n)` stops at the first
    chunk that arrived: a feed over a few kB came cut short and did not parse)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > MAX_BYTES:
            raise ValueError(f"larger than {MAX_BYTES // (1024 * 1024)} MB")
        chunks.append(chunk)
    return b"".join(chunks)


class CalendarChanges:
    """ChangeCalendar over an iCalendar file or URL."""

    def __init__(
        self, source: str, *, config_dir: Path | None, http: aiohttp.ClientSession | None
    ) -> None:
        self.source = source
        self.is_url = source.lower().startswith(("http://", "https://"))
        self.path = None if self.is_url else calendar_path(source, config_dir)
        self.http = http
        self._calendar: icalendar.Calendar | None = None
        self._months: dict[tuple[int, int], list[Change]] = {}
        self._mtime: float | None = None
        self._checked = 0.0
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"CalendarChanges({self.source!r})"

    # -- loading ------------------------------------------------------------------------------

    def _use(self, calendar: icalendar.Calendar) -> None:
        self._calendar = calendar
        self._months = {}

    def _read_file(self) -> None:
        assert self.path is not None
        try:
            stat = self.path.stat()
            if stat.st_mtime == self._mtime:
                return
            calendar = parse(self.path.read_bytes()[:MAX_BYTES])
        except (OSError, ValueError) as exc:
            log.warning(
                "change calendar %s not (re)read, keeping the last good copy: %s", self.path, exc
            )
            return
        self._mtime = stat.st_mtime
        self._use(calendar)
        log.info("change calendar %s read", self.path)

    async def _fetch(self) -> None:
        assert self.http is not None
        try:
            async with self.http.get(self.source, timeout=FETCH_TIMEOUT) as response:
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}")
                body = await _read_all(response)
            calendar = parse(body)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            log.warning(
                "change calendar %s could not be fetched, keeping the last good copy: %s",
                self.source,
                exc if isinstance(exc, ValueError) else type(exc).__name__,
            )
            return
        self._use(calendar)
        log.info("change calendar %s fetched", self.source)

    async def start(self) -> None:
        """Read the file or fetch the URL once; a URL is then fetched again every 10 min."""
        if not self.is_url:
            self._read_file()
            self._checked = time.monotonic()
            return
        await self._fetch()
        self._task = asyncio.get_running_loop().create_task(self._refresh())

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(URL_REFRESH)
            await self._fetch()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # -- the core's interface -----------------------------------------------------------------

    def changes_between(self, start: datetime, end: datetime) -> Sequence[Change]:
        """Occurrences that start in [start, end]."""
        if not self.is_url and time.monotonic() - self._checked > FILE_CHECK:
            self._checked = time.monotonic()
            self._read_file()
        if self._calendar is None or end < start:
            return []
        found: list[Change] = []
        month = date(start.year, start.month, 1)
        while month <= end.date():
            key = (month.year, month.month)
            if key not in self._months:
                self._months[key] = occurrences(self._calendar, *key)
            found += [c for c in self._months[key] if start <= c.start <= end]
            month = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
        return found
