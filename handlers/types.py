"""Neutral types the platform edges translate to and from. No Slack or Teams imports here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal

from cards.model import ActionId, Card, Inline, plain

Platform = Literal["slack", "teams"]
# A message in a ticket's thread (Slack) or naming a ticket with files (Teams); its
# `data`: `files` (name, url, id, content_type, size), `thread` (Slack) and `text`.
TICKET_MESSAGE = "ticket.message"


@dataclass(frozen=True)
class Actor:
    """Who did something, identified by platform id (never by typed text)."""

    platform: Platform
    id: str
    name: str = ""
    # Teams gives the Entra ID object id of the sender; directories can match on it.
    aad_object_id: str | None = None


@dataclass(frozen=True)
class Conversation:
    """Where it happened: a Slack channel (and thread) or a Teams conversation."""

    platform: Platform
    id: str
    thread: str | None = None
    personal: bool = False


# A reply chain in a Teams channel is a conversation of its own, named after its channel and
# root post: `19:…@thread.tacv2;messageid=1700000000000`.
REPLY_CHAIN = ";messageid="


def channel_of(conversation_id: str) -> str:
    """The channel a conversation is in: itself, or for a Teams reply chain its channel."""
    return conversation_id.partition(REPLY_CHAIN)[0]


@dataclass(frozen=True)
class Interaction:
    """One user turn: a command text, a button click or a form submission."""

    actor: Actor
    conversation: Conversation
    text: str = ""
    action: ActionId | None = None
    # Something that happened where the bot listens, not a command or a button (`Event`).
    event: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    # Stable id of this delivery (Slack view id+hash, Teams activity id): retries dedupe on it.
    delivery_id: str | None = None
    # False when the platform has nowhere to put a reply (Slack view_submission): the core
    # then announces through the outbox instead.
    can_reply: bool = True
    # Set where the answer is a message of its own, not the response to the request (a Teams
    # message activity): a redelivery's answer would be a second message, so the answer is
    # claimed under this id, whatever the route (handlers/dispatch). The activity's own id,
    # also where `delivery_id` is a form's (a refused form may be sent again, and answered).
    answer_id: str | None = None
    # The answer goes out apart from the response to the request, whatever the route (a Slack
    # button's: through its response_url, after the empty ack): a retry may come after it was
    # given, so a change's answer is given again only if it was not (handlers/dispatch).
    answer_apart: bool = False
    # The message the answer takes the place of (a Teams Action.Execute: its answer card
    # replaces the card clicked), else None.
    replaces_message: str | None = None
    # Where the person who asked can be told something later, only them (a Slack command's
    # response_url, good for 30 minutes), else None.
    response_url: str | None = None

    @property
    def platform(self) -> Platform:
        return self.actor.platform


@dataclass(frozen=True)
class Image:
    """A picture that goes with a reply (the report's chart), as PNG, attached to the answer
    (Teams). Where the platform shows it as a file of its own (Slack), the use case queues its
    upload in the outbox instead (handlers.notify.share_file) and the reply has no image."""

    filename: str
    title: str
    # Blocking CPU work: the edge runs it on a thread, never on the event loop.
    render: Callable[[], bytes]
    # What it is drawn from, as JSON-safe data (the report's summary:
    # handlers.reports.summary_data), kept with the answer so that a redelivery answered with
    # the kept answer draws it again (handlers.replay); None: not kept.
    data: dict[str, Any] | None = None


@dataclass
class Reply:
    """What the core answers; the edge renders it for its platform."""

    # The bot's words (`str`), or a `Rich`/`Typed` quoting what people typed, which each edge
    # shows literally (cards.model); the bot's own words are never escaped.
    text: Inline = ""
    card: Card | None = None
    private: bool = True
    # Show `card` as a form (Slack modal / Teams input card) rather than a message.
    as_form: bool = False
    # Input id -> error message shown under that field (Slack modal, Teams form). The bot's
    # words; a part quoting what was typed is `Typed` (Teams would render it as Markdown).
    # With field errors, `card` (when given) is the form as first shown, for an edge that
    # shows the form again (Teams); without it that edge rebuilds it from the submission.
    field_errors: dict[str, Inline] = field(default_factory=dict)
    # A retried delivery of something already handled: the edge answers without effect.
    duplicate: bool = False
    # The ticket (id) whose card this reply is: an edge that posts it in the turn (Teams)
    # reports where it landed through `tickets.remember_card`.
    ticket_card_of: int | None = None
    # What that card shows of the ticket (`tickets.card_version`): a card that reaches its
    # conversation after the ticket changed is refreshed.
    card_version: str = ""
    # A problem with a whole submitted form (nothing saved): shown in the form itself.
    form_error: str = ""
    # More to say once slow work is done (a KB that has not answered yet): the edge answers
    # first, then awaits this and shows its reply to the same person, the same way (private
    # stays private).
    follow_up: Callable[[], Awaitable[Reply]] | None = None
    # Attached to the reply (Teams); a Slack chart is an upload of its own, queued by the use
    # case with its change (see Image).
    image: Image | None = None
    # `card` is built once and answered many times, never changed (help): an edge may keep
    # its rendering.
    static: bool = False
    # It names what only its asker may read (the requester's number on file): where an edge
    # cannot answer privately (Teams, no 1:1 chat), it is never posted in place instead.
    confidential: bool = False
    # Where the answer is a message of its own (`Interaction.answer_id`) and this one claimed
    # it (handlers.dispatch.Answering): the edge sends it inside `async with answering`.
    answering: AbstractAsyncContextManager[Any] | None = None


class DomainError(Exception):
    """A known problem the person can fix; its message is shown to them. `message` is the
    bot's words (`str`) or quotes what people typed (`Typed`, `Rich`): see cards.model."""

    def __init__(self, message: Inline = "") -> None:
        super().__init__(plain(message))
        self.words: Inline = message


class NotFound(DomainError):
    pass


class Forbidden(DomainError):
    pass


class InvalidInput(DomainError):
    """`form`: the submitted form as it was first shown (its context included), to show the
    errors on (None: the edge rebuilds it from the submission)."""

    def __init__(
        self,
        message: Inline,
        field_errors: Mapping[str, Inline] | None = None,
        *,
        form: Card | None = None,
    ) -> None:
        super().__init__(message)
        self.field_errors: dict[str, Inline] = dict(field_errors or {})
        self.form = form


class Duplicate(DomainError):
    """A retried delivery of something already handled."""
