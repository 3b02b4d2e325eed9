"""A redelivered change is answered with the answer it gave, not with nothing.

Slack retries a command only when its first response did not count (no 200 within 3 s, a
reset, a 5xx): the person never saw that answer. Answering the retry with nothing left them
with nothing though the change was made, and `/ticket time HD-1 30m` typed again logged the
time twice. A Teams activity comes again when its turn was slow or its process died: its
answer is a message of its own, so it is given once: again only when the first was never
recorded as sent. The answer is kept with the delivery's claim (handlers.replay); it goes only
to the same person in the same conversation.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import delete, func, select, update

from handlers import dispatch, replay
from storage import inbound
from storage.models import InboundDelivery, Ticket, TimeEntry, utcnow
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, block_actions
from tests.harness import slack_button as button
from tests.http.conftest_teams import ANA_ID, PERSONAL, TECH_ID, TENANT, activity, message
from tests.http.conftest_teams import PEOPLE as TEAMS_PEOPLE
from tests.http.test_closure_slack import PEOPLE as SLACK_PEOPLE
from tests.http.test_closure_slack import new_ticket
from tests.http.test_teams_answer_once import open_ticket
from tests.http.test_teams_answer_once import start as start_teams

FORM = "application/x-www-form-urlencoded"
RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
LOGGED = "Logged 30m on HD-1 (total 30m)."
LEASE = 1.0


@pytest.fixture(autouse=True)
def short_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "ANSWER_LEASE", LEASE, raising=False)


def command(text: str, *, user: str = "UTECH", trigger: str = "trigger-time-1") -> str:
    form = {
        "token": "legacy", "team_id": "T0TEAM", "team_domain": "acme", "channel_id": "C0HELP",
        "channel_name": "helpdesk", "user_id": user, "user_name": user.lower(),
        "command": "/ticket", "text": text, "api_app_id": "A0APP",
        "response_url": "http://127.0.0.1:9/unused", "trigger_id": trigger,
    }  # fmt: skip
    return urlencode(form)


async def said(response: Any) -> str:
    body = await response.text()
    return str(json.loads(body).get("text") or "") if body else ""


async def time_entries(app: AppHarness) -> int:
    async with app.services.sessions() as session:
        return int((await session.execute(select(func.count()).select_from(TimeEntry))).scalar())


async def slack_app(make_app: Any, fake: FakeSlack) -> AppHarness:
    app: AppHarness = await make_app(slack=fake, people=SLACK_PEOPLE)
    assert await new_ticket(app, fake) == "HD-1"
    return app


# -- Slack: the retry's response is the answer -----------------------------------------------


async def test_a_slack_retry_of_a_change_is_answered_with_its_answer(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app = await slack_app(make_app, slack_api)
    body = command("time HD-1 30m swapped toner")
    first = await app.slack(body, content_type=FORM)
    assert first.status == 200 and await said(first) == LOGGED
    again = await app.slack(body, content_type=FORM, headers=RETRY)
    assert again.status == 200
    assert await said(again) == LOGGED  # the person sees what was done, not nothing
    assert await time_entries(app) == 1
    # A later retry (Slack's third attempt) is answered the same, and changes nothing.
    third = await app.slack(body, content_type=FORM, headers={**RETRY, "X-Slack-Retry-Num": "2"})
    assert await said(third) == LOGGED and await time_entries(app) == 1


async def test_a_retry_from_another_person_or_channel_is_answered_nothing(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """The delivery id of a command is its trigger id: a request that reuses it from someone
    else (or elsewhere) gets no answer of the first one's, and changes nothing."""
    app = await slack_app(make_app, slack_api)
    assert await said(await app.slack(command("time HD-1 30m swapped toner"), content_type=FORM))
    forged = command("time HD-1 30m swapped toner", user="USAM")
    answered = await app.slack(forged, content_type=FORM, headers=RETRY)
    assert answered.status == 200 and await answered.text() == ""
    elsewhere = command("time HD-1 30m swapped toner").replace("C0HELP", "C0OTHER")
    answered = await app.slack(elsewhere, content_type=FORM, headers=RETRY)
    assert answered.status == 200 and await answered.text() == ""
    assert await time_entries(app) == 1


