"""PSA writes through each connector against its fake: retried writes are made once (a create
whose ticket number could not be read, a closure whose status change failed, a note or time
entry whose answer was lost), and look-ups that find the one record asked for."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.psa.autotask import AutotaskConnector
from bot.psa.connectwise import ConnectWiseConnector
from bot.psa.freshservice import FreshserviceConnector
from bot.psa.servicenow import ServiceNowConnector
from bot.psa.settings import PsaSettings
from handlers.psa import NOTE_POSTED, NewTicket, PsaError
from handlers.psa.sync import perform
from tests.fakes.base import Recorded
from tests.fakes.psa_autotask import ZONE, FakeAutotask
from tests.fakes.psa_common import PsaFake
from tests.fakes.psa_connectwise import FakeConnectWise
from tests.fakes.psa_freshservice import FakeFreshservice
from tests.fakes.psa_servicenow import FakeServiceNow


def settings(fake: PsaFake) -> PsaSettings:
    env = fake.env()
    return PsaSettings(
        system=fake.SYSTEM,
        url=fake.url,
        username=env.get("PSA_USERNAME", ""),
        password=SecretStr(env.get("PSA_PASSWORD", "")),
        api_key=SecretStr(env.get("PSA_API_KEY", "")),
        client_id=env.get("PSA_CLIENT_ID", ""),
        company_id=env.get("PSA_COMPANY_ID", ""),
        public_key=SecretStr(env.get("PSA_PUBLIC_KEY", "")),
        private_key=SecretStr(env.get("PSA_PRIVATE_KEY", "")),
    )


async def test_servicenow_finds_the_company_behind_a_page_of_similar_names() -> None:
    fake = FakeServiceNow()
    async with fake, aiohttp.ClientSession() as session:
        for n in range(60):
            fake.add_company(f"Acme Branch {n}")
        acme = fake.add_company("Acme")
        connector = ServiceNowConnector(session, settings(fake))
        found = await connector.find_company(" acme ")
        assert found is not None and (found.id, found.name) == (acme, "Acme")
        assert await connector.find_company("Acme Branch") is None
        asked = fake.calls("/api/now/table/core_company")
        assert [c.query["sysparm_query"] for c in asked] == ["name=acme", "name=Acme Branch"]
        # A caret is a literal one in the name, not the encoded query's AND.
        caret = fake.add_company("R^D Labs")
        found = await connector.find_company("r^d labs")
        assert found is not None and found.id == caret
        assert fake.calls("/api/now/table/core_company")[-1].query["sysparm_query"] == (
            "name=r^^d labs"
        )


def new_ticket(key: str, **extra: str) -> dict[str, Any]:
    ticket = NewTicket(
        key=key, number="HD-7", title="Outlook down", description="0x800CCC0E", priority="P3"
    )
    return {**ticket.to_dict(), **extra}


async def failed(connector: Any, kind: str, payload: dict[str, Any], attempts: int) -> PsaError:
    with pytest.raises(PsaError) as error:
        await perform(connector, kind=kind, payload=payload, attempts=attempts)
    return error.value


async def test_autotask_ticket_read_failing_after_the_create_is_not_created_again() -> None:
    fake = FakeAutotask()
    async with fake, aiohttp.ClientSession() as session:
        connector = AutotaskConnector(session, settings(fake))
        payload = new_ticket("helpdesk-bot:HD-7:ab01")
        # The create is accepted ({"itemId"}), then reading its ticketNumber is throttled.
        fake.fail(f"{ZONE}v1.0/Tickets/[0-9]*", 429)
        error = await failed(connector, "psa.create", payload, 1)
        assert (error.kind, error.definite, error.clean) == ("throttled", False, False)
        made = fake.only()
        result = await perform(connector, kind="psa.create", payload=payload, attempts=2)
        assert result["found_by_reference"] is True
        assert (result["psa_id"], result["psa_number"]) == (made.id, made.number)
        assert len(fake.records()) == 1


def as_recorded(payload: dict[str, Any], error: PsaError) -> dict[str, Any]:
    """The row's payload as deliveries.record_failure keeps it for the next attempt."""
    return {**payload, **error.progress}


async def test_freshservice_closure_retried_after_the_status_failed_posts_one_note() -> None:
    fake = FakeFreshservice()
    async with fake, aiohttp.ClientSession() as session:
        connector = FreshserviceConnector(session, settings(fake))
        made = await perform(
            connector,
            kind="psa.create",
            payload=new_ticket("k1", requester_email="u@x.com"),
            attempts=1,
        )
        row = {**made, "text": "Fixed: restarted the mail service"}
        fake.fail(f"/api/v2/tickets/{made['psa_id']}", 503)  # the status change (PUT)
        error = await failed(connector, "psa.close", row, 1)
        assert error.progress == {NOTE_POSTED: True} and not fake.only().closed
        await perform(connector, kind="psa.close", payload=as_recorded(row, error), attempts=2)
        closed = fake.only()
        assert closed.closed and closed.notes == ["Fixed: restarted the mail service"]


async def test_connectwise_closure_retried_after_the_status_failed_posts_one_note() -> None:
    fake = FakeConnectWise()
    async with fake, aiohttp.ClientSession() as session:
        connector = ConnectWiseConnector(session, settings(fake))
        made = await perform(connector, kind="psa.create", payload=new_ticket("k2"), attempts=1)
        row = {**made, "text": "Fixed"}
        fake.fail(f"/{fake.codebase}apis/3.0/service/tickets/{made['psa_id']}", 503)
        # The board's status read (GET) fails first: nothing done yet, nothing kept.
        error = await failed(connector, "psa.close", row, 1)
        assert error.progress == {} and fake.notes == []
        handle, busy = fake.handle, [True]

        async def patch_busy_once(rec: Recorded, request: web.Request) -> web.StreamResponse:
            if rec.method == "PATCH" and busy:
                busy.clear()
                return web.json_response({"code": "Busy", "message": "try later"}, status=503)
            return await handle(rec, request)

        fake.handle = patch_busy_once  # type: ignore[method-assign]
        error = await failed(connector, "psa.close", as_recorded(row, error), 2)  # the PATCH
        assert error.progress == {NOTE_POSTED: True} and not fake.only().closed
        await perform(connector, kind="psa.close", payload=as_recorded(row, error), attempts=3)
        assert [n["text"] for n in fake.notes if n.get("resolutionFlag")] == ["Fixed"]
        assert fake.only().closed
