"""The SLA clock: first response, targets from the matrix, warnings and breaches (SPEC).

Respond-by and resolve-by count from creation. Each running target has its warning (in the
ticket's thread, `sla.warn_before` ahead) and its breach (in the thread and as a new message in
the ticket channel) queued as outbox rows with due times, so a restart or a second worker
neither loses nor repeats them: their dedup keys name the ticket, the target, the message and
the due time. A clock that stops (first response; closure) cancels its rows, and each row checks
again when it is delivered (see `deliveries`), so none goes out once the clock has stopped or
its target has moved. Outcomes (met / missed) are stored on the ticket once known.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from handlers import notify
from handlers.config import HelpdeskConfig
from handlers.directory import Person
from handlers.sla.cards import due_of, met_of
from handlers.sla.rules import TARGETS, Alarm, Target, alarms, breaches
from handlers.types import Actor
from storage import outbox
from storage import tickets as repo
from storage.models import OutboxMessage, Ticket, utcnow

log = logging.getLogger(__name__)
KEY_PREFIX = "sla"


def clock_stopped(ticket: Ticket, target: Target) -> bool:
    """Respond stops at the first response, both at closure."""
    if ticket.status != "open":
        return True
    return target == "respond" and ticket.first_response_at is not None


def alarm_key(ticket: Ticket, alarm: Alarm, due: datetime) -> str:
    """`sla:HD-7:respond:warning:thread:1767600000`: one row per message and target due time."""
    return (
        f"{KEY_PREFIX}:{ticket.number}:{alarm.target}:{alarm.stage}:{alarm.place}:"
        f"{int(due.timestamp())}"
    )


def alarm_of_key(key: str) -> tuple[str, str] | None:
    """The target and place an `alarm_key` names (the key outlives the row's payload)."""
    parts = key.split(":")
    if len(parts) != 6 or parts[0] != KEY_PREFIX:
        return None
    return parts[2], parts[4]


def _seconds(later: datetime, earlier: datetime) -> int:
    return max(int((later - earlier).total_seconds()), 0)


# -- queueing and cancelling -------------------------------------------------------------------


async def schedule(
    session: AsyncSession,
    config: HelpdeskConfig,
    ticket: Ticket,
    *,
    now: datetime,
    targets: tuple[Target, ...] = TARGETS,
) -> int:
    """Queue the warning and breach rows of the ticket's running targets; returns how many
    were new (a target already queued at its due time is not queued again)."""
    found: list[outbox.Queued] = []
    for target in targets:
        if clock_stopped(ticket, target):
            continue
        due = due_of(ticket, target)
        alarmed = alarms(target, due=due, warn_before=config.sla.warn_before, now=now)
        found += _rows(ticket, alarmed, due)
    return await outbox.enqueue_many(session, found)


async def queue_breach(
    session: AsyncSession, ticket: Ticket, target: Target, *, now: datetime
) -> int:
    """Queue the breach of a running target (when its warning goes out, or instead of it)."""
    due = due_of(ticket, target)
    return await outbox.enqueue_many(
        session, _rows(ticket, breaches(target, due=due, now=now), due)
    )


def _rows(ticket: Ticket, found: list[Alarm], due: datetime) -> list[outbox.Queued]:
    rows = []
    for alarm in found:
        payload: dict[str, Any] = {
            "platform": ticket.source_platform,
            "channel": ticket.source_channel,
            "thread": None,
            "fallback_user": ticket.technician_id,
            "ticket": ticket.number,
            "purpose": f"sla-{alarm.stage}",
            "text": "",
            "sla": {
                "target": alarm.target,
                "stage": alarm.stage,
                "place": alarm.place,
                "due": int(due.timestamp()),
            },
        }
        rows.append(
            outbox.Queued(
                kind="message",
                ticket_id=ticket.id,
                due_at=alarm.due_at,
                dedup_key=alarm_key(ticket, alarm, due),
                payload=payload,
            )
        )
    return rows


async def cancel(
    session: AsyncSession,
    ticket: Ticket,
    *,
    targets: tuple[Target, ...],
    reason: str,
) -> int:
    """Cancel the unsent warning and breach rows of `targets` (never tried, or failed cleanly
    and waiting for a retry); a row being sent right now, or in doubt, is stopped by its own
    check at delivery instead."""
    cancelled = 0
    for target in targets:
        pattern = f"{KEY_PREFIX}:{ticket.number}:{target}:%"
        rows = await session.execute(
            select(OutboxMessage.id).where(
                OutboxMessage.ticket_id == ticket.id,
                OutboxMessage.status == "pending",
                OutboxMessage.dedup_key.like(pattern),
            )
        )
        for (row_id,) in rows.all():
            cancelled += await outbox.cancel_unsent(session, message_id=row_id, reason=reason)
    return cancelled


# -- the first response ------------------------------------------------------------------------


async def record_first_response(
    session: AsyncSession,
    ticket: Ticket,
    actor: Actor,
    channel: str,
    *,
    at: datetime | None = None,
    action: str = "",
    refresh_card: bool = True,
    person: Person | None = None,
) -> bool:
    """Record a technician's action as the ticket's first response, once; True when this was it.

    Call it in the action's transaction, after checking that `actor` is a technician, for
    every action SPEC counts (a card button, `time`, `verify`, `escalate`, `p1`, `close`,
    `confirm`, a technician's message in the card's thread or reply chain); not for opening
    the ticket, `show` or `mine`. `channel` is the conversation it came through, `at` when it
    happened (the app's clock, `deps.clock()`), `action` what it was (for the audit trail). It
    stops the respond clock: the target is met when this is at or before respond-by, the
    respond warning and breach are cancelled, and the card is refreshed (`refresh_card`).

    A ticket a non-technician opened has no technician until one acts on it: the first who
    does (this call, first response or not) takes it (`take`; `person`: the actor's
    directory entry, when the caller has it, for their name, e-mail and id on the ticket's
    platform).
    """
    if ticket.status != "open":
        return False
    at = at or utcnow()
    taken = await take(session, ticket, actor, channel, at=at, person=person)
    where = f"{actor.platform}:{channel}" if channel else actor.platform
    seconds = _seconds(at, ticket.created_at)
    met = at <= ticket.respond_by
    done = await session.execute(
        update(Ticket)
        .where(Ticket.id == ticket.id, Ticket.first_response_at.is_(None))
        .values(
            first_response_at=at,
            first_response_by=actor.id,
            first_response_channel=where[:255],
            first_response_seconds=seconds,
            respond_met=met,
        )
        # Where the card is, as of this row lock: `ticket` may have been read before the
        # worker's record of the card committed, and that worker compared the card with the
        # ticket before this response; refreshing by the stale copy refreshed nothing.
        .returning(Ticket.card_channel, Ticket.card_message)
        .execution_options(synchronize_session=False)
    )
    card = done.one_or_none()
    if card is None:
        if taken and refresh_card:
            await notify.refresh_ticket_card(session, ticket)
        return False
    for key, value in (
        ("first_response_at", at),
        ("first_response_by", actor.id),
        ("first_response_channel", where[:255]),
        ("first_response_seconds", seconds),
        ("respond_met", met),
        ("card_channel", card.card_channel),
        ("card_message", card.card_message),
    ):
        set_committed_value(ticket, key, value)
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="sla.first_response",
        actor_platform=actor.platform,
        actor_id=actor.id,
        channel=channel,
        data={"action": action, "met": met, "seconds": seconds},
    )
    await cancel(
        session,
        ticket,
        targets=("respond",),
        reason=f"{ticket.number} had its first response",
    )
    if refresh_card:
        await notify.refresh_ticket_card(session, ticket)
    log.info("first response", extra={"ticket": ticket.number, "met": met})
    return True


