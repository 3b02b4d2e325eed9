"""The outbox worker: APScheduler jobs that claim due rows, deliver them, and keep their leases.

The delivery job polls every `poll` seconds; a commit that queued rows in this process wakes
the worker at once, and other processes' rows are found by the poll (or a database
notification, see bot.wakeup). Runs never overlap in one process, and claims are leases (see
storage.outbox), so several workers never deliver one row twice:
- A live worker renews the leases of the rows it is delivering every quarter lease, so a slow
  send is never taken over, and a dead worker's rows are free again within one lease.
- A row taken over from a dead worker is in doubt: its notifier looks for the earlier attempt
  before sending again.
- An outcome that cannot be recorded because the database is away (the send went out, or
  failed) is kept and recorded when the database answers again, so a message that went out is
  not sent again and a failed page is retried promptly, not a lease later.
- A row given up before anything was sent (the database failed while it was prepared, its
  lease could not be renewed, the worker was stopping) is put back untried, not left to its
  lease: a lease that runs out makes the next attempt in doubt (a PSA write looked up, a page
  that can no longer be cancelled). When the database is away it is put back once it answers,
  before this worker claims anything.
Every database call is bounded; a database that cannot be reached is logged about once every
10 s, not once per poll.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.correlation import ticket_number
from bot.logs import Every
from bot.notifiers import DeliveryError, Notifiers
from bot.places import Places
from handlers import deliveries
from handlers.config import HelpdeskConfig
from storage import outbox
from storage import tickets as tickets_repo
from storage.errors import is_unavailable
from storage.models import OutboxMessage, utcnow

log = logging.getLogger(__name__)
# A database call that has not answered by then is given up (its connection is replaced).
DB_TIMEOUT = 10.0
RECORD_RETRY = 1.0


class DeliveryObserver(Protocol):
    """Counts outcomes (bot.metrics.Metrics has these)."""

    def delivered(self, kind: str) -> None: ...

    def failed(self, kind: str) -> None: ...


@dataclass
class _Outcome:
    """What happened to one attempt, waiting to be recorded."""

    row: OutboxMessage
    result: dict[str, Any] | None = None
    error: DeliveryError | None = None
    tries: int = 0
    # False once a hook run with it failed (a bug): the outcome is recorded without them.
    hooks: bool = True
    since: float = field(default_factory=lambda: asyncio.get_running_loop().time())


class OutboxWorker:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        notifiers: Notifiers,
        *,
        config: HelpdeskConfig,
        batch: int = 20,
        concurrency: int = 20,
        poll: float = 0.5,
        lease: float = 20.0,
        observer: DeliveryObserver | None = None,
        places: Places | None = None,
        database: str = "the database",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        # What the delivery hooks go by (e.g. the SLA alarms a PSA contract tier moves).
        self.config = config
        # What time it is for due rows and leases: the app's clock (tests move it).
        self.clock = clock
        self.notifiers = notifiers
        self.observer = observer
        self.places = places or Places()
        self.database = database
        # Claim no more than can be in flight at once: a claimed row waiting in a local
        # queue would only hold its lease.
        self.batch = min(batch, concurrency)
        # Hand-offs only while a delivery slot is free: a handed row waiting for one would
        # hold a lease and an attempt, so it could not be cancelled (a P1 closed first).
        self._slots = concurrency
        self._reserved = 0  # rows claimed for a hand-off whose transaction is still open
        self._when_free = False
        self.poll = poll
        self.lease = timedelta(seconds=lease)
        self.worker_id = f"{os.getpid()}-{secrets.token_hex(3)}"
        self._limit = asyncio.Semaphore(concurrency)
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._again = False
        self._closed = False
        # Rows this worker is delivering or recording: id -> the attempt it holds (a row may
        # be claimed again, by this worker too, while an older hand-off of it is given up).
        self._held: dict[int, int] = {}
        # Until when the lease of each held row is known to run (its claim, hand-off or last
        # renewal that reached the database): a row is not sent on a lease that may be gone.
        self._until: dict[int, datetime] = {}
        # Handed rows whose lease is still being checked: if this worker's poll claims one of
        # them meanwhile, the poll sends it and the hand-off gives up (its renewal fails).
        self._handing: set[int] = set()
        self._unrecorded: dict[int, _Outcome] = {}
        # Rows given up unsent whose put-back the database could not take yet (kept held, so
        # their leases are renewed meanwhile), and the lock that keeps put-backs and this
        # worker's claims apart: a put-back never meets a claim of the row in progress.
        self._unsent: dict[int, OutboxMessage] = {}
        self._claiming = asyncio.Lock()
        self._down = Every(10.0)
        self._broken = Every(60.0)  # outcomes that cannot be recorded for another reason

    # -- scheduling -------------------------------------------------------------------------

    def schedule(self, scheduler: AsyncIOScheduler) -> None:
        """Declare the jobs on `scheduler`: delivery poll, lease renewal, pending records."""
        self._loop = asyncio.get_running_loop()
        common: dict[str, Any] = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        scheduler.add_job(self._tick, "interval", seconds=self.poll, id="outbox", **common)
        renew_every = max(self.lease.total_seconds() / 4, 0.25)
        scheduler.add_job(self.renew, "interval", seconds=renew_every, id="outbox-lease", **common)
        scheduler.add_job(
            self.record_pending, "interval", seconds=RECORD_RETRY, id="outbox-records", **common
        )
        self._spawn()

    async def _tick(self) -> None:
        self._spawn()

    def handoff(self) -> outbox.Handoff:
        """What `storage.outbox.hand_off_on_commit` needs to give this worker the rows that
        requests in its process queue (claimed in their INSERT, no claim round trip)."""
        return outbox.Handoff(
            worker=self.worker_id,
            lease=self.lease,
            clock=self.clock,
            reserve=self._reserve,
            release=self._release,
            take=self._take,
        )

    def _reserve(self) -> bool:
        # Rows claimed beyond what can be in flight would only hold their leases (and could
        # not be cancelled while they wait): counted from their INSERT, not their commit.
        if self._closed or self._loop is None:
            return False
        if len(self._held) + self._reserved >= self._slots:
            return False
        self._reserved += 1
        return True

    def _release(self, count: int) -> None:
        self._reserved = max(self._reserved - count, 0)

    def _take(self, rows: list[OutboxMessage]) -> None:
        """Deliver rows claimed for this worker by the transaction that queued them (runs in
        that transaction's after-commit hook, on the event loop's thread)."""
        self._release(len(rows))
        if self._closed:
            # Stopping: nothing is sent now. They go back untried, for any worker (left to
            # their leases, they would be claimed in doubt).
            self._unsent.update((row.id, row) for row in rows)
            self._track(self._put_back_pending())
            return
        for row in rows:
            if row.id in self._held:
                continue  # this worker's poll claimed it again already (the lease ran out)
            self._held[row.id] = row.attempts
            if row.claimed_until is not None:
                self._until[row.id] = row.claimed_until
            self._handing.add(row.id)
            self._track(self._deliver_handed(row))

    async def _deliver_handed(self, row: OutboxMessage) -> None:
        """`_deliver`, once the row is surely still this worker's: a transaction that took
        long to commit may have outlived much of the lease taken in its INSERT (then another
        worker may claim the row any moment), so the lease is renewed first, or the row left."""
        try:
            if not await self._still_mine(row):
                return
        finally:
            self._handing.discard(row.id)
        try:
            await self._deliver(row)
        except Exception:
            # As a failed run is (nothing recorded: the lease runs out, the row is claimed
            # again, in doubt), with the line a run's failure gets, not an unretrieved task.
            self._let_go(row)
            log.exception("outbox delivery of row %s (%s) failed; it is retried", row.id, row.kind)

    async def _still_mine(self, row: OutboxMessage, *, same_attempt: bool = True) -> bool:
        """True when the row's lease has enough left, or was renewed; else it is let go.
        `same_attempt=False`: a claim of the row by this worker's own poll since counts too
        (that poll left the row to the attempt in hand)."""
        until = self._until.get(row.id) if self._held.get(row.id) == row.attempts else None
        left = (until or row.claimed_until or self.clock()) - self.clock()
        if left <= self.lease / 2:
            now = self.clock()
            try:
                async with self._transaction() as session:
                    held = await outbox.renew(
                        session,
                        worker=self.worker_id,
                        message_ids=[row.id],
                        lease=self.lease,
                        now=now,
                        # Not if claimed again meanwhile (this worker's own poll too).
                        attempts=row.attempts if same_attempt else None,
                    )
            except Exception as exc:
                if is_unavailable(exc):
                    self._database_down("renewing a lease", exc)
                else:
                    log.exception("outbox: renewing the lease of row %s failed", row.id)
                self._put_back_later(row)  # nothing was sent on it
                return False
            if not held:
                self._let_go(row)  # claimed again meanwhile (by this worker's poll too)
                return False
            if self._held.get(row.id) == row.attempts:
                self._until[row.id] = now + self.lease
        return True

    def _put_back_later(self, row: OutboxMessage) -> None:
        """Nothing was sent on `row`'s claim and the database could not take it back now: it
        is put back untried when the database answers (`record_pending`, or the next run
        before it claims), its lease renewed meanwhile."""
        if self._held.get(row.id) == row.attempts:
            self._unsent[row.id] = row
        # Else it is held at another attempt now, which goes on.

    async def _put_back_pending(self) -> bool:
        """Put back the rows given up unsent; False while the database cannot be reached."""
        async with self._claiming:
            return await self._put_back_unsent()

    async def _put_back_unsent(self) -> bool:
        # Under self._claiming.
        for row in list(self._unsent.values()):
            try:
                async with self._transaction(row.ticket_id) as session:
                    await outbox.put_back(
                        session, message_id=row.id, worker=self.worker_id, attempts=row.attempts
                    )
            except Exception as exc:
                if is_unavailable(exc):
                    self._database_down("putting a row back", exc)
                    return False
                log.exception(
                    "outbox: putting row %s (%s) back untried failed; it is claimed again, "
                    "in doubt, when its lease runs out",
                    row.id,
                    row.kind,
                )
            else:
                self._database_back()
            if self._unsent.get(row.id) is row:
                del self._unsent[row.id]
            self._let_go(row)
        return True

    def _let_go(self, row: OutboxMessage) -> None:
        """Stop renewing `row`'s lease, unless it is held at another attempt now."""
        if self._held.get(row.id) == row.attempts:
            del self._held[row.id]
            self._until.pop(row.id, None)
            if self._when_free:  # a run found no free slot: there may be rows waiting
                self._when_free = False
                self._spawn()

    def wake(self) -> None:
        """Deliver soon: called after a commit that queued rows (from any thread)."""
        if self._loop is not None and not self._closed:
            self._loop.call_soon_threadsafe(self._spawn)

    def _spawn(self) -> None:
        if self._closed:
            return
        if self._lock.locked():
            self._again = True
            return
        self._track(self.run())

    def _track(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Stop starting runs, let the current one finish, try once more to record what is
        still unrecorded (shutdown; bounded, a dead database does not hold it up)."""
        self._closed = True
        # A delivery waiting after its send (Opsgenie's confirmation) ends now, in doubt, and
        # is recorded below while the database and the HTTP session are still there.
        self.notifiers.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # Tasks started meanwhile (a hand-off put back after close) are waited for too.
        while self._tasks and loop.time() < deadline:
            await asyncio.wait(list(self._tasks), timeout=deadline - loop.time())
        if self._unrecorded or self._unsent:
            try:
                await asyncio.wait_for(self.record_pending(), timeout)
            except TimeoutError:
                pass
            if self._unsent:
                log.warning(
                    "stopping with %d row(s) given up unsent and not put back (%s "
                    "unreachable): they are claimed again, in doubt, when their leases run out",
                    len(self._unsent),
                    self.database,
                )
            if self._unrecorded:
                log.warning(
                    "stopping with %d delivery outcome(s) unrecorded (%s unreachable): their "
                    "rows are in doubt and are looked up before any resend",
                    len(self._unrecorded),
                    self.database,
                )

    # -- the database, bounded ---------------------------------------------------------------

    @asynccontextmanager
    async def _transaction(self, ticket_id: int | None = None) -> AsyncIterator[AsyncSession]:
        """A bounded transaction; locks the ticket first when given.

        Requests lock the ticket and then insert or touch its outbox rows; taking the locks
        here in the same order (ticket, then row) keeps PostgreSQL free of deadlocks.
        """
        async with asyncio.timeout(DB_TIMEOUT):
            async with self.sessions() as session, session.begin():
                if ticket_id is not None:
                    await tickets_repo.lock(session, ticket_id)
                yield session

    def _database_down(self, doing: str, error: BaseException) -> None:
        held = self._down.due("database")
        if held is not None:
            more = f" ({held} more failed call(s) since the last line)" if held else ""
            log.warning(
                "outbox: %s cannot be reached while %s: %s%s",
                self.database,
                doing,
                describe_failure(error),
                more,
            )

    def _database_back(self) -> None:
        if self._down.clear("database"):
            log.info("outbox: %s answers again", self.database)

    # -- runs -------------------------------------------------------------------------------

    async def run(self) -> int:
        """Claim and deliver until nothing is due; returns how many rows were attempted."""
        if self._lock.locked():
            self._again = True
            return 0
        total = 0
        async with self._lock:
            while not self._closed:
                self._again = False
                try:
                    done = await self.run_once()
                except Exception as exc:
                    if not is_unavailable(exc):
                        log.exception("outbox run failed; will retry on the next poll")
                    else:
                        self._database_down("claiming rows", exc)
                    break
                total += done
                if done < self.batch and not self._again:
                    break
        return total

    async def run_once(self) -> int:
        # No more rows than there are free delivery slots (hand-offs take slots too): a row
        # claimed only to wait for one holds an attempt and a lease, so it could not be
        # cancelled meanwhile (a P1 closed before its page went out).
        room = min(self.batch, self._slots - len(self._held) - self._reserved)
        if room <= 0:
            self._when_free = True  # claim again as soon as a delivery ends
            return 0
        async with self._claiming:
            # Rows given up unsent go back first: claimed before that, they would be in doubt.
            if self._unsent and not await self._put_back_unsent():
                return 0
            async with self._transaction() as session:
                rows = await outbox.claim_due(
                    session,
                    worker=self.worker_id,
                    limit=room,
                    lease=self.lease,
                    now=self.clock(),
                )
            for row in rows:
                if row.id in self._unsent:
                    # Its lease ran out while it waited to be put back (given up unsent
                    # meanwhile, after this claim began): this claim goes back instead.
                    self._unsent[row.id] = row
                    self._held[row.id] = row.attempts
        self._database_back()
        if len(rows) == room < self.batch:
            # Room, not the queue, set the limit: more rows may be due. Claim again as soon
            # as a delivery ends (run() loops), not at the next poll.
            self._when_free = True
        # A row whose earlier attempt this worker still has in hand (a hand-off sending, an
        # outcome the database could not take yet) is claimed again once its lease runs out,
        # but not sent again: that attempt ends here, and is recorded here. A hand-off still
        # checking its lease gives way instead (its renewal fails on the new attempt).
        fresh = [
            r
            for r in rows
            if (r.id not in self._held or r.id in self._handing)
            and r.id not in self._unrecorded
            and r.id not in self._unsent
        ]
        self._held.update((row.id, row.attempts) for row in fresh)
        self._until.update((row.id, row.claimed_until) for row in fresh if row.claimed_until)
        # Every delivery is waited for, also when one breaks: ending the run at the first
        # error would leave the others going on untracked (close() would not wait for them).
        done = await asyncio.gather(*(self._deliver(row) for row in fresh), return_exceptions=True)
        for row, result in zip(fresh, done, strict=True):
            if isinstance(result, Exception):
                log.error(
                    "outbox delivery of row %s (%s) failed; it is retried",
                    row.id,
                    row.kind,
                    exc_info=result,
                )
        return len(rows)

    async def renew(self) -> None:
        """Extend the leases of the rows being delivered or waiting to be recorded."""
        held = sorted(self._held)
        if not held:
            return
        now = self.clock()
        try:
            async with self._transaction() as session:
                renewed = await outbox.renew(
                    session,
                    worker=self.worker_id,
                    message_ids=held,
                    lease=self.lease,
                    now=now,
                )
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            self._database_down("renewing leases", exc)
            return
        if renewed == len(held):  # all of them (else a send asks for its own row first)
            until = now + self.lease
            self._until.update((row_id, until) for row_id in held if row_id in self._held)

    # -- one row ------------------------------------------------------------------------------

    async def _deliver(self, row: OutboxMessage) -> None:
        async with self._limit:
            ticket_number.set(str(row.payload.get("ticket", "-")))
            try:
                if deliveries.needs_preparation(row) and not await self._prepare(row):
                    self._let_go(row)
                    return
            except Exception as exc:
                if not is_unavailable(exc):
                    # Nothing was sent: the lease runs out and the row is tried again.
                    self._let_go(row)
                    raise
                self._database_down("preparing a delivery", exc)
                self._put_back_later(row)  # nothing was sent: untried, not in doubt
                return
            row_places = self.notifiers.places_of(row)
            async with self.places.sending(row_places):
                try:
                    if await self._wait_for_place(row, row_places):
                        self._let_go(row)
                        return
                except Exception as exc:
                    if not is_unavailable(exc):
                        self._let_go(row)
                        raise
                    self._database_down("putting a row back", exc)
                    self._put_back_later(row)  # nothing was sent: untried, not in doubt
                    return
                # The place may have kept it waiting (another send to it) while renewals
                # could not reach the database: not sent on a lease another worker may hold.
                if not await self._still_mine(row, same_attempt=False):
                    return
                outcome = _Outcome(row)
                send: bool | None = True
                if row.in_doubt and self.notifiers.repeats_in_doubt(row):
                    send = await self._resend_in_doubt(row)
                    if send is None:
                        return
                if not send:
                    outcome.result = {outbox.RESENT_IN_DOUBT: True, outbox.NOT_SENT_AGAIN: True}
                else:
                    try:
                        outcome.result = await self.notifiers.deliver(row)
                    except DeliveryError as exc:
                        outcome.error = exc
                    except Exception as exc:
                        log.exception("delivery of outbox row %s (%s) crashed", row.id, row.kind)
                        error = DeliveryError(f"{type(exc).__name__}: {exc}", uncertain=True)
                        outcome.error = error
                if outcome.error is not None:
                    await self._note_failure(row, outcome.error)
            await self._record(outcome)

    async def _resend_in_doubt(self, row: OutboxMessage) -> bool | None:
        """A row in doubt that nothing can look up (a Teams message: its last attempt may
        have arrived, unrecorded). SPEC lets it repeat once when its sender died: it is sent
        again (True) once that is recorded, unless the last attempt was such a resend whose
        sender died too (False: recorded as delivered, not sent a third time). A resend whose
        outcome was recorded (refused, timed out, cut off) clears the note: the next one is
        again the one repeat. None: not recorded, nothing sent (the row is let go, or put back
        while the database is down)."""
        if row.result.get(outbox.RESENT_IN_DOUBT):
            log.warning(
                "outbox row %s (%s): its senders died twice after sending it, each time "
                "before recording it; it went out once or twice: not sent a third time",
                row.id,
                row.kind,
            )
            return False
        try:
            async with self._transaction(row.ticket_id) as session:
                noted = await outbox.note_resend_in_doubt(
                    session, message_id=row.id, worker=self.worker_id, attempts=row.attempts
                )
        except Exception as exc:
            if not is_unavailable(exc):
                self._let_go(row)
                raise
            self._database_down("noting a resend in doubt", exc)
            self._put_back_later(row)  # nothing was sent on this attempt
            return None
        if not noted:
            self._let_go(row)  # claimed again meanwhile
            return None
        log.info(
            "outbox row %s (%s) is in doubt and cannot be looked up: sent again (it may "
            "repeat once)",
            row.id,
            row.kind,
        )
        return True

    async def _wait_for_place(self, row: OutboxMessage, row_places: tuple[str, ...]) -> bool:
        """True when the row's place (Slack channel, Teams conversation, PSA...) is in a
        Retry-After window (this process's or one another process wrote) or paced: the row
        is put back untried until then."""
        await self.places.learn(row_places)
        wait = self.places.wait_for(row_places, key=row.id)
        if wait <= 0:
            return False
        async with self._transaction(row.ticket_id) as session:
            deferred = await outbox.defer(
                session, message_id=row.id, worker=self.worker_id, seconds=wait, now=self.clock()
            )
        if deferred and deliveries.reports_hold(row, seconds=wait):
            await self._report_hold(row, wait)
        return True

    async def _report_hold(self, row: OutboxMessage, wait: float) -> None:
        """Tell the technician that a page held by its pager's Retry-After window has not
        gone out yet (after the row was put back, apart from it: a failed report must not
        leave the row claimed, which would make it in doubt)."""
        try:
            async with self._transaction(row.ticket_id) as session:
                await deliveries.after_hold(session, message=row, seconds=wait)
        except Exception as exc:
            if is_unavailable(exc):
                self._database_down("reporting a held page", exc)
            else:
                log.exception("outbox: reporting held row %s (%s) failed", row.id, row.kind)

    async def _note_failure(self, row: OutboxMessage, error: DeliveryError) -> None:
        log.warning(
            "outbox row %s (%s) attempt %s failed: %s", row.id, row.kind, row.attempts, error
        )
        if error.retry_after is not None and error.place is not None:
            # Written before the place's send lock is let go: the next send from this
            # process, or any other, finds the window.
            await self.places.refused(error.place, error.retry_after)
        if self.observer is not None:
            self.observer.failed(row.kind)

    async def _prepare(self, row: OutboxMessage) -> bool:
        """Complete the row's payload; False when it must wait (deferred) or never can be sent."""
        async with self._transaction(row.ticket_id) as session:
            ready = await deliveries.prepare(session, message=row, now=self.clock())
            if ready.payload is not None:
                row.payload = ready.payload
                return True
            if ready.give_up:
                log.info("outbox row %s (%s) cancelled: %s", row.id, row.kind, ready.give_up)
                await outbox.give_up(
                    session, message_id=row.id, worker=self.worker_id, reason=ready.give_up
                )
            else:
                await outbox.defer(
                    session,
                    message_id=row.id,
                    worker=self.worker_id,
                    seconds=ready.wait,
                    now=self.clock(),
                )
        return False

    # -- recording outcomes -------------------------------------------------------------------

    async def _record(self, outcome: _Outcome) -> bool:
        """Write the outcome; kept for later when the database cannot take it now (False)."""
        row = outcome.row
        outcome.tries += 1
        try:
            try:
                await self._write(outcome)
            except Exception as exc:
                if is_unavailable(exc) or not outcome.hooks:
                    raise
                # A bug in a hook: the outcome itself is still recorded, else the row would
                # come back in doubt every lease (and be sent again where nothing is looked up).
                log.exception(
                    "outbox: a hook after the %s of row %s (%s) failed; the outcome is recorded "
                    "without its hooks",
                    "delivery" if outcome.error is None else "failed attempt",
                    row.id,
                    row.kind,
                )
                outcome.hooks = False
                await self._write(outcome)
        except Exception as exc:
            self._unrecorded[row.id] = outcome
            if is_unavailable(exc):
                self._database_down("recording a delivery", exc)
                return False
            # Kept, and held (its lease renewed): never sent again; tried again later.
            if self._broken.due(f"record:{row.id}") is not None:
                log.exception(
                    "outbox: recording the outcome of row %s (%s) failed; it is kept (not sent "
                    "again) and tried again",
                    row.id,
                    row.kind,
                )
            return True
        if self._unrecorded.pop(row.id, None) is not None:
            self._broken.clear(f"record:{row.id}")  # its throttle entry goes with it
        self._let_go(row)
        self._database_back()
        if outcome.error is None:
            if self.observer is not None:
                self.observer.delivered(row.kind)
            late = f" (recorded {outcome.tries - 1} tries late)" if outcome.tries > 1 else ""
            log.info(
                "delivered outbox row %s (%s) on attempt %s%s", row.id, row.kind, row.attempts, late
            )
        return True

    async def _write(self, outcome: _Outcome) -> None:
        """The outcome, and its hooks unless they failed before, in one transaction."""
        row = outcome.row
        async with self._transaction(row.ticket_id) as session:
            if outcome.error is None:
                result = outcome.result or {}
                now = self.clock()
                if (
                    await outbox.mark_delivered(
                        session, message_id=row.id, worker=self.worker_id, result=result, now=now
                    )
                    and outcome.hooks
                ):
                    await deliveries.after_delivery(
                        session, config=self.config, message=row, result=result, now=now
                    )
            else:
                error = outcome.error
                if (
                    await outbox.mark_failed(
                        session,
                        message_id=row.id,
                        worker=self.worker_id,
                        error=str(error),
                        attempts=row.attempts,
                        retry_after=error.retry_after,
                        permanent=error.permanent,
                        uncertain=error.uncertain,
                        now=self.clock(),
                    )
                    and outcome.hooks
                ):
                    await deliveries.after_failure(
                        session, message=row, error=str(error), permanent=error.permanent
                    )

    async def record_pending(self) -> None:
        """Put back the rows given up unsent, then record the outcomes (oldest first), that
        the database could not take earlier."""
        if self._unsent and not await self._put_back_pending():
            return  # still down: try again on the next round
        for outcome in sorted(self._unrecorded.values(), key=lambda o: o.since):
            if not await self._record(outcome):
                return  # still down: try again on the next round


def describe_failure(error: BaseException) -> str:
    """One line about a database failure (never a URL with its password)."""
    text = str(getattr(error, "orig", None) or error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__
