"""What the four PSA fakes share: tickets as tests look at them, companies, scripted trouble.

Each fake (psa_servicenow, psa_freshservice, psa_connectwise, psa_autotask) speaks its
vendor's REST API with the vendor's envelopes and auth (from the vendors' API documentation,
see README "System of record"), keeps its records in the vendor's shape, and also keeps
a `FakeTicket` per ticket so tests can ask the same questions of all four. `fail()` (from
FakeServer) scripts 503/429 answers; `refuse_credentials` makes every call a 401;
`unreadable` names tables / entities / collections the integration user may not read
(its credentials are fine): a read of one is answered 403 in the vendor's error shape;
`hold_answers(s)` applies a write and only then waits `s` seconds before answering (a
process killed meanwhile has made the ticket without learning of it).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeServer, Recorded


@dataclass
class FakeTicket:
    """One ticket in a fake PSA, in words every vendor shares."""

    id: str
    number: str
    ref: str  # the external reference the bot wrote
    title: str
    description: str
    company: str = ""  # company name ('' = none / the catch-all)
    contact: str = ""  # requester e-mail as the PSA holds it
    category: str = ""
    asset: str = ""
    source: str = ""
    top_priority: bool = False
    closed: bool = False
    resolution: str = ""
    notes: list[str] = field(default_factory=list)
    time_minutes: list[int] = field(default_factory=list)
    time_by: list[str] = field(default_factory=list)
    created_at: float = field(default_factory=time.monotonic)
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass
class FakeCompany:
    id: str
    name: str
    contracts: list[tuple[str, bool]] = field(default_factory=list)  # (name, active)


class PsaFake(FakeServer):
    """Base of the PSA fakes: records, companies, people, credentials, write timeline."""

    SYSTEM = ""

    def __init__(self) -> None:
        super().__init__()
        self.tickets: dict[str, FakeTicket] = {}
        self.companies: list[FakeCompany] = []
        self.people: dict[str, str] = {}  # e-mail -> the PSA's user / agent / resource id
        self.refuse_credentials = False
        # Tables / entities / collection paths whose reads are answered 403 (an ACL, a
        # security role or level keeps them from the integration user).
        self.unreadable: set[str] = set()
        self.hold = 0.0
        # (monotonic time, what, ticket id): every accepted write, in order.
        self.writes: list[tuple[float, str, str]] = []
        self._ids = itertools.count(1)

    # -- test controls ---------------------------------------------------------------------------

    def hold_answers(self, seconds: float) -> None:
        self.hold = seconds

    def add_company(self, name: str, contracts: list[tuple[str, bool]] | None = None) -> str:
        company = FakeCompany(self.new_company_id(), name, list(contracts or []))
        self.companies.append(company)
        return company.id

    def add_person(self, email: str) -> str:
        self.people[email.lower()] = self.new_person_id()
        return self.people[email.lower()]

    def new_company_id(self) -> str:
        return str(100 + next(self._ids))

    def new_person_id(self) -> str:
        return str(500 + next(self._ids))

    def env(self) -> dict[str, str]:
        """The PSA_* variables that authenticate against this fake."""
        raise NotImplementedError

    def config(self, **extra: Any) -> dict[str, Any]:
        """The config's `psa:` block for this fake."""
        return {"system": self.SYSTEM, "url": self.url, **extra}

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line."""
        return [v for k, v in self.env().items() if k in SECRET_VARIABLES]

    def reset_state(self) -> None:
        self.tickets.clear()
        self.writes.clear()

    # -- questions tests ask ----------------------------------------------------------------------

    def records(self) -> list[FakeTicket]:
        return list(self.tickets.values())

    def only(self) -> FakeTicket:
        found = self.records()
        assert len(found) == 1, f"{len(found)} tickets in {type(self).__name__}: {found}"
        return found[0]

    def by_ref(self, ref: str) -> FakeTicket | None:
        return next((t for t in self.tickets.values() if t.ref == ref), None)

    def company_named(self, name: str) -> FakeCompany | None:
        wanted = name.strip().lower()
        return next((c for c in self.companies if c.name.lower() == wanted), None)

    def company_by_id(self, company_id: Any) -> FakeCompany | None:
        return next((c for c in self.companies if c.id == str(company_id)), None)

    def person_of(self, person_id: Any) -> str:
        return next((e for e, i in self.people.items() if i == str(person_id)), "")

    # -- helpers for subclasses -------------------------------------------------------------------

    async def accepted(self, what: str, ticket_id: str, response: web.Response) -> web.Response:
        """Record an accepted write, then answer (after `hold`, when set)."""
        self.writes.append((time.monotonic(), what, ticket_id))
        if self.hold:
            await asyncio.sleep(self.hold)
        return response

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        raise NotImplementedError


def utf16_length(text: str) -> int:
    """A string's length as .NET and SQL Server's nvarchar count it (ConnectWise, Autotask):
    UTF-16 code units, so an emoji or any character outside the BMP counts two."""
    return len(text.encode("utf-16-le")) // 2


SECRET_VARIABLES = ("PSA_PASSWORD", "PSA_API_KEY", "PSA_PUBLIC_KEY", "PSA_PRIVATE_KEY")
