"""PSA answers the bot cannot read: wrong field types, bytes that are not text, huge bodies."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.psa_autotask import FakeAutotask
from tests.fakes.psa_freshservice import FakeFreshservice
from tests.fakes.slack_api import FakeSlack
from tests.harness import wait_until
from tests.http.psa_support import (
    GOOD_NOTE,
    all_synced,
    close,
    open_ticket,
    posts_to,
    psa_rows,
    seed,
    show,
    start_app,
)


async def _dead(app: Any) -> bool:
    return all(r.status == "dead" for r in await psa_rows(app))


def _told(slack: FakeSlack, words: str) -> list[dict[str, Any]]:
    return [p for p in posts_to(slack, "C0HELP") if words in json.dumps(p)]


async def test_freshservice_agent_with_an_id_of_the_wrong_type_is_told_once_not_retried_forever(
    make_app, slack_api: FakeSlack
):
    # The technician's agent comes back with an id that is no number (a proxy, a custom
    # integration in between, an API change): the time entry cannot be made from that answer
    # however often it is asked. It is told once and given up; the closure is not held
    # behind it, and nothing is retried in a loop.
    fake = FakeFreshservice()
    seed(fake)
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(lambda: all_synced(app), what="the Freshservice ticket")
        fake.fail("/api/v2/agents", 200, times=100, body={"agents": [{"id": "agent-7"}]})
        await close(app, slack_api, "HD-1", spent="30m")

        words = "Freshservice refused the time entry for HD-1 and it will not be retried"
        await wait_until(lambda: _told(slack_api, words), timeout=15, what="the technician told")
        assert "agent-7" in json.dumps(_told(slack_api, words)[0])
        await wait_until(lambda: fake.only().closed, timeout=15, what="the ticket resolved")
        assert GOOD_NOTE in fake.only().resolution
        [entry] = [r for r in await psa_rows(app) if r.kind == "psa.time"]
        assert (entry.status, entry.attempts) == ("dead", 1)
        assert len(fake.calls("/api/v2/agents")) == 1
        assert "Freshservice: not sent: time entry" in await show(app)


async def test_autotask_create_answering_an_item_id_of_the_wrong_type_is_told_once(
    make_app, slack_api: FakeSlack
):
    fake = FakeAutotask()
    seed(fake)
    async with fake:
        tickets = "/zone5/atservicesrest/v1.0/Tickets"
        fake.fail(tickets, 200, times=100, body={"itemId": "T20261207.0001"})
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)

        words = "Autotask refused the ticket for HD-1 and it will not be retried"
        await wait_until(lambda: _told(slack_api, words), timeout=15, what="the technician told")
        await wait_until(lambda: _dead(app), what="the create given up")
        [row] = await psa_rows(app)
        assert (row.status, row.attempts) == ("dead", 1)
        assert len([c for c in fake.calls(tickets) if c.method == "POST"]) == 1
        assert "T20261207.0001" in await show(app)
