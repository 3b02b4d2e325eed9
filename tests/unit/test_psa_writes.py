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
from tests.fakes.psa_autotask import SECRET, ZONE, FakeAutotask
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


def as_recorded(payload: dict[str, Any], error: PsaError, attempts: int = 1) -> dict[str, Any]:
    """The row's payload as deliveries.record_failure keeps it for the next attempt (the
    steps done, and `clean` when every attempt so far certainly wrote nothing)."""
    return {**payload, **error.progress, **({"clean": attempts} if error.clean else {})}


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
        await perform(connector, kind="psa.close", payload=as_recorded(row, error, 2), attempts=3)
        assert [n["text"] for n in fake.notes if n.get("resolutionFlag")] == ["Fixed"]
        assert fake.only().closed


# -- a note or time entry whose answer was lost is looked up, not sent again -----------------

VENDORS: dict[str, tuple[type[PsaFake], Any]] = {
    "servicenow": (FakeServiceNow, ServiceNowConnector),
    "freshservice": (FakeFreshservice, FreshserviceConnector),
    "connectwise": (FakeConnectWise, ConnectWiseConnector),
    "autotask": (FakeAutotask, AutotaskConnector),
}
MARKER = "helpdesk-bot:HD-7:0a1b2c3d"


def write_row(made: dict[str, Any], kind: str, marker: str = MARKER) -> dict[str, Any]:
    """A note / time-entry row as service._enqueue queues it (with its own reference)."""
    if kind == "psa.note":
        return {**made, "text": "Escalated to the networking queue", "marker": marker}
    return {
        **made,
        "minutes": 30,
        "note": "checked the tunnel logs",
        "ended_at": "2026-12-05T10:30:00+00:00",
        "marker": marker,
    }


def write_path(fake: PsaFake, kind: str, psa_id: str) -> str:
    """Where the fake takes this write (to script a failure there)."""
    note = kind == "psa.note"
    if isinstance(fake, FakeServiceNow):
        return f"/api/now/table/incident/{psa_id}" if note else "/api/now/table/task_time_worked"
    if isinstance(fake, FakeFreshservice):
        return f"/api/v2/tickets/{psa_id}/" + ("notes" if note else "time_entries")
    if isinstance(fake, FakeConnectWise):
        base = f"/{fake.codebase}apis/3.0/"
        return base + (f"service/tickets/{psa_id}/notes" if note else "time/entries")
    return f"{ZONE}v1.0/" + (f"Tickets/{psa_id}/Notes" if note else "TimeEntries")


def in_psa(fake: PsaFake, kind: str) -> list[Any]:
    made = fake.only()
    return made.notes if kind == "psa.note" else made.time_minutes


async def answer_lost(
    fake: PsaFake, connector: Any, kind: str, row: dict[str, Any], monkeypatch: Any
) -> dict[str, Any]:
    """The PSA takes the write but its answer never comes (a timeout); the row's payload as
    deliveries.record_failure keeps it for the next attempt."""
    import bot.psa.http as psa_http

    timeout = psa_http.TIMEOUT
    monkeypatch.setattr(psa_http, "TIMEOUT", aiohttp.ClientTimeout(total=0.5))
    fake.hold_answers(1.0)
    error = await failed(connector, kind, row, 1)
    fake.hold_answers(0)
    monkeypatch.setattr(psa_http, "TIMEOUT", timeout)
    assert (error.kind, error.definite, error.clean) == ("unavailable", False, False)
    return as_recorded(row, error)


async def made_ticket(fake: PsaFake, connector: Any) -> dict[str, Any]:
    payload = new_ticket("helpdesk-bot:HD-7:ffff0000", requester_email="u@x.com")
    return await perform(connector, kind="psa.create", payload=payload, attempts=1)


LOOKED_UP = [
    ("servicenow", "psa.note"),
    ("servicenow", "psa.time"),
    ("freshservice", "psa.note"),
    ("freshservice", "psa.time"),
    ("connectwise", "psa.note"),
    ("connectwise", "psa.time"),
    ("autotask", "psa.note"),
    ("autotask", "psa.time"),
]


