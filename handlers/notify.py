"""Queue messages for people and places (all through the outbox, in the caller's transaction)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Card, Inline, kept_text
from handlers.config import HelpdeskConfig
from handlers.deps import Deps
from handlers.directory import Person
from handlers.formatting import teams_user_id, technician
from handlers.types import Actor, DomainError, Interaction, channel_of
from storage import outbox
from storage import tickets as tickets_repo
from storage.models import Ticket


def _content(text: Inline, card: Card | None) -> dict[str, Any]:
    return {**kept_text(text), "card": card.to_dict() if card else None}


# Payload key: the person a note for the technician starts with a mention of: `slack_id`
# (bot.slack.notifier puts `<@U…>` first) or `teams_id` (bot.teams.notifier adds `<at>Name</at>`
# and its mention entity); neither renders one in a 1:1 chat (DM), where they are notified anyway.
MENTION = "mention"


# What a card, notice or note names as the technician of a ticket nobody has taken yet.
NO_TECHNICIAN = "none yet"


async def technician_shown(session: AsyncSession, ticket: Ticket) -> Inline:
    """The ticket's technician as cards and notices name them: `none yet` while a ticket a
    non-technician opened has not been taken by a technician (its opener, who is on it as
    such, is no technician: a requester, or someone who may be posing as one)."""
    if await tickets_repo.untaken(session, ticket.id):
        return NO_TECHNICIAN
    return technician(ticket)


def technician_mention(ticket: Ticket) -> dict[str, str] | None:
    """The ticket's technician to mention at the start of a note in its thread (Slack) or
    conversation (Teams: a channel's reply chain or a group chat), built from the technician
    id the ticket stores for its platform (never from typed text); None without one. A reply
    in a thread notifies only those following it, and the technician who opened the ticket
    does not follow the bot's card: without the mention nobody hears it."""
    who = technician(ticket)
    if who.slack_id:
        return {"name": who.name, "slack_id": who.slack_id}
    if teams_id := teams_user_id(ticket.source_platform, ticket.technician_id):
        # Teams shows the mention as the text given: a name (or e-mail) is needed.
        return {"name": who.name or who.email or "technician", "teams_id": teams_id}
    return None


async def tell_technician(
    session: AsyncSession,
    ticket: Ticket,
    text: Inline,
    *,
    card: Card | None = None,
    purpose: str = "",
    due_at: datetime | None = None,
    dedup_key: str | None = None,
    extra: dict[str, Any] | None = None,
    mention: bool = True,
) -> bool:
    """Post in the ticket's thread (Slack) or conversation (Teams) where the technician works;
    `extra` keys go into the outbox payload (e.g. what the delivery hook checks). It starts
    with a mention of the technician (`technician_mention`; not in a 1:1 chat) unless
    `mention` is False (a note about what they did themselves)."""
    untaken = await tickets_repo.untaken(session, ticket.id)
    lead = technician_mention(ticket) if mention and not untaken else None
    return await outbox.enqueue(
        session,
        kind="message",
        ticket_id=ticket.id,
        due_at=due_at,
        dedup_key=dedup_key,
        payload={
            "platform": ticket.source_platform,
            "channel": ticket.source_channel,
            "thread": ticket.source_thread,
            # Where a thread that cannot be posted in sends it instead: nobody's DM while the
            # technician columns still hold the ticket's opener.
            "fallback_user": "" if untaken else ticket.technician_id,
            "ticket": ticket.number,
            "purpose": purpose,
            **({MENTION: lead} if lead else {}),
            **(extra or {}),
            **_content(text, card),
        },
    )


# Payload flag of a note `tell_technician_in_chat` sends to the technician's Teams chat.
TECHNICIAN_CHAT = "technician_chat"


async def tell_technician_in_chat(
    session: AsyncSession,
    ticket: Ticket,
    text: Inline,
    *,
    purpose: str,
    due_at: datetime | None = None,
    dedup_key: str | None = None,
    extra: dict[str, Any] | None = None,
) -> bool:
    """Tell the ticket's technician where SPEC says "in its thread (Teams: the technician's
    chat)": on Slack the ticket's thread (`tell_technician`); on Teams a direct message to
    their 1:1 chat with the bot, also for a card in a channel or group chat. The ticket's
    conversation rides along: when it is that very chat the note is a reply to the card there
    as before, and when the chat cannot be opened for good (the app is not installed for
    them) the note is posted there instead (bot.teams.notifier; nothing in it is private),
    starting with a mention of them unless that conversation is a 1:1 chat. A ticket nobody
    has taken yet has no technician to write to: the note is posted in its conversation,
    without a mention (its opener is no technician)."""
    if (
        ticket.source_platform != "teams"
        or not ticket.technician_id
        or await tickets_repo.untaken(session, ticket.id)
    ):
        return await tell_technician(
            session,
            ticket,
            text,
            purpose=purpose,
            due_at=due_at,
            dedup_key=dedup_key,
            extra=extra,
        )
    # For a note posted in the ticket's conversation after all (not when it is the chat).
    lead = technician_mention(ticket)
    return await outbox.enqueue(
        session,
        kind="dm",
        ticket_id=ticket.id,
        due_at=due_at,
        dedup_key=dedup_key,
        payload={
            "platform": ticket.source_platform,
            "user": ticket.technician_id,
            "ticket": ticket.number,
            "purpose": purpose,
            TECHNICIAN_CHAT: True,
            **({MENTION: lead} if lead else {}),
            # Completed from the ticket when sent (the card's message may not be known yet).
            "channel": ticket.source_channel,
            "thread": ticket.source_thread,
            **(extra or {}),
            **_content(text, None),
        },
    )


async def update_message(
    session: AsyncSession,
    ticket: Ticket,
    *,
    platform: str,
    channel: str,
    message: str,
    purpose: str,
    due_at: datetime | None = None,
    **content: Any,
) -> None:
    """Queue an edit of a message the bot posted (Slack `ts` / Teams activity id `message`)."""
    await outbox.enqueue(
        session,
        kind="update",
        ticket_id=ticket.id,
        due_at=due_at,
        payload={
            "platform": platform,
            "channel": channel,
            "ts": message,
            "activity_id": message,
            "ticket": ticket.number,
            "purpose": purpose,
            **content,
        },
    )


async def refresh_ticket_card(
    session: AsyncSession,
    ticket: Ticket,
    *,
    when_posted: bool = False,
    due_at: datetime | None = None,
) -> None:
    """Queue an update of the ticket card message to the ticket's state when it is delivered
    (status, priority, identity; a closed ticket's card loses its buttons). Nothing to do
    while the card's message is unknown (not posted yet, or posted before this existed),
    unless `when_posted`: then the update waits for the card to be posted (for a while).
    `due_at`: not before then (the end of a form's hold)."""
    if not ticket.card_channel or not ticket.card_message:
        if when_posted:
            await outbox.enqueue(
                session,
                kind="update",
                ticket_id=ticket.id,
                payload={
                    "platform": ticket.source_platform,
                    "ticket": ticket.number,
                    "purpose": "ticket-card",
                    "refresh_ticket_card": True,
                    "await_card": True,
                },
            )
        return
    await update_message(
        session,
        ticket,
        platform=ticket.source_platform,
        channel=ticket.card_channel,
        message=ticket.card_message,
        purpose="ticket-card",
        due_at=due_at,
        refresh_ticket_card=True,
    )


def answer_replaces_card(interaction: Interaction, ticket: Ticket) -> bool:
    """True when the answer to `interaction` takes the place of the ticket card's own message
    (a Teams Action.Execute on it): a refresh of the card queued now would overwrite that
    answer, e.g. the closure form its **Close** button just put there."""
    return (
        interaction.replaces_message is not None
        and interaction.platform == ticket.source_platform
        and interaction.replaces_message == ticket.card_message
    )


# How long a form that took the place of a Teams ticket card's message holds the card's
# refreshes back when it is neither submitted nor refused (abandoned, or typed in at length).
# Long enough for a resolution note written with care (a KB article looked up, the fix checked
# again): losing it is what this prevents. Short enough that a form left open does not hide
# the ticket's state for long: whoever looks at the card sees it current within this time.
# Counted from when the form was first shown: a submission with errors (the form shown again)
# does not renew it, since a write on that path would make a redelivery of it read as done.
FORM_HOLD = timedelta(minutes=15)


async def hold_card_for_form(session: AsyncSession, ticket: Ticket, *, now: datetime) -> None:
    """The answer to an interaction, a form, takes the place of the ticket card's message
    (`answer_replaces_card`): a refresh of the card would overwrite what is typed in it, so
    refreshes wait (handlers.deliveries) until the form is answered (`card_form_answered`),
    or for FORM_HOLD from `now`, and then show the ticket as it is, once. Stored with the
    ticket: a restart holds them as well. One refresh is queued for then whatever happens
    meanwhile: a form left open gives the card back (its buttons too), and an escalation,
    whose answer is a message (the form stays on screen), brings it back when submitted."""
    until = now + FORM_HOLD
    await tickets_repo.set_card_form_until(session, ticket_id=ticket.id, until=until)
    await refresh_ticket_card(session, ticket, due_at=until)


async def card_form_answered(session: AsyncSession, ticket: Ticket, *, now: datetime) -> int:
    """The form in the ticket card's place was answered (or is of no more use: the ticket was
    closed): the card's refreshes held for it go out now; returns how many there were."""
    if not await tickets_repo.clear_card_form(session, ticket_id=ticket.id):
        return 0
    return await outbox.release_card_refreshes(session, ticket_id=ticket.id, now=now)


def card_held_for_form(ticket: Ticket, payload: dict[str, Any], now: datetime) -> float | None:
    """Seconds a refresh of the ticket card (`payload`, completed with the card's message)
    waits for the form in the card's place; None when none is there now."""
    until = ticket.card_form_until
    if until is None or until <= now or not ticket.card_message:
        return None
    if payload.get("activity_id") != ticket.card_message:
        return None
    # A little past it: checked again before then, it would only be put back once more.
    return (until - now).total_seconds() + 0.5


async def form_takes_card(
    session: AsyncSession,
    ticket: Ticket,
    check: Callable[[], object],
    *,
    in_card: bool,
    responded: bool,
    now: datetime,
) -> DomainError | None:
    """In the transaction of a form's first response (one transaction per delivery), the
    checks before the form is shown (`check` raises DomainError): the refusal, returned for
    the caller to raise once that transaction has committed, else None. When the answer
    takes the card's place (`in_card`), the form holds it (`hold_card_for_form`); refused, the
    answer is a message and the card stays, so it is refreshed if the first response left it
    unrefreshed for the form (`responded`)."""
    try:
        check()
    except DomainError as exc:
        if in_card and responded:
            await refresh_ticket_card(session, ticket)
        return exc
    if in_card:
        await hold_card_for_form(session, ticket, now=now)
    return None


def platform_ids(person: Person) -> dict[str, str]:
    ids = {}
    if person.slack_id:
        ids["slack"] = person.slack_id
    if person.teams_id:
        ids["teams"] = person.teams_id
    return ids


def is_user(actor: Actor, platform: str, user_id: str) -> bool:
    """True when `actor` is `user_id` on `platform`. On Teams a directory that knows someone
    only by AAD object id (Graph) addresses them by it, so that matches the sender's too."""
    if actor.platform != platform or not user_id:
        return False
    if actor.id == user_id:
        return True
    aad = actor.aad_object_id
    return platform == "teams" and bool(aad) and str(aad).lower() == user_id.lower()


def answered_in_ticket_place(interaction: Interaction, ticket: Ticket) -> bool:
    """True when the answer to `interaction` reaches where the ticket is worked: it can be
    answered (not a Slack modal) in the ticket's own conversation. Else what it did (a
    closure, an escalation) is said in the ticket's thread, or the technician, working there,
    never hears of it (another technician acting from their Teams chat, say)."""
    return (
        interaction.can_reply
        and interaction.platform == ticket.source_platform
        and channel_of(interaction.conversation.id) == channel_of(ticket.source_channel or "")
    )


def is_ticket_technician(actor: Actor, person: Person | None, ticket: Ticket) -> bool:
    """True when `actor` is the ticket's technician: by the id they acted with, or (acting on
    the other platform) by their directory entry's id on the ticket's platform."""
    if is_user(actor, ticket.source_platform, ticket.technician_id):
        return True
    ids = platform_ids(person) if person is not None else {}
    return bool(ticket.technician_id) and ids.get(ticket.source_platform) == ticket.technician_id


def pick_platform(person: Person, preferred: str, usable: Sequence[str]) -> tuple[str, str] | None:
    """(platform, user id): the preferred platform when the person has an id there, else
    their other one; only among the `usable` platforms (`Deps.platforms`: those this
    deployment is connected to), so None when they can be reached on none of them."""
    ids = {name: user_id for name, user_id in platform_ids(person).items() if name in usable}
    if preferred in ids:
        return preferred, ids[preferred]
    for platform, user_id in ids.items():
        return platform, user_id
    return None


PLATFORM_NAMES = {"slack": "Slack", "teams": "Teams"}


def no_chat_id(usable: Sequence[str]) -> str:
    """What someone `pick_platform` finds nothing for lacks: 'no Slack or Teams id in the
    directory', or, with one platform connected, 'no Teams id in the directory (Slack is not
    connected to this help desk)'."""
    names = [PLATFORM_NAMES[p] for p in PLATFORM_NAMES if p in usable]
    if len(names) != 1:
        return "no Slack or Teams id in the directory"
    [other] = [name for key, name in PLATFORM_NAMES.items() if key not in usable]
    return f"no {names[0]} id in the directory ({other} is not connected to this help desk)"


async def dm(
    session: AsyncSession,
    *,
    platform: str,
    user_id: str,
    text: Inline,
    card: Card | None = None,
    ticket: Ticket | None = None,
    purpose: str = "",
    due_at: datetime | None = None,
    dedup_key: str | None = None,
    extra: dict[str, Any] | None = None,
) -> bool:
    """Queue a direct message to one person on one platform."""
    return await outbox.enqueue(
        session,
        kind="dm",
        ticket_id=ticket.id if ticket else None,
        due_at=due_at,
        dedup_key=dedup_key,
        payload={
            "platform": platform,
            "user": user_id,
            "purpose": purpose,
            "ticket": ticket.number if ticket else None,
            **(extra or {}),
            **_content(text, card),
        },
    )


async def notify_queue(
    session: AsyncSession,
    config: HelpdeskConfig,
    queue: str,
    text: Inline,
    *,
    card: Card | None = None,
    ticket: Ticket | None = None,
    purpose: str = "",
) -> list[str]:
    """Post to every channel configured for `queue` (SPEC `queues:`); returns the platforms."""
    target = config.queues.get(queue)
    sent = []
    for platform in ("slack", "teams"):
        channel = getattr(target, platform, None) if target else None
        if channel:
            await outbox.enqueue(
                session,
                kind="message",
                ticket_id=ticket.id if ticket else None,
                payload={
                    "platform": platform,
                    "channel": channel,
                    "thread": None,
                    "ticket": ticket.number if ticket else None,
                    "purpose": purpose,
                    **_content(text, card),
                },
            )
            sent.append(platform)
    return sent


async def answer_later(
    deps: Deps,
    *,
    platform: str,
    conversation: str,
    content: dict[str, Any],
    due_at: datetime,
    ticket_id: int | None = None,
    card_version: str = "",
) -> None:
    """Queue an answer the platform refused in the turn (throttled): it goes to the same
    conversation as a new message once the wait is over. `content` is `{"text"}` or
    `{"card"}` (a card dict), with any image that goes with it (`{"image"}`, Teams); a ticket
    card still becomes the ticket's thread, and is refreshed once posted when the ticket
    changed from `card_version` meanwhile."""
    payload: dict[str, Any] = {
        "platform": platform,
        "channel": conversation,
        "thread": None,
        "purpose": "answer",
        "text": content.get("text", ""),
        **({"words": content["words"]} if "words" in content else {}),
        "card": content.get("card"),
    }
    if content.get("image"):  # an image that goes with the answer (the report's chart)
        payload["image"] = content["image"]
    if ticket_id is not None:
        payload |= {"ticket_card": True, "sets_ticket_thread": True}
        if card_version:
            payload["card_version"] = card_version
    async with deps.sessions() as session, session.begin():
        await outbox.enqueue(
            session, kind="message", payload=payload, ticket_id=ticket_id, due_at=due_at
        )


async def share_file(
    session: AsyncSession,
    *,
    platform: str,
    channel: str,
    user: str,
    image: dict[str, Any],
    respond: str | None = None,
    dedup_key: str | None = None,
) -> bool:
    """Queue, in the caller's transaction, an image shared as a file of its own where it was
    asked (the report's chart on Slack), else in `user`'s DM; `respond`: where to tell the
    person about it (Slack's response_url). `image` is its `name`, `title` and what it is
    drawn from at delivery (`report`: handlers.reports.summary_data), so nothing CPU-heavy
    runs before the answer (rows of earlier releases hold the drawn PNG: `png`, base64).
    False when `dedup_key` was queued."""
    payload: dict[str, Any] = {
        "platform": platform,
        "channel": channel,
        "thread": None,
        "user": user,
        "purpose": "chart",
        "image": image,
    }
    if respond:
        payload["respond"] = respond
    return await outbox.enqueue(session, kind="file", payload=payload, dedup_key=dedup_key)


async def answer_privately_later(
    deps: Deps,
    *,
    platform: str,
    user_id: str,
    content: dict[str, Any],
    due_at: datetime,
    extra: dict[str, Any] | None = None,
) -> None:
    """Queue an answer meant only for `user_id` whose direct message the platform refused for
    the moment (throttled, unreachable): it goes to them directly once the wait is over, never
    to the conversation where it was asked. `content` is `{"text"}` or `{"card"}`."""
    payload: dict[str, Any] = {
        "platform": platform,
        "user": user_id,
        "purpose": "answer",
        **(extra or {}),
        "text": content.get("text", ""),
        **({"words": content["words"]} if "words" in content else {}),
        "card": content.get("card"),
    }
    if content.get("image"):
        payload["image"] = content["image"]
    async with deps.sessions() as session, session.begin():
        await outbox.enqueue(session, kind="dm", payload=payload, due_at=due_at)
