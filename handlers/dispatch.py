"""One entry point for both platforms: route an Interaction to its use case, once.

Every command and action is registered with whether it changes state. Slack retries
(`X-Slack-Retry-Num`), redelivered Socket Mode envelopes and repeated Teams activity ids arrive
with the delivery id of the first attempt (the edges derive it from the request), and a route
that changes state runs once per delivery id: a delivery already handled is answered as a
duplicate without running anything, and the use case's own transaction claims the id
(`storage.inbound`), so it is remembered exactly when the change commits. Nothing is claimed
when a use case refuses or fails (a corrected resubmission of the same form goes through).
Read-only routes (forms, `show`, `mine`, `help`) may run again and can never commit.

Where the answer is a message of its own rather than the request's response (a Teams message
activity: `Interaction.answer_id`), a redelivery's answer would be a second message: there
the answer claims that id (`first_answer`), once it is ready and before it goes out, unless
the change claimed the delivery (read-only routes, refusals). A delivery that failed
before it had an answer claims nothing, so its redelivery answers. Where the answer is the
response (Slack, Teams invokes), a retry exists because the first response never arrived:
it is answered.

An answer's claim is a lease (ANSWER_LEASE, renewed while the answer is still going out) and
the edge sends the answer inside it (`Answering`), which records it as given. A process that
dies between its claim and that record leaves a claim whose lease runs out: the redelivery of
the activity (the turn never ended, so Bot Framework sends it again) waits for that, takes the
claim over and answers. A redelivery that comes while the first delivery is still answering
waits for its record and answers nothing. Only an answer sent and not yet recorded when its
process died is given twice.

A change's answer is kept with its claim (handlers.replay, storage.inbound.record) once the
change has committed, and a redelivery of it is answered with that answer rather than with
nothing (`_again`): the first answer did not count (that is why Slack retried), or the
process died before it went out. Only the same person in the same conversation gets it (who
asked and where are written with the claim itself). Where the answer is a message of its
own, the change's claim is its lease as above: the first delivery sends its answer inside it
(renewed from when the answer was kept), and a redelivery answers only once that lease has
run out with nothing recorded as sent (a redelivery that took a claim over first leaves the
first delivery nothing to send). A change whose process died between its commit and keeping
its answer is answered with replay.LOST.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Generic, TypeVar

from cards.model import ActionId
from handlers import (
    closure,
    csat,
    diagnosis,
    escalation,
    identity,
    incidents,
    replay,
    reports,
    tickets,
    working,
)
from handlers.commands import Command, parse, usage
from handlers.deps import Deps
from handlers.directory import DirectoryUnavailable, unavailable_words
from handlers.types import (
    TICKET_MESSAGE,
    DomainError,
    Duplicate,
    Interaction,
    InvalidInput,
    Reply,
)
from storage import inbound
from storage.errors import is_unavailable

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger(__name__)
UNAVAILABLE = (
    "The help desk cannot save tickets right now (its database is not answering). Nothing "
    "was saved: please try again in a few minutes."
)
SAVED_LATE = (
    "This was saved, but the help desk's database was slow to confirm it: look it up with "
    "`mine` or `show` rather than trying again."
)
IN_DOUBT = (
    "The help desk's database did not confirm in time whether this was saved. Look it up "
    "with `mine` or `show` before trying again."
)
# Slack and Teams give a bot 3 s to answer.
ANSWER_BUDGET = 2.0
# The claim of an answer (`first_answer`) takes milliseconds; a database slower than this is
# not waited for: the answer goes out unclaimed (a redelivery would answer again, never none).
CLAIM_WAIT = 0.5
# An answer's claim holds this long unless renewed (every quarter of it while the answer is
# still going out): a process that died meanwhile leaves it to a redelivery after this long.
ANSWER_LEASE = 5.0
# A redelivery that finds the answer claimed by another delivery looks again this often, and
# stops waiting after this long (that delivery is alive and still answering: it renewed its
# claim all along). Bot Framework gives a turn about 15 s.
HELD_POLL = 0.2
HELD_WAIT = 2 * ANSWER_LEASE
# A redelivery answered in its response (a Slack retry) that finds the change committed and
# its answer not kept yet, by a delivery still within its lease, waits this long for it.
KEPT_WAIT = 1.0
# A commit already sent when the budget ends is waited for (its outcome decides the answer;
# the edges answer a late result on their own), at most this long: the database's own
# command timeout (storage.db.COMMAND_TIMEOUT) ends it by then.
COMMIT_WAIT = 10.5

CommandHandler = Callable[[Deps, Interaction, Command], Awaitable[Reply]]
ActionHandler = Callable[[Deps, Interaction], Awaitable[Reply]]
H = TypeVar("H", CommandHandler, ActionHandler)


@dataclass(frozen=True)
class Route(Generic[H]):
    """A use case, and whether it changes state (then it runs once per delivery). A patient
    one is worth waiting for past the answer budget (it reads a lot: the edge answers
    "working on it" in time and shows the result when it comes)."""

    handler: H
    changes_state: bool
    patient: bool = False
    # Answered from memory (no database, directory or network): it cannot be slow, so it is
    # answered at once, without the answer budget's task and timer (`answer`).
    instant: bool = False


def changes(handler: H, *, patient: bool = False) -> Route[H]:
    """A route that changes state: it runs once per delivery id."""
    return Route(handler, changes_state=True, patient=patient)


def reads(handler: H, *, patient: bool = False) -> Route[H]:
    """A route that only reads (or opens a form): it may run again and never commits."""
    return Route(handler, changes_state=False, patient=patient)


def from_memory(handler: CommandHandler) -> Route[CommandHandler]:
    """A route answered from memory alone: it reads nothing and never awaits I/O."""
    return Route(handler, changes_state=False, instant=True)


def is_instant(interaction: Interaction) -> bool:
    """True when the interaction's route is answered from memory (`help`): nothing in it can
    keep the person waiting, so the edges need no deadline for it either."""
    if interaction.event is not None or interaction.action is not None:
        return False
    return COMMANDS[parse(interaction.text).verb].instant


def is_patient(interaction: Interaction) -> bool:
    """True when the interaction's route is worth waiting for past the answer budget."""
    if interaction.event is not None:
        return EVENTS[interaction.event].patient
    if interaction.action is not None:
        return ACTIONS[interaction.action].patient
    return COMMANDS[parse(interaction.text).verb].patient