async def test_a_retry_of_a_change_whose_answer_was_never_kept_is_told_it_was_done(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """The process died between the change's commit and keeping its answer: what its claim
    holds is who asked and where only."""
    app = await slack_app(make_app, slack_api)
    body = command("time HD-1 30m swapped toner")
    assert await said(await app.slack(body, content_type=FORM)) == LOGGED
    async with app.services.sessions() as session, session.begin():
        key = inbound.key_for("slack:command:trigger-time-1")
        row = await session.get(InboundDelivery, key)
        assert row is not None and row.answer is not None and LOGGED in row.answer
        stored = json.loads(row.answer)
        row.answer = json.dumps({**stored, "reply": None})
    again = await app.slack(body, content_type=FORM, headers=RETRY)
    assert await said(again) == replay.LOST
    assert await time_entries(app) == 1


async def test_a_retry_while_the_first_is_keeping_its_answer_waits_for_it(
    make_app: Any, slack_api: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slack retries at 3 s even while the first request is still running: the retry that
    finds the change committed and its answer about to be kept is given that answer."""
    app = await slack_app(make_app, slack_api)
    record = inbound.record

    async def slow_record(*args: Any) -> bool:
        await asyncio.sleep(0.35)  # (within dispatch.CLAIM_WAIT)
        return await record(*args)

    monkeypatch.setattr(inbound, "record", slow_record)
    body = command("time HD-1 30m swapped toner")
    first = asyncio.ensure_future(app.slack(body, content_type=FORM))
    await asyncio.sleep(0.2)
    again = await app.slack(body, content_type=FORM, headers=RETRY)
    assert await said(again) == LOGGED and await said(await first) == LOGGED
    assert await time_entries(app) == 1


async def test_a_retry_of_a_command_that_opened_a_form_says_how_to_get_it(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """`/ticket close HD-1` records the technician's first response and opens the closure
    form with the request's trigger id, single-use and good for 3 s: its retry cannot open it
    (the first may have), and says how to get it."""
    app = await slack_app(make_app, slack_api)
    body = command("close HD-1", trigger="trigger-close-1")
    opened = len(slack_api.views_opened())
    first = await app.slack(body, content_type=FORM)
    assert first.status == 200 and await first.text() == ""
    await slack_api.wait_for_method("views.open", count=opened + 1)
    again = await app.slack(body, content_type=FORM, headers=RETRY)
    assert await said(again) == replay.FORM_AGAIN
    await asyncio.sleep(0.2)
    assert len(slack_api.views_opened()) == opened + 1


async def test_a_slack_buttons_answer_is_given_again_only_when_it_never_went_out(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """A button's answer goes through its response_url (the ack is empty), whatever became of
    the ack: a retry after it went out adds nothing; a retry after the process died before it
    went out gives it. **Close** records the first response and opens the closure form with
    the press's single-use trigger: the retry says how to get the form."""
    app = await slack_app(make_app, slack_api)
    card = [p for p in slack_api.posts() if p.get("channel") == "C0HELP"][-1]
    url = slack_api.response_url_for("close-1")
    payload = block_actions(button(card, "Close"), user="UTECH", channel="C0HELP", n=1,
                            response_url=url)  # fmt: skip
    body = urlencode({"payload": json.dumps(payload)})
    opened = len(slack_api.views_opened())
    assert (await app.slack(body, content_type=FORM)).status == 200
    await slack_api.wait_for_method("views.open", count=opened + 1)
    assert (await app.slack(body, content_type=FORM, headers=RETRY)).status == 200
    await asyncio.sleep(0.3)
    assert slack_api.responses("close-1") == [] and len(slack_api.views_opened()) == opened + 1
    [delivery] = [k for k in await keys(app) if k.startswith("slack:action:UTECH:")]
    await died(app, delivery, kept=True)
    assert (await app.slack(body, content_type=FORM, headers=RETRY)).status == 200
    assert (await app.slack(body, content_type=FORM, headers=RETRY)).status == 200
    await asyncio.sleep(0.3)
    [told] = slack_api.responses("close-1")
    assert told["text"] == replay.FORM_AGAIN and len(slack_api.views_opened()) == opened + 1


# -- Teams: the answer is a message of its own, given once ------------------------------------


async def teams_app(make_app: Any, connector: FakeConnector) -> AppHarness:
    app = await start_teams(make_app, connector)
    await open_ticket(app, connector)
    return app


def texts(connector: FakeConnector, since: int) -> list[str]:
    return [str(a.get("text") or "") for a in connector.activities(PERSONAL)[since:]]


async def test_a_redelivered_change_already_answered_is_not_answered_again(
    make_app: Any, connector: FakeConnector
) -> None:
    app = await teams_app(make_app, connector)
    body = message(connector.service_url, "ticket time HD-1 30m swapped toner")
    before = len(connector.activities(PERSONAL))
    assert (await app.teams(body)).status == 201
    assert (await app.teams(body)).status == 201
    assert texts(connector, before) == [LOGGED]
    assert await time_entries(app) == 1


async def test_a_redelivery_while_the_changes_answer_is_on_its_way_answers_nothing(
    make_app: Any, connector: FakeConnector
) -> None:
    """The turn was slow (its answer slower than the answer's lease): Bot Framework sends the
    activity again meanwhile. The first delivery renews its claim: the repeat waits, then
    answers nothing."""
    app = await teams_app(make_app, connector)
    before = len(connector.activities(PERSONAL))
    connector.set_delay("/v3/conversations/*", LEASE * 2.5)
    body = message(connector.service_url, "ticket time HD-1 30m swapped toner")
    first = asyncio.ensure_future(app.teams(body))
    await asyncio.sleep(0.3)
    second = await app.teams(body)
    assert second.status == 201 and (await first).status == 201
    connector.set_delay("/v3/conversations/*", 0)
    assert texts(connector, before) == [LOGGED]
    assert await time_entries(app) == 1


async def died(app: AppHarness, delivery: str, *, kept: bool) -> None:
    """What a process leaves that died after the change committed and before its answer went
    out (`kept`: after it kept the answer), its lease long run out."""
    async with app.services.sessions() as session, session.begin():
        key = inbound.key_for(delivery)
        await session.execute(delete(InboundDelivery).where(InboundDelivery.key.like("answered:%")))
        row = await session.get(InboundDelivery, key)
        assert row is not None and row.answer is not None
        if not kept:
            row.answer = json.dumps({**json.loads(row.answer), "reply": None})
        old = utcnow() - timedelta(seconds=30)
        await session.execute(
            update(InboundDelivery).where(InboundDelivery.key == key).values(at=old)
        )


@pytest.mark.parametrize("kept", [True, False])
async def test_a_redelivered_change_whose_process_died_before_answering_is_answered_once(
    make_app: Any, connector: FakeConnector, kept: bool
) -> None:
    app = await teams_app(make_app, connector)
    body = message(connector.service_url, "ticket time HD-1 30m swapped toner")
    before = len(connector.activities(PERSONAL))
    assert (await app.teams(body)).status == 201
    [delivery] = [
        k
        for k in await keys(app)
        if k.startswith(f"teams:{PERSONAL}:{body['id']}:")  # the change's own claim
    ]
    await died(app, delivery, kept=kept)
    assert (await app.teams(body)).status == 201
    assert (await app.teams(body)).status == 201  # answered once more, not twice
    logged, again = texts(connector, before)
    assert logged == LOGGED
    assert again == LOGGED if kept else "its answer was lost" in again
    assert await time_entries(app) == 1


@pytest.mark.parametrize("command_text", ["ticket close HD-1", "ticket escalate HD-1"])
async def test_a_redelivered_form_whose_process_died_before_answering_says_to_open_it_again(
    make_app: Any, connector: FakeConnector, command_text: str
) -> None:
    """`ticket close HD-1` records the first response and answers with the closure form (the
    escalation form alike). Its process died between that commit and keeping the answer: the
    redelivery said "This was done ... look it up with `mine` or `show` rather than doing it
    again" (replay.LOST), which reads as if the ticket had been closed, and no form came. The
    change notes with its claim that its answer is a form, and the redelivery says so."""
    config = {"teams": {"service_url": connector.service_url, "tenant_id": TENANT},
              "queues": {"networking": {"teams": "19:networking@thread.tacv2"}}}  # fmt: skip
    app: AppHarness = await make_app(config=config, people=TEAMS_PEOPLE)
    await open_ticket(app, connector)
    body = message(connector.service_url, command_text)
    before = len(connector.activities(PERSONAL))
    assert (await app.teams(body)).status == 201
    [delivery] = [k for k in await keys(app) if k.startswith(f"teams:{PERSONAL}:{body['id']}:")]
    await died(app, delivery, kept=False)
    assert (await app.teams(body)).status == 201
    assert (await app.teams(body)).status == 201  # answered once more, not twice
    form, again = connector.activities(PERSONAL)[before:]
    assert form.get("attachments"), form  # the form itself, first
    assert again.get("text") == replay.FORM_LOST, again
    async with app.services.sessions() as session:
        ticket = (await session.execute(select(Ticket))).scalars().one()
    assert ticket.status == "open"


async def test_a_slack_retry_of_a_form_whose_answer_was_never_kept_says_to_open_it_again(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app = await slack_app(make_app, slack_api)
    body = command("close HD-1", trigger="trigger-close-2")
    assert (await app.slack(body, content_type=FORM)).status == 200
    async with app.services.sessions() as session, session.begin():
        row = await session.get(InboundDelivery, inbound.key_for("slack:command:trigger-close-2"))
        assert row is not None and row.answer is not None
        row.answer = json.dumps({**json.loads(row.answer), "reply": None})
    again = await app.slack(body, content_type=FORM, headers=RETRY)
    assert await said(again) == replay.FORM_LOST


async def test_a_redelivered_change_from_another_sender_is_answered_nothing(
    make_app: Any, connector: FakeConnector
) -> None:
    """A forged repeat: the same activity id and text in the same conversation, from someone
    else. The answer the first one kept (and never sent) is not theirs."""
    app = await teams_app(make_app, connector)
    body = message(connector.service_url, "ticket time HD-1 30m swapped toner")
    before = len(connector.activities(PERSONAL))
    assert (await app.teams(body)).status == 201
    [delivery] = [k for k in await keys(app) if k.startswith(f"teams:{PERSONAL}:{body['id']}:")]
    await died(app, delivery, kept=True)
    forged = {**body, "from": {**body["from"], "id": ANA_ID, "name": "Ana Lopez"}}
    assert forged["from"]["id"] != TECH_ID
    assert (await app.teams(forged)).status == 201
    assert texts(connector, before) == [LOGGED]
    assert await time_entries(app) == 1


async def keys(app: AppHarness) -> list[str]:
    async with app.services.sessions() as session:
        return list((await session.execute(select(InboundDelivery.key))).scalars())


async def test_a_redelivered_report_whose_process_died_before_answering_has_its_chart(
    make_app: Any, connector: FakeConnector
) -> None:
    """The Teams report's answer carries its chart (an `image/png` attachment), drawn in the
    turn after the claim committed: a process that died then (the drawing takes a second)
    left a kept answer, and its redelivery is answered with the chart drawn again from the
    kept figures, not with the card alone."""
    app = await teams_app(make_app, connector)
    body = message(connector.service_url, "ticket report")
    before = len(connector.activities(PERSONAL))
    assert (await app.teams(body)).status == 201
    [delivery] = [k for k in await keys(app) if k.startswith(f"teams:{PERSONAL}:{body['id']}:")]
    await died(app, delivery, kept=True)
    assert (await app.teams(body)).status == 201
    first, again = connector.activities(PERSONAL)[before:]
    kinds = [[a["contentType"] for a in x.get("attachments") or []] for x in (first, again)]
    assert kinds[0][1:] == ["image/png"], kinds
    assert kinds[1] == kinds[0], kinds
    # The same figures, so the same picture.
    assert again["attachments"][1]["contentUrl"] == first["attachments"][1]["contentUrl"]


# -- a refusal that is audited: its claim commits with the audit event -------------------------


GATED = "HD-1 needs the requester's identity confirmed first"


@pytest.mark.parametrize(
    ("text", "user", "refusal"),
    [
        ("close HD-1", "UTECH", GATED),
        ("escalate HD-1", "UTECH", GATED),
        ("verify HD-1", "USAM", "Only technicians can start an identity check."),
    ],
)
async def test_a_slack_retry_of_an_audited_refusal_is_refused_again_not_told_it_was_done(
    make_app: Any, slack_api: FakeSlack, text: str, user: str, refusal: str
) -> None:
    """A refusal the audit trail records (the identity gate, a `verify` from someone who is
    not a technician) commits its event with the delivery's claim. Its answer was not kept, so
    the retry said replay.LOST, "This was done: ... was saved": the technician read that the
    ticket was closed (escalated) when nothing was done. The retry gives the refusal again."""
    app = await slack_app(make_app, slack_api)
    assert "Ana Lopez" in await said(await app.slack(command("verify HD-1"), content_type=FORM))
    body = command(text, user=user, trigger="trigger-refused-1")
    opened = len(slack_api.views_opened())
    first = await said(await app.slack(body, content_type=FORM))
    assert refusal in first
    again = await app.slack(body, content_type=FORM, headers=RETRY)
    assert again.status == 200 and await said(again) == first
    assert len(slack_api.views_opened()) == opened
    async with app.services.sessions() as session:
        ticket = (await session.execute(select(Ticket))).scalars().one()
    assert ticket.status == "open"


async def test_a_redelivered_audited_refusal_is_not_answered_a_second_time(
    make_app: Any, connector: FakeConnector
) -> None:
    """The same on Teams: the refusal went out, and the redelivered activity added a second
    message, "This was done: ... was saved", though nothing was."""
    app = await teams_app(make_app, connector)
    verify = message(connector.service_url, "ticket verify HD-1")
    assert (await app.teams(verify)).status == 201
    body = message(connector.service_url, "ticket close HD-1")
    before = len(connector.activities(PERSONAL))
    assert (await app.teams(body)).status == 201
    assert (await app.teams(body)).status == 201
    [refused] = texts(connector, before)
    assert GATED in refused


async def test_a_redelivered_invoke_refused_by_the_identity_gate_is_refused_again(
    make_app: Any, connector: FakeConnector
) -> None:
    """The card's **Close** as Action.Execute: its answer is the invoke's response, and the
    invoke sent again (the first response lost) said "This was done" (replay.LOST)."""
    app = await teams_app(make_app, connector)
    assert (await app.teams(message(connector.service_url, "ticket verify HD-1"))).status == 201
    data = {"action": "ticket.close", "ticket": "HD-1"}
    press = activity(
        connector.service_url,
        type="invoke",
        name="adaptiveCard/action",
        value={"action": {"type": "Action.Execute", "verb": "ticket.close", "data": data}},
    )
    first = await app.teams(press)
    again = await app.teams(press)
    assert first.status == again.status == 200
    told = [(await r.json())["value"] for r in (first, again)]
    assert GATED in told[0] and told[1] == told[0]
