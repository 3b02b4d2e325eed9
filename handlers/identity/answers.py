"""The manager's answer to an identity check: checked, recorded, and acted on.

An answer counts only when its nonce matches a pending request, it comes from the manager's
own platform user id, that person is still the requester's manager in the directory, and it
arrives before the request expires; anything else is refused, told why, and audited. Rows are
locked ticket first, then check (the same order as `verify`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Inline, Rich, Typed, kept_text, plain
from handlers import notify, psa
from handlers.deps import Deps, observe_on_commit
from handlers.directory import DirectoryUnavailable, Person, unavailable_words
from handlers.formatting import when
from handlers.identity import cards, telling
from handlers.types import Actor, Interaction, Reply
from storage import tickets as repo
from storage.models import IdentityCheck, OutboxMessage, Ticket, utcnow

log = logging.getLogger(__name__)
PURPOSE = cards.PURPOSE
NO_LONGER_MANAGER = "no longer the manager"
MANAGER_DISABLED = "manager disabled"
NOT_THEIR_ACCOUNT = "not the manager's account now"
REQUESTER_DISABLED = "requester disabled"


async def retire_dm(
    session: AsyncSession, ticket: Ticket, check: IdentityCheck, text: Inline
) -> None:
    """Replace a delivered request's buttons with `text` (an outbox `update`)."""
    await _retire(session, ticket, f"identity:{check.id}", check.manager_platform, text)


async def retire_callback(
    session: AsyncSession, ticket: Ticket, check: IdentityCheck, text: Inline
) -> None:
    """Replace the call-back notice's **Called back: confirmed** button with `text` (in the
    technician's direct message; in the ticket's thread for a notice posted there before)."""
    if check.callback_phone:
        await _retire(session, ticket, f"identity-callback:{check.id}", None, text)


async def _retire(
    session: AsyncSession, ticket: Ticket, dedup_key: str, platform: str | None, text: Inline
) -> None:
    """`platform`: where the message went (None: as the outbox row says)."""
    sent = (
        await session.execute(select(OutboxMessage).where(OutboxMessage.dedup_key == dedup_key))
    ).scalar_one_or_none()
    if sent is None or sent.status != "delivered" or not sent.result.get("channel"):
        return
    platform = platform or str(sent.payload.get("platform") or ticket.source_platform)
    message = sent.result.get("ts") or sent.result.get("activity_id")
    if not message:
        return
    await notify.update_message(
        session,
        ticket,
        platform=platform,
        channel=sent.result["channel"],
        message=str(message),
        purpose="identity.update",
        card=cards.outcome_card(ticket, text).to_dict(),
        **kept_text(text),
    )


async def refresh_incident_notice(session: AsyncSession, deps: Deps, ticket: Ticket) -> None:
    """A P1's incident notice says whether its requester's identity is confirmed: edit it in
    place when that changes (no new notice, no new page)."""
    if ticket.priority == "P1":
        # Imported here: raising to P1 checks the identity gate, so incidents imports us.
        from handlers import incidents

        await incidents.refresh_notice(session, deps, ticket=ticket)