async def _new(deps: Deps, interaction: Interaction, command: Command) -> Reply:
    return tickets.open_form(deps, interaction, command)


async def _mine(deps: Deps, interaction: Interaction, command: Command) -> Reply:
    return await tickets.mine(deps, interaction)


async def _help(deps: Deps, interaction: Interaction, command: Command) -> Reply:
    return Reply(card=usage(interaction.platform), static=True)


COMMANDS: dict[str, Route[CommandHandler]] = {
    "new": reads(_new),
    "show": reads(tickets.show),
    "mine": reads(_mine),
    "verify": changes(identity.verify_command),
    "p1": changes(incidents.raise_p1_command),
    "escalate": changes(escalation.escalate_command),
    "time": changes(closure.time_command),
    "confirm": changes(working.confirm_command),
    "link": changes(working.link_command),
    "close": changes(closure.close_command),
    "similar": reads(diagnosis.similar_command),
    "kb": reads(diagnosis.kb_command),
    # Its change queues the chart's upload (Slack) or its answer attaches it (Teams): once
    # per delivery.
    "report": changes(reports.report_command, patient=True),
    "help": from_memory(_help),
}

ACTIONS: dict[ActionId, Route[ActionHandler]] = {
    ActionId.TICKET_CREATE: changes(tickets.create_ticket),
    ActionId.VERIFY: changes(identity.verify_button),
    ActionId.ESCALATE: changes(escalation.escalate_button),
    ActionId.ESCALATE_SUBMIT: changes(escalation.submit),
    ActionId.CLOSE: changes(closure.close_button),
    ActionId.CLOSE_SUBMIT: changes(closure.submit),
    ActionId.IDENTITY_APPROVE: changes(identity.approve),
    ActionId.IDENTITY_DENY: changes(identity.deny),
    ActionId.IDENTITY_CALLED_BACK: changes(identity.called_back),
    ActionId.CSAT_RATE: changes(csat.rate),
    ActionId.CSAT_COMMENT: changes(csat.comment),
    ActionId.FIX_WORKS: changes(working.works),
    ActionId.FIX_BROKEN: changes(working.broken),
    ActionId.FIX_COMMENT: changes(working.comment),
    ActionId.FILE_UNDER_P1: changes(working.add_button),
}

