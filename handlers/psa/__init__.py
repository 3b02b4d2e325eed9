"""The system of record: every ticket also lives in the help desk's PSA / ITSM.

`service` queues the PSA writes with their causes, `rules` maps tickets onto PSA fields and
resolves the contract tier, `connector` is the interface the edge's four connectors
implement, `sync` what one outbox row does through it, `deliveries` the outbox hooks,
`cards` and `details` what the ticket card and `show` say.
"""

from handlers.psa.cards import card_facts, card_outdated, tier_label
from handlers.psa.connector import (
    MARKER,
    NOTE_POSTED,
    Company,
    NewTicket,
    Probe,
    PsaConnector,
    PsaError,
    PsaRef,
    Resolution,
    TimeWork,
    optional,
)
from handlers.psa.deliveries import (
    Ready,
    is_psa_row,
    on_start,
    record_failure,
)
from handlers.psa.deliveries import after_delivery as after_psa_delivery
from handlers.psa.deliveries import prepare as prepare_psa_row
from handlers.psa.details import kind_label, show_lines
from handlers.psa.rules import KINDS, clip, clip_marked, name_of, tier_source
from handlers.psa.service import (
    on_closed,
    on_escalated,
    on_identity_outcome,
    on_priority_raised,
    on_ticket_opened,
    on_time_logged,
)
from handlers.psa.sync import perform

__all__ = [
    "KINDS",
    "MARKER",
    "NOTE_POSTED",
    "Company",
    "NewTicket",
    "Probe",
    "PsaConnector",
    "PsaError",
    "PsaRef",
    "Ready",
    "Resolution",
    "TimeWork",
    "after_psa_delivery",
    "card_facts",
    "card_outdated",
    "clip",
    "clip_marked",
    "is_psa_row",
    "kind_label",
    "name_of",
    "on_closed",
    "on_escalated",
    "on_identity_outcome",
    "on_priority_raised",
    "on_start",
    "on_ticket_opened",
    "on_time_logged",
    "optional",
    "perform",
    "prepare_psa_row",
    "record_failure",
    "show_lines",
    "tier_label",
    "tier_source",
]