async def take(
    session: AsyncSession,
    ticket: Ticket,
    actor: Actor,
    channel: str,
    *,
    at: datetime,
    person: Person | None = None,
) -> bool:
    """A technician acted on a ticket that has no technician yet (`repo.untaken`: opened by a
    non-technician, on it as its opener): they become its technician, once; True when they did.

    Their id is the one on the ticket's platform: their own when they act there, else their
    directory entry's there. With none there (known only on the other platform) the ticket
    keeps their name and e-mail and no id: a mention or DM on the ticket's platform with the
    other platform's id would reach nobody, or someone else. The opener's id in the UPDATE's
    condition makes a repeat (Slack retry, Teams redelivery) or a second technician at the
    same moment change nothing. The card and the P1 notice name them from now on."""
    if not await repo.untaken(session, ticket.id):
        return False
    platform = ticket.source_platform
    if actor.platform == platform:
        user_id = actor.id
    else:
        user_id = notify.platform_ids(person).get(platform, "") if person is not None else ""
    name = ((person.name if person is not None else "") or actor.name)[:255]
    email = (person.email if person is not None else "")[:320]
    opener = ticket.technician_id
    done = await session.execute(
        update(Ticket)
        .where(Ticket.id == ticket.id, Ticket.technician_id == opener)
        .values(technician_id=user_id[:255], technician_name=name, technician_email=email)
        .returning(Ticket.id)
        .execution_options(synchronize_session=False)
    )
    if done.scalar_one_or_none() is None:
        return False
    for key, value in (
        ("technician_id", user_id[:255]),
        ("technician_name", name),
        ("technician_email", email),
    ):
        set_committed_value(ticket, key, value)
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind=repo.TAKEN,
        actor_platform=actor.platform,
        actor_id=actor.id,
        channel=channel,
        data={"at": at.isoformat(), "opener": opener, "technician": user_id},
    )
    if ticket.priority == "P1":
        # Imported here: raising to P1 records a first response, so incidents imports us.
        from handlers import incidents

        await incidents.refresh_notice(session, None, ticket=ticket)
    log.info("ticket taken", extra={"ticket": ticket.number})
    return True