# What happens where the bot listens (not commands or buttons): the edges name the event.
EVENTS: dict[str, Route[ActionHandler]] = {
    TICKET_MESSAGE: changes(working.on_message),
}


@dataclass
class Attempt:
    """One run of `handle`, as `answer` sees it: the delivery binding its change commits
    under (set once the route is known), to tell whether a commit is under way."""

    binding: inbound.Binding | None = None
    # The answer says the database could not be used: nothing more is asked of it.
    without_database: bool = False
    # The change's answer was kept with its claim (True), or not because a redelivery took
    # that claim over first (False: that one answers); None when none was kept.
    kept: bool | None = None
    # A redelivery of a change answered with what its first delivery kept (under this key).
    again: str | None = None


def _route(interaction: Interaction) -> tuple[bool, Callable[[Deps], Awaitable[Reply]]]:
    """Whether the interaction's route changes state, and the call that runs its use case."""
    if interaction.event is not None:
        event = EVENTS[interaction.event]
        return event.changes_state, lambda d: event.handler(d, interaction)
    if interaction.action is not None:
        action = ACTIONS[interaction.action]
        return action.changes_state, lambda d: action.handler(d, interaction)
    command = parse(interaction.text)
    route = COMMANDS[command.verb]
    return route.changes_state, lambda d: route.handler(d, interaction, command)


async def handle(deps: Deps, interaction: Interaction, attempt: Attempt | None = None) -> Reply:
    """Answer one interaction; known domain errors become a message to the person."""
    attempt = attempt or Attempt()
    try:
        changes_state, call = _route(interaction)
        return await _run(deps, interaction, changes_state, call, attempt)
    except Duplicate as exc:
        log.info("duplicate delivery ignored: %s", exc)
        return Reply(duplicate=True)
    except InvalidInput as exc:
        log.info("invalid input: %s %s", exc, sorted(exc.field_errors))
        return refusal(exc)
    except DomainError as exc:
        log.info("refused: %s", exc)
        return refusal(exc)
    except DirectoryUnavailable as exc:
        # Whatever needed the directory (who is a technician, who the requester is) was not
        # done; the source logged why. Not "something went wrong": it is an outage.
        log.warning("directory unavailable: %s", exc)
        return Reply(text=unavailable_words(exc, "this could not be done"))
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        deps.database_trouble(exc)
        attempt.without_database = True
        if attempt.binding is not None and attempt.binding.unconfirmed:
            # The COMMIT went out and its answer was lost: it may have landed, so "nothing
            # was saved, try again" could be false (and a retry would do it twice).
            return Reply(text=IN_DOUBT)
        return unavailable()


def refusal(exc: DomainError) -> Reply:
    """What a known domain error tells the person (field by field for a form's)."""
    if isinstance(exc, InvalidInput):
        return Reply(text=exc.words, field_errors=exc.field_errors, card=exc.form)
    return Reply(text=exc.words)


def _apart(interaction: Interaction) -> bool:
    """Whether the answer is a message of its own, not the response to the request: then a
    redelivery may come after it went out."""
    return interaction.answer_id is not None or interaction.answer_apart


def unavailable() -> Reply:
    """What a person is told while the database cannot be reached (nothing was stored)."""
    return Reply(text=UNAVAILABLE, form_error=UNAVAILABLE)


