"""Small renderings every domain shares: times, and people as cards and texts show them.

People are shown by name and e-mail (from the directory, or what the ticket recorded from it),
never by a raw platform id while anything else is known; on Slack a mention with their Slack
id, which Slack shows as their name.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from cards.model import Inline, Mention, Rich
from handlers.directory import Person
from handlers.types import Actor
from storage.models import Ticket


def counted(count: int, one: str, many: str | None = None) -> str:
    """`1 technician`, `2 technicians`, `1 person`, `0 people`."""
    return f"{count} {one if count == 1 else many or one + 's'}"


def joined(parts: Iterable[Inline], separator: str = "\n") -> Inline:
    """`parts` one after another with the bot's `separator` between them (lines of a text
    reply, some of them quoting typed text): a `Rich` keeps whose words each part is."""
    out: list[Inline] = []
    for part in parts:
        out += [separator, part] if out else [part]
    return Rich(*out) if len(out) != 1 else out[0]


def when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


def _email(value: str) -> str:
    return value if "@" in value else ""


def _mention(name: str, email: str, platform: str, user_id: str) -> Mention:
    typed_email = _email(user_id)  # a requester typed as an e-mail (Teams) and not listed
    slack_id = user_id if platform == "slack" and user_id and not typed_email else ""
    return Mention(name=name, email=email or typed_email, slack_id=slack_id, id=user_id)


def teams_user_id(platform: str, user_id: str) -> str:
    """`user_id` when it is someone's Teams user id (what Teams sent as its sender), else ''
    (another platform's, or a requester typed as an e-mail)."""
    return user_id if platform == "teams" and user_id and not _email(user_id) else ""


def requester(ticket: Ticket) -> Mention:
    """The ticket's requester: name and e-mail as recorded, a mention on Slack."""
    platform = ticket.source_platform
    return _mention(ticket.requester_name, ticket.requester_email, platform, ticket.requester_id)


def technician(ticket: Ticket) -> Mention:
    """The ticket's technician: name and e-mail as recorded, a mention on Slack."""
    platform = ticket.source_platform
    return _mention(ticket.technician_name, ticket.technician_email, platform, ticket.technician_id)


def listed(person: Person) -> Mention:
    """Someone found in the directory."""
    return Mention(name=person.name, email=person.email, slack_id=person.slack_id or "")


def someone(platform: str, user_id: str, found: Person | None) -> Mention:
    """A person known by a platform id: the directory's entry when there is one."""
    if found is not None:
        return listed(found)
    return _mention("", "", platform, user_id)


def who_acted(actor: Actor, found: Person | None) -> Mention:
    """Whoever did something: the directory's entry, else the name their platform gave."""
    if found is not None:
        return listed(found)
    mention = _mention("", "", actor.platform, actor.id)
    return Mention(name=actor.name, email=mention.email, slack_id=mention.slack_id, id=actor.id)


def named(person: Mention) -> Mention:
    """`person` as a text names them: `Ana Lopez (ana@example.com)` (an id only when nothing
    else is known), never a Slack mention, which would notify them."""
    return Mention(name=person.name, email=person.email, id=person.id or person.slack_id)
