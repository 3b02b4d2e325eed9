"""What working a ticket to the end shows: the ticket card's extra lines, the requester's
confirmation DM and comment form, and the texts for technicians and requesters."""

from __future__ import annotations

from cards.model import (
    ActionId,
    Button,
    Card,
    Element,
    Facts,
    Form,
    Inline,
    LinkButton,
    Mention,
    Rich,
    Text,
    TextInput,
    Typed,
)
from handlers import formatting
from handlers.formatting import requester, technician, when
from handlers.working.rules import scope_label
from storage.models import FixConfirmation, Ticket

# Outbox `purpose`s.
CONFIRM = "fix-confirm"
CONFIRM_ANSWER = "fix-answer"
NUDGE = "tier-nudge"
FILED = "filed-report"
# Key of the request's nonce in the Works now / Still broken buttons.
NONCE_KEY = "confirm"
WORKS_TITLE = "Works now"
BROKEN_TITLE = "Still broken"
REMOTE_TITLE = "Remote session"
MAX_COMMENT = 2000

UNKNOWN_REQUEST = "This question is not known (any more). Nothing was recorded."
SUPERSEDED = (
    "This question was replaced by a newer one: answer the latest message. Nothing was recorded."
)


# -- the ticket card -----------------------------------------------------------------------------


def users_affected(ticket: Ticket) -> str:
    """Users affected; on a P1 with reports filed under it, the total and what it adds up."""
    if not ticket.filed_count:
        return str(ticket.users_affected)
    reports = "report" if ticket.filed_count == 1 else "reports"
    return (
        f"{ticket.total_users_affected} ({ticket.users_affected} on {ticket.number} + "
        f"{ticket.filed_users} in {ticket.filed_count} filed {reports})"
    )


def card_facts(ticket: Ticket) -> list[tuple[Inline, Inline]]:
    """The support scope, when it is known."""
    label = scope_label(ticket.support_tier)
    return [("Scope", label)] if label else []


def fix_line(ticket: Ticket) -> Inline | None:
    """`Fix confirmed: works now (who, when)`, or where the question stands (None: not asked)."""
    if ticket.fix_confirmed_at is not None:
        return Rich(
            "Fix confirmed: works now (", requester(ticket), f", {when(ticket.fix_confirmed_at)})"
        )
    if ticket.fix_state == "broken":
        return Rich(
            "Fix not confirmed: ",
            requester(ticket),
            f" said it is still broken ({when(ticket.fix_state_at)})",
        )
    if ticket.fix_state == "asked":
        return f"Fix confirmation: asked the requester {when(ticket.fix_state_at)}, no answer yet"
    return None


def card_elements(ticket: Ticket) -> list[Element]:
    """Filed under a P1 / matches an open P1, and the fix confirmation."""
    out: list[Element] = []
    if ticket.filed_under:
        out.append(Text(f"Filed under P1 {ticket.filed_under}: it is closed with it."))
    elif ticket.p1_match:
        out.append(Text(f"Matches open P1 {ticket.p1_match}"))
    line = fix_line(ticket)
    if line is not None:
        out.append(Text(line))
    return out


def card_buttons(ticket: Ticket) -> list[Button]:
    """**Add to HD-7** while the ticket matches an open P1 and is not filed anywhere."""
    if ticket.p1_match and not ticket.filed_under and ticket.p1_match != ticket.number:
        value = {"ticket": ticket.number, "p1": ticket.p1_match}
        return [Button(ActionId.FILE_UNDER_P1, f"Add to {ticket.p1_match}", value)]
    return []


def card_links(ticket: Ticket) -> list[LinkButton]:
    """**Remote session** to the ticket's asset, when a remote tool is configured."""
    return [LinkButton(REMOTE_TITLE, ticket.remote_url)] if ticket.remote_url else []


# -- the requester's confirmation ----------------------------------------------------------------


def request_card(ticket: Ticket, request: FixConfirmation) -> Card:
    """The requester's DM: which ticket, what they were doing, Works now / Still broken."""
    value = {NONCE_KEY: request.nonce}
    facts: list[tuple[Inline, Inline]] = [
        ("Ticket", ticket.number),
        ("Problem", Typed(ticket.summary)),
    ]
    if ticket.doing.strip():
        facts.append(("What you were doing", Typed(ticket.doing)))
    facts.append(("Technician", technician(ticket)))
    doing = (
        Rich("Please do again what you were doing when it went wrong (", Typed(ticket.doing), ")")
        if ticket.doing.strip()
        else Rich("Please do again what you were doing when it went wrong")
    )
    return Card(
        title=f"Does it work now? {ticket.number}",
        body=[
            Text(
                Rich(
                    technician(ticket),
                    f" worked on {ticket.number}. ",
                    doing,
                    ", the way you normally do it, and tell us whether it works now.",
                )
            ),
            Facts(facts),
            TextInput(
                id="comment",
                label="What still does not work? (optional)",
                multiline=True,
                max_length=MAX_COMMENT,
            ),
        ],
        buttons=[
            Button(ActionId.FIX_WORKS, WORKS_TITLE, value, style="primary"),
            Button(ActionId.FIX_BROKEN, BROKEN_TITLE, value, style="danger"),
        ],
        fallback=f"Does it work now? {ticket.number}: answer {WORKS_TITLE} or {BROKEN_TITLE}.",
    )


