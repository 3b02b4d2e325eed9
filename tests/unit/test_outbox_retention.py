"""The outbox retention (bot.retention.OutboxPrune, storage.outbox_retention) on both
databases: finished rows of tickets closed long enough ago are trimmed to what `show`, the
dedup keys and the edits of posted messages read; pending, claimed and in-doubt rows, rows of
open or recently closed tickets and recent rows are left whole; rows of no ticket and no dedup
key are deleted; batches are bounded and several processes may run it at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.retention import OutboxPrune
from handlers import deliveries
from storage import db, outbox, outbox_retention
from storage import tickets as repo
from storage.models import OutboxMessage, Ticket, utcnow

KEEP = outbox_retention.KEEP
CARD = {"type": "AdaptiveCard", "body": [{"type": "TextBlock", "text": "x" * 3000}]}


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(db_url)
    yield engine
    await engine.dispose()


async def ticket(engine: AsyncEngine, seq: int, *, closed_ago: timedelta | None) -> int:
    """A ticket, closed `closed_ago` before now (None: open); its id."""
    now = utcnow()
    sessions = db.session_factory(engine)
    async with sessions() as session, session.begin():
        made = await repo.create(
            session,
            number=f"HD-{seq}",
            prefix="HD",
            seq=seq,
            status="open" if closed_ago is None else "closed",
            summary="VPN down",
            reproducible="yes",
            priority="P1",
            tier="standard",
            requester_id="UANA",
            technician_id="UTECH",
            source_platform="slack",
            source_channel="C0HELP",
            source_thread="1700000000.000100",
            created_at=now - timedelta(days=90),
            respond_by=now,
            resolve_by=now,
            closed_at=None if closed_ago is None else now - closed_ago,
        )
        return made.id


def row(
    name: str,
    *,
    ticket_id: int | None,
    age: timedelta,
    status: str = "delivered",
    kind: str = "message",
    dedup_key: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An outbox row finished `age` ago (its payload says which test row it is)."""
    at = utcnow() - age
    return {
        "kind": kind,
        "ticket_id": ticket_id,
        "dedup_key": dedup_key,
        "payload": {
            "name": name,
            "purpose": extra.pop("purpose", name),
            "platform": "slack",
            "channel": "C0HELP",
            "text": "y" * 2000,
            "card": CARD,
        },
        "status": status,
        "due_at": at,
        "attempts": 1,
        "claimed_by": "worker-1",
        "claimed_until": None,
        "last_error": "",
        "result": {},
        "created_at": at - timedelta(seconds=5),
        "delivered_at": at if status == "delivered" else None,
        "failure_reported": False,
        "in_doubt": False,
        **extra,
    }


async def store(engine: AsyncEngine, rows: list[dict[str, Any]]) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(OutboxMessage), rows)


async def by_name(engine: AsyncEngine, names: dict[int, str]) -> dict[str, dict[str, Any]]:
    """Every outbox row, by the test name it was stored with: `names` (id -> name) learns
    them on the first look, before the payloads are trimmed."""
    async with engine.connect() as conn:
        found = await conn.execute(select(OutboxMessage.__table__).order_by(OutboxMessage.id))
        rows = [dict(r) for r in found.mappings()]
    for r in rows:
        names.setdefault(r["id"], str(r["payload"].get("name")))
    return {names[r["id"]]: r for r in rows}


async def states(engine: AsyncEngine, ticket_id: int) -> list[outbox.DeliveryState]:
    sessions = db.session_factory(engine)
    async with sessions() as session:
        return await outbox.states_for(session, ticket_id)


class Counted:
    def __init__(self) -> None:
        self.trimmed = self.deleted = 0

    def outbox_pruned(self, *, trimmed: int, deleted: int) -> None:
        self.trimmed += trimmed
        self.deleted += deleted


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "bot.retention"]


OLD = KEEP + timedelta(days=1)


