"""A change's answer as it is kept with its delivery's claim (storage.inbound), to answer a
redelivery of that delivery with (handlers.dispatch).

A redelivery exists because the first answer did not count (a Slack retry) or may not have
gone out (a Teams activity sent again): the person most likely never saw it, so it is given
again as it was, nothing added. What is kept:

- who asked and where (`pending`, written with the claim, before the change runs): a
  redelivery from anyone else, or into another conversation, is answered nothing: a forged
  delivery id never reads another person's answer;
- the answer (`kept`, once the change committed): its text and card, whether it was private
  or confidential, which ticket's card it is, whether it is a form (a Teams card), and what a
  chart attached to it is drawn from (Teams' `Reply.image`: the report's summary, drawn again
  for the redelivery; a Slack chart is an upload of its own, queued with the change). Not
  kept: a follow-up (the KB's late articles). A form a Slack command or button opens is kept
  as FORM_AGAIN: Slack opens a modal only with the request's own trigger id, single-use and
  good for 3 s, and a retry comes after that, when the first one may have opened it (a form's
  submission answered with the next form shows it again: no trigger is needed there). A card larger
  than MAX_CARD is kept as its words (the text, else its fallback), at most MAX_TEXT.
- where the platform has nowhere to put an answer (`can_reply` False), only what is `shown`.

A claim whose answer was never kept (its process died between the commit and `kept`) is
answered with LOST, or FORM_LOST when the change noted (`inbound.note(form=True)`) that its
answer is a form.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

from cards.model import Card, Inline, Typed, kept_text, plain, read_kept_text
from handlers.reports import render_kept
from handlers.types import Image, Interaction, Reply

log = logging.getLogger(__name__)
# A card's JSON longer than this is kept as words only (a ticket card is a few KB).
MAX_CARD = 16_000
MAX_TEXT = 3_000
LOST = (
    "This was done: an earlier delivery of this request was saved, but its answer was lost. "
    "Look it up with `mine` or `show` rather than doing it again."
)
# A change that answered with a form (`ticket close HD-7`: the first response recorded, the
# closure form shown) whose answer was never kept: the form is what was lost.
FORM_LOST = (
    "If the form did not reach you, run the command (or press the button) again to open it. "
    "Nothing else needs doing."
)
FORM_AGAIN = (
    "If the form did not open, run the command (or press the button) again: a form opens "
    "only from a new request."
)


@dataclass(frozen=True)
class Kept:
    """A kept answer as read back: who asked, where, and the answer (None: not kept yet)."""

    actor: str
    conversation: str
    reply: Reply | None
    # The ticket the change opened (noted with the claim in its transaction): a redelivery
    # with no answer kept is answered with that ticket's card, not LOST.
    ticket_id: int | None = None
    # The change noted that its answer is a form: a redelivery with no answer kept says so.
    form: bool = False

    def asked_by(self, interaction: Interaction) -> bool:
        """Whether `interaction` is from the same person in the same conversation."""
        return (self.actor, self.conversation) == _asker(interaction)

    def answer(self) -> Reply:
        """The reply to give again (LOST, or FORM_LOST, when none was kept)."""
        if self.reply is not None:
            return self.reply
        return Reply(text=FORM_LOST if self.form else LOST)


def _asker(interaction: Interaction) -> tuple[str, str]:
    actor = interaction.actor
    return f"{actor.platform}:{actor.id}", interaction.conversation.id


def pending(interaction: Interaction) -> str | None:
    """What the claim is written with: who asked and where, no answer yet (`kept` adds it).
    Where the platform has nowhere to put an answer (`can_reply` False: a Slack form's
    submission, a thread message's event), an empty one: kept only when it is `shown`."""
    if interaction.event is not None and not interaction.can_reply:
        return None  # answered nowhere
    actor, conversation = _asker(interaction)
    reply = None if interaction.can_reply else {"text": ""}
    return json.dumps({"actor": actor, "conversation": conversation, "reply": reply})


def shown(interaction: Interaction, reply: Reply) -> bool:
    """Whether `reply` is shown to the person (worth keeping). Where the platform has nowhere
    to put an answer (a Slack form's submission) only a form, or words without a card (in
    place of the form); success (a card) is announced through the outbox."""
    if interaction.can_reply:
        return True
    return reply.as_form or bool(reply.text and reply.card is None)


def kept(interaction: Interaction, reply: Reply, *, noted: str | None = None) -> str:
    """The JSON kept for `reply` to `interaction` (see the module docstring), with what the
    change noted with its claim (`noted`: the claim's JSON; the ticket it opened)."""
    actor, conversation = _asker(interaction)
    facts = json.loads(noted) if noted else {}
    return json.dumps(
        {
            **(facts if isinstance(facts, dict) else {}),
            "actor": actor,
            "conversation": conversation,
            "reply": _reply(interaction, reply),
        }
    )


def _reply(interaction: Interaction, reply: Reply) -> dict[str, Any]:
    if reply.as_form and interaction.platform == "slack" and interaction.can_reply:
        return _words(FORM_AGAIN)
    data: dict[str, Any] = _words(reply.text)
    if reply.as_form:  # a Teams form is a card like any other
        data["as_form"] = True
    if not reply.private:
        data["private"] = False
    if reply.confidential:
        data["confidential"] = True
    if reply.card is not None:
        card = reply.card.to_dict()
        if len(json.dumps(card)) <= MAX_CARD:
            data["card"] = card
            # Remembered where it lands when it is posted anew (a Teams message's answer); an
            # invoke's card replaces the card clicked, which may be another click on a form
            # already answered (the ticket's card is remembered where it was posted first).
            if reply.ticket_card_of is not None and interaction.answer_id is not None:
                data["ticket_card_of"] = reply.ticket_card_of
                data["card_version"] = reply.card_version
        else:
            data.update(_words(reply.text or Typed(reply.card.fallback)))
    image = reply.image
    if image is not None and image.data is not None:
        drawn_from = {"name": image.filename, "title": image.title, "data": image.data}
        if len(json.dumps(drawn_from)) <= MAX_CARD:
            data["image"] = drawn_from
    return data


def _words(text: Inline) -> dict[str, Any]:
    """The text kept (cards.model.kept_text); longer than MAX_TEXT, cut, as typed text."""
    said = plain(text)
    return kept_text(Typed(said[:MAX_TEXT]) if len(said) > MAX_TEXT else text)


def _image(found: Any) -> Image | None:
    """The chart kept with an answer, to be drawn again (None: none kept)."""
    if not isinstance(found, dict) or not isinstance(found.get("data"), dict):
        return None
    data = found["data"]
    return Image(
        filename=str(found["name"]),
        title=str(found["title"]),
        render=partial(render_kept, data),
        data=data,
    )


def read(stored: str | None) -> Kept | None:
    """A kept answer; None when none was kept (or it cannot be read: answered nothing)."""
    if not stored:
        return None
    try:
        data = json.loads(stored)
        found = data.get("reply")
        reply = None
        if isinstance(found, dict):
            card = found.get("card")
            reply = Reply(
                text=read_kept_text(found),
                card=Card.from_dict(card) if isinstance(card, dict) else None,
                private=bool(found.get("private", True)),
                as_form=bool(found.get("as_form", False)),
                confidential=bool(found.get("confidential", False)),
                ticket_card_of=found.get("ticket_card_of"),
                card_version=str(found.get("card_version") or ""),
                image=_image(found.get("image")),
            )
        ticket = data.get("ticket_id")
        return Kept(
            actor=str(data["actor"]),
            conversation=str(data["conversation"]),
            reply=reply,
            ticket_id=ticket if isinstance(ticket, int) else None,
            form=data.get("form") is True,
        )
    except Exception:
        log.exception("a kept answer could not be read: answered nothing")
        return None
