"""The change calendar: Patch Tuesday, config entries, iCalendar events (RRULE, CATEGORIES,
all-day), the window, and the hint texts."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot import changes as changes_module
from bot.changes import CalendarChanges
from handlers.config import ChangesConfig
from handlers.diagnosis import patch_tuesday
from handlers.diagnosis.changes import hints, how_long
from tests.fakes.calendar import PATH, FakeCalendar


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("year", "month", "day"),
    [(2026, 12, 8), (2026, 1, 13), (2026, 9, 8), (2025, 7, 8), (2024, 10, 8), (2027, 2, 9)],
)
def test_patch_tuesday_is_the_second_tuesday(year: int, month: int, day: int) -> None:
    found = patch_tuesday(year, month)
    assert found == date(year, month, day) and found.weekday() == 1


def _hints(config: ChangesConfig, opened: str, **ticket: str) -> list[str]:
    fields = {"category": "windows", "client": "", "asset": ""} | ticket
    return hints(config, opened=utc(opened), calendar=None, **fields)


def test_patch_tuesday_hint_within_the_window_only() -> None:
    config = ChangesConfig()
    assert _hints(config, "2026-12-10T09:00:00") == [
        "opened 2 days after Patch Tuesday (2026-12-08)"
    ]
    assert _hints(config, "2026-12-08T15:00:00") == ["opened on Patch Tuesday (2026-12-08)"]
    assert _hints(config, "2026-12-11T23:00:00") == [
        "opened 3 days after Patch Tuesday (2026-12-08)"
    ]
    assert _hints(config, "2026-12-13T09:00:00") == []  # 5 days later
    assert _hints(config, "2026-12-07T09:00:00") == []  # before it
    assert _hints(config, "2026-12-10T09:00:00", category="printer") == []
    assert _hints(ChangesConfig(patch_tuesday=False), "2026-12-10T09:00:00") == []
    wide = ChangesConfig(window=timedelta(days=30), patch_tuesday_categories=["printer"])
    assert _hints(wide, "2027-01-05T09:00:00", category="printer") == [
        "opened 28 days after Patch Tuesday (2026-12-08)"
    ]


def test_a_long_window_hints_every_patch_tuesday_in_it() -> None:
    """Only the last three months were looked at: with a 100-day window the Patch Tuesday 84
    days back (2026-09-08) was missing, across the year boundary too."""
    config = ChangesConfig(window=timedelta(days=100))
    assert _hints(config, "2026-12-01T09:00:00") == [
        "opened 21 days after Patch Tuesday (2026-11-10)",
        "opened 49 days after Patch Tuesday (2026-10-13)",
        "opened 84 days after Patch Tuesday (2026-09-08)",
    ]
    assert _hints(config, "2027-02-01T09:00:00")[-1] == (
        "opened 83 days after Patch Tuesday (2026-11-10)"
    )


def test_config_entries_touch_their_clients_and_assets() -> None:
    config = ChangesConfig.model_validate(
        {
            "patch_tuesday": False,
            "entries": [
                {"title": "VPN client 7.2 rollout", "start": "2026-12-01T18:00:00Z",
                 "clients": ["acme"], "assets": ["VPN-GW1"]},
            ],
        }
    )  # fmt: skip
    day_after = "2026-12-02T19:30:00"
    expected = ["opened 1 day after VPN client 7.2 rollout (2026-12-01 18:00 UTC)"]
    assert _hints(config, day_after, client="ACME") == expected
    assert _hints(config, day_after, client="globex", asset="vpn-gw1") == expected
    assert _hints(config, day_after, client="globex", asset="FW-01") == []
    assert _hints(config, "2026-12-02T07:00:00", client="acme") == [
        "opened 13 hours after VPN client 7.2 rollout (2026-12-01 18:00 UTC)"
    ]
    assert _hints(config, "2026-12-06T19:00:00", client="acme") == []  # 5 days later
    assert _hints(config, "2026-12-01T17:00:00", client="acme") == []  # before it


def test_how_long() -> None:
    assert how_long(timedelta(minutes=20)) == "less than an hour"
    assert how_long(timedelta(hours=1, minutes=5)) == "1 hour"
    assert how_long(timedelta(hours=23, minutes=59)) == "23 hours"
    assert how_long(timedelta(days=1, hours=3)) == "1 day"
    assert how_long(timedelta(days=2)) == "2 days"


ICS = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
    # Every Tuesday 22:00 UTC from 2026-11-03, not on 2026-11-24.
    "BEGIN:VEVENT\r\nUID:fw@example.com\r\nDTSTAMP:20261101T000000Z\r\n"
    "DTSTART:20261103T220000Z\r\nRRULE:FREQ=WEEKLY;BYDAY=TU\r\nEXDATE:20261124T220000Z\r\n"
    "SUMMARY:Firewall firmware window\r\nCATEGORIES:globex,FW-01\r\nEND:VEVENT\r\n"
    # A local-time event (Europe/Berlin, 09:00 = 08:00 UTC in winter).
    "BEGIN:VEVENT\r\nUID:mail@example.com\r\nDTSTAMP:20261101T000000Z\r\n"
    "DTSTART;TZID=Europe/Berlin:20261207T090000\r\n"
    "SUMMARY:Mail gateway migration\r\nCATEGORIES:initech\r\nCATEGORIES:MX-1\r\nEND:VEVENT\r\n"
    # An all-day event.
    "BEGIN:VEVENT\r\nUID:dc@example.com\r\nDTSTAMP:20261101T000000Z\r\n"
    "DTSTART;VALUE=DATE:20261205\r\nSUMMARY:Domain controller patching\r\n"
    "CATEGORIES:acme\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


async def test_icalendar_file_with_recurring_events(tmp_path: Path) -> None:
    (tmp_path / "changes.ics").write_text(ICS)
    calendar = CalendarChanges("changes.ics", config_dir=tmp_path, http=None)
    await calendar.start()
    config = ChangesConfig(patch_tuesday=False)

    def found(opened: str, **ticket: str) -> list[str]:
        fields = {"category": "network", "client": "", "asset": ""} | ticket
        return hints(config, opened=utc(opened), calendar=calendar, **fields)

    assert found("2026-12-16T08:00:00", client="globex") == [
        "opened 10 hours after Firewall firmware window (2026-12-15 22:00 UTC)"
    ]
    assert found("2026-12-17T23:00:00", asset="fw-01") == [
        "opened 2 days after Firewall firmware window (2026-12-15 22:00 UTC)"
    ]
    assert found("2026-11-25T08:00:00", client="globex") == []  # the excluded occurrence
    assert found("2026-12-07T10:00:00", client="initech") == [
        "opened 2 hours after Mail gateway migration (2026-12-07 08:00 UTC)"
    ]
    assert found("2026-12-08T10:00:00", asset="MX-1") != []
    assert found("2026-12-06T10:00:00", client="acme") == [
        "opened 1 day after Domain controller patching (2026-12-05)"
    ]
    assert found("2026-12-16T08:00:00", client="acme") == []
    await calendar.close()


async def test_a_broken_calendar_edit_keeps_the_last_good_copy(tmp_path: Path) -> None:
    path = tmp_path / "changes.ics"
    path.write_text(ICS)
    calendar = CalendarChanges(str(path), config_dir=None, http=None)
    await calendar.start()
    path.write_text("this is not a calendar")
    await calendar._read_file()  # what it does every FILE_CHECK seconds
    window = (utc("2026-12-15T00:00:00"), utc("2026-12-16T00:00:00"))
    assert [c.title for c in calendar.changes_between(*window)] == ["Firewall firmware window"]


async def test_a_calendar_file_over_the_size_limit_is_refused_as_such(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Past 5 MB the file is not read (whole, into memory) and the operator is told why, as
    for a URL; it was cut at 5 MB mid-event and warned of as 'not an iCalendar file'."""
    path = tmp_path / "changes.ics"
    path.write_text(ICS)
    calendar = CalendarChanges(str(path), config_dir=None, http=None)
    await calendar.start()
    event = f"BEGIN:VEVENT\r\nDTSTAMP:20261101T000000Z\r\n{GOOD}END:VEVENT\r\n"
    body = ICS.replace("END:VCALENDAR", event * (6 * 1024 * 1024 // len(event)) + "END:VCALENDAR")
    path.write_text(body)
    await calendar._read_file()  # what it does every FILE_CHECK seconds
    window = (utc("2026-12-15T00:00:00"), utc("2026-12-16T00:00:00"))
    with caplog.at_level("WARNING", logger="bot.changes"):
        titles = [c.title for c in calendar.changes_between(*window)]
    assert titles == ["Firewall firmware window"]  # the last good copy
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("larger than 5 MB" in w for w in warned), warned
    await calendar.close()


def _ics(*events: str) -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n"
        + "".join(f"BEGIN:VEVENT\r\nDTSTAMP:20261101T000000Z\r\n{e}END:VEVENT\r\n" for e in events)
        + "END:VCALENDAR\r\n"
    )


GOOD = (
    "UID:fw@example.com\r\nDTSTART:20261215T220000Z\r\n"
    "SUMMARY:Firewall firmware window\r\nCATEGORIES:globex\r\n"
)
BAD_EVENTS = [
    "UID:bad-rule@example.com\r\nDTSTART:20261201T010000Z\r\nRRULE:FREQ=WEEKY\r\nSUMMARY:Backup\r\n",
    "UID:no-start@example.com\r\nSUMMARY:No start\r\n",
    "UID:bad-start@example.com\r\nDTSTART:garbage\r\nSUMMARY:Bad start\r\n",
    "UID:bad-exdate@example.com\r\nDTSTART:20261201T010000Z\r\nRRULE:FREQ=DAILY\r\n"
    "EXDATE:garbage\r\nSUMMARY:Bad exdate\r\n",
]


async def test_a_bad_event_is_skipped_with_one_warning_at_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "changes.ics"
    path.write_text(_ics(*BAD_EVENTS, GOOD))
    calendar = CalendarChanges(str(path), config_dir=None, http=None)
    with caplog.at_level("WARNING", logger="bot.changes"):
        await calendar.start()
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == len(BAD_EVENTS)
    for uid in ("bad-rule@", "no-start@", "bad-start@", "bad-exdate@"):
        assert sum(uid in text for text in warned) == 1
    assert any("Backup" in text for text in warned)
    caplog.clear()
    config = ChangesConfig(patch_tuesday=False)
    for _ in range(3):  # a ticket each: no warning per ticket
        assert hints(
            config, opened=utc("2026-12-16T08:00:00"), calendar=calendar,
            category="network", client="globex", asset="",
        ) == ["opened 10 hours after Firewall firmware window (2026-12-15 22:00 UTC)"]  # fmt: skip
    assert [r for r in caplog.records if r.levelname == "WARNING"] == []
    await calendar.close()


async def test_an_event_failing_at_look_up_is_skipped_and_warned_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "changes.ics"
    path.write_text(_ics(GOOD, BAD_EVENTS[0].replace("WEEKY", "WEEKLY")))
    calendar = CalendarChanges(str(path), config_dir=None, http=None)
    await calendar.start()
    real = changes_module._Event.between

    def between(self: Any, start: datetime, end: datetime) -> list[Any]:
        if self.uid == "bad-rule@example.com":
            raise RuntimeError("boom")
        return real(self, start, end)

    monkeypatch.setattr(changes_module._Event, "between", between)
    window = (utc("2026-12-14T00:00:00"), utc("2026-12-16T00:00:00"))
    with caplog.at_level("WARNING", logger="bot.changes"):
        for _ in range(3):
            found = calendar.changes_between(*window)
            assert [c.title for c in found] == ["Firewall firmware window"]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "bad-rule@example.com" in warned[0] and "Backup" in warned[0]
    await calendar.close()


@pytest.mark.parametrize(
    ("rule", "dtstart", "ago", "at"),
    [
        ("FREQ=MINUTELY", "20261201T000000Z", "less than an hour", "08:00"),
        ("FREQ=MINUTELY", "20200101T000030Z", "less than an hour", "07:59"),
        ("FREQ=SECONDLY;INTERVAL=7", "20261201T000000Z", "less than an hour", "07:59"),
        ("FREQ=MINUTELY;BYHOUR=3;BYMINUTE=15", "20190101T000000Z", "4 hours", "03:15"),
        ("FREQ=HOURLY;INTERVAL=5", "20000101T010000Z", "1 hour", "07:00"),
        ("FREQ=DAILY", "19000101T060000Z", "2 hours", "06:00"),
    ],
)  # fmt: skip
async def test_a_dense_rule_is_cheap_to_look_up(
    tmp_path: Path, rule: str, dtstart: str, ago: str, at: str
) -> None:
    """SECONDLY to DAILY rules, some started years ago: one ticket's look-up stays fast and
    finds the newest occurrence, one at the very minute the ticket is opened included."""
    path = tmp_path / "changes.ics"
    path.write_text(
        _ics(f"UID:sync@example.com\r\nDTSTART:{dtstart}\r\nRRULE:{rule}\r\n"
             "SUMMARY:Sync\r\nCATEGORIES:globex\r\n")
    )  # fmt: skip
    calendar = CalendarChanges(str(path), config_dir=None, http=None)
    await calendar.start()
    config = ChangesConfig(patch_tuesday=False)
    began = time.process_time()
    found = hints(
        config, opened=utc("2026-12-16T08:00:00"), calendar=calendar,
        category="network", client="globex", asset="",
    )  # fmt: skip
    assert time.process_time() - began < 0.5
    assert found[0] == f"opened {ago} after Sync (2026-12-16 {at} UTC)"
    assert len(found) == 1  # the newest occurrence only: one change
    await calendar.close()


async def test_an_unknown_x_wr_timezone_is_warned_and_the_times_read_as_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "changes.ics").write_text(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nX-WR-TIMEZONE:Mars/Olympus\r\n"
        "BEGIN:VEVENT\r\nUID:a@x\r\nDTSTAMP:20261101T000000Z\r\nDTSTART:20261207T090000Z\r\n"
        "SUMMARY:Mail gateway migration\r\nCATEGORIES:initech\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )
    calendar = CalendarChanges("changes.ics", config_dir=tmp_path, http=None)
    await calendar.start()
    found = calendar.changes_between(utc("2026-12-07T00:00:00"), utc("2026-12-08T00:00:00"))
    assert [(c.title, c.start) for c in found] == [
        ("Mail gateway migration", utc("2026-12-07T09:00:00"))
    ]
    assert any("X-WR-TIMEZONE 'Mars/Olympus'" in r.getMessage() for r in caplog.records)
    await calendar.close()


@pytest.mark.parametrize(
    ("rule", "dtstart", "first"),
    [
        # Still running: the newest occurrence is the minute the ticket is opened.
        ("FREQ=MINUTELY;COUNT=100000000", "20251201T000000Z",
         "opened less than an hour after Sync (2026-12-16 08:00 UTC)"),
        # Its 525,481st and last occurrence, 2026-12-15 22:00.
        ("FREQ=MINUTELY;COUNT=525481", "20251216T000000Z",
         "opened 10 hours after Sync (2026-12-15 22:00 UTC)"),
        ("FREQ=SECONDLY;INTERVAL=30;COUNT=50000000", "20250101T000000Z",
         "opened less than an hour after Sync (2026-12-16 08:00 UTC)"),
        ("FREQ=HOURLY;INTERVAL=2;COUNT=3", "20200101T000000Z", None),  # over in 2020
    ],
)  # fmt: skip
async def test_a_dense_rule_with_a_count_is_cheap_to_load_and_look_up(
    tmp_path: Path, rule: str, dtstart: str, first: str | None
) -> None:
    """A rule ending after COUNT occurrences is expanded from a DTSTART moved forward too (its
    COUNT less the occurrences skipped): a MINUTELY rule a year old took seconds to load and
    seconds for each ticket (minutes with a larger COUNT), the bot answering nobody meanwhile."""
    path = tmp_path / "changes.ics"
    path.write_text(
        _ics(f"UID:sync@example.com\r\nDTSTART:{dtstart}\r\nRRULE:{rule}\r\n"
             "SUMMARY:Sync\r\nCATEGORIES:globex\r\n")
    )  # fmt: skip
    calendar = CalendarChanges(str(path), config_dir=None, http=None)
    began = time.process_time()
    await calendar.start()
    assert time.process_time() - began < 1.0
    config = ChangesConfig(patch_tuesday=False)
    began = time.process_time()
    found = hints(
        config, opened=utc("2026-12-16T08:00:00"), calendar=calendar,
        category="network", client="globex", asset="",
    )  # fmt: skip
    assert time.process_time() - began < 0.5
    assert (found[0] if found else None) == first
    await calendar.close()


async def test_a_broken_calendar_file_is_warned_of_once_not_at_every_look(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken edit, then a deleted file: each is warned of once, however often the file is
    looked at (it was parsed again and warned of every 5 s a ticket came in); a good edit is
    read again and a later breakage warned of again."""
    monkeypatch.setattr(changes_module, "FILE_CHECK", 0.02)
    path = tmp_path / "changes.ics"
    path.write_text(ICS)
    calendar = CalendarChanges(str(path), config_dir=None, http=None)
    await calendar.start()
    window = (utc("2026-12-15T00:00:00"), utc("2026-12-16T00:00:00"))

    async def looked_at() -> list[str]:
        await asyncio.sleep(0.3)  # looked at some 15 times
        return [c.title for c in calendar.changes_between(*window)]

    def warned() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]

    with caplog.at_level("WARNING", logger="bot.changes"):
        path.write_text("this is not a calendar")
        assert await looked_at() == ["Firewall firmware window"]
        assert len(warned()) == 1 and "not an iCalendar file" in warned()[0]
        path.unlink()
        assert await looked_at() == ["Firewall firmware window"]
        assert len(warned()) == 2 and "No such file" in warned()[1]
        path.write_text(ICS.replace("Firewall firmware window", "Firewall window (moved)"))
        assert await looked_at() == ["Firewall window (moved)"]
        assert len(warned()) == 2
        path.write_text("broken again")
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
        assert await looked_at() == ["Firewall window (moved)"]
        assert len(warned()) == 3
    await calendar.close()


@pytest.mark.parametrize(
    ("encoding", "title"),
    [
        ("cp1252", "Änderung Exchange \u2013 Übergang"),  # as older Windows tools save it
        ("utf-8", "Änderung Exchange \u2013 Übergang"),
        ("utf-8-sig", "Änderung Exchange \u2013 Übergang"),  # a byte order mark first
    ],
)
async def test_a_calendar_file_not_in_utf_8_shows_its_titles_as_written(
    tmp_path: Path, encoding: str, title: str
) -> None:
    """A Windows-1252 file's accented titles were shown with every byte that is not UTF-8
    replaced by U+FFFD (a question mark in a diamond: '?nderung Exchange ? ?bergang')."""
    (tmp_path / "changes.ics").write_bytes(
        _ics(f"{GOOD.replace('Firewall firmware window', title)}").encode(encoding)
    )
    calendar = CalendarChanges("changes.ics", config_dir=tmp_path, http=None)
    await calendar.start()
    found = hints(
        ChangesConfig(patch_tuesday=False), opened=utc("2026-12-16T08:00:00"),
        calendar=calendar, category="network", client="globex", asset="",
    )  # fmt: skip
    assert found == [f"opened 10 hours after {title} (2026-12-15 22:00 UTC)"]
    await calendar.close()


async def test_a_ticket_expands_only_the_events_that_may_touch_it(tmp_path: Path) -> None:
    """A published calendar of 3,000 weekly maintenance windows, each for its own client: every
    ticket expanded every event before looking at its CATEGORIES (0.6 s a ticket here, on the
    event loop); it now expands those naming its client or asset (an override's CATEGORIES
    count too), and a ticket naming neither expands none."""
    others = [
        f"UID:mw-{n}@example.com\r\nDTSTART:2024{n % 12 + 1:02d}{n % 28 + 1:02d}T120000Z\r\n"
        f"RRULE:FREQ=WEEKLY\r\nSUMMARY:Maintenance {n}\r\nCATEGORIES:client-{n}\r\n"
        for n in range(3000)
    ]
    moved = (
        "UID:mw-7@example.com\r\nRECURRENCE-ID:20261210T120000Z\r\nDTSTART:20261215T230000Z\r\n"
        "SUMMARY:Maintenance 7 (globex joins)\r\nCATEGORIES:client-7,Globex\r\n"
    )
    (tmp_path / "changes.ics").write_text(_ics(*others, moved, GOOD))
    calendar = CalendarChanges("changes.ics", config_dir=tmp_path, http=None)
    await calendar.start()
    config = ChangesConfig(patch_tuesday=False)
    began = time.process_time()
    for client in ("globex", "", "initech"):
        found = hints(
            config, opened=utc("2026-12-16T08:00:00"), calendar=calendar,
            category="network", client=client, asset="",
        )  # fmt: skip
        assert found == (
            [
                "opened 9 hours after Maintenance 7 (globex joins) (2026-12-15 23:00 UTC)",
                "opened 10 hours after Firewall firmware window (2026-12-15 22:00 UTC)",
            ]
            if client == "globex"
            else []
        )
    assert time.process_time() - began < 0.3
    await calendar.close()


async def test_a_calendar_url_that_keeps_failing_is_warned_of_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A feed down for hours was warned of at every refresh (6 lines an hour, each the same);
    now once, an info line when it is back, and once again when it fails differently."""
    monkeypatch.setattr(changes_module, "URL_REFRESH", 0.05)
    async with FakeCalendar(ICS) as fake, aiohttp.ClientSession() as http:
        calendar = CalendarChanges(fake.feed_url, config_dir=None, http=http)
        with caplog.at_level("INFO", logger="bot.changes"):
            await calendar.start()
            fake.fail(PATH, 503, times=1000)
            await fake.wait_for(lambda r: r.status == 503, count=5)
            fake.reset()
            await fake.wait_for(lambda r: r.status == 200, count=2)
            fake.ics = "<html>Sign in</html>"
            await fake.wait_for(lambda r: r.status == 200, count=6)
        await calendar.close()
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    warned = [text for level, text in said if level == "WARNING"]
    assert len(warned) == 2, warned
    assert "HTTP 503" in warned[0] and "not an iCalendar file" in warned[1]
    assert any(text.endswith("fetched again") for _, text in said)
    window = (utc("2026-12-15T00:00:00"), utc("2026-12-16T00:00:00"))
    assert [c.title for c in calendar.changes_between(*window)] == ["Firewall firmware window"]
