"""What a change's answer keeps for a redelivery of it (handlers.replay)."""

from __future__ import annotations

import json
from typing import Any

from cards.model import Card, Rich, Text, Typed, kept_text, read_kept_text
from handlers import replay
from handlers.types import Actor, Conversation, Interaction, Reply


def turn(user: str = "UTECH", channel: str = "C0HELP", **fields: Any) -> Interaction:
    return Interaction(
        actor=Actor("slack", user), conversation=Conversation("slack", channel), **fields
    )


def test_only_the_same_person_in_the_same_conversation_is_given_the_answer() -> None:
    kept = replay.read(replay.kept(turn(), Reply(text="Logged 30m on HD-1 (total 30m).")))
    assert kept is not None and kept.answer().text == "Logged 30m on HD-1 (total 30m)."
    assert kept.asked_by(turn())
    assert not kept.asked_by(turn(user="USAM"))
    assert not kept.asked_by(turn(channel="C0OTHER"))
    teams = Interaction(Actor("teams", "UTECH"), Conversation("teams", "C0HELP"))
    assert not kept.asked_by(teams)  # the same ids on another platform are someone else


def test_a_claim_without_its_answer_is_answered_that_it_was_done() -> None:
    kept = replay.read(replay.pending(turn()))
    assert kept is not None and kept.reply is None
    assert kept.answer().text == replay.LOST


def test_a_card_is_kept_whole_unless_large_then_as_its_words() -> None:
    card = Card(title="HD-1", body=[Text("Printer jams")], fallback="HD-1: Printer jams")
    reply = Reply(text="Opened HD-1", card=card, private=False, ticket_card_of=7)
    kept = replay.read(replay.kept(turn(), reply))
    assert kept is not None and kept.reply is not None
    assert kept.reply.card == card and not kept.reply.private
    # Remembered where it lands only when posted anew (a Teams message's answer).
    assert kept.reply.ticket_card_of is None
    posted = turn(answer_id="teams:answer:a:1:2:x")
    kept = replay.read(replay.kept(posted, reply))
    assert kept is not None and kept.reply is not None and kept.reply.ticket_card_of == 7
    large = Card(title="HD-1", body=[Text("x" * 200)] * 200, fallback="HD-1: a large card")
    stored = replay.kept(turn(), Reply(card=large))
    assert len(stored) < replay.MAX_CARD
    kept = replay.read(stored)
    assert kept is not None and kept.reply is not None
    # The card's fallback is plain text (it may quote what was typed): kept as typed text.
    assert (kept.reply.card, kept.reply.text) == (None, Typed("HD-1: a large card"))


def test_a_slack_form_opened_by_a_trigger_is_kept_as_how_to_get_it_again() -> None:
    form = Card(title="Close HD-1")
    kept = replay.read(replay.kept(turn(), Reply(card=form, as_form=True)))
    assert kept is not None and kept.answer().text == replay.FORM_AGAIN
    # A form's submission answered with a form (Slack shows it in place: no trigger needed).
    submitted = turn(can_reply=False)
    kept = replay.read(replay.kept(submitted, Reply(card=form, as_form=True)))
    assert kept is not None and kept.answer().as_form and kept.answer().card == form
    teams = Interaction(Actor("teams", "29:1"), Conversation("teams", "a:1"))
    kept = replay.read(replay.kept(teams, Reply(card=form, as_form=True)))
    assert kept is not None and kept.answer().card == form


def test_where_there_is_nowhere_to_answer_only_what_is_shown_is_kept() -> None:
    submitted = turn(can_reply=False)
    kept = replay.read(replay.pending(submitted))
    assert kept is not None and kept.answer() == Reply()  # a form's success: nothing said
    assert not replay.shown(submitted, Reply(text="Opened HD-1", card=Card(title="HD-1")))
    assert replay.shown(submitted, Reply(text="Thank you: your technician got your comment."))
    assert replay.pending(turn(event="ticket.message", can_reply=False)) is None


def test_what_cannot_be_read_is_answered_nothing() -> None:
    assert replay.read(None) is None
    assert replay.read("{not json") is None
    assert replay.read(json.dumps({"reply": None})) is None


def test_text_is_kept_with_whose_words_it_is_and_old_kept_text_reads_as_typed() -> None:
    said = Rich("No ticket ", Typed("HD-x*"), ": try `ticket mine`.")
    assert read_kept_text(kept_text(said)) == said
    assert read_kept_text(kept_text("Done.")) == "Done."
    # Kept by a release before `words` (or unreadable words): shown literally, as it was.
    assert read_kept_text({"text": "[x](https://evil)"}) == Typed("[x](https://evil)")
    assert read_kept_text({"text": "a", "words": {"kind": "nope"}}) == Typed("a")
    assert read_kept_text({}) == ""
