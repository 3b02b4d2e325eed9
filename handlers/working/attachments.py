"""Files shared on a ticket, and messages in a ticket's thread.

Slack: a message in a ticket card's thread (its `thread_ts` is the ticket's thread in that
channel); its files are recorded on the ticket, and a technician's message there is the
ticket's first response. Files in any other thread are ignored, whatever ticket the text names.
A thread whose first message is a ticket card not recorded yet (its sender died between Slack
taking the post and recording it, or is recording it now) is known by the outbox marker in the
card's metadata, read from Slack only while such a card is in doubt in that channel.
Teams: a message in the reply chain of a ticket card posted in a channel (the bot @mentioned
there), like a Slack thread; and a message naming a ticket number with file attachments, whose
files are taken only from the ticket's requester or a technician (or in the conversation its
card is in).
Each file is recorded once (name, link as the platform gives it, type, size, who, when);
nothing is ever downloaded. A link is kept only when it is one the platform gives for a file
(Slack: https on Slack's own domains; Teams: http(s)): a file whose link is anything else
(`javascript:`, `data:`, another site) is recorded without one and shown "(no link)".
The edges hand files over as plain dicts (`name`, `url`, `id`, `content_type`, `size`).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from cards.model import Element, Facts, Inline, Rich, Span, Text, Typed
from handlers import notify
from handlers.deps import Deps
from handlers.directory import Directory
from handlers.formatting import listed, someone, when
from handlers.types import Actor, Interaction, Reply
from handlers.working.rules import ticket_numbers
from handlers.working.service import first_response as _first_response
from storage import outbox
from storage import tickets as tickets_repo
from storage import working as repo
from storage.models import Ticket, TicketAttachment

log = logging.getLogger(__name__)
# Files recorded from one message; the rest are named as not added in the answer.
MAX_FILES = 20
MAX_NAME = 500
MAX_URL = 4000
MAX_TYPE = 255
# The answer names at most this many of the files it added, each cut to NAME_SHOWN characters:
# twenty names of 500 characters (Markdown escapes doubling them) overflowed Teams' message
# size limit and the person got no answer at all.
NAMES_SHOWN = 10
NAME_SHOWN = 100
# Ticket numbers in one message that are looked up (the first found is the one meant).
MAX_NAMED = 20
# Where Slack's file permalinks live (workspaces, Enterprise Grid orgs, Slack Connect
# partners, GovSlack): `https://<team>.slack.com/files/...`.
SLACK_FILE_DOMAINS = ("slack.com", "slack-gov.com")


@dataclass(frozen=True)
class SharedFile:
    """One file as an edge reported it."""

    key: str
    name: str
    url: str
    content_type: str
    size: int | None


def _text(value: Any, limit: int) -> str:
    return str(value or "").strip()[:limit]


def shared_files(raw: Any, platform: str) -> list[SharedFile]:
    """The files an edge put in `data["files"]`, cleaned; a file without a link or an id to
    know it by is left out. A link the platform would not give for a file is dropped (the
    file is still recorded, known by it)."""
    files: list[SharedFile] = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        url = _text(item.get("url"), MAX_URL)
        ident = _text(item.get("id"), 255)
        if not (url or ident):
            continue
        key = ident if platform == "slack" and ident else _digest(url or ident)
        size = item.get("size")
        name = _text(item.get("name"), MAX_NAME) or ident or "file"
        if url and not file_link(url, platform):
            log.warning(
                "file link refused (not a %s file link); recorded without it",
                platform,
                extra={"file": name[:100], "scheme": urlsplit(url).scheme[:20]},
            )
            url = ""
        files.append(
            SharedFile(
                key=key,
                name=name,
                url=url,
                content_type=_text(item.get("content_type"), MAX_TYPE),
                size=size if isinstance(size, int) and not isinstance(size, bool) else None,
            )
        )
    return files


def file_link(url: str, platform: str) -> bool:
    """Whether `url` is a link the platform gives for a shared file: Slack's `permalink` is
    https on one of Slack's domains; Teams' `contentUrl` is http(s). Never a `javascript:` or
    `data:` URL, nor one with spaces or control characters."""
    if any(c.isspace() or ord(c) < 32 or c in '<>"\\`' for c in url):
        return False
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
    except ValueError:
        return False
    if not host or parts.username is not None or parts.password is not None:
        return False
    if platform == "slack":
        return parts.scheme == "https" and any(
            host == domain or host.endswith("." + domain) for domain in SLACK_FILE_DOMAINS
        )
    return parts.scheme in ("http", "https")


def _digest(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


@dataclass(frozen=True)
class _Found:
    """The ticket a message is about: `in_thread` when said in its own thread or reply chain
    (found by the thread, not by a number in the text); `worked_here` when said there or in
    the conversation its card is in."""

    ticket: Ticket
    in_thread: bool
    worked_here: bool


async def _ticket(session: AsyncSession, deps: Deps, interaction: Interaction) -> _Found | None:
    """The ticket the message is about. Slack: only the thread's own ticket (files elsewhere
    are ignored, whatever the text names); Teams: the reply chain's ticket, else one the text
    names."""
    data = interaction.data
    here = interaction.conversation.id
    thread = str(data.get("thread") or "")
    if thread:
        # Teams says which channel a reply chain belongs to (its conversation id names the
        # chain); on Slack the thread is in the conversation itself.
        channel = str(data.get("channel") or here)
        found = await repo.ticket_in_thread(session, channel=channel, thread=thread)
        if found is None and interaction.platform == "teams":
            found = await repo.ticket_of_chain(session, channel=channel, root=thread)
        if found is not None:
            return _Found(found, in_thread=True, worked_here=True)
    if interaction.platform == "slack":
        return None
    text = str(data.get("text") or "")
    # A look-up per number: a message naming thousands (anyone can paste them) is bounded.
    for number in ticket_numbers(text, deps.config.ticket_prefix, limit=MAX_NAMED):
        found = await tickets_repo.get_by_number(session, number)
        if found is not None:
            worked_here = here in (found.card_channel, found.source_channel)
            return _Found(found, in_thread=False, worked_here=worked_here)
    return None


async def _in_doubt(
    session: AsyncSession, deps: Deps, interaction: Interaction
) -> tuple[_Found | None, list[outbox.CardInDoubt]]:
    """Slack, a thread not known as a ticket's: the ticket cards for this channel that may
    have been posted without their message being recorded yet (their sender died, or is
    recording it right now). The thread may be one's, and Slack never sends an acknowledged
    event again. Nothing in doubt (nearly always): no Slack call; the thread is looked up
    once more, in case its card was recorded between the two look-ups."""
    if deps.slack_message_marker is None:
        return None, []
    channel = interaction.conversation.id
    doubt = await outbox.cards_in_doubt(session, channel=channel)
    if doubt:
        return None, doubt
    thread = str(interaction.data.get("thread") or "")
    ticket = await repo.ticket_in_thread(session, channel=channel, thread=thread)
    return (None if ticket is None else _Found(ticket, in_thread=True, worked_here=True)), []


async def _unrecorded_card(
    deps: Deps, interaction: Interaction, doubt: list[outbox.CardInDoubt]
) -> _Found | None:
    """The ticket whose card, in doubt, is this thread's first message: read from Slack with
    the outbox marker its post carries (as the worker that takes the row over finds it)."""
    channel = interaction.conversation.id
    thread = str(interaction.data.get("thread") or "")
    read = deps.slack_message_marker
    marker = await read(channel, thread) if read is not None else None
    if not marker:
        return None
    for row in doubt:
        if marker.get("outbox_id") == row.id and _same_time(marker.get("queued"), row.created_at):
            async with deps.sessions() as session:
                ticket = await session.get(Ticket, row.ticket_id)
            if ticket is None:
                return None
            log.info(
                "thread of a ticket card not recorded yet (outbox row %s): taken as %s's",
                row.id,
                ticket.number,
            )
            return _Found(ticket, in_thread=True, worked_here=True)
    return None


def _same_time(queued: Any, created: datetime) -> bool:
    """Whether the marker's `queued` (an ISO timestamp) is when the row was created."""
    try:
        when_queued = datetime.fromisoformat(str(queued))
    except ValueError:
        return False
    return _utc(when_queued) == _utc(created)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