# -- priority changes and closure ----------------------------------------------------------------


async def retarget(
    session: AsyncSession, config: HelpdeskConfig, ticket: Ticket, *, now: datetime
) -> None:
    """The ticket's priority changed: both targets again from the matrix, counted from
    creation; their outcomes are judged against the new targets and their rows move."""
    tiers = config.sla.tiers
    tier = ticket.tier if ticket.tier in tiers else config.sla.tier_for(ticket.client)
    target = tiers[tier][ticket.priority]  # type: ignore[index]
    await move_targets(
        session,
        config,
        ticket,
        respond_by=ticket.created_at + target.respond,
        resolve_by=ticket.created_at + target.resolve,
        now=now,
        reason=f"{ticket.number} is {ticket.priority} now: its targets moved",
    )


async def move_targets(
    session: AsyncSession,
    config: HelpdeskConfig,
    ticket: Ticket,
    *,
    respond_by: datetime,
    resolve_by: datetime,
    now: datetime,
    reason: str,
) -> tuple[Target, ...]:
    """Give the ticket new targets (a raise; the tier its PSA contract gives): outcomes known
    from a first response or the closure are judged again, and the warning and breach rows of
    each moved target are cancelled and queued at its new time (a warning time already past
    goes at once). Returns the targets that moved.

    A target already breached stays missed and is not announced again."""
    wanted: tuple[tuple[Target, datetime], ...] = (
        ("respond", respond_by),
        ("resolve", resolve_by),
    )
    moved = tuple(name for name, due in wanted if due_of(ticket, name) != due)
    ticket.respond_by, ticket.resolve_by = respond_by, resolve_by
    if ticket.first_response_at is not None:
        ticket.respond_met = ticket.first_response_at <= respond_by
    if ticket.status != "open" and ticket.closed_at is not None:
        ticket.resolve_met = ticket.closed_at <= resolve_by
    if moved:
        await cancel(session, ticket, targets=moved, reason=reason)
        running = tuple(name for name in moved if met_of(ticket, name) is None)
        await schedule(session, config, ticket, now=now, targets=running)
    return moved


async def on_closed(session: AsyncSession, ticket: Ticket, *, at: datetime) -> None:
    """Closure stops both clocks: resolve met or missed, nothing more to warn about."""
    ticket.resolve_met = at <= ticket.resolve_by
    ticket.resolution_seconds = _seconds(at, ticket.created_at)
    if ticket.first_response_at is None:  # a closure is a response (the caller records it)
        ticket.respond_met = at <= ticket.respond_by
    await cancel(session, ticket, targets=TARGETS, reason=f"{ticket.number} was closed")


async def mark_missed(session: AsyncSession, ticket: Ticket, target: Target) -> bool:
    """A running target reached its due time: it is missed (stored once; the card says so)."""
    if clock_stopped(ticket, target):
        return False
    column = Ticket.respond_met if target == "respond" else Ticket.resolve_met
    done = await session.execute(
        update(Ticket)
        .where(Ticket.id == ticket.id, column.is_(None))
        .values({column.key: False})
        .returning(Ticket.id)
        .execution_options(synchronize_session=False)
    )
    if done.scalar_one_or_none() is None:
        return False
    set_committed_value(ticket, column.key, False)
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="sla.missed",
        data={"target": target, "due": due_of(ticket, target).isoformat()},
    )
    await notify.refresh_ticket_card(session, ticket)
    return True
