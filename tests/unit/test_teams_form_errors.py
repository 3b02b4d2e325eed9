"""A Teams form shown again with field errors quotes what people typed literally.

Field errors are mostly the bot's own words (shown as written), but some quote the typed
value (a duration, a placeholder) or a pattern label taken from typed error texts: those parts
are `Typed`, so a typed Markdown link never becomes a live link on the form.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import pytest

from bot.teams import replies
from cards.model import ActionId, plain
from cards.teams import render_card
from handlers.closure.cards import closure_form
from handlers.closure.service import validate as closure_validate
from handlers.diagnosis.service import kb_requirement
from handlers.escalation.rules import fact_problems
from handlers.types import InvalidInput, Reply
from storage.models import TicketDiagnosis
from tests.adaptive_schema import validate_adaptive_card

LINK = "[Reset your password](https://evil.example/login)"
CLOSURE = {
    "ticket": "HD-1",
    "resolution_note": "Replaced the toner in PRN-0042",
    "resolution_category": "incident",
    "time_spent": "45m",
}


def live_link(markdown: str) -> bool:
    """A `](` whose `]` is not escaped: Teams would render a link."""
    return re.search(r"(?<!\\)\]\(", markdown) is not None


def texts(card: dict[str, Any]) -> list[str]:
    return [b["text"] for b in card["body"] if b.get("type") == "TextBlock"]


def refused_form(action: ActionId | None, data: dict[str, str], exc: InvalidInput) -> list[str]:
    reply = Reply(text=str(exc), field_errors=exc.field_errors)
    body = replies.invoke_body(None, action, data, reply)  # type: ignore[arg-type]
    validate_adaptive_card(body["value"])
    return texts(body["value"])


def test_typed_time_spent_in_closure_form_error_is_not_a_link() -> None:
    data = CLOSURE | {"time_spent": LINK}
    with pytest.raises(InvalidInput) as caught:
        closure_validate(data, logged_minutes=0)
    shown = [t for t in refused_form(ActionId.CLOSE_SUBMIT, data, caught.value) if "evil" in t]
    assert shown and not any(live_link(t) for t in shown)
    assert any(r"\[Reset your password\]" in t and "is not a duration" in t for t in shown)


def test_a_placeholder_note_is_quoted_literally_and_the_bots_words_are_not_escaped() -> None:
    data = CLOSURE | {"resolution_note": "**please** [help](//n/a)"}
    with pytest.raises(InvalidInput) as caught:
        closure_validate(data, logged_minutes=0)
    shown = refused_form(ActionId.CLOSE_SUBMIT, data, caught.value)
    [error] = [t for t in shown if "placeholder" in t]
    assert error.startswith(r"'\*\*please\*\* \[help\](//n/a)' is a placeholder")
    assert "\\" not in error.split("' is a placeholder")[1]
    # Slack shows field errors as plain text: the same words, nothing escaped.
    assert plain(caught.value.field_errors["resolution_note"]).startswith("'**please** [help]")


def test_escalation_placeholders_listed_as_errors_are_quoted_literally() -> None:
    errors = fact_problems(
        {"repro_steps": "**please** [help](//n/a)"}, asset="", ticket_prefix="HD"
    )
    exc = InvalidInput("Not escalated yet.", errors)
    [error] = [t for t in refused_form(None, {}, exc) if "please" in t]
    assert error.startswith(r"repro_steps: '\*\*please\*\* \[help\](//n/a)' is a placeholder")


async def test_a_typed_pattern_label_in_the_kb_requirement_is_not_a_link() -> None:
    row = TicketDiagnosis(ticket_id=1, pattern_count=3, pattern_label=LINK, suggested_kb="")

    async def get(*_: Any) -> TicketDiagnosis:
        return row

    ticket = SimpleNamespace(id=1, number="HD-1", error_text="", summary="")
    requirement = await kb_requirement(SimpleNamespace(get=get), ticket)  # type: ignore[arg-type]
    assert requirement is not None
    card = render_card(closure_form("HD-1", logged_minutes=0, kb_required=requirement.reason))
    validate_adaptive_card(card)
    [said] = [t for t in texts(card) if "part of a pattern" in t]
    assert r"(\[Reset your password\](https://evil.example/login))" in said
    assert said.startswith("HD-1 is part of a pattern: 3 tickets")
    with pytest.raises(InvalidInput) as caught:
        closure_validate(
            CLOSURE | {"time_spent": ""}, logged_minutes=5, kb_required=requirement.reason
        )
    shown = refused_form(ActionId.CLOSE_SUBMIT, CLOSURE, caught.value)
    assert any(r"\[Reset your password\]" in t for t in shown)
    assert not any(live_link(t) for t in shown)


@pytest.mark.parametrize("logged", ["\u00b2", "9" * 5000, "-5", "45"])
def test_a_closure_form_shown_again_takes_any_logged_minutes_it_was_sent(logged: str) -> None:
    """`logged` comes back from the form's own data, which a client can send altered: a
    superscript digit or thousands of digits (str.isdigit() takes both, int() refuses them)
    made showing the refused form raise instead of showing it."""
    data = CLOSURE | {"time_spent": "soon", "logged": logged}
    with pytest.raises(InvalidInput) as caught:
        closure_validate(data, logged_minutes=0)
    shown = refused_form(ActionId.CLOSE_SUBMIT, data, caught.value)
    assert any("is not a duration" in t for t in shown)