async def answer(
    deps: Deps,
    interaction: Interaction,
    *,
    budget: float = ANSWER_BUDGET,
    keep_waiting: Callable[[], bool] | None = None,
) -> Reply:
    """`handle`, answered within `budget` seconds whatever the database does (`_answer`);
    where the answer is a message of its own (`Interaction.answer_id`), a duplicate when an
    earlier delivery of it has been answered."""
    attempt = Attempt()
    reply = await _answer(deps, interaction, attempt, budget=budget, keep_waiting=keep_waiting)
    if not _apart(interaction) or reply.duplicate:
        return reply
    if attempt.again is not None:
        return await _again_once(deps, interaction, attempt.again, reply)
    binding = attempt.binding
    if attempt.without_database:
        return reply
    if attempt.kept is False:
        log.info("delivery %s is answered by its redelivery", interaction.delivery_id)
        return Reply(duplicate=True)
    if attempt.kept:
        # The change's claim is its answer's: sent within its lease, recorded once sent.
        return dataclasses.replace(reply, answering=Answering(deps, interaction.delivery_id))
    if binding is not None and (
        binding.done or binding.committing or binding.unconfirmed or binding.given_up
    ):
        # Its change claimed the id (or may have), or the database failed just now: answered.
        return reply
    answering = await first_answer(deps, interaction.answer_id)
    if answering is not None:
        return dataclasses.replace(reply, answering=answering)
    log.info("duplicate delivery not answered again: %s", interaction.answer_id)
    return Reply(duplicate=True)


class Answering:
    """The right to give the answer to a delivery (`first_answer`): the answer is sent inside
    `async with`, which renews the claim's lease while it takes long and, when the block ends
    without an exception (sent, or handed to the outbox), records it as given. Without a
    claim (`delivery_id` None: none was made) it does nothing."""

    def __init__(self, deps: Deps, delivery_id: str | None) -> None:
        self.deps, self.delivery_id = deps, delivery_id
        self._timer: asyncio.TimerHandle | None = None
        self._renewing: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Answering:
        if self.delivery_id is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(ANSWER_LEASE / 4, self._start_renewing)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        renewing = self._renewing
        if renewing is not None:
            # Stopped, and waited for (it ends within its write's CLAIM_WAIT): no renewal is
            # written after the answer's record, nor goes on renewing a claim whose answer
            # was given.
            renewing.cancel()
            await asyncio.wait({renewing})
        # Failed or cancelled: not recorded, so the lease runs out and a redelivery answers.
        if kind is None and self.delivery_id is not None:
            await self._write(inbound.answered, "recorded as answered")

    def _start_renewing(self) -> None:
        self._renewing = asyncio.get_running_loop().create_task(self._renew())

    async def _renew(self) -> None:
        while True:
            await self._write(inbound.renew, "renewed")
            await asyncio.sleep(ANSWER_LEASE / 4)

    async def _write(
        self, write: Callable[[AsyncSession, str], Awaitable[None]], what: str
    ) -> None:
        assert self.delivery_id is not None
        delivery_id = self.delivery_id

        async def run() -> None:
            async with inbound.unbound(self.deps.sessions)() as session, session.begin():
                await write(session, delivery_id)

        try:
            # Not `asyncio.wait_for`: on Python 3.11 it returns the result of a write that has
            # just finished in place of a cancellation that reaches it then, and a renewal
            # cancelled that way would renew the claim for the life of the process.
            async with asyncio.timeout(CLAIM_WAIT):
                await run()
        except Exception as exc:
            # Never raised: the answer is out (or going), and a failed turn would be redelivered.
            if isinstance(exc, TimeoutError) or is_unavailable(exc):
                log.warning(
                    "the answer to delivery %s was not %s (%s): once its lease runs out, a "
                    "redelivery would answer again",
                    delivery_id,
                    what,
                    type(exc).__name__,
                )
            else:
                log.exception("the answer to delivery %s could not be %s", delivery_id, what)


