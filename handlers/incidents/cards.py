"""What a P1 says: the incident-channel notice and the pager payloads.

The notice is a card (typed text marked `Typed`, people as mentions); pager payloads are plain
text built from the same facts.
"""

from __future__ import annotations

from typing import Any

from cards.model import Card, Element, Facts, Inline, Rich, Text, Typed, plain
from handlers.formatting import requester, technician, when
from storage.models import Ticket

SOURCE = "helpdesk-bot"
NO_BRIDGE = "not configured (incident.bridge_url)"
TITLE_MAX = 300
# The requester's identity, while it is not confirmed: a P1 is where a vishing caller ("I'm the
# CEO, I'm locked out, it's urgent") ends up, and whoever joins from the notice or the page
# must not do for the caller what the ticket's own technician may not.
IDENTITY_NOT_CONFIRMED = (
    "NOT CONFIRMED: do not reset passwords, change MFA or discuss the account until it is"
)
IDENTITY_DENIED = "DENIED by the requester's manager (possible impersonation): do not proceed"


def headline(ticket: Ticket) -> str:
    return f"P1 {ticket.number}: {ticket.summary.strip()}"


def _identity(ticket: Ticket) -> list[tuple[str, Inline]]:
    """The Identity fact of a ticket that needs one (none when no check was required)."""
    state = ticket.identity_state
    if state == "not_required":
        return []
    if state == "confirmed":
        return [("Identity", "confirmed")]
    return [("Identity", IDENTITY_DENIED if state == "denied" else IDENTITY_NOT_CONFIRMED)]


def _facts(
    ticket: Ticket, bridge_url: str | None, who: Inline | None = None
) -> list[tuple[str, Inline]]:
    # Users affected: the P1's own plus those of every report filed under it.
    facts: list[tuple[str, Inline]] = [
        ("Ticket", ticket.number),
        ("Summary", Typed(ticket.summary)),
        ("Users affected", str(ticket.total_users_affected)),
    ]
    if ticket.filed_count:
        facts.append(("Filed reports", str(ticket.filed_count)))
    return [
        *facts,
        ("Requester", requester(ticket)),
        ("Technician", technician(ticket) if who is None else who),
        *_identity(ticket),
        ("Bridge", Typed(bridge_url) if bridge_url else NO_BRIDGE),
    ]


def _title(prefix: str, ticket: Ticket) -> Rich:
    words = f"{prefix}{ticket.number}: "
    return Rich(words, Typed(ticket.summary.strip()[: TITLE_MAX - len(words)]))


def notice(ticket: Ticket, bridge_url: str | None, *, who: Inline | None = None) -> Card:
    """The incident-channel notice: number, summary, users affected, people and the bridge.
    `who`: the technician as it names them (`notify.technician_shown`: none yet until a
    technician takes a ticket a non-technician opened)."""
    body: list[Element] = [Facts(_facts(ticket, bridge_url, who))]
    if bridge_url:
        body.append(Text(Rich("Join the bridge: ", Typed(bridge_url))))
    return Card(
        title=_title("P1 incident ", ticket),
        body=body,
        fallback=f"{headline(ticket)} - bridge: {bridge_url or NO_BRIDGE}"[:3000],
    )


def resolved_notice(ticket: Ticket, bridge_url: str | None, *, who: Inline | None = None) -> Card:
    """The same notice, updated when the ticket is closed."""
    facts = [*_facts(ticket, bridge_url, who), ("Status", f"resolved {when(ticket.closed_at)}")]
    body: list[Element] = [Facts(facts)]
    if ticket.resolution_note:
        body += [Text("Resolution", muted=True), Text(Typed(ticket.resolution_note[:2000]))]
    return Card(
        title=_title("Resolved: P1 incident ", ticket),
        body=body,
        fallback=f"Resolved: {headline(ticket)}"[:3000],
    )


def current_notice(ticket: Ticket, bridge_url: str | None, *, who: Inline | None = None) -> Card:
    """The notice as the ticket stands now: open, or resolved once it is closed."""
    if ticket.status == "closed":
        return resolved_notice(ticket, bridge_url, who=who)
    return notice(ticket, bridge_url, who=who)


def _details(ticket: Ticket, bridge_url: str | None) -> dict[str, str]:
    details = {label.lower(): plain(value) for label, value in _facts(ticket, bridge_url)}
    details["respond by"] = when(ticket.respond_by)
    if ticket.error_text:
        details["exact error"] = ticket.error_text[:1000]
    return details


def _links(ticket: Ticket, bridge_url: str | None) -> list[dict[str, str]]:
    links = []
    if bridge_url:
        links.append({"href": bridge_url, "text": "P1 bridge"})
    if ticket.source_platform == "slack" and ticket.source_channel:
        links.append(
            {
                "href": f"https://slack.com/app_redirect?channel={ticket.source_channel}",
                "text": f"{ticket.number} in Slack",
            }
        )
    return links


def pagerduty_trigger(ticket: Ticket, bridge_url: str | None) -> dict[str, Any]:
    """Events API v2 trigger, minus the routing key (the notifier adds it from settings)."""
    return {
        "event_action": "trigger",
        "dedup_key": ticket.number,
        "payload": {
            "summary": headline(ticket)[:1024],
            "source": SOURCE,
            "severity": "critical",
            "component": ticket.asset or None,
            "group": ticket.client or None,
            "class": ticket.category or None,
            "custom_details": _details(ticket, bridge_url),
        },
        "links": _links(ticket, bridge_url),
    }


def pagerduty_resolve(ticket: Ticket) -> dict[str, Any]:
    return {"event_action": "resolve", "dedup_key": ticket.number}


def opsgenie_alert(ticket: Ticket, bridge_url: str | None) -> dict[str, Any]:
    description = "\n".join(f"{k}: {plain(v)}" for k, v in _facts(ticket, bridge_url))
    return {
        "op": "create",
        "alias": ticket.number,
        "message": headline(ticket)[:130],
        "description": description[:15000],
        "priority": "P1",
        "tags": ["helpdesk", "P1"],
        "details": _details(ticket, bridge_url),
        "entity": ticket.asset or None,
    }


def opsgenie_close(ticket: Ticket) -> dict[str, Any]:
    note = f"{ticket.number} closed"
    if ticket.resolution_note:
        note += f": {ticket.resolution_note[:1000]}"
    return {"op": "close", "alias": ticket.number, "note": note}
