"""The change calendar file or URL (`changes.calendar`): iCalendar read with `icalendar`,
recurring events (RRULE, RDATE, EXDATE) expanded with `recurring-ical-events`, a calendar's
X-WR-TIMEZONE applied with `x-wr-timezone`.

A file is read at start-up and again when it changes (looked at every few seconds); a URL is
fetched at start-up and every 10 minutes on the app's HTTP session. Both are parsed and checked
in a thread, never on a ticket's intake. A broken edit or an
unreachable URL keeps the last good copy and logs a warning. So does one event that cannot be
read or expanded (a bad RRULE, no or a broken DTSTART, EXDATE ...): each copy is checked at load,
such an event is skipped with one warning naming its UID and SUMMARY, and the others are used.
An event that still fails when a ticket looks it up is logged once and skipped until the
calendar changes: the calendar never stops a ticket's intake.

A ticket's look-up expands only the span it asks for (`changes.window` before the ticket), at
most MAX_PER_EVENT occurrences an event (the newest), and a rule with a fixed step (SECONDLY to
WEEKLY; with COUNT, only without BY... parts) far from its DTSTART from a DTSTART moved forward:
a MINUTELY rule costs a few milliseconds, not seconds.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Collection, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import icalendar
import recurring_ical_events
import x_wr_timezone

from bot.settings import calendar_path
from handlers.diagnosis import Change

log = logging.getLogger(__name__)
URL_REFRESH = 600.0
FILE_CHECK = 5.0
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=10)
START_WAIT = 3.0
MAX_BYTES = 5 * 1024 * 1024
# A look-up expands at most this many occurrences of one event, the newest in its span (the
# card shows 5 hints at most, newest first).
MAX_PER_EVENT = 20
# A rule more than this many steps from its DTSTART is expanded from a later DTSTART.
SHIFT_AFTER = 500
_DAY = timedelta(days=1)
_STEPS = {
    "SECONDLY": timedelta(seconds=1),
    "MINUTELY": timedelta(minutes=1),
    "HOURLY": timedelta(hours=1),
    "DAILY": _DAY,
    "WEEKLY": timedelta(weeks=1),
}


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


def _text(body: bytes, charset: str | None = None) -> str:
    """The calendar's text: RFC 5545 says UTF-8 (a byte order mark is dropped); text that is not
    is read in the charset an HTTP server declared, else as Windows-1252 (older Windows tools).
    UTF-8 comes first: servers often declare ISO-8859-1 for any text."""
    for encoding in ("utf-8-sig", charset, "cp1252"):
        if not encoding:
            continue
        try:
            return body.decode(encoding)
        except (UnicodeDecodeError, LookupError):
            continue
    return body.decode("latin-1")  # any byte is a character: never fails


def parse(text: bytes | str, charset: str | None = None) -> icalendar.Calendar:
    """A calendar, or ValueError saying why the text is not one."""
    if isinstance(text, bytes):
        text = _text(text, charset)
    try:
        calendar = icalendar.Calendar.from_ical(text)
    except Exception as exc:
        raise ValueError(f"not an iCalendar file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(calendar, icalendar.Calendar):
        raise ValueError("not an iCalendar file (no VCALENDAR)")
    return calendar


def _cancelled(component: Any) -> bool:
    return str(component.get("STATUS") or "").strip().upper() == "CANCELLED"


def _change(component: Any, series: str = "") -> Change | None:
    """The change an expanded occurrence stands for; None for one called off (STATUS:CANCELLED,
    on the event or on the RECURRENCE-ID override of one occurrence)."""
    if _cancelled(component):
        return None
    start = _start(component.get("DTSTART").dt if component.get("DTSTART") else None)
    if start is None:
        return None
    named = frozenset(_categories(component))
    title = str(component.get("SUMMARY") or "").strip() or "Unnamed change"
    return Change(title, start[0], clients=named, assets=named, all_day=start[1], series=series)


def _wall(moment: datetime, like: datetime | date) -> datetime:
    """`moment` (UTC) as a naive wall-clock time in the zone of `like` (UTC when floating)."""
    if isinstance(like, datetime) and like.tzinfo is not None:
        return moment.astimezone(like.tzinfo).replace(tzinfo=None)
    return moment.astimezone(UTC).replace(tzinfo=None)


class _Event:
    """One calendar event (a UID: the event and its RECURRENCE-ID overrides), checked at load.

    Look-ups cost little whatever the rule: a rule with a fixed-length step (SECONDLY to
    WEEKLY; no COUNT, or COUNT and no BY... part) whose DTSTART lies more than SHIFT_AFTER
    steps before the span is expanded from a DTSTART moved forward by whole steps (its
    occurrences are the same, a COUNT reduced by the steps skipped; the
    rule is otherwise iterated from DTSTART, 3 million times for a MINUTELY rule 6 years old),
    and at most MAX_PER_EVENT occurrences, the newest in the span, are expanded (looked for
    in spans growing back from its end)."""

    def __init__(self, components: list[Any], timezones: list[Any]) -> None:
        self.components = components
        self.timezones = timezones
        master = next((c for c in components if c.get("RECURRENCE-ID") is None), components[0])
        self.master = master
        self.uid = str(master.get("UID") or "").strip() or "(no UID)"
        # Occurrences of one event are one series (the card names its newest); events
        # without a UID each their own.
        self.series = self.uid if master.get("UID") else f"(no UID {id(self)})"
        self.title = str(master.get("SUMMARY") or "").strip() or "Unnamed change"
        # What it may touch: the CATEGORIES of the event and of every override, casefolded.
        self.names = frozenset(n.casefold() for c in components for n in _categories(c))
        value = master.get("DTSTART")
        if value is None:
            raise ValueError("no DTSTART")
        self.dtstart: datetime | date = value.dt  # BrokenCalendarProperty when unreadable
        if _start(self.dtstart) is None:
            raise ValueError("DTSTART is not a date or time")
        self.step = self._step()
        self.shiftable = self.step is not None and self._shiftable()
        self.query = recurring_ical_events.of(self._calendar(master))
        # A one-off event (no RRULE, RDATE, EXDATE or overrides) is its DTSTART: no expansion.
        one_off = len(components) == 1 and not any(
            master.get(k) for k in ("RRULE", "RDATE", "EXDATE")
        )
        self.single = _change(master, self.series) if one_off else None

    def __repr__(self) -> str:
        return f"{self.uid} ({self.title})"

    def _rule(self) -> Any | None:
        rule = self.master.get("RRULE")
        if isinstance(rule, list):
            return None if len(rule) != 1 else rule[0]
        return rule

    def _step(self) -> timedelta | None:
        rule = self._rule()
        if rule is None:
            return None
        freq = str((rule.get("FREQ") or [""])[0]).upper()
        interval = int((rule.get("INTERVAL") or [1])[0])
        unit = _STEPS.get(freq)
        return None if unit is None or interval < 1 else unit * interval

    def _count(self) -> int | None:
        rule = self._rule()
        count = None if rule is None else rule.get("COUNT")
        return None if count is None else int(count[0] if isinstance(count, list) else count)

    def _shiftable(self) -> bool:
        """A rule without COUNT; or with COUNT and no BY... part, whose every step is one
        occurrence (moved forward by n steps, its COUNT is n less)."""
        rule = self._rule()
        if rule is None:
            return False
        if rule.get("COUNT") is not None and any(k.upper().startswith("BY") for k in rule):
            return False
        return isinstance(self.dtstart, datetime) or (self.step or timedelta()) >= _DAY

    def _calendar(self, master: Any) -> icalendar.Calendar:
        calendar = icalendar.Calendar()
        for component in self.timezones:
            calendar.add_component(component)
        for component in self.components:
            calendar.add_component(master if component is self.master else component)
        return calendar

    def _query_from(self, start: datetime) -> Any | None:
        """The query, its DTSTART moved forward by whole steps to before `start` when far (None:
        a COUNT rule that ended before)."""
        if not self.shiftable or self.step is None:
            return self.query
        origin = self.dtstart
        begin = origin if isinstance(origin, datetime) else datetime(*origin.timetuple()[:3])
        naive = begin.replace(tzinfo=None)
        steps = (_wall(start, origin) - naive) // self.step - 1
        if steps <= SHIFT_AFTER:
            return self.query
        count = self._count()
        if count is not None and count - steps < 1:
            return None
        delta = self.step * steps
        moved = copy.deepcopy(self.master)
        if count is not None:
            moved["RRULE"]["COUNT"] = [count - steps]
        moved.pop("DTSTART")
        moved.add("DTSTART", origin + delta)  # wall-clock arithmetic, as the rule's own
        if moved.get("DTEND") is not None:
            end = moved.pop("DTEND").dt
            moved.add("DTEND", end + delta)
        return recurring_ical_events.of(self._calendar(moved))

    def _changes(self, start: datetime, end: datetime) -> list[Change]:
        found: list[Change] = []
        query = self._query_from(start)
        if query is None:
            return found
        # The library's span ends before `end`: an occurrence at `end` itself counts.
        for component in query.between(start, end + timedelta(seconds=1)):
            change = _change(component, self.series)
            if change is not None and start <= change.start <= end:
                found.append(change)
        return found

    def between(self, start: datetime, end: datetime) -> list[Change]:
        """The newest MAX_PER_EVENT occurrences that start in [start, end]."""
        if self.single is not None:
            return [self.single] if start <= self.single.start <= end else []
        span = end - start if self.step is None else self.step * MAX_PER_EVENT
        while True:
            low = max(start, end - span)
            found = self._changes(low, end)
            if len(found) >= MAX_PER_EVENT or low == start:
                found.sort(key=lambda c: c.start, reverse=True)
                return found[:MAX_PER_EVENT]
            span *= 4


def _zoned(calendar: icalendar.Calendar) -> icalendar.Calendar:
    """A calendar naming its zone only in X-WR-TIMEZONE (Google Calendar's exports) means its
    UTC and floating times in that zone: they are given it here, since each event is expanded
    from a calendar of its own, without that property. A zone that is not known: as written."""
    try:
        return x_wr_timezone.to_standard(calendar)
    except Exception as exc:  # ZoneInfoNotFoundError, ValueError for a malformed name
        zone = str(calendar.get("X-WR-TIMEZONE", ""))
        log.warning(
            "change calendar: X-WR-TIMEZONE %r is not a time zone (%s): its times are read as UTC",
            zone[:60],
            type(exc).__name__,
        )
        return calendar


def events(calendar: icalendar.Calendar) -> tuple[list[_Event], list[str]]:
    """The events that can be read and expanded, and a warning for each that cannot."""
    calendar = _zoned(calendar)
    timezones = list(calendar.walk("VTIMEZONE"))
    by_uid: dict[str, list[Any]] = {}
    for component in calendar.walk("VEVENT"):
        by_uid.setdefault(str(component.get("UID") or id(component)), []).append(component)
    good: list[_Event] = []
    problems: list[str] = []
    now = datetime.now(UTC)
    for components in by_uid.values():
        try:
            event = _Event(components, timezones)
            first = _start(event.dtstart)
            assert first is not None
            # The first occurrences and the days before now: what a look-up does.
            event.between(first[0], first[0] + timedelta(days=7))
            event.between(now - timedelta(days=7), now)
        except Exception as exc:  # any event the libraries cannot read
            component = components[0]
            uid = str(component.get("UID") or "").strip() or "(no UID)"
            title = str(component.get("SUMMARY") or "").strip() or "(no SUMMARY)"
            problems.append(f"{uid} ({title}): {type(exc).__name__}: {exc}")
            continue
        good.append(event)
    return good, problems


def occurrences(calendar: icalendar.Calendar, start: datetime, end: datetime) -> list[Change]:
    """The occurrences that start in [start, end] of every event that can be read (at most
    MAX_PER_EVENT an event, the newest)."""
    found: list[Change] = []
    for event in events(calendar)[0]:
        found += event.between(start, end)
    return found


Loaded = tuple[icalendar.Calendar, list[_Event], list[str]]


def load(body: bytes, charset: str | None = None) -> Loaded:
    """Parse and check a calendar: seconds for a few MB, so run in a thread (the event loop,
    which answers Slack within 3 s, blocked meanwhile otherwise)."""
    calendar = parse(body, charset)
    good, problems = events(calendar)
    return calendar, good, problems


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


def shown_url(url: str) -> str:
    """`url` as logs may show it: scheme and host only (`https://host/…`); the path, query
    and any user:password are left out."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    rest = "/…" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


class CalendarChanges:
    """ChangeCalendar over an iCalendar file or URL."""

    def __init__(
        self, source: str, *, config_dir: Path | None, http: aiohttp.ClientSession | None
    ) -> None:
        self.source = source
        self.is_url = source.lower().startswith(("http://", "https://"))
        # What logs and repr show: a calendar URL's path and query are often its only
        # secret (published Outlook / Google "secret address" links), so only the host.
        self.shown = shown_url(source) if self.is_url else source
        self.path = None if self.is_url else calendar_path(source, config_dir)
        self.http = http
        self._calendar: icalendar.Calendar | None = None
        self._events: list[_Event] = []
        self._failed: set[str] = set()  # events whose look-up failed (warned once)
        self._mtime: tuple[int, int] | None = None  # the version read (mtime, size)
        # Why the file was last not read, or the URL not fetched (warned of once).
        self._problem: str | None = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"CalendarChanges({self.shown!r})"

    # -- loading ------------------------------------------------------------------------------

    def _use(self, loaded: Loaded) -> None:
        calendar, good, problems = loaded
        for problem in problems:
            log.warning(
                "change calendar %s: event skipped, cannot be read: %s", self.shown, problem
            )
        self._calendar = calendar
        self._events = good
        self._failed = set()

    async def _read_file(self) -> None:
        """Read the file when it changed (parsed in a thread). A broken version is read and
        warned of once, not at every look; so is a file that cannot be read, until that
        changes."""
        assert self.path is not None
        try:
            stat = self.path.stat()
            # Size too: two edits within one tick of the file system's clock.
            version = (stat.st_mtime_ns, stat.st_size)
            if version == self._mtime:
                return
            self._mtime = version
            if stat.st_size > MAX_BYTES:  # as for a URL: not read whole, not cut mid-event
                raise ValueError(f"larger than {MAX_BYTES // (1024 * 1024)} MB")
            loaded = await asyncio.to_thread(load, self.path.read_bytes())
        except (OSError, ValueError) as exc:
            problem = str(exc)
            if problem != self._problem:
                self._problem = problem
                log.warning(
                    "change calendar %s not (re)read, keeping the last good copy: %s",
                    self.path,
                    problem,
                )
            return
        self._problem = None
        self._use(loaded)
        log.info("change calendar %s read", self.path)

    async def _fetch(self) -> None:
        assert self.http is not None
        try:
            async with self.http.get(self.source, timeout=FETCH_TIMEOUT) as response:
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}")
                body = await _read_all(response)
            loaded = await asyncio.to_thread(load, body, response.charset)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            problem = str(exc) if isinstance(exc, ValueError) else type(exc).__name__
            if problem != self._problem:  # once, not at every refresh while it lasts
                self._problem = problem
                log.warning(
                    "change calendar %s could not be fetched, keeping the last good copy: %s",
                    self.shown,
                    problem,
                )
            return
        again = " again" if self._problem is not None else ""
        self._problem = None
        self._use(loaded)
        log.info("change calendar %s fetched%s", self.shown, again)

    async def start(self) -> None:
        """Read the file or fetch the URL once; then a file is looked at every FILE_CHECK s,
        a URL fetched again every 10 min, in the background (never on a ticket's intake).
        Start-up waits for the first fetch START_WAIT seconds at most: a feed that hangs or
        crawls arrives later (or fails, up to FETCH_TIMEOUT) without holding up the bot."""
        first = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._refresh(first))
        try:
            await asyncio.wait_for(first.wait(), START_WAIT if self.is_url else None)
        except TimeoutError:
            log.info(
                "change calendar %s: still fetching after %.0f s; starting without it, "
                "its changes are hinted once it arrives",
                self.shown,
                START_WAIT,
            )

    async def _refresh(self, first: asyncio.Event) -> None:
        try:
            await (self._fetch() if self.is_url else self._read_file())
        finally:
            first.set()
        while True:
            await asyncio.sleep(URL_REFRESH if self.is_url else FILE_CHECK)
            await (self._fetch() if self.is_url else self._read_file())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    # -- the core's interface -----------------------------------------------------------------

    def changes_between(
        self, start: datetime, end: datetime, names: Collection[str] | None = None
    ) -> Sequence[Change]:
        """Occurrences that start in [start, end]; with `names` (casefolded), only of events
        whose CATEGORIES (or an override's) name one of them."""
        if self._calendar is None or end < start:
            return []
        found: list[Change] = []
        for event in self._events:
            if event.uid in self._failed or (names is not None and event.names.isdisjoint(names)):
                continue
            try:
                found += event.between(start, end)
            except Exception as exc:  # one event never breaks a ticket's intake
                self._failed.add(event.uid)
                log.warning(
                    "change calendar %s: event %r skipped until the calendar changes: %s: %s",
                    self.shown,
                    event,
                    type(exc).__name__,
                    exc,
                )
        return found