async def _is_requester(deps: Deps, actor: Actor, ticket: Ticket) -> bool:
    """Whether `actor` is the ticket's requester (by platform id, else the directory's e-mail).
    Their own message in the thread is no response to their ticket, even where everyone
    counts as a technician (no technician listed) or a technician asked for help."""
    if notify.is_user(actor, ticket.source_platform, ticket.requester_id):
        return True
    if not ticket.requester_email:
        return False
    person = await deps.person(actor)
    return person is not None and person.email.lower() == ticket.requester_email.lower()


async def _may_add(deps: Deps, interaction: Interaction, found: _Found) -> bool:
    """In the ticket's own thread or reply chain anyone there may, and in the conversation its
    card is in; elsewhere (a message naming it) only its requester or a technician."""
    if found.in_thread:
        return True
    ticket, actor = found.ticket, interaction.actor
    if interaction.conversation.id in (ticket.source_channel, ticket.card_channel):
        return True
    if notify.is_user(actor, ticket.source_platform, ticket.requester_id):
        return True
    person = await deps.person(actor)
    if (
        person is not None
        and ticket.requester_email
        and (person.email.lower() == ticket.requester_email.lower())
    ):
        return True
    return await deps.is_technician(actor)


async def on_message(deps: Deps, interaction: Interaction) -> Reply:
    """A message in a ticket's thread or naming a ticket: record its files; a technician's
    message in the thread is the ticket's first response."""
    every = shared_files(interaction.data.get("files"), interaction.platform)
    files, left_out = every[:MAX_FILES], len(every) - MAX_FILES
    in_thread = bool(interaction.data.get("thread"))
    doubt: list[outbox.CardInDoubt] = []
    async with deps.sessions() as session:
        found = await _ticket(session, deps, interaction)
        if found is None and in_thread and interaction.platform == "slack":
            found, doubt = await _in_doubt(session, deps, interaction)
    if found is None and doubt:
        found = await _unrecorded_card(deps, interaction, doubt)
    if found is None:
        if files and interaction.platform == "slack":
            log.info(
                "files outside a ticket's thread ignored",
                extra={"channel": interaction.conversation.id, "files": len(files)},
            )
        elif files and not in_thread:
            numbers = ticket_numbers(
                str(interaction.data.get("text") or ""), deps.config.ticket_prefix, limit=1
            )
            return Reply(text=f"There is no ticket {numbers[0]}." if numbers else "")
        return Reply()
    ticket = found.ticket
    responds = (
        found.worked_here
        and await deps.is_technician(interaction.actor)
        and not await _is_requester(deps, interaction.actor, ticket)
    )
    if not files:
        if responds and ticket.first_response_at is None:
            async with deps.sessions() as session, session.begin():
                if await _first_response(
                    session,
                    ticket,
                    interaction.actor,
                    interaction.conversation.id,
                    at=deps.clock(),
                    action="message",
                ):
                    return Reply(text=f"Noted: your first response to {ticket.number}.")
        return Reply()
    if not await _may_add(deps, interaction, found):
        async with deps.sessions() as session, session.begin():
            await tickets_repo.add_event(
                session,
                ticket_id=ticket.id,
                kind="attachment.refused",
                actor_platform=interaction.platform,
                actor_id=interaction.actor.id,
                channel=interaction.conversation.id,
                data={"files": len(files), "reason": "not the requester or a technician"},
            )
        return Reply(
            text=f"Only the requester of {ticket.number} and technicians can add files to it. "
            "Nothing was added."
        )
    now = deps.clock()
    added: list[str] = []
    async with deps.sessions() as session, session.begin():
        for shared in files:
            if await repo.add_attachment(
                session,
                ticket_id=ticket.id,
                platform=interaction.platform,
                file_key=shared.key,
                name=shared.name,
                url=shared.url,
                content_type=shared.content_type,
                size=shared.size,
                actor_id=interaction.actor.id,
                actor_name=interaction.actor.name[:255],
                at=now,
            ):
                added.append(shared.name)
        if added:
            await tickets_repo.add_event(
                session,
                ticket_id=ticket.id,
                kind="attachment.added",
                actor_platform=interaction.platform,
                actor_id=interaction.actor.id,
                channel=interaction.conversation.id,
                data={"files": added},
            )
        if responds:
            await _first_response(
                session,
                ticket,
                interaction.actor,
                interaction.conversation.id,
                at=now,
                action="message",
            )
    log.info(
        "files recorded",
        extra={"ticket": ticket.number, "files": len(added), "left_out": max(left_out, 0)},
    )
    more = (
        f" Only {MAX_FILES} files are taken from one message: the other {left_out} were not "
        "added; send them in another message."
        if left_out > 0
        else ""
    )
    if not added:
        return Reply(text=f"Those files are already on {ticket.number}.{more}")
    names: list[Span] = []
    for name in added[:NAMES_SHOWN]:
        # File names as typed (shown literally), each after ", " but the first.
        names += [", "] if names else []
        names.append(Typed(name if len(name) <= NAME_SHOWN else name[: NAME_SHOWN - 1] + "…"))
    if len(added) > NAMES_SHOWN:
        names.append(f" and {len(added) - NAMES_SHOWN} more")
    return Reply(
        text=Rich(
            f"Added to {ticket.number}: ",
            *names,
            f" (see `ticket show {ticket.number}`).{more}",
        )
    )