async def first_answer(deps: Deps, delivery_id: str | None) -> Answering | None:
    """The claim of the answer to `delivery_id`, to send it in (`Answering`); None when an
    earlier delivery of it answered (or changed something), or is answering now. A claim held
    by another delivery is waited for: answered, or its lease run out (that process died
    before its answer went out: taken over, see the module docstring). When the claim cannot
    be made (no id, the database down or slower than CLAIM_WAIT) the answer is given
    unclaimed: an answer is never withheld for want of a claim."""
    if not delivery_id or not deps.database_available():
        return Answering(deps, None)
    sessions = inbound.unbound(deps.sessions)
    lease = timedelta(seconds=ANSWER_LEASE)

    async def claim() -> inbound.Answer:
        async with sessions() as session, session.begin():
            return await inbound.claim(session, delivery_id, lease=lease)

    loop = asyncio.get_running_loop()
    give_up_at, waiting = loop.time() + HELD_WAIT, False
    while True:
        try:
            async with asyncio.timeout(CLAIM_WAIT):  # a cancelled turn stops waiting (`_write`)
                found = await claim()
        except Exception as exc:
            if not (isinstance(exc, TimeoutError) or is_unavailable(exc)):
                raise
            log.warning(
                "delivery %s answered without its claim (%s): a redelivery would answer again",
                delivery_id,
                type(exc).__name__,
            )
            return Answering(deps, None)
        if found is inbound.Answer.MINE:
            return Answering(deps, delivery_id)
        if found is inbound.Answer.TAKEN_OVER:
            log.warning(
                "delivery %s: an earlier delivery claimed its answer and never recorded it as "
                "given (its process died?): answered now",
                delivery_id,
            )
            return Answering(deps, delivery_id)
        if found is inbound.Answer.ANSWERED:
            return None
        if found is inbound.Answer.REPEATED:
            log.warning(
                "delivery %s: the delivery that took its answer over died before recording it "
                "as given too (it went out once or twice): not sent a third time",
                delivery_id,
            )
            return None
        if not waiting:
            waiting = True
            log.info(
                "delivery %s: another delivery of it is answering; waiting for its answer, or "
                "for its claim to run out",
                delivery_id,
            )
        if loop.time() >= give_up_at:
            log.warning(
                "delivery %s: another delivery of it is still answering after %.1f s; not "
                "answered here",
                delivery_id,
                HELD_WAIT,
            )
            return None
        await asyncio.sleep(HELD_POLL)


async def _answer(
    deps: Deps,
    interaction: Interaction,
    attempt: Attempt,
    *,
    budget: float,
    keep_waiting: Callable[[], bool] | None,
) -> Reply:
    """`handle`, answered within `budget` seconds whatever the database does.

    Slack and Teams want an answer within 3 s. Work still running then is cancelled (its
    transaction is rolled back, its connection dropped; nothing it did is committed) and the
    person is told to try again, unless `keep_waiting()` says it is worth waiting for (the
    directory is being asked, with a deadline of its own): then it gets another `budget`.
    Work whose commit has begun is not cancelled: the COMMIT may already have reached the
    database, and telling the person "nothing was saved" could then be false. It is waited
    for (up to COMMIT_WAIT) and its own answer given.
    """
    if is_instant(interaction):  # nothing in it awaits anything that could be slow
        return await handle(deps, interaction, attempt)
    task = asyncio.ensure_future(handle(deps, interaction, attempt))
    patient = is_patient(interaction)
    while True:
        done, _ = await asyncio.wait({task}, timeout=budget)
        if task in done:
            return task.result()
        # A patient one is not waited for while the database is known to be away: it would
        # only end in the same "cannot save tickets" later (Teams: past SPEC's 3 s).
        if (patient and deps.database_available()) or (keep_waiting is not None and keep_waiting()):
            continue
        if _saving(attempt):
            return await _wait_for_commit(deps, task, attempt, budget)
        if attempt.binding is not None and attempt.binding.claiming:
            return _claim_held(deps, interaction, task, attempt.binding)
        break
    if attempt.binding is not None:
        attempt.binding.given_up = True  # a commit it had not begun may not begin now
    _give_up(task, cancel=True)
    deps.database_trouble(TimeoutError(f"no answer within {budget:.1f} s"))
    attempt.without_database = True
    return unavailable()


def _claim_held(
    deps: Deps, interaction: Interaction, task: asyncio.Task[Reply], binding: inbound.Binding
) -> Reply:
    """The budget ended while the delivery's claim was waiting for its key: another delivery
    of the same request (Slack's redelivery of an envelope not acknowledged in time, a form
    submitted again) holds it in a transaction that has not ended, and may be committing it
    now. This one is given up (it has saved nothing), but "nothing was saved, try again"
    could be false: that other delivery's change may land a moment later, and a second try
    would then do it twice. Found by the Socket Mode chaos soak: a process stalled in its
    commit, the envelope delivered again to another process, told to try again, and the
    ticket was there. As after any timeout, a ping decides whether the database is down (a
    claim sent on a connection that went silent waits too)."""
    binding.given_up = True
    _give_up(task, cancel=True)
    deps.database_trouble(TimeoutError("a claim waited past the answer budget"))
    log.info(
        "delivery %s: another delivery of it holds its claim, its outcome not known yet: "
        "answered that it may be saved",
        interaction.delivery_id,
    )
    return Reply(text=IN_DOUBT)


