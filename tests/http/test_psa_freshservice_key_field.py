"""Freshservice's custom field for the bot's key, by the name the instance gave it (SPEC
System of record: "the bot writes its own key into the PSA's external reference (...
Freshservice a custom field named in the README) and looks it up before creating again")."""

from __future__ import annotations

import aiohttp

from bot.psa.freshservice import FreshserviceConnector
from handlers.psa.sync import perform
from tests.fakes.psa_freshservice import FakeFreshservice
from tests.fakes.slack_api import FakeSlack
from tests.harness import wait_until
from tests.http.psa_support import all_synced, open_ticket, seed, show, start_app
from tests.unit.test_psa_writes import new_ticket, settings


async def test_freshservice_key_field_named_without_cf_is_the_one_written_and_searched(
    make_app, slack_api: FakeSlack
):
    """Freshservice names a ticket's custom fields after their label: the official SDK's
    ticket sample carries `"custom_fields": {"employee_id": ...}`, no `cf_` prefix. A field
    labelled "helpdesk bot key" as the README says is then `helpdesk_bot_key`, which
    `check-config --probe` accepted as the bot's key field, yet every create named
    `cf_helpdesk_bot_key`, which Freshservice refuses as an invalid field: no ticket reached
    Freshservice. The bot now writes, and searches, the field by the name the instance's
    ticket fields give it."""
    fake = FakeFreshservice()
    seed(fake)
    fake.custom_fields = ["helpdesk_bot_key"]
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api, client="acme")
        await wait_until(lambda: all_synced(app), what="the ticket in Freshservice", timeout=20)
        created = fake.only()
        assert created.ref.startswith("helpdesk-bot:HD-1:")
        assert "#4123" in await show(app)

        # After a create whose answer was lost, the key is looked up in that field.
        async with aiohttp.ClientSession() as session:
            connector = FreshserviceConnector(session, settings(fake))
            result = await perform(
                connector, kind="psa.create", payload=new_ticket(created.ref), attempts=2
            )
        assert result["found_by_reference"] is True and result["psa_id"] == created.id
        assert len(fake.records()) == 1
        [query] = [c.query["query"] for c in fake.calls("/api/v2/tickets/filter")]
        assert query == f"\"helpdesk_bot_key:'{created.ref}'\""


async def test_freshservice_ticket_fields_it_cannot_list_leave_the_readme_name(
    make_app, slack_api: FakeSlack
):
    """Reading the key field's name is a look-up the create can do without: ticket fields
    the API key's agent may not list (403), or an answer that is not them (404), leave the
    name the README asks for, and the ticket is made; an outage there waits like the create."""
    fake = FakeFreshservice()
    seed(fake)
    fake.unreadable.add("ticket_form_fields")
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api, client="acme")
        await wait_until(lambda: all_synced(app), what="the ticket in Freshservice", timeout=20)
        assert fake.only().raw["custom_fields"]["cf_helpdesk_bot_key"].startswith("helpdesk-bot:")
