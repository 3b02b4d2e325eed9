"""Credentials a PSA refuses in its own way (not a 401): kept, told once, sent when fixed."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.psa_autotask import FakeAutotask
from tests.fakes.psa_connectwise import FakeConnectWise
from tests.fakes.slack_api import FakeSlack
from tests.harness import wait_until
from tests.http.psa_support import (
    all_synced,
    open_ticket,
    posts_to,
    psa_rows,
    seed,
    show,
    start_app,
    ticket,
)


def _told(slack: FakeSlack, words: str) -> list[dict[str, Any]]:
    return [p for p in posts_to(slack, "C0HELP") if words in json.dumps(p)]


async def test_autotask_integration_code_it_does_not_know_is_refused_credentials_not_a_refusal(
    make_app, slack_api: FakeSlack
):
    # Autotask answers a wrong ApiIntegrationCode (PSA_CLIENT_ID) with HTTP 500 and its
    # errors list, like a business rule refusing a write: every ticket was given up for good
    # and each technician told to enter it by hand. It is the credentials: the writes are
    # kept, the technician told once, and everything goes once the code is fixed.
    fake = FakeAutotask()
    seed(fake)
    right = fake.env()
    fake.env = lambda: {**right, "PSA_CLIENT_ID": "WRONGCODE0000"}  # type: ignore[method-assign]
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        words = "Autotask refuses the bot's credentials"
        await wait_until(lambda: _told(slack_api, words), timeout=15, what="the technician told")
        assert "IntegrationCode is invalid" in json.dumps(_told(slack_api, words)[0])
        await open_ticket(app, slack_api, summary="Printer offline")  # intake goes on
        await wait_until(lambda: _two_rows(app), what="the second ticket's create")
        assert not _told(slack_api, "refused the ticket")
        assert [r.status for r in await psa_rows(app)] == ["pending", "pending"]
        assert "Autotask: pending (1 not sent yet: ticket)" in await show(app, "HD-2")

        await app.stop()
        fake.env = lambda: right  # type: ignore[method-assign]
        again = await start_app(make_app, slack_api, fake)
        await wait_until(lambda: all_synced(again), timeout=15, what="the kept writes")
        assert len(fake.records()) == 2
        # The kept writes go in any order across tickets (each ticket's own stay in order).
        [second] = [r for r in fake.records() if "Printer offline" in r.title]
        assert (await ticket(again, "HD-2")).psa_number == second.number
        assert len(_told(slack_api, words)) == 1


async def _two_rows(app: Any) -> bool:
    return len(await psa_rows(app)) == 2


async def test_connectwise_company_id_it_does_not_know_is_refused_credentials_not_a_refusal(
    make_app, slack_api: FakeSlack
):
    # /login/companyinfo/<PSA_COMPANY_ID> answers 404 for a company ConnectWise does not
    # know (a typo in PSA_COMPANY_ID, which is also the first part of the Basic user): every
    # ticket was refused for good, each technician told to enter it by hand. It is the
    # credentials, as for Autotask's unknown user: kept, told once, sent once fixed.
    fake = FakeConnectWise()
    seed(fake)
    right = fake.env()
    fake.env = lambda: {**right, "PSA_COMPANY_ID": "acmee"}  # type: ignore[method-assign]
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        words = "ConnectWise refuses the bot's credentials"
        await wait_until(lambda: _told(slack_api, words), timeout=15, what="the technician told")
        assert "PSA_COMPANY_ID" in json.dumps(_told(slack_api, words)[0])
        await open_ticket(app, slack_api, summary="Printer offline")
        await wait_until(lambda: _two_rows(app), what="the second ticket's create")
        assert not _told(slack_api, "refused the ticket")
        assert [r.status for r in await psa_rows(app)] == ["pending", "pending"]

        await app.stop()
        fake.env = lambda: right  # type: ignore[method-assign]
        again = await start_app(make_app, slack_api, fake)
        await wait_until(lambda: all_synced(again), timeout=15, what="the kept writes")
        assert len(fake.records()) == 2
        assert len(_told(slack_api, words)) == 1
