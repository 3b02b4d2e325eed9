"""The people directory as the core sees it: a Person, and the interface every source implements.

The sources themselves are at the edge, in `bot/directory/` (the YAML file, Microsoft Graph,
LDAP), built by `bot.directory.factory` from the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cards.model import Rich, Typed


@dataclass(frozen=True)
class Person:
    """One person as the directory knows them."""

    email: str
    name: str = ""
    slack_id: str | None = None
    teams_id: str | None = None  # Bot Framework user id (29:...)
    aad_object_id: str | None = None
    phone: str | None = None  # number on file, for callbacks
    manager_email: str | None = None
    vip: bool = False
    technician: bool = False
    # The account is disabled (AD userAccountControl or an accountExpires passed, OpenLDAP
    # pwdAccountLockedTime set for good, Entra accountEnabled): the person has typically
    # left, though their entry (and chat accounts) may linger.
    disabled: bool = False


def address_key(email: str) -> str:
    """An e-mail address as every source looks it up: stripped and lower-cased; '' (look
    nobody up) when it holds a control character, which no directory's address can (and
    which a server may cut the value at: OpenLDAP matches `ana@example.com<NUL>x` to Ana)."""
    key = email.strip().lower()
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in key):
        return ""
    return key


class Directory(Protocol):
    """Where people are looked up; every source (file, Graph, LDAP) implements this."""

    async def find_by_platform_id(
        self, platform: str, user_id: str, *, aad_object_id: str | None = None
    ) -> Person | None:
        """The person with this Slack or Teams id (Teams: or this AAD object id)."""
        ...

    async def find_by_email(self, email: str) -> Person | None:
        """The person with this e-mail address (case-insensitive)."""
        ...

    async def manager_of(self, person: Person) -> Person | None:
        """The person's manager, or None when none is on file."""
        ...

    async def has_technicians(self) -> bool:
        """False when nobody is marked technician (then everyone counts as one)."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class DirectoryError(Exception):
    """The directory is misconfigured or unreachable; the message names the file/key and why."""


class DirectoryUnavailable(DirectoryError):
    """The directory could not answer a look-up now (server down, throttled past the wait,
    the bot's credentials refused): nothing that needs it can be done, try again later."""

    def __init__(self, source: str, detail: str) -> None:
        super().__init__(f"{source}: {detail}")
        self.source = source  # what the person is told could not be reached: "Graph", "LDAP"
        self.detail = detail


class DirectoryAmbiguous(DirectoryUnavailable):
    """Several directory entries answer one look-up (say a stale account carrying someone's
    e-mail): which person is meant is not known. Never read as "nobody by that address" (that
    would be "not a VIP"): like an outage, nothing that needs the person is done and the intake
    gates; unlike one, it lasts until the directory is fixed."""

    def __init__(self, source: str, what: str, count: int, *, entries: str = "entries") -> None:
        super().__init__(source, f"{count} {entries} have {what}")
        self.what = what  # e.g. "mail vic@example.com"
        self.count = count


def unavailable_words(error: DirectoryUnavailable, consequence: str) -> Rich:
    """What the person is told: the directory could not be reached (or holds several entries
    for one person), so `consequence` (the bot's words). What the entries have in common (an
    address someone typed or the directory holds) is shown literally."""
    if isinstance(error, DirectoryAmbiguous):
        return Rich(
            f"The directory ({error.source}) has {error.count} entries with ",
            Typed(error.what),
            f", so it cannot tell who is meant and {consequence}. Nothing was changed; have the "
            "duplicate entry removed from the directory, then try again.",
        )
    return Rich(
        f"The directory ({error.source}) could not be reached, so {consequence}. "
        "Nothing was changed; please try again in a few minutes."
    )


class EmptyDirectory:
    """No directory configured: nobody is listed and nobody is marked technician."""

    async def find_by_platform_id(
        self, platform: str, user_id: str, *, aad_object_id: str | None = None
    ) -> Person | None:
        """Nobody is listed."""
        return None

    async def find_by_email(self, email: str) -> Person | None:
        """Nobody is listed."""
        return None

    async def manager_of(self, person: Person) -> Person | None:
        """Nobody is listed."""
        return None

    async def has_technicians(self) -> bool:
        """Nobody is marked technician."""
        return False

    async def close(self) -> None:
        """Nothing to release."""
