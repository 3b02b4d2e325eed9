"""Diagnosis help: error signatures, similar resolved tickets, KB search, repeat patterns and
the change calendar.

`rules` says what identifies an error and when two are the same, `service` holds the use cases
(a new ticket's diagnosis, `similar`, `kb`, the closure rule for patterns, top patterns for
reports), `cards` what they show, `kb` the knowledge-base interface the sources in bot/kb/
implement, `changes` Patch Tuesday and the change calendar.
"""

from handlers.diagnosis.answers import kb_command, similar_command
from handlers.diagnosis.changes import Change, ChangeCalendar, patch_tuesday
from handlers.diagnosis.kb import KB_TIMEOUT, KbArticle, KbSource, KbUnavailable, clean_title
from handlers.diagnosis.rules import Signature, look_alike, same_error, signatures
from handlers.diagnosis.service import (
    KbRequirement,
    Pattern,
    backfill_signatures,
    card_elements,
    drain,
    kb_requirement,
    look_up_kb_for_card,
    on_ticket_opened,
    patterns_in,
    top_patterns,
)

__all__ = [
    "KB_TIMEOUT",
    "Change",
    "ChangeCalendar",
    "KbArticle",
    "KbRequirement",
    "KbSource",
    "KbUnavailable",
    "Pattern",
    "Signature",
    "backfill_signatures",
    "card_elements",
    "clean_title",
    "drain",
    "kb_command",
    "kb_requirement",
    "look_alike",
    "look_up_kb_for_card",
    "on_ticket_opened",
    "patch_tuesday",
    "patterns_in",
    "same_error",
    "signatures",
    "similar_command",
    "top_patterns",
]