def comment_form(number: str, nonce: str) -> Card:
    """Slack: the optional comment after **Still broken** (a modal)."""
    return Card(
        title=f"Still broken: {number}",
        body=[
            Text("Your technician has been told. Anything to add helps them fix it."),
            TextInput(
                id="comment",
                label="What still does not work? (optional)",
                multiline=True,
                max_length=MAX_COMMENT,
            ),
        ],
        form=Form(action=ActionId.FIX_COMMENT, submit_title="Send", context={NONCE_KEY: nonce}),
        fallback=f"Still broken: {number}",
    )


def closed_first_text(number: str) -> str:
    """What a question still waiting for an answer says once its ticket is closed."""
    return (
        f"{number} was closed before you answered. If it is still not working, please ask "
        "for a new ticket."
    )


def answered_card(ticket: Ticket, text: str) -> Card:
    """Replaces the DM once it takes no more answers (no buttons)."""
    return Card(title=f"Does it work now? {ticket.number}", body=[Text(text)], fallback=text)


def answer_label(request: FixConfirmation) -> str:
    said = {"works": "it works now", "broken": "it is still broken"}.get(request.state, "")
    return f"{said} ({when(request.answered_at)})" if said else request.state


# -- texts ---------------------------------------------------------------------------------------


def platform_name(platform: str) -> str:
    return {"slack": "Slack", "teams": "Microsoft Teams"}.get(platform, platform)


def named(ticket: Ticket) -> Mention:
    """The requester named in a text, not mentioned: a text for the technician pings no one
    else (shown as `Name (email)` on both platforms)."""
    return formatting.named(requester(ticket))


def asked_text(ticket: Ticket, platform: str) -> Rich:
    return Rich(
        "Asked ",
        named(ticket),
        f" on {platform_name(platform)} to try what they were doing on {ticket.number} and "
        f"answer {WORKS_TITLE} or {BROKEN_TITLE}.",
    )


def _wrote(comment: str) -> Rich:
    return Rich(' They wrote: "', Typed(comment), '"') if comment else Rich()


def works_text(ticket: Ticket, comment: str = "") -> Rich:
    return Rich(
        named(ticket),
        f" confirmed the fix for {ticket.number}: works now ({when(ticket.fix_confirmed_at)}).",
        _wrote(comment),
        " You can close it.",
    )


def broken_text(ticket: Ticket, comment: str, *, asked_for_comment: bool) -> Rich:
    said = (
        ""
        if comment or not asked_for_comment
        else " They were asked what still does not work; their comment follows if they add one."
    )
    return Rich(
        named(ticket),
        f" says {ticket.number} is still broken after the fix ({when(ticket.fix_state_at)}).",
        _wrote(comment),
        said,
        f" Work on it again, then `ticket confirm {ticket.number}` asks again.",
    )


def comment_text(ticket: Ticket, comment: str) -> Rich:
    return Rich(
        named(ticket),
        f' on {ticket.number} (still broken) wrote: "',
        Typed(comment),
        f'" `ticket confirm {ticket.number}` asks again once you have worked on it.',
    )


def nudge_text(ticket: Ticket, after: str, *, identity_first: bool = False) -> Rich:
    """The one nudge of a ticket outside Tier 1 scope. `identity_first`: its requester's
    identity must be confirmed before it can be escalated (a gated category or a VIP), so the
    nudge names that step too instead of a command that would be refused."""
    category: Inline = Typed(ticket.category) if ticket.category else "no category"
    how = (
        f"once the requester's identity is confirmed (`ticket verify {ticket.number}`, then "
        f"`ticket escalate {ticket.number}`)"
        if identity_first
        else f"(`ticket escalate {ticket.number}`)"
    )
    return Rich(
        f"{ticket.number} is outside Tier 1 scope (",
        category,
        f") and has not been escalated {after} after it was opened: escalate early {how}.",
    )


def filed_text(child: Ticket, p1: Ticket) -> Rich:
    """What the requester of a filed report is told."""
    return Rich(
        f'Your report {child.number} ("',
        Typed(child.summary.strip()[:200]),
        f'") is part of the incident {p1.number} ("',
        Typed(p1.summary.strip()[:200]),
        '"), which the help desk is working on now. You will hear from us when it is resolved.',
    )


def closed_with_text(report: Ticket, p1: Ticket, closer: Mention) -> Rich:
    """What a report's thread hears when it is closed with the P1 it is filed under (the
    closer named, not mentioned; the resolution note as typed)."""
    return Rich(
        f"{report.number} was closed with {p1.number} by ",
        formatting.named(closer),
        f" ({report.resolution_category}): ",
        Typed(report.resolution_note),
    )
