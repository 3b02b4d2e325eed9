"""Fixtures of the HTTP tests: the fake connector and pagers the app talks to."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.botframework import FakeConnector
from tests.fakes.pagers import FakeOpsgenie, FakePagerDuty
from tests.http import processes
from tests.http.directory_support import Source, close_source, open_source
from tests.http.p1_support import fake_opsgenie, fake_pagerduty


@pytest.fixture
async def connector() -> AsyncIterator[FakeConnector]:
    """Fake Bot Framework connector (the `serviceUrl` of the activities a test sends)."""
    async with FakeConnector() as fake:
        yield fake


@pytest.fixture
async def pagerduty() -> AsyncIterator[FakePagerDuty]:
    async with fake_pagerduty() as fake:
        yield fake


@pytest.fixture
async def opsgenie() -> AsyncIterator[FakeOpsgenie]:
    async with fake_opsgenie() as fake:
        yield fake


# Real processes and the emptied PostgreSQL database (tests/http/processes.py).
spawn = processes.spawn
blackhole = processes.blackhole
pg_url = processes.pg_url
database = processes.database


@pytest.fixture(params=["ldap", "graph"])
async def source(request: pytest.FixtureRequest) -> AsyncIterator[Source]:
    """A real directory source for the app: a private slapd, or the Graph fake behind TLS."""
    opened = await open_source(request.param)
    yield opened
    await close_source(opened)