async def answer(deps: Deps, interaction: Interaction, *, approved: bool) -> Reply:
    """Record the manager's answer, or refuse (and audit) one that cannot count."""
    actor = interaction.actor
    nonce = interaction.data.get(cards.NONCE_KEY)
    choice = "approve" if approved else "deny"
    now = deps.clock()
    # Directory first, outside the transaction: a slow directory must not hold the database.
    # When it cannot answer, nothing is recorded and the check stays as it was (pending).
    try:
        facts = await _directory_facts(deps, nonce)
    except DirectoryUnavailable as exc:
        log.warning("identity answer: the directory could not answer: %s", exc)
        why_not = await _unverified(deps, interaction, nonce, choice, exc)
        return Reply(text=why_not or unavailable_words(exc, "your answer was not recorded"))
    technician = facts.technician
    async with deps.sessions() as session, session.begin():
        check, ticket = await _load(session, nonce)
        if ticket is not None and ticket.technician_id != facts.technician_id:  # taken over
            technician = await deps.directory.find_by_platform_id(
                ticket.source_platform, ticket.technician_id
            )
        refused = (
            _why_refused(check, actor)
            or _conflicted(ticket, check, actor, technician)
            or _no_longer_manager(ticket, check, facts.manager_now)
            or _manager_disabled(ticket, facts.manager_now)
            or _not_their_account(ticket, check, actor, facts.manager_now)
            or _requester_disabled(ticket, facts.requester_disabled, approved=approved)
        )
        if refused is not None:
            reason, reply = refused
            data: dict[str, object] = {
                "reason": reason,
                "answer": choice,
                "check": check.id if check else None,
            }
            if reason == NO_LONGER_MANAGER:
                assert ticket is not None and check is not None and facts.manager_now is not None
                await _tell_manager_changed(session, ticket, check, facts, choice)
                data |= {
                    "manager": check.manager_email,
                    "current_manager": facts.manager_now.email or None,
                }
            if reason == MANAGER_DISABLED:
                assert ticket is not None and check is not None
                await _tell_manager_disabled(session, ticket, check, facts, choice)
                data["manager"] = check.manager_email
            if reason == REQUESTER_DISABLED:
                assert ticket is not None and check is not None
                ticket.requester_disabled = True
                await telling.tell_technician(
                    session,
                    ticket,
                    check,
                    cards.approval_of_disabled_requester_text(
                        ticket, cards.manager_named(facts.listed, check.manager_email)
                    ),
                    dedup_key=f"identity-requester-disabled:{check.id}",
                )
                data["manager"] = check.manager_email
            if reason == NOT_THEIR_ACCOUNT:
                assert ticket is not None and check is not None
                await telling.tell_technician(
                    session,
                    ticket,
                    check,
                    cards.account_changed_text(
                        ticket,
                        cards.manager_named(facts.listed, check.manager_email),
                        Rich(f"{actor.platform} user ", Typed(actor.id)),
                        denied=choice == "deny",
                    ),
                    dedup_key=f"identity-account-changed:{check.id}",
                )
                data["manager"] = check.manager_email
            await _audit_refused(session, deps, interaction, ticket, data)
            return Reply(text=reply)
        assert check is not None and ticket is not None
        manager = cards.manager_named(facts.listed, check.manager_email)
        check.answered_by, check.answered_at = actor.id, now
        if check.expires_at is not None and now > check.expires_at:
            observe_on_commit(deps, session, "identity", outcome="expired")
            return await _expired(
                session, ticket, check, actor, manager, choice, interaction.conversation.id
            )
        if approved:
            await _approved(session, deps, ticket, check, interaction, manager)
            observe_on_commit(deps, session, "identity", outcome="approved")
            return Reply(text=f"Thank you: you confirmed the identity for {ticket.number}.")
        told = await _denied(session, deps, ticket, check, interaction, manager)
        observe_on_commit(deps, session, "identity", outcome="denied")
    security = " and the security team is told" if told else ""
    return Reply(text=f"Thank you: {ticket.number} is stopped{security}.")


async def _unverified(
    deps: Deps, interaction: Interaction, nonce: object, choice: str, error: DirectoryUnavailable
) -> Inline | None:
    """An answer the directory could not check (SPEC: audit every identity decision): it
    changes nothing, but it is audited, and a Deny is told to the technician, who must not
    go on as if the manager had said nothing. Returns the refusal to answer instead when the
    answer could not count anyway (not the manager, already answered: no directory needed)."""
    actor = interaction.actor
    # A database that cannot be reached either goes to the dispatcher like any other
    # (the person is told nothing was saved), as do a redelivery and a given-up answer.
    async with deps.sessions() as session, session.begin():
        check, ticket = await _load(session, nonce)
        refused = _why_refused(check, actor)
        reason = refused[0] if refused else "directory unavailable"
        data: dict[str, object] = {
            "reason": reason,
            "answer": choice,
            "check": check.id if check else None,
        }
        if refused is None:
            assert check is not None and ticket is not None
            data["directory"] = error.source
            if choice == "deny":
                await telling.tell_technician(
                    session,
                    ticket,
                    check,
                    cards.deny_unverified_text(
                        ticket, cards.manager_named(None, check.manager_email), error.source
                    ),
                    dedup_key=f"identity-deny-unverified:{check.id}",
                )
        await _audit_refused(session, deps, interaction, ticket, data)
    return refused[1] if refused else None


