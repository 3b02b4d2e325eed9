"""Who a PSA record names (SPEC System of record: "the requester as caller ... (by e-mail ...)",
time entries "by the technician's PSA user found by e-mail")."""

from __future__ import annotations

import secrets

import pytest

from tests.fakes.psa_autotask import FakeAutotask
from tests.fakes.psa_connectwise import FakeConnectWise
from tests.fakes.psa_servicenow import FakeServiceNow
from tests.fakes.slack_api import FakeSlack
from tests.harness import wait_until
from tests.http.psa_support import all_synced, open_ticket, seed, start_app


async def test_servicenow_caller_and_time_user_are_the_active_account_of_an_email(
    make_app, slack_api: FakeSlack
):
    """ServiceNow instances keep deactivated users (a leaver's old account, a duplicate from
    an import) beside the active one with the same e-mail. The bot took whichever `sys_user`
    row came first: the incident's caller, and the time worked, went to an account that is
    switched off (no notifications, not the person's record). Now the active one wins."""
    fake = FakeServiceNow()
    for email in ("ana@example.com", "tom@example.com"):
        fake.tables["sys_user"].append(
            {"sys_id": secrets.token_hex(16), "email": email, "user_name": "old", "active": "false"}
        )
    seed(fake)
    active = {r["email"]: r["sys_id"] for r in fake.tables["sys_user"] if r["active"] == "true"}
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api, client="acme")
        logged = await (await app.slash("time HD-1 25m checked the tunnel logs")).json()
        assert "25m" in str(logged), logged
        await wait_until(lambda: all_synced(app), what="the writes in ServiceNow", timeout=20)
        await wait_until(lambda: fake.tables["task_time_worked"], what="the time worked")
        incident = fake.only()
        assert incident.raw["caller_id"] == active["ana@example.com"]
        [worked] = fake.tables["task_time_worked"]
        assert worked["user"] == active["tom@example.com"]


async def test_connectwise_time_goes_to_the_active_member_of_an_email(
    make_app, slack_api: FakeSlack
):
    """ConnectWise keeps a leaver's member record (`inactiveFlag`, django-connectwise's
    Member) beside a new one with the same office e-mail (someone who came back). The bot
    took the first member with that e-mail, so the technician's time was logged as the
    retired member. Now only an active member is taken (else the API member, as for an
    unknown technician)."""
    fake = FakeConnectWise()
    fake.members.append(
        {"id": 499, "identifier": "tom.old", "officeEmail": "tom@example.com", "inactiveFlag": True}
    )
    seed(fake)
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api, client="acme")
        logged = await (await app.slash("time HD-1 25m checked the tunnel logs")).json()
        assert "25m" in str(logged), logged
        await wait_until(lambda: all_synced(app), what="the writes in ConnectWise", timeout=20)
        await wait_until(lambda: fake.entries, what="the time entry")
        [entry] = fake.entries
        assert entry["member"] == {"identifier": "tom"}


async def test_autotask_contact_and_time_resource_are_the_active_ones_of_an_email(
    make_app, slack_api: FakeSlack
):
    """Autotask keeps inactive contacts and resources (`isActive`, which django-autotask
    reads contacts by) with the e-mail of an active one: the bot took the first match, so
    the ticket's contact, or the resource its time was logged as, could be a record that
    is switched off. Now only active ones are taken (else: no contact / the API user)."""
    fake = FakeAutotask()
    seed(fake)
    acme = next(c for c in fake.entities["Companies"] if c["companyName"] == "Acme")
    fake.entities["Contacts"].insert(
        0, {"id": 90, "companyID": acme["id"], "emailAddress": "ana@example.com", "isActive": 0}
    )
    fake.entities["Resources"].insert(
        0, {"id": 91, "email": "tom@example.com", "userName": "tom.old", "isActive": False}
    )
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api, client="acme")
        logged = await (await app.slash("time HD-1 25m checked the tunnel logs")).json()
        assert "25m" in str(logged), logged
        await wait_until(lambda: all_synced(app), what="the writes in Autotask", timeout=20)
        await wait_until(lambda: fake.entities["TimeEntries"], what="the time entry")
        assert fake.only().raw["contactID"] != 90
        [entry] = fake.entities["TimeEntries"]
        assert entry["resourceID"] != 91


@pytest.mark.parametrize("system", ["connectwise", "autotask"])
async def test_tickets_go_to_the_live_company_of_a_name(make_app, slack_api: FakeSlack, system):
    """ConnectWise lists deleted companies too (`deletedFlag`; django-connectwise reads them
    with `deletedFlag=False`) and Autotask inactive ones (`isActive`; django-autotask reads
    companies with isActive eq true). An MSP that re-created a client, or keeps an old record
    of its name, got each ticket filed under whichever came first: the deleted or inactive
    company (and its contracts for the tier). Now only the live company is taken."""
    fake: FakeConnectWise | FakeAutotask
    if system == "connectwise":
        fake = FakeConnectWise()
        old = fake.add_company("Acme")
        fake.deleted.add(old)
    else:
        fake = FakeAutotask()
        old = "99"
        fake.entities["Companies"].append({"id": 99, "companyName": "Acme", "isActive": False})
    seed(fake)
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api, client="acme")
        await wait_until(lambda: all_synced(app), what="the ticket in the PSA", timeout=20)
        raw = fake.only().raw
        company = raw["company"]["id"] if system == "connectwise" else raw["companyID"]
        assert str(company) != old
        assert fake.only().company == "Acme"