@pytest.mark.parametrize(("system", "kind"), LOOKED_UP)
async def test_a_write_whose_answer_was_lost_is_in_the_psa_once(
    system: str, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_type, connector_type = VENDORS[system]
    fake = fake_type()
    async with fake, aiohttp.ClientSession() as session:
        connector = connector_type(session, settings(fake))
        made = await made_ticket(fake, connector)
        row = write_row(made, kind)
        recorded = await answer_lost(fake, connector, kind, row, monkeypatch)
        assert len(in_psa(fake, kind)) == 1  # it got there; the bot does not know
        result = await perform(connector, kind=kind, payload=recorded, attempts=2)
        assert len(in_psa(fake, kind)) == 1, in_psa(fake, kind)
        assert result["found_in_psa"] is True
        # The write carries its reference at its end, where it was found.
        if kind == "psa.note":
            assert fake.only().notes[0].endswith(f"[{MARKER}]")
            assert fake.only().notes[0].startswith("Escalated to the networking queue")
        else:
            assert fake.only().time_minutes == [30]

        # A write that failed in doubt but did not get there (a 502 on the POST) is looked
        # up, not found, and sent: once.
        second = write_row(made, kind, marker="helpdesk-bot:HD-7:99887766")
        fake.fail(write_path(fake, kind, made["psa_id"]), 502)
        error = await failed(connector, kind, second, 1)
        assert (error.definite, error.clean) == (False, False)
        assert len(in_psa(fake, kind)) == 1
        result = await perform(connector, kind=kind, payload=as_recorded(second, error), attempts=2)
        assert "found_in_psa" not in result
        assert len(in_psa(fake, kind)) == 2

        # A write refused before it was made (503) is retried without a look-up.
        third = write_row(made, kind, marker="helpdesk-bot:HD-7:55443322")
        fake.fail(write_path(fake, kind, made["psa_id"]), 503)
        error = await failed(connector, kind, third, 1)
        assert (error.definite, error.clean) == (True, True)
        asked = len(fake.recorded)
        await perform(connector, kind=kind, payload=as_recorded(third, error), attempts=2)
        assert len(in_psa(fake, kind)) == 3
        assert len(fake.recorded) - asked == 1  # only the write itself


async def test_freshservice_resolution_note_whose_answer_was_lost_is_posted_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Freshservice lists a ticket's notes (GET /api/v2/tickets/<id>/conversations): the
    # resolution note in doubt is found there, and only the status change is left.
    fake = FakeFreshservice()
    async with fake, aiohttp.ClientSession() as session:
        connector = FreshserviceConnector(session, settings(fake))
        made = await made_ticket(fake, connector)
        row = {**made, "text": "Fixed", "marker": MARKER}
        recorded = await answer_lost(fake, connector, "psa.close", row, monkeypatch)
        assert len(fake.only().notes) == 1 and not fake.only().closed
        await perform(connector, kind="psa.close", payload=recorded, attempts=2)
        assert fake.only().notes == [f"Fixed\n\n[{MARKER}]"]
        assert fake.only().closed


async def test_a_write_in_doubt_without_a_reference_is_not_sent_again() -> None:
    # A row queued before writes carried their reference: nothing to look it up by.
    fake = FakeServiceNow()
    async with fake, aiohttp.ClientSession() as session:
        connector = ServiceNowConnector(session, settings(fake))
        made = await made_ticket(fake, connector)
        row = write_row(made, "psa.time", marker="")
        asked = len(fake.recorded)
        error = await failed(connector, "psa.time", row, 2)
        assert error.in_doubt and "no reference" in str(error)
        assert len(fake.recorded) == asked and fake.only().time_minutes == []


async def test_connectwise_resolution_note_whose_answer_was_lost_is_posted_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeConnectWise()
    async with fake, aiohttp.ClientSession() as session:
        connector = ConnectWiseConnector(session, settings(fake))
        made = await made_ticket(fake, connector)
        row = {**made, "text": "Fixed", "marker": MARKER}
        handle, slow = fake.handle, [True]

        async def note_answer_lost(rec: Recorded, request: web.Request) -> web.StreamResponse:
            # The resolution note is taken, then its answer is lost; nothing after it runs.
            if rec.path.endswith("/notes") and rec.method == "POST" and slow:
                slow.clear()
                fake.hold_answers(1.0)
            return await handle(rec, request)

        fake.handle = note_answer_lost  # type: ignore[method-assign]
        import bot.psa.http as psa_http

        monkeypatch.setattr(psa_http, "TIMEOUT", aiohttp.ClientTimeout(total=0.5))
        error = await failed(connector, "psa.close", row, 1)
        fake.hold_answers(0)
        assert (error.definite, error.progress) == (False, {})
        assert not fake.only().closed
        await perform(connector, kind="psa.close", payload=as_recorded(row, error), attempts=2)
        resolutions = [n["text"] for n in fake.notes if n.get("resolutionFlag")]
        assert resolutions == [f"Fixed\n\n[{MARKER}]"]
        assert fake.only().closed


async def test_the_autotask_secret_does_not_follow_a_redirect_to_another_host() -> None:
    """`Secret` and `ApiIntegrationCode` are custom headers: aiohttp drops only Authorization
    and cookies on a redirect to another origin, so a PSA host that redirects (a moved zone,
    a parking or SSO page) would hand the Autotask secret to wherever it points."""
    async with FakeAutotask() as fake, FakeAutotask() as elsewhere, aiohttp.ClientSession() as s:
        connector = AutotaskConnector(s, settings(fake))
        fake.fail(f"{ZONE}v1.0/Companies/query", 302, headers={"Location": f"{elsewhere.url}/x"})
        payload = new_ticket("helpdesk-bot:HD-7:ab02", company="Acme")
        error = await failed(connector, "psa.create", payload, 1)
        assert "HTTP 302" in str(error) and "127.0.0.1" in str(error) and "psa.url" in str(error)
        assert (error.kind, error.definite) == ("unavailable", True)
        assert fake.calls(f"{ZONE}v1.0/Companies/query")[0].headers["Secret"] == SECRET
        assert [c.headers.get("Secret") for c in elsewhere.recorded] == []
        assert fake.records() == []


def test_servicenow_403s_from_its_rules_are_refusals_its_other_403s_are_not() -> None:
    from bot.psa.servicenow import refused_by_a_rule

    def answer(message: str, detail: str) -> dict[str, Any]:
        return {"error": {"message": message, "detail": detail}, "status": "failure"}

    rule = "Operation against file 'incident' was aborted by Business Rule 'Lock^a1b2'."
    assert refused_by_a_rule(403, answer("Operation Failed", rule))
    assert refused_by_a_rule(403, answer("Operation Failed", "Data Policy Exception: x"))
    # The user's rights (an ACL, a missing role) stay a matter of the credentials.
    assert not refused_by_a_rule(403, answer("User Not Authorized", "Failed ACL Validation"))
    assert not refused_by_a_rule(
        403, answer("Operation Failed", "ACL Exception Update Failed due to security constraints")
    )
    assert not refused_by_a_rule(401, answer("User Not Authenticated", "Data Policy Exception"))
    assert not refused_by_a_rule(403, "<html>Forbidden</html>")
