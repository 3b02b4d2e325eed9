"""P1 incidents: the incident-channel notice and the page, queued with the change (SPEC).

Everything leaves through the outbox in the caller's transaction. Each side effect of a P1
has a fixed dedup key (`p1:HD-7:pagerduty`, `p1:HD-7:notice:slack`...), so raising twice,
a retried request or two technicians at once never page twice. Closing the ticket queues
the follow-ups (PagerDuty resolve, Opsgenie close, notice update), each waiting for the row
it follows; a page or notice that certainly did not go out (never tried, or every try refused
cleanly, e.g. a 429, and waiting for its retry; not being sent right now) is cancelled instead.
One that may have arrived (in doubt: a timeout) is followed up like one delivered.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Inline, Rich, Typed
from handlers import identity, notify, psa, sla
from handlers.commands import Command, ticket_ref
from handlers.deps import Deps
from handlers.formatting import joined, when
from handlers.incidents import cards
from handlers.types import Actor, Interaction, InvalidInput, NotFound, Reply
from storage import outbox
from storage import tickets as repo
from storage.models import OutboxMessage, Ticket

log = logging.getLogger(__name__)
NOTICE = "incident-notice"
NOTICE_UPDATE = "incident-notice-update"
# Payload key of the notice (and its edits): the bridge it names (`incident.bridge_url`).
BRIDGE_KEY = "bridge"
# What a page cancelled because its ticket was closed before it went out records.
NOT_PAGED = "not paged: closed first"
PAGER_NAMES = {"pagerduty": "PagerDuty", "opsgenie": "Opsgenie"}
# Where the notice went, copied into its update at delivery time.
NOTICE_RESULT_KEYS = ["channel", "ts", "activity_id"]


def dedup_key(number: str, what: str) -> str:
    """`p1:HD-7:pagerduty`, `p1:HD-7:notice:slack`: one of each per ticket, ever."""
    return f"p1:{number}:{what}"


def _notice_targets(deps: Deps) -> list[tuple[str, str]]:
    targets = []
    if deps.config.slack.incident_channel:
        targets.append(("slack", deps.config.slack.incident_channel))
    if deps.config.teams.incident_conversation:
        targets.append(("teams", deps.config.teams.incident_conversation))
    return targets


async def raise_p1_command(deps: Deps, interaction: Interaction, command: Command) -> Reply:
    """`ticket p1 HD-7`: raise to P1 (technicians only), then notice and page, once."""
    await deps.require_technician(interaction.actor, "raise a ticket to P1")
    number = ticket_ref(command)
    if number is None:
        raise InvalidInput("Which ticket? Try `ticket p1 HD-7`.")
    entry = await deps.entry_if_known(interaction.actor)
    async with deps.sessions() as session, session.begin():
        ticket = await repo.get_by_number(session, number, lock=True)
        if ticket is None:
            raise NotFound(f"There is no ticket {number}.")
        if ticket.status != "open":
            raise InvalidInput(f"{number} is {ticket.status}; only open tickets can be raised.")
        if ticket.filed_under:
            parent = await repo.get_by_number(session, ticket.filed_under)
            if parent is not None and parent.status != "open":
                # Left open when its P1 closed (its identity check was not confirmed): that
                # incident is over, so "paged already" would be false.
                raise InvalidInput(
                    f"{number} is filed under the P1 {ticket.filed_under}, which is "
                    f"{parent.status}. If the problem is back, open a new ticket at P1."
                )
            raise InvalidInput(
                f"{number} is filed under the P1 {ticket.filed_under} as one more report of the "
                "same problem: that incident is paged already."
            )
        if ticket.identity_state == "denied":
            # The manager said the caller is not the requester: paging the on-call and opening
            # a bridge for them is proceeding (SPEC: the technician is told not to).
            await identity.audit_gate(session, interaction, ticket, "p1")
            return Reply(text=identity.refusal(ticket))
        now = deps.clock()
        raised = ticket.priority != "P1"
        await sla.record_first_response(
            session,
            ticket,
            interaction.actor,
            interaction.conversation.id,
            at=now,
            action="p1",
            refresh_card=not raised,
            person=entry,
        )
        if raised:
            await _raise(
                session,
                deps,
                ticket,
                actor=interaction.actor,
                channel=interaction.conversation.id,
                now=now,
            )
        queued = await on_p1(
            session,
            deps,
            ticket=ticket,
            actor=interaction.actor,
            channel=interaction.conversation.id,
        )
        # What was queued before (an earlier raise): said as it stands, not assumed sent.
        wanted = [dedup_key(number, w) for w in ("notice:slack", "notice:teams", *PAGER_NAMES)]
        earlier = [
            row
            for row in await outbox.by_dedup_keys(session, wanted)
            if str(row.dedup_key).removeprefix(f"p1:{number}:") not in queued
        ]
        text = _raised_text(deps, ticket, raised=raised, queued=queued, earlier=earlier)
    log.info("p1 raised", extra={"ticket": number, "queued": queued})
    return Reply(text=text, private=False)


async def _raise(
    session: AsyncSession,
    deps: Deps,
    ticket: Ticket,
    *,
    actor: Actor,
    channel: str,
    now: datetime,
) -> None:
    """Priority P1 with the P1 targets of its tier, counted from creation (SPEC), and the SLA
    warnings and breaches moved with them."""
    previous = ticket.priority
    ticket.priority = "P1"
    ticket.priority_warning = ""
    await sla.retarget(session, deps.config, ticket, now=now)
    await notify.refresh_ticket_card(session, ticket)
    await psa.on_priority_raised(session, ticket=ticket)
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="ticket.priority_raised",
        actor_platform=actor.platform,
        actor_id=actor.id,
        channel=channel,
        data={
            "from": previous,
            "to": "P1",
            "respond_by": ticket.respond_by.isoformat(),
            "resolve_by": ticket.resolve_by.isoformat(),
        },
    )


def _raised_text(
    deps: Deps, ticket: Ticket, *, raised: bool, queued: list[str], earlier: list[OutboxMessage]
) -> Inline:
    """The answer to `p1`: what was queued now, and how what was queued before stands."""
    number = ticket.number
    if not queued and not raised and earlier and all(r.status == "delivered" for r in earlier):
        return f"{number} is already P1: its incident notice and page went out before."
    if raised:
        lines = [
            f"{number} is now P1 (respond by {when(ticket.respond_by)}, resolve by "
            f"{when(ticket.resolve_by)})."
        ]
    else:
        lines = [f"{number} is P1." if queued else f"{number} is already P1."]
    notices = [q.split(":", 1)[1] for q in queued if q.startswith("notice:")]
    pages = [PAGER_NAMES[q] for q in queued if q in PAGER_NAMES]
    if notices:
        lines.append("Incident notice: " + ", ".join(n.capitalize() for n in notices) + ".")
    elif not _notice_targets(deps) and not any(not r.kind.startswith("page.") for r in earlier):
        lines.append("No incident channel is configured: tell the incident channel yourself.")
    if pages:
        lines.append("Paging the on-call through " + " and ".join(pages) + ".")
    elif not deps.pagers and not any(r.kind.startswith("page.") for r in earlier):
        lines.append("No pager is configured: reach the on-call directly.")
    said: list[Inline] = [*lines, *(_earlier_state(row) for row in earlier)]
    return joined(said)


def _earlier_state(row: OutboxMessage) -> Inline:
    """One line on a notice or page queued by an earlier raise, in the words of the delivery
    reports (`handlers.deliveries`)."""
    page = row.kind.startswith("page.")
    if page:
        pager = row.kind.removeprefix("page.")
        what = f"The {PAGER_NAMES.get(pager, pager)} {'alert' if pager == 'opsgenie' else 'page'}"
    else:
        what = f"The incident notice ({str(row.payload.get('platform') or '').capitalize()})"
    # What the pager or chat platform answered (or why it was cancelled): shown literally.
    reason = Typed(row.last_error[:300])
    if row.status == "delivered":
        return f"{what} went out before."
    if row.status == "dead":
        hint = " Reach the on-call another way." if page else ""
        return Rich(f"{what} failed and will not be retried: ", reason, f".{hint}")
    if row.status == "cancelled":
        return Rich(f"{what} was not sent: ", reason, ".")
    if reason.text:
        return Rich(f"{what} has not gone through yet (", reason, "); still being retried.")
    return f"{what} is on its way."


async def on_p1(
    session: AsyncSession, deps: Deps, *, ticket: Ticket, actor: Actor, channel: str = ""
) -> list[str]:
    """Queue the notice (per configured platform) and a page (per configured pager), once
    (`channel`: where the P1 was opened or raised, for the audit trail).

    Returns what was newly queued (`notice:slack`, `pagerduty`...); nothing when it was before.
    """
    bridge = deps.config.incident.bridge_url
    queued: list[str] = []
    card = cards.notice(ticket, bridge, who=await notify.technician_shown(session, ticket))
    for platform, target in _notice_targets(deps):  # not `channel`: where the P1 was made
        if await outbox.enqueue(
            session,
            kind="message",
            ticket_id=ticket.id,
            dedup_key=dedup_key(ticket.number, f"notice:{platform}"),
            payload={
                "platform": platform,
                "channel": target,
                "thread": None,
                "ticket": ticket.number,
                "purpose": NOTICE,
                "text": card.fallback,
                "card": card.to_dict(),
                BRIDGE_KEY: bridge,
            },
        ):
            queued.append(f"notice:{platform}")
    for pager in deps.pagers:
        if pager == "pagerduty":
            payload = {**cards.pagerduty_trigger(ticket, bridge), "purpose": "trigger"}
        elif pager == "opsgenie":
            payload = {**cards.opsgenie_alert(ticket, bridge), "purpose": "create"}
        else:
            continue
        if await outbox.enqueue(
            session,
            kind=f"page.{pager}",
            ticket_id=ticket.id,
            dedup_key=dedup_key(ticket.number, pager),
            payload={**payload, "ticket": ticket.number},
        ):
            queued.append(pager)
    if queued:
        await repo.add_event(
            session,
            ticket_id=ticket.id,
            kind="incident.p1",
            actor_platform=actor.platform,
            actor_id=actor.id,
            channel=channel,
            data={"queued": queued},
        )
    if not deps.pagers:
        log.warning("P1 %s: no pager is configured, nobody is paged", ticket.number)
    return queued


async def refresh_notice(session: AsyncSession, deps: Deps | None, *, ticket: Ticket) -> int:
    """Edit the incident notice(s) in place to the ticket as it stands when the edit is
    delivered (Slack chat.update, Teams activity update): no new notice, no new page. Each
    edit waits for its notice to be out; returns how many were queued. Without `deps` (the
    SLA clock: a technician took the ticket) the bridge is the one the notice was sent with
    (a notice queued before it was kept there is left as it is)."""
    rows = await outbox.by_dedup_keys(
        session, [dedup_key(ticket.number, f"notice:{p}") for p in ("slack", "teams")]
    )
    queued = 0
    for row in rows:
        if row.status in ("dead", "cancelled"):
            continue
        if deps is not None:
            bridge = deps.config.incident.bridge_url
        elif BRIDGE_KEY in row.payload:
            bridge = row.payload[BRIDGE_KEY]
        else:
            continue
        await outbox.enqueue(
            session,
            kind="update",
            ticket_id=ticket.id,
            payload={
                "platform": row.payload.get("platform"),
                "channel": row.payload.get("channel"),
                "purpose": NOTICE_UPDATE,
                "ticket": ticket.number,
                "after": row.id,
                "from_result": NOTICE_RESULT_KEYS,
                "refresh_incident_notice": True,
                "bridge": bridge,
            },
        )
        queued += 1
    return queued


async def cancel_unsent(session: AsyncSession, *, ticket: Ticket) -> list[str]:
    """A P1 found to repeat another incident: its notice and pages that certainly did not go
    out (`outbox.cancel_unsent`: never tried, or refused cleanly and waiting for a retry) are
    not sent at all (ones out, or that may be, stay until it is closed, which resolves them)."""
    wanted = ["notice:slack", "notice:teams", *PAGER_NAMES]
    rows = await outbox.by_dedup_keys(session, [dedup_key(ticket.number, w) for w in wanted])
    cancelled = []
    for row in rows:
        reason = f"{ticket.number} was filed under another P1 before it was sent"
        if await outbox.cancel_unsent(session, message_id=row.id, reason=reason):
            cancelled.append(str(row.dedup_key))
    return cancelled


def is_first_page(message: OutboxMessage) -> bool:
    """A PagerDuty trigger or Opsgenie create of a P1 (not its resolve or close)."""
    return message.kind.startswith("page.") and not message.payload.get("after")


async def page_given_up(session: AsyncSession, message: OutboxMessage) -> str:
    """Why a P1's page is not sent now (empty: it is): its ticket was closed, or filed under
    another P1, while an attempt was on its way (too late to cancel it then) that was refused
    cleanly, so it did not reach the pager. Sending it again would wake the on-call for an
    incident that is over (or paged already). A page that may have arrived (in doubt) is
    sent, as its resolve follows it."""
    if message.in_doubt or message.ticket_id is None:
        return ""
    ticket = await session.get(Ticket, message.ticket_id)
    if ticket is None:
        return ""
    if ticket.filed_under:
        return f"{ticket.number} was filed under another P1 before it was sent"
    if ticket.status != "closed":
        return ""
    pager = message.kind.removeprefix("page.")
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="incident.not_paged",
        data={"reason": "closed first", "pagers": [pager]},
    )
    await notify.tell_technician(
        session,
        ticket,
        f"{ticket.number} was closed before its page went out, so nobody was paged through "
        f"{PAGER_NAMES.get(pager, pager)} (not paged: closed first).",
        purpose="incident-not-paged",
        dedup_key=f"incident-not-paged:{message.id}",
    )
    return NOT_PAGED


def _follow_up(
    ticket: Ticket, row: OutboxMessage, bridge: str | None
) -> tuple[str, dict[str, Any]]:
    """The row that undoes or updates `row` once the ticket is closed."""
    common = {"ticket": ticket.number, "after": row.id}
    if row.kind == "page.pagerduty":
        return row.kind, {**cards.pagerduty_resolve(ticket), "purpose": "resolve", **common}
    if row.kind == "page.opsgenie":
        return row.kind, {**cards.opsgenie_close(ticket), "purpose": "close", **common}
    card = cards.resolved_notice(ticket, bridge)
    return "update", {
        "platform": row.payload.get("platform"),
        "channel": row.payload.get("channel"),
        "purpose": NOTICE_UPDATE,
        "from_result": NOTICE_RESULT_KEYS,
        "text": card.fallback,
        "card": card.to_dict(),
        **common,
    }


def _notice_outcome(outcomes: set[str]) -> str:
    """` The incident notice goes out marked resolved.` (or `is marked resolved`, or both
    where one platform's notice had gone out and the other's had not); empty when there is
    no notice (no incident channel, or it failed for good)."""
    if not outcomes:
        return ""
    return f" The incident notice {' / '.join(sorted(outcomes))}."


async def on_ticket_closed(
    session: AsyncSession, deps: Deps, *, ticket: Ticket, actor: Actor, channel: str = ""
) -> list[str]:
    """Resolve the page(s) and mark the notice(s) resolved; returns what was queued
    (`channel`: where the closure was made, for the audit trail).

    A P1 closed before its page went out is not paged (nobody is woken for a closed
    incident): the page is cancelled as "not paged: closed first", the technician is told,
    and the incident notice still goes out, marked resolved.
    """
    number = ticket.number
    wanted = ["notice:slack", "notice:teams", *PAGER_NAMES]
    rows = await outbox.by_dedup_keys(session, [dedup_key(number, w) for w in wanted])
    bridge = deps.config.incident.bridge_url
    queued: list[str] = []
    not_paged: list[str] = []
    # What became of the notice(s), for the "not paged" message: posted now marked resolved
    # (it had not gone out), or edited to say so.
    notices: set[str] = set()
    for row in rows:
        assert row.dedup_key is not None
        is_page = row.kind.startswith("page.")
        reason = NOT_PAGED if is_page else f"{number} was closed before it was sent"
        if await outbox.cancel_unsent(session, message_id=row.id, reason=reason):
            if is_page:
                not_paged.append(row.kind.removeprefix("page."))
                continue
            # The notice never went out: it goes out now, already resolved.
            card = cards.resolved_notice(ticket, bridge)
            resolved = {**row.payload, "text": card.fallback, "card": card.to_dict()}
            if await outbox.enqueue(
                session,
                kind=row.kind,
                ticket_id=ticket.id,
                dedup_key=f"{row.dedup_key}:resolved",
                payload=resolved,
            ):
                queued.append(row.dedup_key)
            notices.add("goes out marked resolved")
            continue
        if not is_page and row.status not in ("dead", "cancelled"):
            notices.add("is marked resolved")
        kind, payload = _follow_up(ticket, row, bridge)
        if await outbox.enqueue(
            session,
            kind=kind,
            ticket_id=ticket.id,
            dedup_key=f"{row.dedup_key}:resolved",
            payload=payload,
        ):
            queued.append(row.dedup_key)
    if not_paged:
        names = " and ".join(PAGER_NAMES[p] for p in not_paged)
        await repo.add_event(
            session,
            ticket_id=ticket.id,
            kind="incident.not_paged",
            actor_platform=actor.platform,
            actor_id=actor.id,
            channel=channel,
            data={"reason": "closed first", "pagers": not_paged},
        )
        await notify.tell_technician(
            session,
            ticket,
            f"{number} was closed before its page went out, so nobody was paged through "
            f"{names} (not paged: closed first).{_notice_outcome(notices)}",
            purpose="incident-not-paged",
        )
    if queued or not_paged:
        await repo.add_event(
            session,
            ticket_id=ticket.id,
            kind="incident.resolved",
            actor_platform=actor.platform,
            actor_id=actor.id,
            channel=channel,
            data={"follow_ups": queued, "not_paged": not_paged},
        )
    return queued
