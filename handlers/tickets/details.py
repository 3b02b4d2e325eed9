"""The extra sections `ticket show` adds to the ticket card: time, resolution, CSAT, deliveries."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Element, Facts, Inline, Mention, Rich, Text, Typed
from handlers import identity, psa, working
from handlers.directory import Directory
from handlers.durations import format_duration
from handlers.formatting import listed, someone, technician, when
from handlers.tickets.delivery_labels import delivery_label
from storage import outbox
from storage import tickets as repo
from storage.models import CsatSurvey, IdentityCheck, Ticket


async def details(
    session: AsyncSession, ticket: Ticket, directory: Directory, *, for_technician: bool = True
) -> tuple[list[Element], bool]:
    """PSA sync, time entries with their total, resolution, identity checks, CSAT and delivery
    states; and whether they name the requester's number on file (an identity check's).
    Not `for_technician` (the requester's own `show`): without the identity checks and their
    deliveries, which say whether a manager denied the caller (who may be posing as them), and
    never the number on file a technician is to call back."""
    rows = await outbox.states_for(session, ticket.id)
    if not for_technician:
        rows = [r for r in rows if not r.purpose.startswith("identity")]
    out: list[Element] = await psa.show_lines(session, ticket, rows)
    entries = await repo.time_entries_for(session, ticket.id)
    if entries:
        people = {e.actor_id: await _who(directory, ticket, e.actor_id) for e in entries}
        total = timedelta(minutes=sum(e.minutes for e in entries))
        out.append(Text(f"Time entries (total {format_duration(total)})", muted=True))
        out.append(
            Facts(
                [
                    # The person in the value: in the title column (narrow on Teams) the
                    # date, name and e-mail ran together and the address broke mid-word.
                    (
                        when(e.at),
                        Rich(
                            format_duration(timedelta(minutes=e.minutes)),
                            " by ",
                            people[e.actor_id],
                            *((" - ", Typed(e.note)) if e.note else ()),
                        ),
                    )
                    for e in entries
                ]
            )
        )
    out += await working.show_lines(session, ticket, directory)
    # A closed ticket's resolution is on its card (cards.resolution_elements).
    # Only tickets that went through a check have check rows; only closed ones a survey.
    checks = (
        (
            await session.execute(
                select(IdentityCheck)
                .where(IdentityCheck.ticket_id == ticket.id)
                .order_by(IdentityCheck.id)
            )
        )
        .scalars()
        .all()
        if ticket.identity_state != "not_required" and for_technician
        else []
    )
    if checks:
        managers = {c.manager_email: await _manager(directory, c.manager_email) for c in checks}
        out.append(Text("Identity checks", muted=True))
        out.append(
            Facts(
                [
                    (
                        Rich(
                            f"{when(c.created_at)} to ", managers[c.manager_email] or "no manager"
                        ),
                        identity.check_outcome(c, number=for_technician),
                    )
                    for c in checks
                ]
            )
        )
    survey = (
        (
            await session.execute(select(CsatSurvey).where(CsatSurvey.ticket_id == ticket.id))
        ).scalar_one_or_none()
        if ticket.status == "closed"
        else None
    )
    if survey is not None:
        rating = f"{survey.rating}/5" if survey.rating else "not answered yet"
        out.append(
            Facts(
                [("CSAT rating", rating)]
                + ([("CSAT comment", Typed(survey.comment))] if survey.comment else [])
            )
        )
    if rows:
        out.append(Text("Deliveries", muted=True))
        out.append(Facts([(_kind(r, ticket), _state(r)) for r in rows]))
    return out, for_technician and any(identity.shows_number(c) for c in checks)


def _kind(row: outbox.DeliveryState, ticket: Ticket) -> str:
    if row.kind in psa.KINDS:
        return psa.kind_label(row.kind, ticket.psa_system)
    return delivery_label(row)


async def _who(directory: Directory, ticket: Ticket, user_id: str) -> Mention:
    """Who logged time: the ticket's technician as recorded, else the directory's entry."""
    if user_id == ticket.technician_id:
        return technician(ticket)
    platforms = sorted({"slack", "teams"}, key=lambda p: p != ticket.source_platform)
    for platform in platforms:
        found = await directory.find_by_platform_id(platform, user_id)
        if found is not None:
            return listed(found)
    return someone(ticket.source_platform, user_id, None)


async def _manager(directory: Directory, email: str) -> Mention | None:
    if not email:
        return None
    found = await directory.find_by_email(email)
    return listed(found) if found is not None else Mention(email=email)


def _state(row: outbox.DeliveryState) -> Inline:
    status, attempts, error = row.status, row.attempts, row.last_error
    if status == "delivered":
        return f"delivered (attempt {attempts})"
    if status == "dead":
        return Rich(f"failed for good after {attempts} attempt(s): ", Typed(error))
    if status == "cancelled":
        return Rich("not sent: ", Typed(error))
    if row.claimed:
        # The claim counts its attempt before it is made: none of them failed yet.
        return f"being sent (attempt {attempts})"
    if attempts and error:
        return Rich(f"retrying, {attempts} failed attempt(s), last error: ", Typed(error))
    if attempts:
        return f"retrying after {attempts} unfinished attempt(s)"
    return f"queued for {when(row.due_at)}"
