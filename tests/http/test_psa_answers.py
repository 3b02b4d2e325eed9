"""PSA answers the bot cannot read: wrong field types, bytes that are not text, huge bodies."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web

from storage import psa as psa_repo
from storage.models import utcnow
from storage.outbox import MAX_RETRY_AFTER
from tests.fakes.base import Recorded, stream_huge
from tests.fakes.psa_autotask import FakeAutotask
from tests.fakes.psa_connectwise import FakeConnectWise
from tests.fakes.psa_freshservice import FakeFreshservice
from tests.fakes.psa_servicenow import FakeServiceNow
from tests.fakes.slack_api import FakeSlack
from tests.harness import wait_until
from tests.http.psa_support import (
    GOOD_NOTE,
    all_synced,
    close,
    escalate,
    open_ticket,
    posts_to,
    psa_rows,
    seed,
    show,
    start_app,
    ticket,
)

INCIDENTS = "/api/now/table/incident"
STREAMED_MB = 96


async def _dead(app: Any) -> bool:
    return all(r.status == "dead" for r in await psa_rows(app))


def _told(slack: FakeSlack, words: str) -> list[dict[str, Any]]:
    return [p for p in posts_to(slack, "C0HELP") if words in json.dumps(p)]


async def test_freshservice_agent_with_an_id_of_the_wrong_type_is_left_out_not_retried_forever(
    make_app, slack_api: FakeSlack
):
    # The technician's agent comes back with an id that is no number (a proxy, a custom
    # integration in between, an API change). Asking again gets the same answer: the time
    # entry goes without it (logged as the API key's agent, as when agents may not be read),
    # show says why, and nothing is retried in a loop nor held behind it.
    fake = FakeFreshservice()
    seed(fake)
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(lambda: all_synced(app), what="the Freshservice ticket")
        fake.fail("/api/v2/agents", 200, times=100, body={"agents": [{"id": "agent-7"}]})
        await close(app, slack_api, "HD-1", spent="30m")

        await wait_until(lambda: fake.only().closed, timeout=15, what="the ticket resolved")
        assert GOOD_NOTE in fake.only().resolution
        assert fake.only().time_minutes == [30]
        await wait_until(lambda: all_synced(app), what="every write delivered")
        [entry] = [r for r in await psa_rows(app) if r.kind == "psa.time"]
        assert entry.attempts == 1
        assert len(fake.calls("/api/v2/agents")) == 1
        shown = await show(app)
        assert "Freshservice: the time entry was sent without the technician" in shown
        assert "agent-7" in shown
        assert not _told(slack_api, "refused")


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


async def test_connectwise_notes_with_bytes_that_are_not_utf8_are_read_not_refused(
    make_app, slack_api: FakeSlack
):
    # A note that came in through ConnectWise's e-mail connector holds a Windows-1252 byte
    # (0x92, a curly apostrophe) in an answer labelled UTF-8. The look-up of a note whose
    # answer was lost reads that list: the stray byte is one character it cannot show, not
    # a reason to refuse the note or to retry it for ever.
    fake = FakeConnectWise()
    seed(fake)
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(lambda: all_synced(app), what="the ConnectWise ticket")
        notes = f"/v2025_1/apis/3.0/service/tickets/{fake.only().id}/notes"
        fake.fail(notes, 504, times=1)  # the note's answer is lost (nothing made here)
        mail = b'[{"id": 9, "text": "Customer wrote: it\x92s still down"}]'
        utf8 = {"Content-Type": "application/json; charset=utf-8"}
        fake.fail(notes, 200, times=1, headers=utf8, body=mail)
        await escalate(app, slack_api, "HD-1")

        async def sent() -> bool:
            return [r.status for r in await psa_rows(app) if r.kind == "psa.note"] == ["delivered"]

        await wait_until(sent, timeout=20, what="the escalation note")
        assert sum("Escalated to the networking queue" in n for n in fake.only().notes) == 1
        assert [c.method for c in fake.calls(notes)] == ["POST", "GET", "POST"]
        assert not _told(slack_api, "refused")


async def test_servicenow_answer_that_never_ends_is_not_read_into_memory(
    make_app, slack_api: FakeSlack
):
    # Something in front of the instance streams a body without end (a proxy gone wrong, a
    # download at psa.url). The bot stops reading after 32 MB, takes it as an outage (the
    # create may have been made: it is looked up first) and makes the ticket once.
    fake = FakeServiceNow()
    seed(fake)
    sent: list[int] = []
    answer = fake.handle

    async def streaming(rec: Recorded, request: web.Request) -> web.StreamResponse:
        if rec.method != "POST" or rec.path != INCIDENTS or sent:
            return await answer(rec, request)
        sent.append(0)
        head = b'{"result": {"sys_id": "'
        response, sent[0] = await stream_huge(request, status=200, head=head, megabytes=STREAMED_MB)
        return response

    fake.handle = streaming  # type: ignore[method-assign]
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(lambda: all_synced(app), timeout=20, what="the ServiceNow ticket")
        assert len(fake.records()) == 1
        assert sent and sent[0] < 48 * 1024 * 1024, f"{sent[0] // 2**20} MB read"
        [row] = await psa_rows(app)
        assert row.attempts == 2
        assert fake.only().number in await show(app)


async def test_a_huge_error_answer_is_not_read_nor_parsed(make_app, slack_api: FakeSlack):
    # The create is refused (HTTP 400) with a body of many MB (a proxy's error page with a
    # dump, an instance echoing the request back). Only its message is wanted: before, the bot
    # read all of it (up to the 32 MB cap) and parsed it on the event loop, holding up every
    # request meanwhile. It stops reading an error's body at 256 KB; the status says enough.
    fake = FakeServiceNow()
    seed(fake)
    sent: list[int] = []
    answer = fake.handle

    async def refused(rec: Recorded, request: web.Request) -> web.StreamResponse:
        if rec.method != "POST" or rec.path != INCIDENTS:
            return await answer(rec, request)
        head, tail = b'{"error": {"message": "Invalid", "detail": "', b'"}}'
        response, n = await stream_huge(request, status=400, head=head, megabytes=24, tail=tail)
        sent.append(n)
        return response

    fake.handle = refused  # type: ignore[method-assign]
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(lambda: _dead(app), timeout=20, what="the refused create")
        assert sent and all(n < 8 * 1024 * 1024 for n in sent), [n // 2**20 for n in sent]
        [row] = await psa_rows(app)
        assert "HTTP 400" in row.last_error, row.last_error
        assert fake.records() == []


@pytest.mark.parametrize(
    ("number", "said"),
    [
        # A number longer than any PSA's (the ticket keeps 64 characters): PostgreSQL refused
        # to store it, so the ticket never learned its PSA id and every later write waited.
        ("INC" + "0" * 90, "INC000000"),
        # A number that is no text but an object: stored as its Python repr on the card.
        ({"display_value": "INC0010001", "value": "INC0010001"}, "dict"),
    ],
    ids=["too-long", "an-object"],
)
async def test_servicenow_create_answering_a_number_the_bot_cannot_keep_is_told_once(
    make_app, slack_api: FakeSlack, number: Any, said: str
):
    fake = FakeServiceNow()
    seed(fake)
    async with fake:
        answer = {"result": {"sys_id": "a" * 32, "number": number}}
        fake.fail(INCIDENTS, 201, times=100, body=answer)
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)

        words = "ServiceNow refused the ticket for HD-1 and it will not be retried"
        await wait_until(lambda: _told(slack_api, words), timeout=15, what="the technician told")
        assert said in json.dumps(_told(slack_api, words)[0])
        await wait_until(lambda: _dead(app), what="the create given up")
        [row] = await psa_rows(app)
        assert (row.status, row.attempts) == ("dead", 1)
        assert (await ticket(app)).psa_number is None
        assert "Enter it in ServiceNow by hand" in json.dumps(_told(slack_api, words)[0])


async def test_a_retry_after_of_years_pauses_the_psa_at_most_an_hour(
    make_app, slack_api: FakeSlack
):
    # A 429 whose Retry-After is years away (a proxy's or a PSA's bug) paused every call to
    # the PSA, in every worker and across restarts (the pause is kept in the database), for
    # those years. Like the outbox's own waits (storage.outbox.MAX_RETRY_AFTER), a pause is at
    # most an hour.
    fake = FakeServiceNow()
    seed(fake)
    async with fake:
        fake.fail(INCIDENTS, 429, headers={"Retry-After": str(10 * 365 * 86400)})
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)

        async def paused_until() -> Any:
            async with app.services.sessions() as session:
                state = await psa_repo.gate(session, "servicenow")
            return state.blocked_until if state is not None else None

        await wait_until(paused_until, what="the pause recorded")
        assert await paused_until() - utcnow() <= timedelta(seconds=MAX_RETRY_AFTER + 60)
        assert "ServiceNow: pending (1 not sent yet: ticket)" in await show(app)