async def _audit_refused(
    session: AsyncSession,
    deps: Deps,
    interaction: Interaction,
    ticket: Ticket | None,
    data: dict[str, object],
) -> None:
    """Audit an answer that did not count (`identity.refused`, `data["reason"]` why)."""
    actor = interaction.actor
    await repo.add_event(
        session,
        ticket_id=ticket.id if ticket else None,
        kind="identity.refused",
        actor_platform=actor.platform,
        actor_id=actor.id,
        channel=interaction.conversation.id,
        data=data,
    )
    log.warning("identity answer refused (%s) from %s:%s", data["reason"], actor.platform, actor.id)
    observe_on_commit(deps, session, "identity", outcome="refused")


async def _load(
    session: AsyncSession, nonce: object, *, lock: bool = True
) -> tuple[IdentityCheck | None, Ticket | None]:
    """The check for `nonce` and its ticket, locked ticket first (same order as verify)."""
    if not isinstance(nonce, str) or not 0 < len(nonce) <= 64:
        return None, None
    by_nonce = select(IdentityCheck).where(IdentityCheck.nonce == nonce)
    ticket_id = (
        await session.execute(select(IdentityCheck.ticket_id).where(IdentityCheck.nonce == nonce))
    ).scalar_one_or_none()
    if ticket_id is None:
        return None, None
    ticket = await session.get(Ticket, ticket_id, with_for_update=lock)
    check = (
        await session.execute(by_nonce.with_for_update() if lock else by_nonce)
    ).scalar_one_or_none()
    return check, ticket


async def requester_in_directory(
    deps: Deps, platform: str, requester_id: str, requester_email: str | None
) -> Person | None:
    """The requester: by platform id on the ticket's platform, else by e-mail."""
    found = await deps.directory.find_by_platform_id(platform, requester_id)
    if found is not None:
        return found
    for email in (requester_email, requester_id):
        if email and "@" in email:
            found = await deps.directory.find_by_email(email)
            if found is not None:
                return found
    return None


@dataclass(frozen=True)
class _Facts:
    """What the directory says now, read before the answer's transaction."""

    technician_id: str | None = None  # the ticket's technician when these were read
    technician: Person | None = None
    listed: Person | None = None  # the manager the check was sent to, as listed now
    # The requester's manager now (Person(email="") when the requester or a manager is no
    # longer on file); None when there is no check to compare with.
    manager_now: Person | None = None
    # The requester's own account is disabled now (someone who left since the request).
    requester_disabled: bool = False


async def _directory_facts(deps: Deps, nonce: object) -> _Facts:
    """The directory's facts for this answer; raises DirectoryUnavailable."""
    async with deps.sessions() as session:
        check, ticket = await _load(session, nonce, lock=False)
    if check is None or ticket is None:
        return _Facts()
    technician = await deps.directory.find_by_platform_id(
        ticket.source_platform, ticket.technician_id
    )
    listed = (
        await deps.directory.find_by_email(check.manager_email) if check.manager_email else None
    )
    requester = await requester_in_directory(
        deps, ticket.source_platform, ticket.requester_id, ticket.requester_email
    )
    manager_now = await deps.directory.manager_of(requester) if requester else None
    return _Facts(
        ticket.technician_id,
        technician,
        listed,
        manager_now or Person(email=""),
        requester_disabled=bool(requester and requester.disabled),
    )


def _conflicted(
    ticket: Ticket | None, check: IdentityCheck | None, actor: Actor, technician: Person | None
) -> tuple[str, str] | None:
    """The manager is (by now) the technician on the ticket, asked for the check, or is the
    requester: their answer would vouch for their own work, so it cannot count. Also catches
    checks sent before a directory change made them so."""
    if ticket is None or check is None:
        return None
    manager = check.manager_email.lower()
    working = (
        (actor.platform == ticket.source_platform and actor.id == ticket.technician_id)
        or actor.id == check.requested_by
        or (technician is not None and bool(manager) and technician.email.lower() == manager)
    )
    if working:
        return "not independent", (
            f"You are working on {ticket.number}, so your answer cannot confirm the requester's "
            "identity. Nothing was changed; another manager or security must confirm it."
        )
    if manager and manager == (ticket.requester_email or "").lower():
        return "not independent", (
            f"You are the requester on {ticket.number}, so your answer cannot confirm it. "
            "Nothing was changed."
        )
    return None


