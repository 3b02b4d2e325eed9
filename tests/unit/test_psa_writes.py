"""PSA writes through each connector against its fake: retried writes are made once (a create
whose ticket number could not be read, a closure whose status change failed, a note or time
entry whose answer was lost), and look-ups that find the one record asked for."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from bot.psa.autotask import AutotaskConnector
from bot.psa.servicenow import ServiceNowConnector
from bot.psa.settings import PsaSettings
from handlers.psa import NewTicket, PsaError
from handlers.psa.sync import perform
from tests.fakes.psa_autotask import ZONE, FakeAutotask
from tests.fakes.psa_common import PsaFake
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
