"""An answer's claim is a lease: a process that died before its answer went out loses nothing.

A redelivered Teams activity is answered once (test_teams_answer_once): its answer claims the
activity's answer id just before it goes out. A process that dies between that claim and the
send leaves the claim behind; the redelivery (the turn never ended, so Bot Framework sends the
activity again) takes it over once its lease has run out and answers, once. What such a death
leaves is made here by writing the claim row itself; test_teams_answer_kill kills real
processes. A process that is alive renews its claim while its answer is slow to go out, and
records it as given once it is out: neither a redelivery meanwhile nor one long after answers.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
from botbuilder.schema import Activity

from bot.teams.activity_handler import _answer_id
from handlers import dispatch
from storage import inbound
from storage.models import InboundDelivery, utcnow
from tests.fakes.botframework import FakeConnector
from tests.harness import AppHarness
from tests.http.conftest_teams import PERSONAL, card_of, message
from tests.http.test_teams_answer_once import start

LEASE = 1.0


@pytest.fixture(autouse=True)
def short_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "ANSWER_LEASE", LEASE, raising=False)


async def claimed_by_the_dead(app: AppHarness, body: dict[str, Any], age: float) -> None:
    """The claim a process left when it died `age` seconds ago, before its answer went out."""
    answer_id = _answer_id(Activity().deserialize(body))
    assert answer_id is not None
    async with app.services.sessions() as session, session.begin():
        at = utcnow() - timedelta(seconds=age)
        session.add(InboundDelivery(key=inbound.key_for(answer_id), at=at))


async def test_a_claim_whose_process_died_is_taken_over_by_the_redelivery(
    make_app: Any, connector: FakeConnector
) -> None:
    app = await start(make_app, connector)
    url = connector.service_url
    for said, age in (("ticket show HD-7", 30.0), ("good morning", 30.0), ("ticket mine", 0.0)):
        # Long dead (the redelivery came late), or just now (it waits for the lease).
        body = message(url, said)
        await claimed_by_the_dead(app, body, age)
        before = len(connector.activities(PERSONAL))
        started = time.monotonic()
        assert (await app.teams(body)).status == 201
        answered = connector.activities(PERSONAL)[before:]
        assert len(answered) == 1, (said, answered)
        if age == 0.0:
            assert time.monotonic() - started >= LEASE * 0.9  # not before the lease ran out
        assert (await app.teams(body)).status == 201
        assert len(connector.activities(PERSONAL)) == before + 1, f"{said!r} answered twice"
    assert "HD-7" in connector.activities(PERSONAL)[0]["text"]  # not found: said so


async def test_an_answer_given_is_not_given_again_after_its_lease(
    make_app: Any, connector: FakeConnector
) -> None:
    app = await start(make_app, connector)
    body = message(connector.service_url, "ticket help")
    assert (await app.teams(body)).status == 201
    await asyncio.sleep(LEASE * 1.5)
    assert (await app.teams(body)).status == 201
    [helped] = connector.activities(PERSONAL)
    assert card_of(helped)


async def test_an_answer_slower_than_its_lease_is_not_taken_over_by_the_redelivery(
    make_app: Any, connector: FakeConnector
) -> None:
    """The first delivery is alive, its answer on its way for longer than the lease: it renews
    its claim, so the redelivery meanwhile waits for it and answers nothing."""
    app = await start(make_app, connector)
    connector.set_delay("/v3/conversations/*", LEASE * 2.5)
    body = message(connector.service_url, "ticket help")
    first = asyncio.ensure_future(app.teams(body))
    await asyncio.sleep(0.3)
    second = await app.teams(body)
    assert second.status == 201 and (await first).status == 201
    connector.set_delay("/v3/conversations/*", 0)
    assert len(connector.activities(PERSONAL)) == 1
