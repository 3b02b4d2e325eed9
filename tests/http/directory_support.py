"""The app on a real directory source (slapd or the Graph fake), for the HTTP flow tests.

`source` (a fixture in tests/http/conftest.py) runs a test once per source; `Source` holds
its config and env for `make_app`, and can take the directory down and bring it back.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from storage.models import IdentityCheck, TicketEvent
from tests.directory_people import (
    BO,
    Who,
    fill_graph,
    graph_directory,
    ldap_directory,
    start_slapd,
)
from tests.fakes.graph import FakeGraph
from tests.harness import AppHarness
from tests.ldap_server import Slapd, require_slapd

# Graph's throttling answer while "down": retried after 5 s, so within the 10 s a person
# waits there is one more try, then the technician is told.
OUTAGE_RETRY_AFTER = "5"
UNREACHABLE = "could not be reached"


@dataclass
class Source:
    """One directory source as the app is configured for it."""

    name: str  # "ldap" | "graph"
    label: str  # what the technician is told could not be reached
    directory: dict[str, Any]
    env: dict[str, str]
    slapd: Slapd | None = None
    graph: FakeGraph | None = None

    def config(self, **extra: Any) -> dict[str, Any]:
        """The app's config: this directory (with `cache_ttl` if given) plus `extra`."""
        directory = json.loads(json.dumps(self.directory))
        if "cache_ttl" in extra:
            directory[self.name]["cache_ttl"] = extra.pop("cache_ttl")
        return {"directory": directory, **extra}

    @property
    def manager_teams_id(self) -> str:
        """Where Bo is DMed on Teams: his Teams id from LDAP, his AAD object id from Graph."""
        return BO.teams if self.name == "ldap" else BO.aad

    def go_down(self, graph_status: int = 503) -> None:
        """LDAP: the server stops. Graph: every call is answered `graph_status` (503 with a
        Retry-After: waited for up to 10 s; 500: given up at once)."""
        if self.slapd is not None:
            self.slapd.stop()
        if self.graph is not None:
            headers = {"Retry-After": OUTAGE_RETRY_AFTER} if graph_status == 503 else {}
            self.graph.fail("/v1.0/*", graph_status, times=10_000, headers=headers)

    def disable(self, who: Who) -> None:
        """`who`'s account is disabled (left the company): AD's userAccountControl with
        ACCOUNTDISABLE (514 = normal account + disabled), Graph's accountEnabled false."""
        if self.slapd is not None:
            self.slapd.modify(
                f"dn: {who.dn}\nchangetype: modify\nreplace: userAccountControl\n"
                "userAccountControl: 514\n"
            )
        if self.graph is not None:
            self.graph.users[who.aad]["accountEnabled"] = False

    def come_back(self) -> None:
        if self.slapd is not None:
            self.slapd.start()
        if self.graph is not None:
            self.graph.reset()


async def open_source(name: str) -> Source:
    if name == "ldap":
        require_slapd()
        server = start_slapd()
        directory, env = ldap_directory(server)
        return Source(name, "LDAP", directory, env, slapd=server)
    graph = FakeGraph()
    fill_graph(graph)
    await graph.start()
    directory, env = graph_directory(graph)
    return Source(name, "Graph", directory, env, graph=graph)


async def close_source(source: Source) -> None:
    if source.slapd is not None:
        source.slapd.cleanup()
    if source.graph is not None:
        await source.graph.stop()


async def identity_rows(app: AppHarness) -> tuple[int, list[str]]:
    """(identity checks stored, identity audit event kinds)."""
    async with app.services.sessions() as session:
        checks = (await session.execute(select(func.count()).select_from(IdentityCheck))).scalar()
        kinds = (
            await session.execute(
                select(TicketEvent.kind)
                .where(TicketEvent.kind.like("identity.%"))
                .order_by(TicketEvent.id)
            )
        ).scalars()
        return int(checks or 0), list(kinds)


def graph_calls_between(graph: FakeGraph, start: float, end: float) -> list[Any]:
    return [c for c in graph.graph_calls() if start < c.at < end]


def elapsed(since: float) -> float:
    return time.monotonic() - since
