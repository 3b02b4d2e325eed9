"""The change calendar: Patch Tuesday, config entries, iCalendar events (RRULE, CATEGORIES,
all-day), the window, and the hint texts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from bot.changes import CalendarChanges
from handlers.config import ChangesConfig
from handlers.diagnosis import patch_tuesday
from handlers.diagnosis.changes import hints, how_long


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
    calendar._checked = 0.0  # look at the file again now
    calendar._mtime = None
    window = (utc("2026-12-15T00:00:00"), utc("2026-12-16T00:00:00"))
    assert [c.title for c in calendar.changes_between(*window)] == ["Firewall firmware window"]
