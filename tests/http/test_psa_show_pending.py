"""`show`'s PSA line while writes wait, over Slack HTTP on SQLite and PostgreSQL: what waits
is counted in words people read (`2 time entries`)."""

from __future__ import annotations

from typing import Any

from tests.fakes.psa_servicenow import FakeServiceNow
from tests.fakes.slack_api import FakeSlack
from tests.http.psa_support import open_ticket, seed, show, start_app


async def test_pending_writes_are_counted_in_plain_words(make_app: Any, slack_api: FakeSlack):
    fake = FakeServiceNow()
    seed(fake)
    async with fake:
        # The PSA is down: the create waits, and the time entries behind it.
        fake.fail("/api/now/table/incident", 503, times=1000)
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        for note in ("checked the tunnel logs", "replaced the switch port"):
            assert (await app.slash(f"time HD-1 20m {note}")).status == 200
        shown = await show(app)
        assert "ServiceNow: pending (3 not sent yet: ticket, 2 time entries)" in shown, shown
