"""Which closed status a ConnectWise ticket is closed with (SPEC System of record: "the
closure (... ConnectWise a closed status ...) follow it")."""

from __future__ import annotations

from tests.fakes.psa_connectwise import FakeConnectWise
from tests.fakes.slack_api import FakeSlack
from tests.harness import wait_until
from tests.http.psa_support import close, open_ticket, psa_rows, seed, start_app


async def test_connectwise_closes_with_the_boards_closed_status_not_a_retired_or_cancelled_one(
    make_app, slack_api: FakeSlack
):
    """The bot took the board's first status with `closedStatus` by sort order: on a board
    that grew over the years that is a retired one (`inactive`, which ConnectWise lists too:
    django-connectwise reads statuses with `conditions=inactive=False`) or "Cancelled", so a
    ticket fixed in chat was closed in ConnectWise as retired or cancelled, and its reports
    count the fix as a cancellation. Now an active closed status, the one named "Closed"
    (punctuation aside, as django-connectwise picks it) when the board has one."""
    fake = FakeConnectWise()
    seed(fake)
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api, client="acme")
        await close(app, slack_api, "HD-1")

        async def closed() -> bool:
            rows = await psa_rows(app)
            return any(r.kind == "psa.close" and r.status == "delivered" for r in rows)

        await wait_until(closed, what="the closure in ConnectWise", timeout=20)
        ticket = fake.only()
        assert ticket.closed
        assert ticket.raw["status"]["name"] == ">Closed"
        statuses = [c for c in fake.recorded if c.path.endswith("/statuses")]
        assert statuses and all("inactive=false" in c.query["conditions"] for c in statuses)
