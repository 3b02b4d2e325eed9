"""The report's seeded data set: 300 tickets over three clients and two quarters.

Ticket i (0..299) is made by simple rules, so the report's answers can be worked out by hand
(tests/http/test_report.py does so):
- client: Acme, Globex, Initech by i mod 3 (100 each); quarter: i < 150 the first of the two
  last complete quarters, else the second; created at day i//2 (resp. (i-150)//2) of its
  quarter, 08:00 or 12:00 UTC (i mod 2).
- priority P1..P4 by i mod 4 (75 each); category by i mod 5 (60 each); standard tier targets.
- open when i mod 10 = 9 (30 tickets), else closed, resolution category Incident, Request,
  Problem by (i // 10) mod 3.
- first response (10 * (i mod 7 + 1)) minutes after creation; closed (3 * (i mod 5 + 1)) hours
  after creation.
- time logged: 10 * (i mod 5 + 1) minutes, plus a closure Time spent of 30 minutes on Acme's
  closed tickets.
- survey sent on closure unless i mod 6 = 5; answered when i is even, rating 5, 5, 4, 3, 1 by
  (i // 2) mod 5; the requester confirmed the fix on closed tickets with i mod 4 = 0.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import tickets as repo
from storage.models import CsatSurvey, TimeEntry

CLIENTS = ("Acme", "Globex", "Initech")
PRIORITIES = ("P1", "P2", "P3", "P4")
CATEGORIES = ("printer", "network", "email", "access", "software")
RESOLUTIONS = ("Incident", "Request", "Problem")
RESPOND = {"P1": timedelta(minutes=30), "P2": timedelta(hours=2), "P3": timedelta(hours=8),
           "P4": timedelta(days=1)}  # fmt: skip
RESOLVE = {"P1": timedelta(hours=4), "P2": timedelta(days=1), "P3": timedelta(days=3),
           "P4": timedelta(days=5)}  # fmt: skip
RATINGS = (5, 5, 4, 3, 1)


@dataclass(frozen=True)
class Quarters:
    """The two last complete quarters before `today`: first, second (first days), and the
    last day of the second."""

    first: date
    second: date
    last_day: date


def _quarter_start(day: date) -> date:
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def quarters(today: date) -> Quarters:
    current = _quarter_start(today)
    second = _quarter_start(current - timedelta(days=1))
    first = _quarter_start(second - timedelta(days=1))
    return Quarters(first=first, second=second, last_day=current - timedelta(days=1))


def _at(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def ticket_fields(i: int, q: Quarters) -> dict[str, Any]:
    """Every column of ticket i as the app would have left it."""
    start, offset = (q.first, i) if i < 150 else (q.second, i - 150)
    created = _at(start + timedelta(days=offset // 2), 8 + 4 * (i % 2))
    priority = PRIORITIES[i % 4]
    closed = i % 10 != 9
    first_response = created + timedelta(minutes=10 * (i % 7 + 1))
    closed_at = created + timedelta(hours=3 * (i % 5 + 1)) if closed else None
    respond_by, resolve_by = created + RESPOND[priority], created + RESOLVE[priority]
    sent = closed and i % 6 != 5
    rating = RATINGS[(i // 2) % 5] if sent and i % 2 == 0 else None
    return {
        "status": "closed" if closed else "open",
        "summary": f"Seeded ticket {i}",
        "reproducible": "yes",
        "priority": priority,
        "category": CATEGORIES[i % 5],
        "client": CLIENTS[i % 3],
        "tier": "standard",
        "requester_id": f"UR{i % 7}",
        "requester_email": f"user{i % 7}@example.com",
        "technician_id": "UTECH",
        "technician_name": "Tom Tech",
        "source_platform": "slack",
        "source_channel": "C0HELP",
        "created_at": created,
        "respond_by": respond_by,
        "resolve_by": resolve_by,
        "first_response_at": first_response,
        "first_response_by": "UTECH",
        "first_response_channel": "slack:C0HELP",
        "first_response_seconds": int((first_response - created).total_seconds()),
        "respond_met": first_response <= respond_by,
        "closed_at": closed_at,
        "resolution_seconds": int((closed_at - created).total_seconds()) if closed_at else None,
        "resolve_met": (closed_at <= resolve_by) if closed_at else None,
        "resolution_category": RESOLUTIONS[(i // 10) % 3] if closed else "",
        "resolution_note": "Replaced the fuser unit on PRN-0042" if closed else "",
        "csat_sent_at": closed_at + timedelta(minutes=5) if sent and closed_at else None,
        "csat_rating": rating,
        "fix_confirmed_at": closed_at if closed_at and i % 4 == 0 else None,
    }


def time_entries(i: int) -> list[int]:
    """Minutes of ticket i's time entries (the closure's Time spent is one of them)."""
    acme_closure = [30] if CLIENTS[i % 3] == "Acme" and i % 10 != 9 else []
    return [10 * (i % 5 + 1), *acme_closure]


async def seed(sessions: async_sessionmaker[AsyncSession], today: date) -> Quarters:
    """Write the 300 tickets (numbered HD-1 .. HD-300) with their time entries and surveys."""
    q = quarters(today)
    async with sessions() as session, session.begin():
        for i in range(300):
            seq, number = await repo.next_number(session, prefix="HD")
            fields = ticket_fields(i, q)
            minutes = time_entries(i)
            ticket = await repo.create(
                session, number=number, prefix="HD", seq=seq, time_minutes=sum(minutes), **fields
            )
            for m in minutes:
                session.add(TimeEntry(ticket_id=ticket.id, minutes=m, actor_id="UTECH"))
            if fields["csat_sent_at"] is not None:
                session.add(
                    CsatSurvey(
                        ticket_id=ticket.id,
                        nonce=secrets.token_urlsafe(16),
                        requester_platform="slack",
                        requester_id=fields["requester_id"],
                        rating=fields["csat_rating"],
                        answered_at=fields["csat_sent_at"] if fields["csat_rating"] else None,
                        created_at=fields["closed_at"],
                    )
                )
    return q
