"""What the core does around an outbox delivery (hooks run in the worker's transactions).

Before: rows that depend on another row (a resolve waits for its trigger, a notice update
needs the notice's message id) or that belong in a ticket thread not known when they were
queued are completed here. After: the audit trail, the ticket thread, and reports to the
technician when a delivery keeps failing (a page at once, other kinds past a threshold).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Inline, Rich, Typed
from handlers import csat, identity, incidents, notify, psa, sla, working
from handlers.config import HelpdeskConfig
from handlers.tickets import (
    VERSION_COLUMNS,
    card_version,
    current_card,
    in_sentence,
    label_of,
)
from storage import outbox
from storage import tickets as repo
from storage.models import OutboxMessage, Ticket, utcnow

log = logging.getLogger(__name__)
REPORT_PURPOSE = "delivery-report"
# Payload key of a prepared ticket card refresh: the `card_version` it was rendered from.
RENDERED_VERSION = "rendered_version"
# Payload key of a delivery report: whether the row it reports on is the ticket card.
ABOUT_CARD = "about_card"
# Non-page rows are reported once they failed this many times; pages after the first failure.
REPORT_AFTER_ATTEMPTS = 3
# A page held back by its pager's Retry-After window this long (or longer) is reported: the
# first retry of a failed page comes within 5 s (SPEC), so a shorter hold is no news.
HOLD_REPORT_AFTER = 5.0
# Rows that report their own failures.
SELF_REPORTING = {identity.PURPOSE, "psa"}
MAX_WAIT = 60.0
# Teams: a note or card refresh queued before the ticket card was recorded waits this long
# for it (elsewhere the card is an outbox row, followed for as long as it is retried).
CARD_WAIT = 120.0
# Why a refresh of the ticket card held for a form in its place was not sent.
COLLAPSED = "a form is in the card's place: the refresh waiting for it shows this too"


@dataclass(frozen=True)
class Preparation:
    """`payload` to send; or None with `wait` seconds (not ready) or `give_up` (never will be)."""

    payload: dict[str, Any] | None
    wait: float = 0.0
    give_up: str = ""


def label(message: OutboxMessage) -> str:
    """What the row is, in words for the technician inside a sentence (`ticket show`'s
    Deliveries labels, handlers.tickets.delivery_labels)."""
    payload = message.payload
    words = label_of(
        message.kind,
        str(payload.get("purpose") or ""),
        ticket_card=bool(payload.get("ticket_card")),
        dedup_key=message.dedup_key or "",
    )
    return in_sentence(words)


def _wants_ticket_thread(message: OutboxMessage) -> bool:
    """A tell_technician() row queued before the ticket card (its thread) was posted."""
    payload = message.payload
    return (
        message.kind == "message"
        and message.ticket_id is not None
        and not payload.get("thread")
        and not payload.get("sets_ticket_thread")
        and bool(payload.get("purpose"))
        and "fallback_user" in payload
    )


def needs_preparation(message: OutboxMessage) -> bool:
    payload = message.payload
    return (
        psa.is_psa_row(message)
        or bool(payload.get("after"))
        or bool(payload.get("refresh_ticket_card"))
        or bool(payload.get("refresh_incident_notice"))
        or bool(payload.get("nudge"))
        or _wants_ticket_thread(message)
        or bool(payload.get(notify.TECHNICIAN_CHAT))
        or sla.is_alarm(message)
        or incidents.is_first_page(message)
        or identity.is_request(message)
    )


async def prepare(
    session: AsyncSession, *, message: OutboxMessage, now: datetime | None = None
) -> Preparation:
    """The payload to deliver now, completed from the rows and ticket it depends on."""
    if psa.is_psa_row(message):
        ready = await psa.prepare_psa_row(session, message=message)
        return Preparation(ready.payload, wait=ready.wait, give_up=ready.give_up)
    now = now or utcnow()
    if sla.is_alarm(message):
        # SLA warnings and breaches: written from the ticket now, or not sent at all. One due
        # as the ticket opens (warn_before as long as the target) follows the card, whose
        # message becomes the thread it belongs in.
        ticket = await session.get(Ticket, message.ticket_id) if message.ticket_id else None
        if (
            ticket is not None
            and not ticket.source_thread
            and (wait := await _card_coming(ticket, message, session, now)) is not None
        ):
            return Preparation(None, wait=wait)
        alarm = await sla.prepare_alarm(session, message=message, now=now)
        return Preparation(alarm.payload, give_up=alarm.give_up)
    if incidents.is_first_page(message) and (
        reason := await incidents.page_given_up(session, message)
    ):
        return Preparation(None, give_up=reason)
    if reason := await identity.request_given_up(session, message):
        return Preparation(None, give_up=reason)
    payload = await identity.prepare_request(
        session, message=message, payload=dict(message.payload), now=now
    )
    if payload.get("nudge") and (reason := await working.nudge_given_up(session, message)):
        return Preparation(None, give_up=reason)
    if payload.get("after"):
        first = await session.get(OutboxMessage, int(payload["after"]))
        if first is None or first.status in ("dead", "cancelled"):
            return Preparation(None, give_up="not sent: what it follows up was never delivered")
        if first.status != "delivered":
            wait = (first.due_at - now).total_seconds() + 1.0
            return Preparation(None, wait=min(max(wait, 1.0), MAX_WAIT))
        wanted = payload.get("from_result") or ()
        if first.result.get(outbox.NOT_SENT_AGAIN) and any(k not in first.result for k in wanted):
            # Recorded as delivered without being sent a third time (a Teams message: its
            # senders died twice after sending it): where it landed is not known.
            return Preparation(
                None, give_up="not sent: where the message it follows up landed is not known"
            )
        for key in wanted:
            if key in first.result:
                payload[key] = first.result[key]
    if payload.get("refresh_ticket_card"):
        # Rendered now, not when queued: refreshes delivered in any order all show the latest.
        ticket = await session.get(Ticket, message.ticket_id)
        if ticket is None:
            return Preparation(None, give_up="the ticket no longer exists")
        if payload.get("await_card"):
            if not ticket.card_channel or not ticket.card_message:
                wait = await _card_coming(ticket, message, session, now)
                if wait is None:
                    return Preparation(None, give_up="the ticket card was never posted")
                return Preparation(None, wait=wait)
            payload["channel"] = ticket.card_channel
            payload["ts"] = payload["activity_id"] = ticket.card_message
        if (wait := notify.card_held_for_form(ticket, payload, now)) is not None:
            # A form sits in the card's place (Teams): this would overwrite what is typed in
            # it. One refresh waiting is enough, as each shows the ticket as it is when sent.
            if await outbox.other_card_refresh(session, ticket_id=ticket.id, row_id=message.id):
                return Preparation(None, give_up=COLLAPSED)
            return Preparation(None, wait=wait)
        card = await current_card(session, ticket, now=now)
        payload["card"], payload["text"] = card.to_dict(), card.fallback
        payload[RENDERED_VERSION] = card_version(ticket)
    if payload.get("refresh_incident_notice"):
        # Rendered now too: the notice shows the users affected (and state) as they are.
        ticket = await session.get(Ticket, message.ticket_id)
        if ticket is None:
            return Preparation(None, give_up="the ticket no longer exists")
        who = await notify.technician_shown(session, ticket)
        card = incidents.current_notice(ticket, payload.get("bridge"), who=who)
        payload["card"], payload["text"] = card.to_dict(), card.fallback
    if payload.get(notify.TECHNICIAN_CHAT) and message.ticket_id is not None:
        # A note for the technician's Teams chat carries the ticket's conversation and thread
        # (the chat may be that conversation; else it is where the note goes when the chat
        # cannot be opened): as they are now, once the card, whose message is the thread, is.
        ticket = await session.get(Ticket, message.ticket_id)
        if ticket is not None:
            if ticket.source_thread:
                payload["channel"], payload["thread"] = ticket.source_channel, ticket.source_thread
            elif (wait := await _card_coming(ticket, message, session, now)) is not None:
                return Preparation(None, wait=wait)
    if _wants_ticket_thread(message):
        ticket = await session.get(Ticket, message.ticket_id)
        if ticket is not None and ticket.source_platform == payload.get("platform"):
            if ticket.source_thread:
                payload["channel"], payload["thread"] = ticket.source_channel, ticket.source_thread
            elif (
                not _about_the_card(message)
                and (wait := await _card_coming(ticket, message, session, now)) is not None
            ):
                # The ticket card, whose message becomes the thread, is still on its way
                # (queued, being posted right now, or retried): follow it, not overtake it.
                return Preparation(None, wait=wait)
    return Preparation(payload)


def _about_the_card(message: OutboxMessage) -> bool:
    """A delivery report about the ticket card itself: it cannot wait for that card to post
    in its thread. Reports about anything else (a page failing while the card is still being
    posted) follow the card like every other note for the ticket; a report queued before
    reports said what they are about is taken as one about the card (it never waited)."""
    payload = message.payload
    return payload.get("purpose") == REPORT_PURPOSE and bool(payload.get(ABOUT_CARD, True))


async def _card_coming(
    ticket: Ticket, message: OutboxMessage, session: AsyncSession, now: datetime
) -> float | None:
    """How long to wait for the ticket card while it is still on its way; None when it is
    not (posted, or given up)."""
    if ticket.card_message:
        return None
    if ticket.source_platform == "teams":
        # The card is sent in the turn and recorded after it (tickets.remember_card): there
        # is no row to watch, so it is waited for a while after `message` was queued.
        fresh = (utcnow() - message.created_at).total_seconds() <= CARD_WAIT
        return 0.5 if fresh else None
    # Elsewhere the card is an outbox row: followed for as long as it is retried (a Slack
    # outage longer than CARD_WAIT must not send its notes to the channel's top level), at
    # its own pace (checked again when it is next due, not every half second).
    due = await outbox.card_due(session, ticket.id)
    if due is None:
        return None
    return min(max((due - now).total_seconds() + 0.5, 0.5), MAX_WAIT)


async def after_delivery(
    session: AsyncSession,
    *,
    config: HelpdeskConfig,
    message: OutboxMessage,
    result: dict[str, Any],
    now: datetime | None = None,
) -> None:
    """Remember where the ticket card landed (the ticket's thread); audit; close reports."""
    if message.ticket_id is None:
        return
    now = now or utcnow()
    await csat.on_survey_delivered(session, message=message, at=now)
    card_message = result.get("ts") or result.get("activity_id")
    card = bool(message.payload.get("ticket_card") and card_message and result.get("channel"))
    thread = bool(message.payload.get("sets_ticket_thread") and result.get("ts"))
    # What the card showed when it was queued, compared with the ticket as its UPDATE leaves it
    # (read by that statement).
    shown = message.payload.get("card_version") if card else None
    versions = VERSION_COLUMNS if shown is not None else ()
    now_shown = None
    if card and thread:
        now_shown = await repo.set_card_and_thread(
            session,
            ticket_id=message.ticket_id,
            channel=str(result["channel"]),
            message=str(card_message),
            thread=str(result["ts"]),
            returning=versions,
        )
    elif card:
        now_shown = await repo.set_card(
            session,
            ticket_id=message.ticket_id,
            channel=str(result["channel"]),
            message=str(card_message),
            returning=versions,
        )
    elif thread:
        await repo.set_thread(
            session,
            ticket_id=message.ticket_id,
            channel=str(result["channel"]),
            thread=str(result["ts"]),
        )
    if now_shown is not None and card_version(now_shown) != shown:
        await _refresh_card(session, message.ticket_id)
    if message.kind == "update":
        await _refresh_again_if_overtaken(session, message)
    await repo.add_event(
        session,
        ticket_id=message.ticket_id,
        kind="delivery.delivered",
        data={"outbox_id": message.id, "kind": message.kind, "attempts": message.attempts},
    )
    await identity.on_request_delivered(session, message=message, now=now)
    if psa.is_psa_row(message):
        await psa.after_psa_delivery(session, config, message=message, result=result, now=now)
    if message.failure_reported and _reportable(message):
        what, attempt = label(message), message.attempts
        await _report(
            session,
            message,
            "delivered",
            lambda number: f"The {what} for {number} has gone through now (attempt {attempt}).",
        )


async def _refresh_card(session: AsyncSession, ticket_id: int) -> None:
    """The ticket changed while its card was on the way (its message was not known yet, so
    nothing could be refreshed): bring the card just posted up to date."""
    ticket = await session.get(Ticket, ticket_id)
    if ticket is not None:
        await notify.refresh_ticket_card(session, ticket)


async def _refresh_again_if_overtaken(session: AsyncSession, message: OutboxMessage) -> None:
    """A refresh (ticket card, incident notice) is rendered when it is prepared and lands when
    its request arrives. Another process may have rendered and sent a newer one meanwhile,
    which this one, arriving later, has just overwritten: when the ticket has changed since
    this one was rendered, queue one more, rendered now (the ticket is locked: any later
    change queues its own refresh after this)."""
    payload = message.payload
    rendered = payload.get(RENDERED_VERSION)
    notice = payload.get("refresh_incident_notice") and isinstance(payload.get("card"), dict)
    if rendered is None and not notice:
        return
    ticket = await session.get(Ticket, message.ticket_id, populate_existing=True)
    if ticket is None:
        return
    if rendered is not None and card_version(ticket) != rendered:
        log.info("outbox row %s: the ticket changed while its card was sent; refreshed", message.id)
        await notify.refresh_ticket_card(session, ticket)
    elif notice and (
        incidents.current_notice(
            ticket, payload.get("bridge"), who=await notify.technician_shown(session, ticket)
        ).to_dict()
        != payload["card"]
    ):
        log.info(
            "outbox row %s: the ticket changed while its notice was sent; refreshed", message.id
        )
        again = {k: v for k, v in payload.items() if k not in ("card", "text")}
        await outbox.enqueue(session, kind="update", ticket_id=ticket.id, payload=again)


async def after_failure(
    session: AsyncSession, *, message: OutboxMessage, error: str, permanent: bool
) -> None:
    """Audit the failed attempt; tell the technician (pages at once, others past a threshold)."""
    if message.ticket_id is None:
        return
    await repo.add_event(
        session,
        ticket_id=message.ticket_id,
        kind="delivery.failed",
        data={
            "outbox_id": message.id,
            "kind": message.kind,
            "attempts": message.attempts,
            "error": error[:500],
            "permanent": permanent,
        },
    )
    await identity.on_request_failed(session, message=message, error=error, permanent=permanent)
    if not _reportable(message):
        return
    page = message.kind.startswith("page.")
    # What the platform or pager answered: shown literally.
    what, reason, attempts = label(message), Typed(error[:300]), message.attempts
    if permanent:
        # A page that never went out leaves the on-call unaware; a resolve or close that
        # failed leaves an alert open on the pager (it is closed there by hand).
        hint = (
            (
                " Resolve the alert in the pager by hand."
                if _closes_alert(message)
                else " Reach the on-call another way."
            )
            if page
            else ""
        )
        await _report(
            session,
            message,
            "dead",
            lambda number: Rich(
                f"The {what} for {number} failed and will not be retried: ", reason, f".{hint}"
            ),
        )
    elif page and not message.failure_reported:
        await _report(
            session,
            message,
            "failing",
            lambda number: Rich(
                f"The {what} for {number} has not gone through yet (", reason, "); retrying."
            ),
        )
    elif not message.failure_reported and attempts >= REPORT_AFTER_ATTEMPTS:
        await _report(
            session,
            message,
            "failing",
            lambda number: Rich(
                f"The {what} for {number} has not been delivered after {attempts} attempts (",
                reason,
                "); still retrying.",
            ),
        )


def reports_hold(message: OutboxMessage, *, seconds: float) -> bool:
    """Whether a row put back untried for `seconds` (its place's Retry-After window) is one
    the technician hears about (`after_hold`): a page not reported yet, held long enough."""
    return (
        message.kind.startswith("page.")
        and message.ticket_id is not None
        and not message.failure_reported
        and seconds >= HOLD_REPORT_AFTER
        and _reportable(message)
    )


async def after_hold(session: AsyncSession, *, message: OutboxMessage, seconds: float) -> None:
    """A page held back, not attempted, because its pager asked to wait (a Retry-After answered
    to another send): the on-call is not paged meanwhile, so the technician is told now, as
    after a first failed attempt, and again when it goes through (each once: a failed attempt
    later reports nothing more)."""
    if not reports_hold(message, seconds=seconds):
        return
    what = label(message)
    pager = incidents.PAGER_NAMES.get(message.kind.removeprefix("page."), "the pager")
    wait = max(round(seconds), 1)
    await _report(
        session,
        message,
        "failing",
        lambda number: (
            f"The {what} for {number} has not gone through yet: {pager} asked the bot to wait "
            f"(Retry-After) after refusing an earlier send; it goes out in about {wait} s."
        ),
    )


def _closes_alert(message: OutboxMessage) -> bool:
    """A PagerDuty resolve or an Opsgenie close (not a page that wakes anyone)."""
    payload = message.payload
    return payload.get("event_action") == "resolve" or payload.get("op") == "close"


def _reportable(message: OutboxMessage) -> bool:
    purpose = message.payload.get("purpose")
    return purpose != REPORT_PURPOSE and purpose not in SELF_REPORTING


def _report_key(message: OutboxMessage, stage: str) -> str:
    return f"{REPORT_PURPOSE}:{message.id}:{stage}"


async def _report(
    session: AsyncSession, message: OutboxMessage, stage: str, text: Callable[[str], Inline]
) -> None:
    """Tell the technician in the ticket's thread, once per row and stage; for a closed ticket
    its requester opened, the technician who closed it, directly (its thread is the
    requester's, and they are the "technician" a thread note mentions: a survey that does not
    reach them is no news for them)."""
    ticket = await session.get(Ticket, message.ticket_id)
    if ticket is None:
        return
    extra: dict[str, Any] = {ABOUT_CARD: bool(message.payload.get("ticket_card"))}
    if stage == "delivered":
        # Said after the report that it was failing, not before it: both may be waiting for
        # the ticket card (their thread), and whichever is checked first would go first.
        failing = await outbox.by_dedup_keys(session, [_report_key(message, "failing")])
        if failing and failing[0].status != "delivered":
            extra["after"] = failing[0].id
    await csat.tell_technician_or_closer(
        session,
        ticket,
        text(ticket.number),
        purpose=REPORT_PURPOSE,
        dedup_key=_report_key(message, stage),
        extra=extra,
    )
    if stage != "delivered":
        await outbox.set_failure_reported(session, message.id)
