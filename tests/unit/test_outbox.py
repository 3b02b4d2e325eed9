"""The outbox and its worker against both databases: leases, backoff, reports, ordering."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.notifiers import DeliveryError, Notifiers
from bot.outbox_worker import OutboxWorker
from bot.settings import ConfigError, lease_from_env
from handlers import deliveries
from handlers.config import HelpdeskConfig
from storage import db, outbox
from storage import tickets as repo
from storage.models import OutboxMessage, Ticket, utcnow
from tests.harness import wait_until

CONFIG = HelpdeskConfig()

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[Sessions]:
    engine = db.create_engine(db_url)
    yield db.session_factory(engine)
    await engine.dispose()


class Stub:
    """A notifier that fails as scripted, then succeeds; records what it was given."""

    def __init__(
        self, *failures: DeliveryError, result: dict[str, Any] | None = None, slow: float = 0.0
    ) -> None:
        self.failures = list(failures)
        self.sent: list[OutboxMessage] = []
        self.at: list[float] = []
        self.result = result or {"channel": "C0", "ts": "1.0"}
        self.slow = slow  # seconds each delivery takes (the receiver's answer is slow)

    async def deliver(self, message: OutboxMessage) -> dict[str, Any]:
        self.at.append(time.monotonic())
        if self.slow:
            await asyncio.sleep(self.slow)
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(message)
        return dict(self.result)


def notifiers(**by_key: Stub) -> Notifiers:
    registry = Notifiers()
    for key, stub in by_key.items():
        registry.register(key.replace("__", ":").replace("_", "."), stub)
    return registry


@asynccontextmanager
async def running(
    sessions: Sessions, worker: OutboxWorker, *, wake: bool = False, renewing: bool = True
) -> AsyncIterator[AsyncIOScheduler]:
    """`worker` scheduled, taking its process's hand-offs (and woken by commits, if `wake`),
    as the app runs it; stopped afterwards. `renewing=False`: no lease renewal job."""
    scheduler = AsyncIOScheduler(timezone="UTC")
    worker.schedule(scheduler)
    if not renewing:
        scheduler.remove_job("outbox-lease")
    if wake:
        outbox.on_enqueue_commit(sessions, worker.wake)
    outbox.hand_off_on_commit(sessions, worker.handoff())
    scheduler.start()
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)
        await worker.close()


async def make_ticket(sessions: Sessions, number: str = "HD-7") -> Ticket:
    now = utcnow()
    async with sessions() as session, session.begin():
        return await repo.create(
            session,
            number=number,
            prefix="HD",
            seq=int(number.split("-")[1]),
            status="open",
            summary="VPN down",
            reproducible="yes",
            priority="P1",
            tier="standard",
            requester_id="UANA",
            technician_id="UTECH",
            source_platform="slack",
            source_channel="C0HELP",
            source_thread="1700000000.000100",
            created_at=now,
            respond_by=now + timedelta(minutes=30),
            resolve_by=now + timedelta(hours=4),
        )


async def queue(sessions: Sessions, kind: str, n: int = 1, **kwargs: Any) -> None:
    async with sessions() as session, session.begin():
        for i in range(n):
            payload = {"platform": "slack", "channel": "C0", "text": f"m{i}"}
            await outbox.enqueue(
                session, kind=kind, payload=kwargs.pop("payload", payload), **kwargs
            )


async def rows(sessions: Sessions) -> list[OutboxMessage]:
    async with sessions() as session:
        return list(
            (await session.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars()
        )


async def make_due(sessions: Sessions) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            update(OutboxMessage).where(OutboxMessage.status == "pending").values(due_at=utcnow())
        )


def reports(all_rows: list[OutboxMessage]) -> list[str]:
    return [
        r.payload["text"] for r in all_rows if r.payload.get("purpose") == deliveries.REPORT_PURPOSE
    ]


async def test_dedup_key_queues_once(sessions: Sessions):
    async with sessions() as session, session.begin():
        first = await outbox.enqueue(
            session, kind="page.pagerduty", payload={}, dedup_key="p1:HD-7:pagerduty"
        )
        again = await outbox.enqueue(
            session, kind="page.pagerduty", payload={}, dedup_key="p1:HD-7:pagerduty"
        )
    assert (first, again) == (True, False)
    assert len(await rows(sessions)) == 1


async def test_lease_keeps_others_off_until_it_runs_out(sessions: Sessions):
    await queue(sessions, "message", 3)
    async with sessions() as session, session.begin():
        mine = await outbox.claim_due(session, worker="a", lease=timedelta(seconds=5))
    async with sessions() as session, session.begin():
        none = await outbox.claim_due(session, worker="b")
    assert len(mine) == 3 and none == []
    later = utcnow() + timedelta(seconds=6)
    async with sessions() as session, session.begin():
        taken = await outbox.claim_due(session, worker="b", now=later)
    assert [r.attempts for r in taken] == [2, 2, 2]
    async with sessions() as session, session.begin():
        # The first worker's late result is ignored: the row is b's now.
        assert not await outbox.mark_delivered(
            session, message_id=taken[0].id, worker="a", result={}
        )
        assert await outbox.mark_delivered(session, message_id=taken[0].id, worker="b", result={})


async def test_concurrent_claims_are_disjoint(sessions: Sessions):
    await queue(sessions, "message", 120)

    async def claim(worker: str) -> list[int]:
        async with sessions() as session, session.begin():
            return [r.id for r in await outbox.claim_due(session, worker=worker, limit=80)]

    results = await asyncio.gather(*(claim(f"w{i}") for i in range(3)))
    claimed = [i for ids in results for i in ids]
    assert len(claimed) == len(set(claimed)) == 120


def test_backoff_starts_within_5s_and_caps_at_5_minutes():
    first = [outbox.backoff(1) for _ in range(200)]
    assert all(0 < d <= 5 for d in first)
    delays = [outbox.backoff(n) for n in range(1, 30)]
    assert max(delays) <= 300 and delays[-1] > 200
    assert outbox.backoff(3) > outbox.backoff(1)
    assert all(7.0 <= outbox.backoff(1, retry_after=7) <= 8.0 for _ in range(100))
    assert outbox.backoff(1, retry_after=10**6) <= 3600 + 1


async def test_failed_attempt_waits_for_retry_after(sessions: Sessions):
    await queue(sessions, "message")
    async with sessions() as session, session.begin():
        [row] = await outbox.claim_due(session, worker="a")
        await outbox.mark_failed(
            session,
            message_id=row.id,
            worker="a",
            error="429",
            attempts=row.attempts,
            retry_after=30,
        )
    [row] = await rows(sessions)
    assert row.status == "pending" and row.claimed_until is None
    assert row.due_at >= utcnow() + timedelta(seconds=29)
    async with sessions() as session, session.begin():
        assert await outbox.claim_due(session, worker="a") == []
        assert (
            len(await outbox.claim_due(session, worker="a", now=utcnow() + timedelta(seconds=32)))
            == 1
        )


async def test_defer_and_cancel(sessions: Sessions):
    """Only a row that certainly did not reach its receiver, and that nobody is attempting,
    is cancelled: never tried, or tried and refused cleanly. Not one in doubt (a timeout, a
    lease that lapsed mid-attempt), nor one claimed right now."""
    await queue(sessions, "message", 5)
    async with sessions() as session, session.begin():
        untried, refused, timed_out, sending, lapsed = await outbox.claim_due(
            session, worker="a", lease=timedelta(seconds=60)
        )
        await outbox.defer(session, message_id=untried.id, worker="a", seconds=0)
        await outbox.mark_failed(session, message_id=refused.id, worker="a", error="429",
                                 attempts=1)  # fmt: skip
        await outbox.mark_failed(session, message_id=timed_out.id, worker="a", error="timeout",
                                 attempts=1, uncertain=True)  # fmt: skip
        # `lapsed`: its worker died mid-attempt; nothing was recorded and the lease ran out.
        await session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == lapsed.id)
            .values(claimed_until=utcnow() - timedelta(seconds=1))
        )
    async with sessions() as session, session.begin():
        assert await outbox.cancel_unsent(session, message_id=untried.id, reason="closed")
        # Refused (429, 4xx, 5xx, refused connection): it did not arrive, it may be cancelled.
        assert await outbox.cancel_unsent(session, message_id=refused.id, reason="closed")
        # It may have arrived: not cancelled, the caller follows it up instead.
        assert not await outbox.cancel_unsent(session, message_id=timed_out.id, reason="closed")
        assert not await outbox.cancel_unsent(session, message_id=lapsed.id, reason="closed")
        # Being sent right now: not cancelled under its sender.
        assert not await outbox.cancel_unsent(session, message_id=sending.id, reason="closed")
    states = [(r.status, r.attempts, r.last_error) for r in await rows(sessions)]
    assert states == [
        ("cancelled", 0, "closed"),
        ("cancelled", 1, "closed"),
        ("pending", 1, "timeout"),
        ("pending", 1, ""),
        ("pending", 1, ""),
    ]
    # The worker still holds the one it is sending, and records its outcome.
    async with sessions() as session, session.begin():
        assert await outbox.mark_delivered(session, message_id=sending.id, worker="a", result={})
    # A later clean failure does not clear the doubt of an earlier attempt.
    async with sessions() as session, session.begin():
        later = utcnow() + timedelta(hours=1)
        [again] = await outbox.claim_due(session, worker="a", now=later, limit=1)
        assert again.id == lapsed.id and again.in_doubt  # taken over: in doubt
        await outbox.mark_failed(session, message_id=again.id, worker="a", error="429",
                                 attempts=2)  # fmt: skip
    async with sessions() as session, session.begin():
        assert not await outbox.cancel_unsent(session, message_id=again.id, reason="closed")


def test_lease_setting():
    assert lease_from_env({}) == 20
    assert lease_from_env({"OUTBOX_LEASE_SECONDS": "2.5"}) == 2.5
    for bad in ("soon", "0", "-3"):
        with pytest.raises(ConfigError, match="OUTBOX_LEASE_SECONDS"):
            lease_from_env({"OUTBOX_LEASE_SECONDS": bad})


async def test_page_failure_is_reported_at_once_and_success_too(sessions: Sessions):
    ticket = await make_ticket(sessions)
    pager = Stub(DeliveryError('pagerduty: HTTP 500 {"status": "error"}'))
    slack = Stub()
    worker = OutboxWorker(
        sessions, notifiers(page_pagerduty=pager, message__slack=slack), config=CONFIG
    )
    await queue(
        sessions,
        "page.pagerduty",
        ticket_id=ticket.id,
        dedup_key="p1:HD-7:pagerduty",
        payload={"event_action": "trigger", "dedup_key": "HD-7", "ticket": "HD-7"},
    )
    await worker.run()
    after_first = await rows(sessions)
    assert after_first[0].failure_reported and after_first[0].status == "pending"
    assert reports(after_first) == [
        "The PagerDuty page for HD-7 has not gone through yet (pagerduty: HTTP 500 "
        '{"status": "error"}); retrying.'
    ]
    report = after_first[1]
    assert (report.payload["channel"], report.payload["thread"]) == ("C0HELP", "1700000000.000100")
    await make_due(sessions)
    await worker.run()
    texts = reports(await rows(sessions))
    assert texts[1] == "The PagerDuty page for HD-7 has gone through now (attempt 2)."
    assert len(pager.sent) == 1
    await worker.run()  # (the app's commit hook would have woken it for the new report)
    assert len(slack.sent) == 2


async def test_other_kinds_are_reported_once_past_the_threshold(sessions: Sessions):
    ticket = await make_ticket(sessions)
    errors = [DeliveryError("slack: fatal_error") for _ in range(5)]
    slack = Stub(*errors)
    worker = OutboxWorker(sessions, notifiers(message__slack=slack), config=CONFIG)
    await queue(
        sessions,
        "message",
        ticket_id=ticket.id,
        payload={"platform": "slack", "channel": "C0INCIDENT", "purpose": "x"},
    )
    seen = []
    for _ in range(5):
        await worker.run()
        await make_due(sessions)
        seen.append(len(reports(await rows(sessions))))
    # Attempts 1-2 quiet; attempt 3 reports; the report itself fails once (run 4) but never
    # reports on itself; run 5 delivers both, and the technician hears it went through.
    assert seen == [0, 0, 1, 1, 2]
    texts = reports(await rows(sessions))
    assert texts[0] == (
        "The message (x) for HD-7 has not been delivered after 3 attempts "
        "(slack: fatal_error); still retrying."
    )
    assert texts[1] == "The message (x) for HD-7 has gone through now (attempt 5)."


@pytest.mark.parametrize(
    ("kind", "purpose", "dedup_key", "said"),
    [
        ("dm", "csat-survey", None, "The CSAT survey to the requester for HD-7"),
        ("dm", "fix-confirm", None, "The fix confirmation request to the requester for HD-7"),
        (
            "message",
            "sla-warning",
            "sla:HD-7:respond:warning:thread:1",
            "The SLA warning (respond by) for HD-7",
        ),
        ("dm", "vip-followup", None, "The VIP follow-up reminder for HD-7"),
    ],
)
async def test_a_failure_report_names_the_delivery_as_show_does(
    sessions: Sessions, kind: str, purpose: str, dedup_key: str | None, said: str
):
    """The report said "The direct message (csat-survey) for HD-7 ..." (seen in the Agents
    Playground) where `show` says "CSAT survey to the requester"."""
    ticket = await make_ticket(sessions)
    failing = Stub(*(DeliveryError("teams: HTTP 500 UserNotFound") for _ in range(3)))
    slack = Stub()
    notifier = {f"{kind}__teams": failing, "message__slack": slack}
    worker = OutboxWorker(sessions, notifiers(**notifier), config=CONFIG)
    payload = {"platform": "teams", "user": "29:1ana", "channel": "19:x", "purpose": purpose}
    await queue(sessions, kind, ticket_id=ticket.id, payload=payload, dedup_key=dedup_key)
    for _ in range(3):
        await worker.run()
        await make_due(sessions)
    [text] = reports(await rows(sessions))
    assert text.startswith(f"{said}"), text
    assert "(" + purpose + ")" not in text and "direct message" not in text, text


async def test_permanent_failure_goes_dead_and_is_reported(sessions: Sessions):
    ticket = await make_ticket(sessions)
    pager = Stub(DeliveryError("opsgenie: HTTP 401 Could not authenticate", permanent=True))
    worker = OutboxWorker(
        sessions, notifiers(page_opsgenie=pager, message__slack=Stub()), config=CONFIG
    )
    await queue(
        sessions, "page.opsgenie", ticket_id=ticket.id, payload={"op": "create", "alias": "HD-7"}
    )
    await worker.run()
    all_rows = await rows(sessions)
    assert all_rows[0].status == "dead"
    assert "will not be retried" in reports(all_rows)[0]


async def test_follow_up_waits_for_its_row_and_takes_its_result(sessions: Sessions):
    ticket = await make_ticket(sessions)
    slack = Stub(
        DeliveryError("slack: ratelimited", retry_after=0.0),
        result={"channel": "C0INCIDENT", "ts": "1700000001.000200"},
    )
    worker = OutboxWorker(
        sessions, notifiers(message__slack=slack, update__slack=slack), config=CONFIG
    )
    await queue(
        sessions,
        "message",
        ticket_id=ticket.id,
        payload={"platform": "slack", "channel": "#incident", "purpose": "notice"},
    )
    [notice] = await rows(sessions)
    await queue(
        sessions,
        "update",
        ticket_id=ticket.id,
        payload={
            "platform": "slack",
            "channel": "#incident",
            "after": notice.id,
            "from_result": ["channel", "ts"],
            "text": "resolved",
        },
    )
    await worker.run()
    first, update_row = await rows(sessions)
    assert first.status == "pending" and first.attempts == 1
    assert update_row.status == "pending" and update_row.attempts == 0  # deferred, untried
    await make_due(sessions)
    for _ in range(3):
        await worker.run()
        await make_due(sessions)
    [_, update_row] = await rows(sessions)
    assert update_row.status == "delivered"
    sent = {m.kind: m.payload for m in slack.sent}
    assert (sent["update"]["channel"], sent["update"]["ts"]) == ("C0INCIDENT", "1700000001.000200")


async def test_commit_wakes_the_worker_within_a_second(sessions: Sessions):
    slack = Stub()
    worker = OutboxWorker(sessions, notifiers(message__slack=slack), config=CONFIG, poll=30)
    scheduler = AsyncIOScheduler(timezone="UTC")
    worker.schedule(scheduler)
    outbox.on_enqueue_commit(sessions, worker.wake)
    scheduler.start()
    try:
        await asyncio.sleep(0.2)  # the first (empty) run is over; the poll is 30 s away
        latencies = []
        for _ in range(5):
            before = len(slack.at)
            committed = time.monotonic()
            await queue(sessions, "message")
            while len(slack.at) == before:
                assert time.monotonic() - committed < 1.0, "not delivered within 1 s"
                await asyncio.sleep(0.005)
            latencies.append(slack.at[-1] - committed)
    finally:
        scheduler.shutdown(wait=False)
        await worker.close()
    assert max(latencies) < 1.0


async def test_follow_up_of_a_row_that_never_went_out_is_cancelled_quietly(sessions: Sessions):
    ticket = await make_ticket(sessions)
    pager = Stub(DeliveryError("pagerduty: HTTP 400 Invalid routing key", permanent=True))
    worker = OutboxWorker(
        sessions, notifiers(page_pagerduty=pager, message__slack=Stub()), config=CONFIG
    )
    await queue(
        sessions,
        "page.pagerduty",
        ticket_id=ticket.id,
        payload={"event_action": "trigger", "dedup_key": "HD-7"},
    )
    [trigger] = await rows(sessions)
    await queue(
        sessions,
        "page.pagerduty",
        ticket_id=ticket.id,
        payload={"event_action": "resolve", "dedup_key": "HD-7", "after": trigger.id},
    )
    await worker.run()
    await make_due(sessions)
    await worker.run()
    all_rows = await rows(sessions)
    assert [r.status for r in all_rows[:2]] == ["dead", "cancelled"]
    assert pager.sent == []
    # One report (the dead trigger), none for the resolve that was never needed.
    assert len(reports(all_rows)) == 1


async def test_rows_queued_in_its_process_are_claimed_in_the_insert_and_handed_over(
    sessions: Sessions,
):
    """The worker takes what its own process queues, due now, straight from the commit: the
    row is claimed in its INSERT (attempt 1, leased to the worker), with no claim or poll."""
    slack = Stub()
    worker = OutboxWorker(sessions, notifiers(message__slack=slack), config=CONFIG, poll=30)
    async with running(sessions, worker):  # no wake-up: only the hand-off
        await asyncio.sleep(0.2)  # the first (empty) run is over; the poll is 30 s away
        async with sessions() as session, session.begin():
            payload = {"platform": "slack", "channel": "C0", "text": "now"}
            await outbox.enqueue(session, kind="message", payload=payload, dedup_key="k1")
            [queued] = (await session.execute(select(OutboxMessage))).scalars().all()
            # Claimed by the worker in the same INSERT, before anyone else could see it.
            assert (queued.claimed_by, queued.attempts) == (worker.worker_id, 1)
            assert queued.claimed_until is not None and queued.claimed_until > utcnow()
            assert slack.sent == []  # nothing leaves before the commit
            # Queued again under its dedup key: nothing new, nothing handed over twice.
            assert not await outbox.enqueue(session, kind="message", payload=payload,
                                            dedup_key="k1")  # fmt: skip
        started = time.monotonic()
        while not slack.sent:
            assert time.monotonic() - started < 1.0, "not delivered within 1 s"
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.1)
        [delivered] = await rows(sessions)
        assert (delivered.status, delivered.attempts, delivered.claimed_until) == (
            "delivered", 1, None,
        )  # fmt: skip

        # Rolled back: the row never existed, and nothing is handed over.
        with pytest.raises(RuntimeError):
            async with sessions() as session, session.begin():
                await outbox.enqueue(session, kind="message", payload={"text": "gone"})
                raise RuntimeError("the request failed")
        # Due later: left for the poll, unclaimed, when it is due.
        later = utcnow() + timedelta(minutes=5)
        await queue(sessions, "message", due_at=later)
        await asyncio.sleep(0.3)
        assert len(slack.sent) == 1
        assert [(r.status, r.claimed_by, r.attempts) for r in (await rows(sessions))[1:]] == [
            ("pending", None, 0)
        ]


async def test_a_worker_takes_no_more_than_it_has_room_for_and_frees_what_never_came(
    sessions: Sessions,
):
    """Room is counted from the INSERT (not the commit): one transaction queuing many rows,
    or several open at once, cannot claim more rows than the worker has delivery slots;
    rolled back or duplicate rows give their places back."""
    slack = Stub()
    worker = OutboxWorker(
        sessions, notifiers(message__slack=slack), config=CONFIG, poll=30, concurrency=2
    )
    async with running(sessions, worker):
        await asyncio.sleep(0.2)
        # Rolled back, a duplicate, a session closed with its transaction open: nothing kept.
        with pytest.raises(RuntimeError):
            async with sessions() as session, session.begin():
                await outbox.enqueue(
                    session, kind="message", payload={"platform": "slack", "text": "gone"}
                )
                raise RuntimeError("the request failed")
        async with sessions() as session, session.begin():
            await outbox.enqueue(
                session, kind="message", payload={"platform": "slack", "text": "a"}, dedup_key="d"
            )
        async with sessions() as session, session.begin():
            again = {"platform": "slack", "text": "a"}
            assert not await outbox.enqueue(session, kind="message", payload=again, dedup_key="d")
        session = sessions()
        await outbox.enqueue(
            session, kind="message", payload={"platform": "slack", "text": "never committed"}
        )
        await session.close()
        await asyncio.sleep(0.2)
        assert [m.payload["text"] for m in slack.sent] == ["a"]
        assert worker._reserved == 0 and not worker._held

        await queue(sessions, "message", n=5)  # room for 2 (two delivery slots)
        fresh = (await rows(sessions))[-5:]
        assert [(r.claimed_by is not None, r.attempts) for r in fresh] == [
            (True, 1), (True, 1), (False, 0), (False, 0), (False, 0),
        ]  # fmt: skip
        await wait_until(lambda: len(slack.sent) >= 3, timeout=5, what="the two handed over")
        # The rest are for any worker's claim: this one's (woken by the commit, claiming as
        # its slots free up) may have taken some already; each is sent once, on attempt 1.
        await worker.run()
        await wait_until(lambda: len(slack.sent) == 6, timeout=5, what="the other three")
        assert worker._reserved == 0
        assert sorted((r.status, r.attempts) for r in fresh[-3:]) == [("pending", 0)] * 3
        done = (await rows(sessions))[-5:]
        assert [(r.status, r.attempts) for r in done] == [("delivered", 1)] * 5
    await queue(sessions, "message")  # after close: nothing is claimed for a stopped worker
    assert [(r.claimed_by, r.attempts) for r in (await rows(sessions))[-1:]] == [(None, 0)]


async def test_a_handed_row_whose_transaction_outlived_its_lease_is_sent_once(
    sessions: Sessions,
):
    """A transaction that commits late (lock waits, a stalled loop) may leave its rows' lease
    nearly or wholly run out: another worker may claim them at once. Whichever worker gets
    there first sends; the row goes out once."""
    first, second = Stub(), Stub()
    mine = OutboxWorker(sessions, notifiers(message__slack=first), config=CONFIG, poll=30,
                        lease=1.0)  # fmt: skip
    other = OutboxWorker(sessions, notifiers(message__slack=second), config=CONFIG, poll=30,
                         lease=1.0)  # fmt: skip
    scheduler = AsyncIOScheduler(timezone="UTC")
    mine.schedule(scheduler)
    outbox.hand_off_on_commit(sessions, mine.handoff())
    scheduler.start()
    try:
        await asyncio.sleep(0.2)
        late = {"platform": "slack", "text": "late"}
        # Another worker, then this worker's own poll, race the hand-off for the lease.
        for racer in (other, other, other, mine, mine, mine):
            async with sessions() as session, session.begin():
                await outbox.enqueue(session, kind="message", payload=late)
                await asyncio.sleep(1.3)  # past the lease taken in the INSERT
            await racer.run()
            await asyncio.sleep(0.5)
        assert len(first.sent) + len(second.sent) == 6, (first.sent, second.sent)
        assert [r.status for r in await rows(sessions)] == ["delivered"] * 6
    finally:
        scheduler.shutdown(wait=False)
        await mine.close()
        await other.close()


async def test_a_handed_row_whose_delivery_breaks_is_logged_and_left_to_its_lease(
    sessions: Sessions, caplog: pytest.LogCaptureFixture
):
    slack = Stub()
    worker = OutboxWorker(sessions, notifiers(message__slack=slack), config=CONFIG, poll=30)
    async with running(sessions, worker):
        await asyncio.sleep(0.2)
        broken = {"platform": "slack", "text": "x", "after": "not a row id"}  # prepare raises
        async with sessions() as session, session.begin():
            await outbox.enqueue(session, kind="message", payload=broken)
        await wait_until(
            lambda: "outbox delivery of row" in caplog.text, timeout=5, what="the log line"
        )
        assert slack.sent == [] and not worker._held
        [row] = await rows(sessions)
        assert (row.status, row.attempts, row.claimed_by) == ("pending", 1, worker.worker_id)


async def test_a_redelivery_refused_before_its_row_is_queued_keeps_no_place(sessions: Sessions):
    """The delivery claim is a transaction's first statement: a redelivery is refused while
    the transaction gets its connection, before the row's INSERT. No place stays reserved
    (they would add up and switch the hand-off off)."""
    from storage import inbound

    worker = OutboxWorker(sessions, notifiers(message__slack=Stub()), config=CONFIG, poll=30)
    async with running(sessions, worker):
        await asyncio.sleep(0.1)
        payload = {"platform": "slack", "text": "once"}
        for attempt in range(3):
            binding = inbound.Binding(key="delivery-1", writes=True)
            try:
                async with inbound.bound(sessions, binding)() as session:
                    async with session.begin():
                        await outbox.enqueue(session, kind="message", payload=payload)
            except inbound.AlreadyHandled:
                assert attempt > 0
            assert worker._reserved == 0
        await wait_until(lambda: not worker._held, timeout=5, what="the delivery")
        assert len(await rows(sessions)) == 1


async def test_a_page_is_not_handed_over_while_no_delivery_slot_is_free(sessions: Sessions):
    """A handed row holds an attempt and a lease from its INSERT; one waiting for a slot could
    not be cancelled (SPEC: a P1 closed before its page went out is not paged). So rows are
    handed over only while a slot is free; the rest stay unclaimed, cancellable."""
    slack, pager = Stub(slow=1.0), Stub()
    worker = OutboxWorker(
        sessions, notifiers(message__slack=slack, page_pagerduty=pager), config=CONFIG,
        poll=30, concurrency=1,
    )  # fmt: skip
    async with running(sessions, worker, wake=True):  # the wake-up wired as the app does
        await asyncio.sleep(0.1)
        await queue(sessions, "message")  # handed over; its slow send takes the one slot
        await wait_until(lambda: slack.at, timeout=5, what="the slow send to start")
        await queue(sessions, "page.pagerduty", payload={"event_action": "trigger",
                                                         "dedup_key": "HD-7"})  # fmt: skip
        await queue(sessions, "page.pagerduty", payload={"event_action": "trigger",
                                                         "dedup_key": "HD-8"})  # fmt: skip
        await asyncio.sleep(0.2)  # the commits woke the worker: it claims nothing yet
        first, second = (await rows(sessions))[-2:]
        assert [(r.claimed_by, r.attempts) for r in (first, second)] == [(None, 0)] * 2
        async with sessions() as session, session.begin():
            assert await outbox.cancel_unsent(session, message_id=first.id, reason="closed")
        # The slot frees: the page still owed goes out at once (the poll is 30 s away).
        await wait_until(lambda: pager.sent, timeout=3, what="the second page")
        assert [m.payload["dedup_key"] for m in pager.sent] == ["HD-8"]


async def test_a_hand_off_given_up_does_not_drop_the_lease_of_its_own_later_claim(
    sessions: Sessions,
):
    """The transaction outlived the lease; the hand-off is given, then this worker's poll
    claims the row again (attempt 2) before the hand-off renews it. Neither may drop the
    other's lease while it sends, nor may both send: the row goes out once in all (here the
    poll leaves it to the attempt in hand, whose renewal then fails, and after the lease
    another worker sends it)."""
    mine_stub, other_stub = Stub(slow=3.0), Stub()
    mine = OutboxWorker(sessions, notifiers(message__slack=mine_stub), config=CONFIG, poll=30,
                        lease=1.0)  # fmt: skip
    other = OutboxWorker(sessions, notifiers(message__slack=other_stub), config=CONFIG,
                         poll=30, lease=1.0)  # fmt: skip
    scheduler = AsyncIOScheduler(timezone="UTC")
    mine.schedule(scheduler)
    handed: list[OutboxMessage] = []
    # The hand-off as the worker takes it, held back here to be given after the poll starts.
    outbox.hand_off_on_commit(
        sessions,
        outbox.Handoff(worker=mine.worker_id, lease=mine.lease, clock=mine.clock,
                       reserve=lambda: True, release=lambda n: None, take=handed.extend),
    )  # fmt: skip
    scheduler.start()
    try:
        await asyncio.sleep(0.1)
        async with sessions() as session, session.begin():
            await outbox.enqueue(session, kind="message", payload={"platform": "slack"})
        await asyncio.sleep(1.1)  # the INSERT's lease has run out
        # The poll starts first; the hand-off (what the commit hook calls) right after it, so
        # its renewal comes after the poll's claim (attempt 2) and fails.
        polled = asyncio.ensure_future(mine.run())
        mine._take(list(handed))
        await polled
        await asyncio.sleep(1.5)  # past any lease nobody renews
        await other.run()
        # Under load the hand-off's renewal can win the race and the slow send (3 s) goes out
        # from this worker instead: either way it goes out once in all.
        sent = lambda: len(mine_stub.sent) + len(other_stub.sent)  # noqa: E731
        await wait_until(sent, timeout=8, what="the row to be sent")
        await asyncio.sleep(0.5)
        assert sent() == 1, (mine_stub.sent, other_stub.sent)
    finally:
        scheduler.shutdown(wait=False)
        await mine.close()
        await other.close()


async def test_a_row_still_in_hand_is_not_sent_again_when_its_lease_ran_out(sessions: Sessions):
    """Renewals could not reach the database for a whole lease (an outage) while a slow send
    of a handed row went on; the row is then due again and this worker's own poll claims it.
    It must not send it a second time: the attempt in hand ends and is recorded."""
    slack = Stub(slow=2.0)
    worker = OutboxWorker(sessions, notifiers(message__slack=slack), config=CONFIG, poll=30,
                          lease=1.0)  # fmt: skip
    async with running(sessions, worker, renewing=False):  # as if every renewal failed
        await asyncio.sleep(0.1)
        await queue(sessions, "message")
        await wait_until(lambda: slack.at, timeout=5, what="the slow send to start")
        await asyncio.sleep(1.2)  # its lease has run out, not renewed
        assert await worker.run() == 1  # claimed again...
        await wait_until(lambda: slack.sent, timeout=5, what="the slow send to end")
        await asyncio.sleep(0.3)
        assert len(slack.at) == 1  # ...but not sent again
        [row] = await rows(sessions)
        assert row.status == "delivered"


async def test_rows_left_by_a_run_with_little_room_are_claimed_as_soon_as_a_slot_frees(
    sessions: Sessions,
):
    """A run that found one free slot (the other busy with a slow hand-off) claims one row;
    the rest are claimed when that delivery ends, not at the next poll (30 s here)."""
    slow, slack = Stub(slow=3.0), Stub()
    worker = OutboxWorker(
        sessions,
        notifiers(update__slack=slow, message__slack=slack),
        config=CONFIG,
        poll=30,
        concurrency=2,
    )
    async with running(sessions, worker):
        await asyncio.sleep(0.2)
        await queue(sessions, "update")  # handed over: one slot busy for 3 s
        await wait_until(lambda: len(slow.at) == 1, what="the slow delivery under way")
        await queue(sessions, "message", n=3)  # one handed over (the free slot), two wait
        await wait_until(lambda: len(slack.sent) == 1, what="the handed-over message")
        started = time.monotonic()
        await worker.run()  # room for one
        await wait_until(lambda: len(slack.sent) == 3, timeout=2, what="the rows left waiting")
        assert time.monotonic() - started < 2 and not slow.sent  # the slow one still going


async def test_an_outcome_whose_commit_answer_was_lost_is_recorded_once(db_url: str):
    """The worker records a delivery; PostgreSQL commits it and the connection breaks before
    the answer comes back, so the worker keeps the outcome and records it again later. The
    second recording must find the outcome already there: the audit trail says delivered once
    (and the hooks after a delivery, a PSA create's among them, run once)."""
    if not db_url.startswith("postgresql"):
        pytest.skip("a COMMIT's answer cannot be lost on SQLite: PostgreSQL only")
    from sqlalchemy.engine import make_url

    from storage.models import TicketEvent
    from tests.fakes.tcp_proxy import TcpProxy

    url = make_url(db_url)
    proxy = await TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    direct = db.create_engine(db_url)
    proxied = db.create_engine(
        url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    )
    try:
        plain, through = db.session_factory(direct), db.session_factory(proxied)
        ticket = await make_ticket(plain)
        slack = Stub(result={"channel": "C0", "ts": "1700000001.marker-5e2b"})
        worker = OutboxWorker(through, notifiers(message__slack=slack), config=CONFIG, poll=30)
        await queue(plain, "message", ticket_id=ticket.id)
        proxy.lose_commit_answer(b"marker-5e2b")
        assert await worker.run() == 1
        assert proxy.commit_answers_lost == 1 and worker._unrecorded  # kept for later
        await worker.record_pending()
        assert not worker._unrecorded
        [row] = await rows(plain)
        assert (row.status, row.claimed_until, len(slack.sent)) == ("delivered", None, 1)
        query = select(TicketEvent.kind).where(TicketEvent.kind.like("delivery.%"))
        async with plain() as session:
            kinds = (await session.execute(query)).scalars().all()
        assert kinds == ["delivery.delivered"]
    finally:
        await proxied.dispose()
        await direct.dispose()
        await proxy.stop()


async def test_a_row_whose_lease_ran_out_while_it_waited_for_its_place_is_not_sent(
    sessions: Sessions,
):
    """A claimed row waits for its channel (another send to it is under way in this process)
    while renewals cannot reach the database for a whole lease; another worker takes the row
    over and sends it. When the channel frees, this worker must not send it a second time."""

    class ToChannel(Stub):
        def places(self, message: OutboxMessage) -> tuple[str, ...]:
            return ("slack:post:C0",)

    mine_stub, other_stub = ToChannel(), Stub()
    mine = OutboxWorker(sessions, notifiers(message__slack=mine_stub), config=CONFIG, poll=30,
                        lease=1.0)  # fmt: skip
    other = OutboxWorker(sessions, notifiers(message__slack=other_stub), config=CONFIG,
                         poll=30, lease=20.0)  # fmt: skip
    async with running(sessions, mine, renewing=False):  # as if every renewal failed
        await asyncio.sleep(0.1)
        busy = asyncio.Event()
        release = asyncio.Event()

        async def slow_send_to_the_channel() -> None:
            async with mine.places.sending(("slack:post:C0",)):
                busy.set()
                await release.wait()

        sending = asyncio.ensure_future(slow_send_to_the_channel())
        await busy.wait()
        await queue(sessions, "message")  # handed over to `mine`: it waits for the channel
        await asyncio.sleep(1.2)  # its lease has run out, not renewed
        assert await other.run() == 1
        await wait_until(lambda: other_stub.sent, timeout=5, what="the takeover's send")
        release.set()
        await sending
        await asyncio.sleep(0.5)
        assert len(mine_stub.sent) + len(other_stub.sent) == 1, (mine_stub.sent, other_stub.sent)
        [row] = await rows(sessions)
        assert row.status == "delivered"

        # This worker's own poll claims the row again meanwhile: it leaves the row to the
        # attempt in hand, which still sends it (once, at once) when the channel frees.
        release.clear()
        busy.clear()
        sending = asyncio.ensure_future(slow_send_to_the_channel())
        await busy.wait()
        await queue(sessions, "message")
        await asyncio.sleep(1.2)
        assert await mine.run() == 1
        release.set()
        await sending
        await wait_until(lambda: len(mine_stub.sent) == 1, timeout=2, what="the send in hand")
        await asyncio.sleep(0.3)
        assert [r.status for r in await rows(sessions)] == ["delivered"] * 2
        assert len(mine_stub.sent) + len(other_stub.sent) == 2
    await other.close()


class Cuttable:
    """The test's sessions (`plain`) and a worker's (`through`), whose database can be cut off
    and brought back: PostgreSQL behind a TCP proxy that refuses connections and resets open
    ones; SQLite write-locked by another connection (the worker's busy timeout is short)."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.engines: list[Any] = []
        self.proxy: Any = None
        self.locker: Any = None

    async def __aenter__(self) -> Cuttable:
        from sqlalchemy.engine import make_url

        url = make_url(self.db_url)
        if self.db_url.startswith("postgresql"):
            from tests.fakes.tcp_proxy import TcpProxy

            self.proxy = await TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
            cut_off = url.set(host="127.0.0.1", port=self.proxy.port)
            through_url = cut_off.render_as_string(hide_password=False)
        else:
            import sqlite3

            self.locker = sqlite3.connect(str(url.database), isolation_level=None)
            through_url = f"{self.db_url}?timeout=0.3"
        self.engines = [db.create_engine(self.db_url), db.create_engine(through_url)]
        self.plain, self.through = (db.session_factory(e) for e in self.engines)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.restore()
        for engine in self.engines:
            await engine.dispose()
        if self.proxy is not None:
            await self.proxy.stop()
        if self.locker is not None:
            self.locker.close()

    async def cut(self) -> None:
        if self.proxy is not None:
            await self.proxy.refuse()
        else:
            self.locker.execute("BEGIN IMMEDIATE")  # no other writer gets in

    async def restore(self) -> None:
        if self.proxy is not None:
            await self.proxy.open()
        elif self.locker.in_transaction:
            self.locker.execute("ROLLBACK")


@pytest.mark.parametrize("when", ["preparing", "renewing", "waiting for its place", "stopped"])
async def test_a_row_let_go_unsent_goes_back_untried_even_while_the_database_is_away(
    db_url: str, when: str
):
    """A handed-over row that the worker gives up before sending anything (the database
    failed while preparing it, while renewing a lease nearly run out, while deferring it for
    its place's Retry-After window; or the worker was stopped when the hand-off came) goes
    back untried once the database answers: not in doubt, its attempt not counted. Left with
    its claim, it would come back in doubt when the lease ran out: a PSA note looked up (and
    given up where the PSA cannot look notes up), a P1 page that could not be cancelled, a
    Teams message resent as in doubt."""

    class ToChannel(Stub):
        def places(self, message: OutboxMessage) -> tuple[str, ...]:
            return ("slack:post:C0",)

    async with Cuttable(db_url) as dbs:
        slack = ToChannel()
        worker = OutboxWorker(dbs.through, notifiers(message__slack=slack), config=CONFIG,
                              poll=30, lease=1.0)  # fmt: skip
        worker._loop = asyncio.get_running_loop()  # as `schedule` does (no jobs here)
        handed: list[OutboxMessage] = []
        outbox.hand_off_on_commit(
            dbs.plain,
            outbox.Handoff(worker=worker.worker_id, lease=worker.lease, clock=worker.clock,
                           reserve=lambda: True, release=lambda n: None, take=handed.extend),
        )  # fmt: skip
        ticket = await make_ticket(dbs.plain)
        payload: dict[str, Any] = {"platform": "slack", "channel": "C0", "text": "hello"}
        if when == "preparing":
            # It follows a row due later: preparing it defers it (a database write).
            later = utcnow() + timedelta(minutes=5)
            await queue(dbs.plain, "update", ticket_id=ticket.id, due_at=later)
            payload["after"] = (await rows(dbs.plain))[0].id
        async with dbs.plain() as session, session.begin():
            await outbox.enqueue(session, kind="message", payload=payload, ticket_id=ticket.id)
            if when == "renewing":
                await asyncio.sleep(0.6)  # committed with less than half its lease left
        [row] = handed
        assert (row.attempts, row.claimed_by) == (1, worker.worker_id)
        if when == "waiting for its place":
            worker.places.block("slack:post:C0", 30)  # a Retry-After: it is to be deferred
        if when == "stopped":
            await worker.close()
        else:
            await dbs.cut()
        worker._take(list(handed))
        await wait_until(lambda: not worker._tasks, timeout=5, what="the hand-off to end")
        await dbs.restore()
        await worker.record_pending()  # what the worker does every second
        assert slack.sent == []

        async def untried() -> bool:
            [mine] = [r for r in await rows(dbs.plain) if r.id == row.id]
            return (mine.status, mine.attempts, mine.claimed_until, mine.in_doubt) == (
                "pending", 0, None, False,
            )  # fmt: skip

        await wait_until(untried, timeout=3, what="the row back untried")
        # Nothing went out: a P1 closed first may still cancel it (a page here).
        async with dbs.plain() as session, session.begin():
            assert await outbox.cancel_unsent(session, message_id=row.id, reason="closed")
        assert not worker._held and not worker._tasks
        await worker.close()


@pytest.mark.parametrize("outcome", ["delivered", "failed"])
async def test_an_outcome_whose_delivery_hook_breaks_is_still_recorded_and_never_resent(
    sessions: Sessions, caplog: pytest.LogCaptureFixture, outcome: str
):
    """A hook run with the outcome (here the identity request's, on a payload whose check id
    no database takes) raises an error that is not the database being away. The outcome is
    still recorded, with a log line: dropped, it would leave the row claimed, and it would
    come back in doubt every lease (a Teams message sent again each time)."""
    ticket = await make_ticket(sessions)
    failures = [DeliveryError("403 forbidden", permanent=True)] if outcome == "failed" else []
    slack = Stub(*failures)
    worker = OutboxWorker(sessions, notifiers(dm__slack=slack), config=CONFIG, poll=30,
                          lease=1.0)  # fmt: skip
    payload = {"platform": "slack", "user": "UMGR", "text": "is this you?",
               "purpose": "identity", "identity_check": 2**70}  # fmt: skip
    await queue(sessions, "dm", ticket_id=ticket.id, payload=payload)
    await worker.run()
    [row] = await rows(sessions)
    assert (row.status, row.claimed_until) == (
        ("delivered", None) if outcome == "delivered" else ("dead", None)
    )
    assert "a hook after" in caplog.text
    assert not worker._held and not worker._unrecorded
    await asyncio.sleep(1.2)  # a lease later: nothing comes back
    await make_due(sessions)
    await worker.run()
    assert len(slack.at) == 1
    await worker.close()


async def test_a_delivery_that_breaks_does_not_end_the_run_under_the_others(
    sessions: Sessions, caplog: pytest.LogCaptureFixture
):
    """One of the rows a run claimed breaks (its preparation raises: a bug); the others are
    still being sent. The run ends when they are all done, not at the first error, so a run
    in progress, and close(), still cover the deliveries under way."""
    slow = Stub(slow=1.0)
    worker = OutboxWorker(sessions, notifiers(update__slack=slow, message__slack=Stub()),
                          config=CONFIG, poll=30)  # fmt: skip
    await queue(sessions, "update")
    await queue(sessions, "message", payload={"platform": "slack", "after": "not a row id"})
    assert await worker.run() == 2
    slow_row, broken = await rows(sessions)
    assert (slow_row.status, len(slow.sent)) == ("delivered", 1)
    assert f"outbox delivery of row {broken.id} (message) failed" in caplog.text
    assert not worker._held
    await worker.close()


async def test_outcomes_recorded_late_leave_nothing_behind_in_the_worker(
    sessions: Sessions, db_url: str, caplog: pytest.LogCaptureFixture
):
    """The database refuses to record deliveries for a while with an error that is not an
    outage (a trigger here; a constraint or a bug elsewhere): each outcome is kept and
    recorded on a later round, with one log line per row at most every minute. Once
    recorded, nothing of the row stays in the worker: the log throttle's entry for it went
    too, so rows that once failed to record did not each keep one for the process's life."""
    from sqlalchemy import text

    postgres = db_url.startswith("postgresql")
    refuse = (
        [
            "CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
            "CREATE TRIGGER test_refuse BEFORE UPDATE ON outbox FOR EACH ROW "
            "WHEN (NEW.status = 'delivered') EXECUTE FUNCTION test_refuse()",
        ]
        if postgres
        else [
            "CREATE TRIGGER test_refuse BEFORE UPDATE ON outbox "
            "WHEN NEW.status = 'delivered' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        ]
    )
    allow = ["DROP TRIGGER test_refuse ON outbox", "DROP FUNCTION test_refuse()"] if postgres else [
        "DROP TRIGGER test_refuse"
    ]  # fmt: skip
    slack = Stub()
    worker = OutboxWorker(sessions, notifiers(message__slack=slack), config=CONFIG, poll=30)
    async with sessions() as session, session.begin():
        for statement in refuse:
            await session.execute(text(statement))
    await queue(sessions, "message", 3)
    assert await worker.run() == 3
    assert len(slack.sent) == 3 and len(worker._unrecorded) == 3
    assert caplog.text.count("recording the outcome of row") == 3
    async with sessions() as session, session.begin():
        for statement in allow:
            await session.execute(text(statement))
    await worker.record_pending()
    assert [r.status for r in await rows(sessions)] == ["delivered"] * 3
    assert not worker._unrecorded and not worker._held
    assert not worker._broken._last and not worker._broken._held
    await worker.close()