def _no_longer_manager(
    ticket: Ticket | None, check: IdentityCheck | None, manager_now: Person | None
) -> tuple[str, str] | None:
    """The directory no longer lists the manager the request went to as the requester's
    manager (moved teams, left): their answer cannot vouch for the requester any more."""
    if ticket is None or check is None or manager_now is None or not check.manager_email:
        return None
    if manager_now.email.strip().lower() == check.manager_email.strip().lower():
        return None
    return NO_LONGER_MANAGER, cards.no_longer_manager_text(ticket)


def _manager_disabled(ticket: Ticket | None, manager_now: Person | None) -> tuple[str, str] | None:
    """The requester's manager (the one asked: checked before) has had their account disabled
    since the request was sent: they have most likely left, and cannot vouch any more."""
    if ticket is None or manager_now is None or not manager_now.disabled:
        return None
    return MANAGER_DISABLED, cards.disabled_manager_reply(ticket)


def _requester_disabled(
    ticket: Ticket | None, disabled_now: bool, *, approved: bool
) -> tuple[str, str] | None:
    """The requester's own account was disabled after their manager was asked (someone who
    left): an Approve would vouch for an account that should not be in use. A Deny still
    counts (it stops the ticket)."""
    if ticket is None or not disabled_now or not approved:
        return None
    return REQUESTER_DISABLED, cards.disabled_requester_reply(ticket)


def _not_their_account(
    ticket: Ticket | None, check: IdentityCheck | None, actor: Actor, manager_now: Person | None
) -> tuple[str, str] | None:
    """The manager's entry names another account on the request's platform than the one that
    answered (the directory was corrected, or the account handed on, since the request went
    out): whoever holds the old account is not the manager. An entry with no id there now is
    not read as a change (Graph leaves a Slack id out while Slack cannot be asked)."""
    if ticket is None or check is None or manager_now is None or not manager_now.email:
        return None
    platform = check.manager_platform or ""
    current = notify.platform_ids(manager_now).get(platform)
    if not current or notify.is_user(actor, platform, current):
        return None
    return NOT_THEIR_ACCOUNT, cards.NOT_MANAGER


async def _tell_manager_disabled(
    session: AsyncSession, ticket: Ticket, check: IdentityCheck, facts: _Facts, choice: str
) -> None:
    """Tell the technician once per request; the check stays pending until `verify` again."""
    await telling.tell_technician(
        session,
        ticket,
        check,
        cards.manager_disabled_text(
            ticket,
            cards.manager_named(facts.listed, check.manager_email),
            denied=choice == "deny",
        ),
        dedup_key=f"identity-manager-disabled:{check.id}",
    )


async def _tell_manager_changed(
    session: AsyncSession, ticket: Ticket, check: IdentityCheck, facts: _Facts, choice: str
) -> None:
    """Tell the technician once per request; the check stays pending until `verify` again."""
    now = facts.manager_now
    listed_now: Inline = (
        Rich("now ", cards.manager_named(now)) if now is not None and now.email else "now nobody"
    )
    await telling.tell_technician(
        session,
        ticket,
        check,
        cards.manager_changed_text(
            ticket,
            cards.manager_named(facts.listed, check.manager_email),
            listed_now,
            denied=choice == "deny",
        ),
        dedup_key=f"identity-manager-changed:{check.id}",
    )


def _why_refused(check: IdentityCheck | None, actor: Actor) -> tuple[str, str] | None:
    """(audit reason, reply) when this answer cannot count, else None."""
    if check is None or check.state == "no_manager":
        return "unknown request", cards.UNKNOWN_REQUEST
    if not notify.is_user(actor, check.manager_platform or "", check.manager_id or ""):
        return "not the manager", cards.NOT_MANAGER
    if check.state == "superseded":
        return "superseded", cards.SUPERSEDED
    if check.state == "expired":
        return "expired", "This request has expired, so your answer was not recorded."
    if check.state == "unreachable":
        # Given up undelivered, and the call-back opened: a late answer no longer counts.
        return "undeliverable", cards.UNDELIVERABLE
    if check.state != "pending":
        return f"already {check.state}", (
            f"This request was already answered ({check.state}); nothing was changed."
        )
    return None