def _saving(attempt: Attempt) -> bool:
    binding = attempt.binding
    return binding is not None and (binding.committing or binding.done)


async def _wait_for_commit(
    deps: Deps, task: asyncio.Task[Reply], attempt: Attempt, budget: float
) -> Reply:
    log.info("answer budget (%.1f s) passed while a commit was under way: waiting for it", budget)
    done, _ = await asyncio.wait({task}, timeout=COMMIT_WAIT)
    if task in done:
        return task.result()
    # Still not known: not cancelled (that would not take the COMMIT back), and the person
    # is told exactly that much.
    _give_up(task, cancel=False)
    deps.database_trouble(TimeoutError(f"a commit unconfirmed after {COMMIT_WAIT:.1f} s"))
    saved = attempt.binding is not None and attempt.binding.done
    return Reply(text=SAVED_LATE if saved else IN_DOUBT)


def _give_up(task: asyncio.Task[Reply], *, cancel: bool) -> None:
    if cancel:
        task.cancel()
    _LATE.add(task)  # finishes (its clean-up, or its commit) in the background
    task.add_done_callback(_forget)


_LATE: set[asyncio.Task[Reply]] = set()


def _forget(task: asyncio.Task[Reply]) -> None:
    _LATE.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.info("work given up after the answer budget ended with %r", task.exception())


async def _run(
    deps: Deps,
    interaction: Interaction,
    changes_state: bool,
    call: Callable[[Deps], Awaitable[Reply]],
    attempt: Attempt,
) -> Reply:
    """Run `call` with sessions bound to this delivery (see the module docstring)."""
    if not changes_state:
        binding = inbound.Binding(key=None, writes=False)
        return await call(dataclasses.replace(deps, sessions=inbound.bound(deps.sessions, binding)))
    key = inbound.key_for(interaction.delivery_id) if interaction.delivery_id else None
    if key is None:
        log.warning("a request without a delivery id: a redelivery of it would run again")
    else:
        found = await inbound.recorded_before(deps.sessions, key)
        if found is not None:
            return await _again(deps, interaction, key, found, attempt)
    # Who asks and where, written with the claim (see handlers.replay).
    pending = replay.pending(interaction) if key is not None else None
    binding = inbound.Binding(key=key, writes=True, answer=pending)
    attempt.binding = binding
    try:
        reply = await call(
            dataclasses.replace(deps, sessions=inbound.bound(deps.sessions, binding))
        )
    except inbound.AlreadyHandled:
        # Another delivery of it committed first (on PostgreSQL, this one waited for it).
        assert key is not None
        async with deps.sessions() as session:
            found = await inbound.recorded(session, key)
        if found is None:
            raise Duplicate(f"delivery {interaction.delivery_id} was already handled") from None
        return await _again(deps, interaction, key, found, attempt)
    except DomainError as exc:
        # A refusal that wrote something first (its audit event: the identity gate, a
        # `verify` from someone who is not a technician) committed the delivery's claim with
        # it. Its answer is the refusal: kept like a change's, so that a redelivery is refused
        # again (or, where the answer is a message of its own, not answered twice) rather
        # than told "This was done" (replay.LOST) about something that was not.
        if not isinstance(exc, Duplicate) and binding.done and binding.answer is not None:
            refused = refusal(exc)
            if replay.shown(interaction, refused):
                attempt.kept = await _keep(deps, interaction, binding, refused)
        raise
    if binding.done and binding.answer is not None and replay.shown(interaction, reply):
        attempt.kept = await _keep(deps, interaction, binding, reply)
    return reply


