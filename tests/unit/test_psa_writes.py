"""PSA writes through each connector against its fake: retried writes are made once (a create
whose ticket number could not be read, a closure whose status change failed, a note or time
entry whose answer was lost), and look-ups that find the one record asked for."""

from __future__ import annotations

import aiohttp
from pydantic import SecretStr

from bot.psa.servicenow import ServiceNowConnector
from bot.psa.settings import PsaSettings
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