async def _expired(
    session: AsyncSession,
    ticket: Ticket,
    check: IdentityCheck,
    actor: Actor,
    manager: Inline,
    choice: str,
    channel: str,
) -> Reply:
    """A late answer is refused (SPEC), but recorded as given: a Deny is the manager saying
    the caller is not the requester, and the technician must hear that, not just "late"."""
    check.state = "expired"
    if ticket.identity_state == "pending":
        ticket.identity_state = "required"
    await _to_psa(session, ticket, check, actor=actor, manager=manager, outcome="expired")
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="identity.expired",
        actor_platform=actor.platform,
        actor_id=actor.id,
        channel=channel,
        data={
            "check": check.id,
            "answer": choice,
            "expires_at": check.expires_at.isoformat() if check.expires_at else None,
        },
    )
    await telling.tell_technician(
        session,
        ticket,
        check,
        cards.expired_text(ticket, manager, denied=choice == "deny"),
    )
    await retire_dm(session, ticket, check, cards.late_text(ticket))
    return Reply(text=cards.late_text(ticket))


async def _to_psa(
    session: AsyncSession,
    ticket: Ticket,
    check: IdentityCheck,
    *,
    actor: Actor,
    manager: Inline,
    outcome: str,
) -> None:
    """The outcome as a note in the system of record, with who answered, when and where."""
    await psa.on_identity_outcome(
        session,
        ticket=ticket,
        outcome=outcome,
        manager=plain(manager),
        at=check.answered_at or utcnow(),
        platform=actor.platform,
        check_id=check.id,
    )


async def _approved(
    session: AsyncSession,
    deps: Deps,
    ticket: Ticket,
    check: IdentityCheck,
    interaction: Interaction,
    manager: Inline,
) -> None:
    actor = interaction.actor
    check.state = "approved"
    ticket.identity_state = "confirmed"
    await notify.refresh_ticket_card(session, ticket)
    await refresh_incident_notice(session, deps, ticket)
    await _to_psa(session, ticket, check, actor=actor, manager=manager, outcome="approved")
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="identity.approved",
        actor_platform=actor.platform,
        actor_id=actor.id,
        channel=interaction.conversation.id,
        data={"check": check.id, "manager": check.manager_email},
    )
    assert check.answered_at is not None
    text = cards.approved_text(ticket, check, manager, check.answered_at)
    await telling.tell_technician(session, ticket, check, text)
    await retire_dm(
        session,
        ticket,
        check,
        f"You approved this request at {when(check.answered_at)}. Thank you.",
    )


async def _denied(
    session: AsyncSession,
    deps: Deps,
    ticket: Ticket,
    check: IdentityCheck,
    interaction: Interaction,
    manager: Inline,
) -> bool:
    """Flag the ticket; True when a `security` queue was notified."""
    actor = interaction.actor
    check.state = "denied"
    ticket.identity_state = "denied"
    await notify.refresh_ticket_card(session, ticket)
    await refresh_incident_notice(session, deps, ticket)
    await _to_psa(session, ticket, check, actor=actor, manager=manager, outcome="denied")
    assert check.answered_at is not None
    told = await notify.notify_queue(
        session,
        deps.config,
        "security",
        cards.security_text(ticket, check, manager, check.answered_at),
        ticket=ticket,
        purpose=PURPOSE,
    )
    if not told:
        log.warning("identity denied on %s but no `security` queue is configured", ticket.number)
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="identity.denied",
        actor_platform=actor.platform,
        actor_id=actor.id,
        channel=interaction.conversation.id,
        data={"check": check.id, "manager": check.manager_email},
    )
    await repo.add_event(
        session,
        ticket_id=ticket.id,
        kind="ticket.flagged",
        actor_platform=actor.platform,
        actor_id=actor.id,
        channel=interaction.conversation.id,
        data={"flag": "possible_impersonation", "check": check.id, "security_notified": told},
    )
    await telling.tell_technician(
        session,
        ticket,
        check,
        cards.denied_text(ticket, manager, security_told=bool(told)),
    )
    await retire_dm(
        session,
        ticket,
        check,
        f"You denied this request at {when(check.answered_at)}. The technician was told to stop.",
    )
    return bool(told)
