"""The connector interface every system of record implements (the edge holds the four)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

# auth: credentials refused (401, or 403 on the write itself) | throttled: 429 |
# unavailable: 5xx, network | rejected: the PSA will never take this write as it is (400,
# 404, 422 ..., or a 403 on a look-up the write cannot do without: PsaError.unreadable).
ErrorKind = Literal["auth", "throttled", "unavailable", "rejected"]
# A row's payload key (PsaError.progress): a closure's resolution note is in the PSA already,
# only the status change is left (the retry must not post the note again).
NOTE_POSTED = "resolution_note_posted"
# A row's payload key: the bot's reference for one note / time entry / resolution note,
# written at the end of its text so that a write whose answer was lost can be looked up.
MARKER = "marker"


class PsaError(Exception):
    """A PSA call that failed. `definite`: the PSA certainly did not apply it (it answered
    no before acting, or was never reached); otherwise it may have, and the write (a
    create, note, time entry or resolution note) is looked up by its reference before it
    is tried again. `in_doubt`: such a write could not be looked up, so it is not sent again
    (given up, and the technician told to check the PSA)."""

    def __init__(
        self,
        message: str,
        *,
        kind: ErrorKind,
        status: int | None = None,
        retry_after: float | None = None,
        definite: bool = True,
        in_doubt: bool = False,
        unreadable: str = "",
    ) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.status = status
        self.retry_after = retry_after
        self.definite = definite
        self.in_doubt = in_doubt
        # A look-up made inside a write was answered 403: the integration user may not read
        # this (a table, entity, list), which says nothing about its credentials.
        self.unreadable = unreadable
        # Set by sync.perform: this attempt, and every one before it, created nothing.
        self.clean = False
        # Steps of a write of several calls that the PSA took before this failure, kept in
        # the row's payload (deliveries.record_failure) so the retry does only what is left.
        self.progress: dict[str, Any] = {}

    @property
    def permanent(self) -> bool:
        """Retrying the same write cannot help."""
        return self.kind == "rejected"


# What the write in progress went without (sync.perform collects it per write).
_went_without: ContextVar[list[str] | None] = ContextVar("psa_went_without", default=None)


def collect_went_without() -> tuple[list[str], Any]:
    """Start collecting what the write in progress goes without (the list, a reset token)."""
    found: list[str] = []
    return found, _went_without.set(found)


def stop_collecting(token: Any) -> None:
    _went_without.reset(token)


# What reading a PSA answer of the wrong shape raises (a field missing, of another type).
UNREADABLE_ANSWER = (KeyError, IndexError, TypeError, ValueError, AttributeError)


async def optional(read: Awaitable[T], default: T, *, what: str, system: str) -> T:
    """A look-up whose fact the write can go without (the caller, the asset, the company):
    when the PSA will not let the integration user read it (403), or answers it in a shape
    the bot cannot read (an id that is no number), the write carries on with `default`, and
    the row's result says so (shown by `show`)."""
    try:
        return await read
    except PsaError as exc:
        if not exc.unreadable:
            raise
        log.warning("%s: going on without %s: %s", system, what, exc)
        _went_without_it(
            f"{what} ({system} does not let the integration user read {exc.unreadable})"
        )
        return default
    except UNREADABLE_ANSWER as exc:
        log.warning(
            "%s: going on without %s: an answer the bot cannot read", system, what, exc_info=True
        )
        said = " ".join(str(exc).split())[:80]
        _went_without_it(f"{what} ({system} answered it in a shape the bot cannot read: {said})")
        return default


def _went_without_it(text: str) -> None:
    found = _went_without.get()
    if found is not None and text not in found:
        found.append(text)


@dataclass(frozen=True)
class NewTicket:
    """A chat ticket as every PSA is given it (rules.new_ticket builds it)."""

    key: str  # the bot's external reference: written into the PSA, looked up after a crash
    number: str  # HD-7
    title: str
    description: str
    priority: str  # P1..P4
    requester_email: str = ""
    requester_name: str = ""
    company: str = ""
    category: str = ""
    asset: str = ""
    source_platform: str = ""  # slack | teams
    technician_email: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NewTicket:
        return cls(**{k: str(data.get(k) or "") for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class PsaRef:
    """A ticket in the PSA: `id` for API calls, `number` as people know it (INC0010001)."""

    id: str
    number: str


@dataclass(frozen=True)
class Company:
    id: str
    name: str


@dataclass(frozen=True)
class TimeWork:
    """One time entry: who (by e-mail; the integration user when unknown), how long, when."""

    minutes: int
    note: str
    technician_email: str
    ended_at: datetime


@dataclass(frozen=True)
class Resolution:
    """What closing says: the note, the resolution category, the KB article."""

    note: str
    category: str
    kb_article: str = ""
    text: str = ""  # the note as written into the PSA (rules.resolution_text)
    note_posted: bool = False  # an earlier attempt posted the note (NOTE_POSTED): status only


@dataclass(frozen=True)
class Probe:
    """What a read-only authenticated call answered (check-config --probe)."""

    ok: bool
    answer: str
    details: list[str] = field(default_factory=list)


class PsaConnector(Protocol):
    """One system of record, spoken to over its own REST API.

    Every method raises PsaError when the PSA does not do what was asked.
    """

    name: str  # shown to people: ServiceNow, Freshservice, ConnectWise, Autotask
    # Closing posts the resolution as a note (a write that would repeat), not only fields.
    closure_posts_note: bool

    async def find_company(self, name: str) -> Company | None:
        """The company whose name is `name`, ignoring case."""
        ...

    async def active_contracts(self, company: Company) -> list[str]:
        """Names of the company's active contracts / agreements, as the PSA lists them."""
        ...

    async def create_ticket(self, ticket: NewTicket, company: Company | None) -> PsaRef:
        """Create the ticket, carrying `ticket.key` as its external reference."""
        ...

    async def find_by_reference(self, key: str) -> PsaRef | None:
        """The ticket created earlier with this external reference, if any."""
        ...

    async def add_note(self, ref: PsaRef, text: str) -> None:
        """An internal note (work note) on the ticket."""
        ...

    async def add_time(self, ref: PsaRef, work: TimeWork) -> None:
        """A time entry on the ticket."""
        ...

    async def find_note(self, ref: PsaRef, marker: str) -> bool | None:
        """Whether a note (or resolution note) whose text contains `marker` is on the
        ticket; None when the PSA documents no way to look notes up."""
        ...

    async def find_time(self, ref: PsaRef, marker: str) -> bool | None:
        """Whether a time entry whose note contains `marker` is on the ticket; None when
        the PSA documents no way to look time entries up."""
        ...

    async def raise_to_top_priority(self, ref: PsaRef) -> None:
        """The PSA's top priority (P1)."""
        ...

    async def close(self, ref: PsaRef, resolution: Resolution) -> None:
        """Resolve / complete the ticket with its resolution note and category."""
        ...

    async def probe(self) -> Probe:
        """One authenticated read-only call; never raises for an answer the PSA gave."""
        ...