async def show_lines(
    session: AsyncSession, ticket: Ticket, directory: Directory, *, limit: int | None = None
) -> list[Element]:
    """`show`: one line per file: name, link, who, when (the first `limit` files, then how
    many more there are)."""
    every = await repo.attachments_of(session, ticket.id)
    if not every:
        return []
    files = every if limit is None else every[:limit]
    people: dict[tuple[str, str], Inline] = {}
    for item in files:
        who = (item.platform, item.actor_id)
        if who not in people:
            found = await directory.find_by_platform_id(item.platform, item.actor_id)
            people[who] = _who(item, found)
    lines: list[tuple[Inline, Inline]] = [
        (
            Typed(item.name),
            Rich(
                Typed(item.url or "(no link)"),
                " - ",
                people[(item.platform, item.actor_id)],
                f" - {when(item.at)}",
            ),
        )
        for item in files
    ]
    more = more_line(len(every), len(files))
    return [Text(f"Attachments ({len(every)})", muted=True), Facts(lines), *more]


def more_line(total: int, shown: int) -> list[Element]:
    """`… and N more` under a list cut at `shown` rows (nothing when it was not cut)."""
    if total <= shown:
        return []
    return [Text(f"… and {total - shown} more (the first {shown} are listed)", muted=True)]


def _who(item: TicketAttachment, found: Any) -> Inline:
    if found is not None:
        return listed(found)
    mention = someone(item.platform, item.actor_id, None)
    return mention if mention.slack_id or not item.actor_name else Typed(item.actor_name)