async def _keep(
    deps: Deps, interaction: Interaction, binding: inbound.Binding, reply: Reply
) -> bool | None:
    """Keep the committed change's answer with its claim (see the module docstring): True
    when kept, False when a redelivery took the claim over first, None when it could not be
    kept (the answer is given all the same; a redelivery would be answered replay.LOST)."""
    answer = replay.kept(interaction, reply, noted=binding.answer)

    async def write() -> bool:
        async with inbound.unbound(deps.sessions)() as session, session.begin():
            return await inbound.record(session, binding, answer)

    try:
        async with asyncio.timeout(CLAIM_WAIT):  # not `asyncio.wait_for` (`Answering._write`)
            kept = await write()
    except Exception as exc:
        if isinstance(exc, TimeoutError) or is_unavailable(exc):
            log.warning(
                "the answer to delivery %s was not kept (%s): a redelivery would not be told it",
                interaction.delivery_id,
                type(exc).__name__,
            )
        else:
            log.exception("the answer to delivery %s could not be kept", interaction.delivery_id)
        return None
    if not kept:
        log.warning(
            "delivery %s: a redelivery took its claim over before its answer was kept (the "
            "change took longer than the answer's lease): that one answers",
            interaction.delivery_id,
        )
    return kept


async def _again(
    deps: Deps, interaction: Interaction, key: str, found: inbound.Claimed, attempt: Attempt
) -> Reply:
    """The answer to a redelivery of a delivery whose change committed: its kept answer, to
    the same person in the same conversation only. Where the answer is a message of its own,
    `answer` gives it only once no delivery of it is giving it or has given it (`_again_once`,
    outside the answer budget: it may wait for another delivery's lease). Where it is the
    response, an answer about to be kept (the change just committed) is waited for a little
    (KEPT_WAIT)."""
    handled = f"delivery {interaction.delivery_id} was already handled"
    kept = replay.read(found.answer)
    if kept is None:
        raise Duplicate(handled)  # nothing kept to answer with (or nowhere to answer)
    if not kept.asked_by(interaction):
        log.warning(
            "delivery %s came again from another person or conversation than its first "
            "delivery: answered nothing",
            interaction.delivery_id,
        )
        raise Duplicate(handled)
    if not _apart(interaction):
        kept = await _when_kept(deps, key, found, kept)
    log.info("delivery %s was handled before: its kept answer is given", key)
    attempt.again = key
    return await _kept_answer(deps, key, kept)


async def _kept_answer(deps: Deps, key: str, kept: replay.Kept) -> Reply:
    """`kept.answer()`; when no answer was kept but the change noted the ticket it opened,
    that ticket's card (its process died before keeping the answer, and before the card went
    out: the card is owed, not a note that the answer was lost)."""
    if kept.reply is None and kept.ticket_id is not None:
        try:
            card = await tickets.opened_card(deps, kept.ticket_id)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            card = None
        if card is not None:
            log.warning("delivery %s: its answer was never kept; the ticket's card is", key)
            return card
    return kept.answer()


async def _when_kept(
    deps: Deps, key: str, found: inbound.Claimed, kept: replay.Kept
) -> replay.Kept:
    """`kept` once its answer is there: looked at again while the claim is fresh (the delivery
    that holds it is keeping it now), for at most KEPT_WAIT."""
    loop = asyncio.get_running_loop()
    give_up_at = loop.time() + KEPT_WAIT
    lease = timedelta(seconds=ANSWER_LEASE)
    while kept.reply is None and datetime.now(UTC) - found.at < lease and loop.time() < give_up_at:
        await asyncio.sleep(HELD_POLL)
        async with deps.sessions() as session:
            found = await inbound.recorded(session, key) or found
        kept = replay.read(found.answer) or kept
    return kept


async def _again_once(deps: Deps, interaction: Interaction, key: str, reply: Reply) -> Reply:
    """`reply` (a kept answer) given within the change's claim, taken over (its lease ran out
    with no answer recorded as given); a duplicate when an earlier delivery gave it or is
    giving it (see the module docstring)."""
    answering = await first_answer(deps, interaction.delivery_id)
    if answering is None:
        log.info("delivery %s: its answer was given before", key)
        return Reply(duplicate=True)
    if answering.delivery_id is not None:
        # Claimed now: what the earlier delivery had kept by then (it may have been waited for).
        try:
            async with deps.sessions() as session:
                found = await inbound.recorded(session, key)
            kept = replay.read(found.answer) if found is not None else None
            if kept is not None and kept.asked_by(interaction):
                reply = await _kept_answer(deps, key, kept)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            log.warning("delivery %s: its kept answer not read again (%s)", key, exc)
    return dataclasses.replace(reply, answering=answering)
