"""Second-channel identity confirmation: the requester's manager approves or denies.

`service` starts checks, `answers` takes the manager's answer, `callback` a technician's
call-back on the number on file when no manager can answer, `cards` is what the manager and
the technician are shown, `deliveries` the outbox hooks of the manager's request and of the
technician's direct message with the number on file.
"""

from handlers.identity import callback
from handlers.identity.callback import button as called_back
from handlers.identity.callback import card_fact, verify_command
from handlers.identity.cards import PURPOSE, check_outcome, refusal, shows_number
from handlers.identity.deliveries import given_up as request_given_up
from handlers.identity.deliveries import is_request
from handlers.identity.deliveries import on_delivered as on_request_delivered
from handlers.identity.deliveries import on_failed as on_request_failed
from handlers.identity.deliveries import prepare as prepare_request
from handlers.identity.service import (
    GATED_STATES,
    CheckPeople,
    approve,
    audit_gate,
    deny,
    directory_unavailable_at_intake,
    enforce,
    find_requester,
    look_up_people,
    require_confirmed,
    start_check,
    verify_button,
)

__all__ = [
    "GATED_STATES",
    "PURPOSE",
    "CheckPeople",
    "approve",
    "audit_gate",
    "callback",
    "called_back",
    "card_fact",
    "check_outcome",
    "deny",
    "directory_unavailable_at_intake",
    "enforce",
    "find_requester",
    "is_request",
    "look_up_people",
    "on_request_delivered",
    "on_request_failed",
    "prepare_request",
    "refusal",
    "request_given_up",
    "require_confirmed",
    "shows_number",
    "start_check",
    "verify_button",
    "verify_command",
]