async def test_old_finished_rows_of_closed_tickets_keep_only_what_is_read(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    names: dict[int, str] = {}
    caplog.set_level(logging.INFO, logger="bot.retention")
    closed = await ticket(engine, 1, closed_ago=OLD)
    just_closed = await ticket(engine, 2, closed_ago=KEEP - timedelta(hours=1))
    still_open = await ticket(engine, 3, closed_ago=None)
    posted = {"channel": "C0INC", "ts": "1700000001.000200", "found": True, "raw": "z" * 4000}
    await store(
        engine,
        [
            # Closed long ago, finished long ago: trimmed.
            row("card", ticket_id=closed, age=OLD, result=posted, purpose="ticket-card"),
            row(
                "notice",
                ticket_id=closed,
                age=OLD,
                dedup_key="p1:HD-1:notice:slack",
                result=posted,
                purpose="incident-notice",
            ),
            row(
                "page",
                ticket_id=closed,
                age=OLD,
                kind="page.pagerduty",
                purpose="trigger",
                dedup_key="p1:HD-1:pagerduty",
                result={"status": "success", "raw": "r" * 900},
            ),
            row(
                "survey",
                ticket_id=closed,
                age=OLD,
                kind="dm",
                dedup_key="csat-survey:1",
                purpose="csat-survey",
                result={"channel": "DUANA", "ts": "1.2", "dm": True},
            ),
            row(
                "nudge",
                ticket_id=closed,
                age=OLD,
                status="cancelled",
                dedup_key="nudge:1",
                last_error="the ticket was escalated",
            ),
            row(
                "psa-note",
                ticket_id=closed,
                age=OLD,
                kind="psa.note",
                purpose="",
                result={"psa_id": "1", "went_without": "the requester"},
            ),
            row(
                "dead",
                ticket_id=closed,
                age=OLD,
                status="dead",
                attempts=5,
                last_error="channel_not_found",
            ),
            # Of the same ticket, left whole: in doubt, finished recently, not finished.
            row("doubt", ticket_id=closed, age=OLD, status="dead", in_doubt=True),
            row("recent", ticket_id=closed, age=KEEP - timedelta(hours=1)),
            row("late-delivery", ticket_id=closed, age=OLD, delivered_at=utcnow()),
            row(
                "pending",
                ticket_id=closed,
                age=OLD,
                status="pending",
                attempts=40,
                last_error="503",
            ),
            row(
                "claimed",
                ticket_id=closed,
                age=OLD,
                status="pending",
                claimed_until=utcnow() - timedelta(days=2),
            ),
            # Tickets open, or closed too recently: whole.
            row("open-card", ticket_id=still_open, age=OLD, result=posted),
            row("just-closed", ticket_id=just_closed, age=OLD, dedup_key="csat-survey:2"),
            # No ticket: deleted when nothing can ask for it again, else trimmed.
            row("answer", ticket_id=None, age=OLD, purpose="answer"),
            row("keyed", ticket_id=None, age=OLD, dedup_key="keyed:1"),
            row("fresh-answer", ticket_id=None, age=timedelta(hours=1)),
            row("pending-answer", ticket_id=None, age=OLD, status="pending"),
        ],
    )
    before = await by_name(engine, names)
    shown = await states(engine, closed)
    counted = Counted()
    prune = OutboxPrune(engine, observer=counted)
    assert await prune.run() == 9
    assert (counted.trimmed, counted.deleted) == (8, 1)
    [line] = lines(caplog)
    assert "trimmed 8 finished row(s)" in line and "deleted 1" in line, line

    after = await by_name(engine, names)
    assert "answer" not in after
    trimmed = {n for n, r in after.items() if r["trimmed_at"] is not None}
    assert trimmed == {"card", "notice", "page", "survey", "nudge", "psa-note", "dead", "keyed"}
    for name in trimmed:
        was, now = before[name], after[name]
        assert now["payload"] == {"purpose": was["payload"]["purpose"]}, name
        kept = {k: v for k, v in was["result"].items() if k in outbox_retention.KEPT_RESULT}
        assert now["result"] == kept, name
        # Every column but these is as it was: the dedup key, status, attempts, times...
        changed = {"payload", "result", "claimed_by", "trimmed_at"}
        assert {k: v for k, v in now.items() if k not in changed} == {
            k: v for k, v in was.items() if k not in changed
        }, name
        assert now["claimed_by"] is None
    assert after["notice"]["result"] == {"channel": "C0INC", "ts": "1700000001.000200"}
    for name in set(after) - trimmed:
        assert after[name] == before[name], name  # untouched, payload and all

    # `show` says exactly what it said before.
    assert await states(engine, closed) == shown
    # What has gone stays gone, what is whole stays whole: nothing left to do.
    assert await prune.run() == 0
    assert len(lines(caplog)) == 1


async def test_a_dedup_key_still_stops_a_second_survey_page_or_notice_after_the_trim(
    engine: AsyncEngine,
) -> None:
    closed = await ticket(engine, 1, closed_ago=OLD)
    keys = {
        "survey": ("dm", "csat-survey:1"),
        "followup": ("dm", "vip-followup:1"),
        "page": ("page.pagerduty", "p1:HD-1:pagerduty"),
        "resolve": ("page.pagerduty", "p1:HD-1:pagerduty:resolved"),
        "notice": ("message", "p1:HD-1:notice:slack"),
        "warning": ("message", "sla:HD-1:respond:warn:2026-12-01T10:00:00+00:00"),
        "nudge": ("message", "nudge:1"),
    }
    await store(
        engine,
        [row(n, ticket_id=closed, age=OLD, kind=k, dedup_key=key) for n, (k, key) in keys.items()],
    )
    assert await OutboxPrune(engine).run() == len(keys)
    sessions = db.session_factory(engine)
    async with sessions() as session, session.begin():
        for name, (kind, key) in keys.items():
            again = await outbox.enqueue(
                session, kind=kind, ticket_id=closed, payload={"name": name}, dedup_key=key
            )
            assert again is False, name
    async with engine.connect() as conn:
        pending = await conn.execute(
            select(OutboxMessage.id).where(OutboxMessage.status == "pending")
        )
        assert pending.all() == []


async def test_an_edit_queued_after_a_trimmed_message_still_finds_it(engine: AsyncEngine) -> None:
    """A notice update (or a resolve) waits for the row it follows and copies where that went
    from its result: kept by the trim."""
    closed = await ticket(engine, 1, closed_ago=OLD)
    posted = {"channel": "C0INC", "ts": "1700000001.000200", "activity_id": "a-1"}
    await store(
        engine,
        [row("notice", ticket_id=closed, age=OLD, result=posted, dedup_key="p1:HD-1:notice:slack")],
    )
    assert await OutboxPrune(engine).run() == 1
    sessions = db.session_factory(engine)
    async with sessions() as session, session.begin():
        [notice] = await outbox.by_dedup_keys(session, ["p1:HD-1:notice:slack"])
        assert notice.trimmed_at is not None
        follow = OutboxMessage(
            id=10_000,
            kind="update",
            ticket_id=closed,
            payload={
                "after": notice.id,
                "from_result": ["channel", "ts", "activity_id"],
                "purpose": "incident-notice-update",
                "text": "Resolved",
            },
            status="pending",
            in_doubt=False,
        )
        ready = await deliveries.prepare(session, message=follow)
    assert ready.payload is not None
    assert {k: ready.payload[k] for k in posted} == posted


async def test_a_run_trims_oldest_first_in_batches_of_their_own_transactions(
    engine: AsyncEngine,
) -> None:
    names: dict[int, str] = {}
    closed = await ticket(engine, 1, closed_ago=OLD + timedelta(days=30))
    still_open = await ticket(engine, 2, closed_ago=None)
    # The oldest rows are an open ticket's: passed over, once per run.
    rows = [
        row(f"open-{n}", ticket_id=still_open, age=OLD + timedelta(days=40 + n)) for n in range(5)
    ]
    rows += [row(f"r{n:02}", ticket_id=closed, age=OLD + timedelta(hours=n)) for n in range(10)]
    await store(engine, rows)
    await by_name(engine, names)
    prune = OutboxPrune(engine, batch=3, max_batches=2)
    assert await prune.run() == 6  # stops after max_batches; the next run goes on
    after = await by_name(engine, names)
    done = sorted(n for n, r in after.items() if r["trimmed_at"] is not None)
    assert done == [f"r{n:02}" for n in range(4, 10)]  # finished longest ago first
    assert await OutboxPrune(engine, batch=3).run() == 4
    after = await by_name(engine, names)
    assert all(after[f"r{n:02}"]["trimmed_at"] is not None for n in range(10))
    assert all(after[f"open-{n}"]["trimmed_at"] is None for n in range(5))


async def test_several_processes_trimming_at_once_trim_each_row_once_and_fail_nothing(
    db_url: str, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    names: dict[int, str] = {}
    caplog.set_level(logging.INFO, logger="bot.retention")
    tickets = [await ticket(engine, n, closed_ago=OLD) for n in range(1, 4)]
    rows = [
        row(
            f"r{n:03}",
            ticket_id=tickets[n % 3],
            age=OLD + timedelta(seconds=n),
            dedup_key=f"k:{n}" if n % 2 else None,
        )
        for n in range(240)
    ]
    rows += [row(f"a{n:03}", ticket_id=None, age=OLD + timedelta(seconds=n)) for n in range(60)]
    rows += [row(f"new{n}", ticket_id=tickets[0], age=timedelta(hours=n)) for n in range(3)]
    await store(engine, rows)
    await by_name(engine, names)
    engines = [db.create_engine(db_url) for _ in range(3)]  # one each, as processes have
    counted = [Counted() for _ in engines]
    try:
        runs = [
            OutboxPrune(e, batch=20, max_batches=100, observer=c)
            for e, c in zip(engines, counted, strict=True)
        ]
        done = await asyncio.gather(*(run.run() for run in runs))
    finally:
        for each in engines:
            await each.dispose()
    assert sum(done) == 300, done
    assert sum(c.trimmed for c in counted) == 240
    assert sum(c.deleted for c in counted) == 60
    after = await by_name(engine, names)
    assert sorted(n for n, r in after.items() if r["trimmed_at"] is None) == [
        "new0",
        "new1",
        "new2",
    ]
    assert len(after) == 243
    assert all("trimmed" in line for line in lines(caplog)), lines(caplog)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_ticket_closed_long_ago_whose_last_rows_finished_late_waits_for_them(
    engine: AsyncEngine,
) -> None:
    """A survey delayed past the ticket's closure is trimmed KEEP after it went, not before."""
    closed = await ticket(engine, 1, closed_ago=OLD)
    await store(
        engine,
        [
            row(
                "survey",
                ticket_id=closed,
                age=timedelta(days=3),
                kind="dm",
                dedup_key="csat-survey:1",
            )
        ],
    )
    assert await OutboxPrune(engine).run() == 0
    async with engine.begin() as conn:
        await conn.execute(
            update(OutboxMessage).values(due_at=utcnow() - OLD, delivered_at=utcnow() - OLD)
        )
    assert await OutboxPrune(engine).run() == 1


async def test_the_closure_time_is_what_counts_for_a_ticket(engine: AsyncEngine) -> None:
    at: datetime = utcnow()
    closed = await ticket(engine, 1, closed_ago=timedelta(days=1))
    await store(engine, [row("card", ticket_id=closed, age=OLD)])
    assert await OutboxPrune(engine).run() == 0
    async with engine.begin() as conn:
        await conn.execute(update(Ticket).values(closed_at=at - OLD))
    assert await OutboxPrune(engine).run() == 1
