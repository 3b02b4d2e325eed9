"""What each outbox row of a ticket is, in a technician's words (`ticket show`, Deliveries).

PSA writes are labelled by the PSA module (`psa.kind_label`), not here."""

from __future__ import annotations

from handlers import sla
from storage.outbox import DeliveryState

# By (kind, purpose); kind "*" for any kind. The purposes are the `purpose` the handlers
# write into the outbox payload.
LABELS: dict[tuple[str, str], str] = {
    ("update", "ticket-card"): "Ticket card refreshed",
    ("message", "answer"): "Answer",
    ("dm", "answer"): "Answer by direct message",
    ("*", "chart"): "Chart",
    ("*", "closed"): "Closure notice",
    ("dm", "identity"): "Manager's identity request",
    ("message", "identity"): "Identity check notice",
    ("update", "identity.update"): "Manager's identity request updated",
    ("message", "psa"): "PSA notice",
    ("dm", "csat-survey"): "CSAT survey to the requester",
    ("*", "csat-unreachable"): "No CSAT survey: requester unreachable",
    ("*", "csat-alert"): "Low CSAT rating alert",
    ("dm", "vip-followup"): "VIP follow-up reminder",
    ("message", "incident-notice"): "Incident notice",
    ("update", "incident-notice-update"): "Incident notice updated",
    ("*", "incident-not-paged"): "Incident not paged notice",
    ("page.pagerduty", "trigger"): "PagerDuty page",
    ("page.pagerduty", "resolve"): "PagerDuty resolve",
    ("page.opsgenie", "create"): "Opsgenie alert",
    ("page.opsgenie", "close"): "Opsgenie close",
    ("*", "tier-nudge"): "Escalation nudge (outside Tier 1 scope)",
    ("dm", "fix-confirm"): "Fix confirmation request to the requester",
    ("update", "fix-answer"): "Fix confirmation answered",
    ("dm", "filed-report"): "Filed-under-incident notice to the requester",
    ("*", "delivery-report"): "Delivery failure report",
    ("*", "escalation"): "Escalation notice to the queue",
    ("*", "escalated"): "Escalation notice",
}
KINDS = {
    "message": "Message",
    "dm": "Direct message",
    "update": "Message update",
    "page.pagerduty": "PagerDuty page",
    "page.opsgenie": "Opsgenie alert",
}
SLA_TARGETS = {"respond": "respond by", "resolve": "resolve by"}
# The call-back notice (the number on file) goes to the technician by DM, also as "identity".
CALLBACK_KEY = "identity-callback:"


def delivery_label(row: DeliveryState) -> str:
    """What `row` is, as a `ticket show` Deliveries label."""
    return label_of(row.kind, row.purpose, ticket_card=row.ticket_card, dedup_key=row.dedup_key)


def label_of(kind: str, purpose: str, *, ticket_card: bool = False, dedup_key: str = "") -> str:
    """What an outbox row of `kind` and `purpose` is, in the technician's words."""
    if ticket_card and kind == "message":
        return "Ticket card"
    if purpose in ("sla-warning", "sla-breach"):
        stage = "SLA warning" if purpose == "sla-warning" else "SLA breach"
        target, place = sla.alarm_of_key(dedup_key) or ("", "")
        # A breach goes both to the thread and to the channel.
        where = ", in the channel" if purpose == "sla-breach" and place == "channel" else ""
        return f"{stage} ({SLA_TARGETS.get(target, 'target')}{where})"
    if kind == "dm" and dedup_key.startswith(CALLBACK_KEY):
        return "Call-back number to the technician"
    found = LABELS.get((kind, purpose)) or LABELS.get(("*", purpose))
    if found:
        return found
    if purpose:
        return f"{KINDS.get(kind, kind)} ({purpose})"
    return KINDS.get(kind, kind)


# Names that keep their capital inside a sentence.
_PROPER = ("SLA", "CSAT", "PSA", "VIP", "PagerDuty", "Opsgenie")


def in_sentence(label: str) -> str:
    """`label` inside a sentence ("The CSAT survey to the requester for HD-7 ...")."""
    return label if label.startswith(_PROPER) else label[:1].lower() + label[1:]
