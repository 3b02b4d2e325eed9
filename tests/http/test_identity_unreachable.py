"""A manager's request that cannot be delivered for good leaves the technician the call-back.

Red-team finding: when the DM to the manager failed for good (Slack `user_not_found`, a Teams
conversation refused), the technician was told the manager could not be reached and to call the
requester back on the number on file, but recording that call-back was refused ("the manager is
being asked") and `close` stayed refused: a gated ticket could never be confirmed nor closed.
Now the given-up request becomes a call-back check (the number from the directory, sent only
to the technician who asked; the same rules as with no manager on file); a request still being
retried, unanswered, or expired does not open it; `verify` asks the manager again; the manager's
late answer to the given-up request does not count.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import yaml
from sqlalchemy import select

from cards.model import ActionId
from storage.models import IdentityCheck
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, block_actions, wait_until
from tests.http.conftest_teams import (
    PERSONAL,
    TECH_ID,
    TENANT,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)
from tests.http.test_identity_callback import (
    CALLED_BACK,
    CONFIG,
    PEOPLE,
    callback_notice,
    events,
    press,
    refusals,
    say,
    thread_said,
    ticket,
)
from tests.http.test_identity_gate import open_as
from tests.http.test_identity_slack import click, manager_dm, posts_to

ANA_PHONE = "+1 555 0100"
_n = itertools.count(1)


def refuse_dms_to(fake: FakeSlack, user: str, error: str | None) -> None:
    """conversations.open with `user` answers `{ok: false, error}` (None: opens as usual)."""

    def answer(params: dict[str, Any]) -> dict[str, Any]:
        users = str(params.get("users", ""))
        if error is not None and users == user:
            return {"ok": False, "error": error}
        return {"ok": True, "channel": {"id": "D" + users}}

    fake.set_response("conversations.open", answer)


async def start(make_app: Any, fake: FakeSlack, **identity: Any) -> AppHarness:
    config = {**CONFIG, "identity": identity} if identity else CONFIG
    app: AppHarness = await make_app(slack=fake, config=config, people=PEOPLE)
    return app


async def checks(app: AppHarness) -> list[IdentityCheck]:
    async with app.services.sessions() as session:
        query = select(IdentityCheck).order_by(IdentityCheck.id)
        return list((await session.execute(query)).scalars().all())


async def answer_as_manager(app: AppHarness, fake: FakeSlack, nonce: str, title: str) -> str:
    """The manager pressing Approve/Deny on the request with `nonce` (whatever reached them)."""
    action = ActionId.IDENTITY_APPROVE if title == "Approve" else ActionId.IDENTITY_DENY
    element = {
        "action_id": action.value,
        "value": json.dumps({"check": nonce}),
        "text": {"type": "plain_text", "text": title},
    }
    n = next(_n)
    payload = block_actions(
        element, user="U0BO", channel="DU0BO", n=n, response_url=fake.response_url_for(f"m{n}")
    )
    assert (await app.interactive(payload)).status == 200
    await fake.wait_for(f"/response/m{n}")
    return json.dumps(fake.responses(f"m{n}")[-1])


async def given_up(app: AppHarness) -> None:
    async def opened() -> bool:
        return any(
            e.data.get("reason") == "manager unreachable"
            for e in await events(app, "identity.no_manager")
        )

    await wait_until(opened, what="the call-back opened")


async def test_a_manager_unreachable_for_good_leaves_the_call_back_and_the_ticket_can_close(
    make_app, slack_api: FakeSlack
):
    # Ana asks for a password reset: the check starts on its own, but Slack answers
    # user_not_found for her manager Bo. Tom gets Ana's number on file privately, with the
    # button; the thread is told where it went, not the number. His call-back confirms the
    # ticket, which can then close. Bo's late Approve on the given-up request does not count.
    app = await start(make_app, slack_api)
    refuse_dms_to(slack_api, "U0BO", "user_not_found")
    await open_as(app, slack_api, opener="UTECH", requester="U0ANA", category="password-reset")
    await given_up(app)
    [check] = await checks(app)
    assert (check.state, check.callback_phone) == ("unreachable", ANA_PHONE)
    assert (await ticket(app)).identity_state == "required"
    [opened] = [
        e
        for e in await events(app, "identity.no_manager")
        if e.data.get("reason") == "manager unreachable"
    ]
    assert opened.data["check"] == check.id and opened.data["manager"] == "bo@example.com"
    assert "user_not_found" in opened.data["error"]
    assert opened.data["number_sent_to"] == "Tom Tech (tom@example.com)"

    await wait_until(
        lambda: any(CALLED_BACK in json.dumps(p) for p in posts_to(slack_api, "DUTECH"))
    )
    notice = callback_notice(slack_api)
    assert ANA_PHONE in json.dumps(notice["blocks"])
    assert "never a number the caller gives you" in json.dumps(notice["blocks"])
    sent = "The number on file in the directory was sent to Tom Tech (tom@example.com) privately"
    await wait_until(lambda: sent in thread_said(slack_api), what="the thread told")
    told = thread_said(slack_api)
    assert "cannot be delivered on Slack (slack: user_not_found) and was given up" in told
    assert "`/ticket verify HD-1 called-back`" in told
    assert ANA_PHONE not in told
    # Only Tom was sent the number: nobody else was DMed it.
    assert all(
        ANA_PHONE not in json.dumps(p) for p in slack_api.posts() if p["channel"] != "DUTECH"
    )

    # Bo's answer to the given-up request (had it reached him after all) does not count.
    late = await answer_as_manager(app, slack_api, check.nonce, "Approve")
    assert "could not be delivered and was given up" in late
    assert (await ticket(app)).identity_state == "required"
    [refused] = await events(app, "identity.refused")
    assert refused.data["reason"] == "undeliverable"
    assert "identity confirmed first" in await say(app, "close HD-1")

    # The same rules as with no manager on file: Ana is no technician.
    assert "Only technicians" in await press(app, slack_api, notice, "U0ANA")
    answer = await press(app, slack_api, notice, "UTECH")
    assert "Identity confirmed for HD-1: confirmed by call-back to the number on file" in answer
    assert ANA_PHONE in answer
    assert (await ticket(app)).identity_state == "confirmed"
    [confirmed] = await events(app, "identity.callback_confirmed")
    assert confirmed.data == {
        "check": check.id,
        "phone": ANA_PHONE,
        "technician": "tom@example.com",
    }
    assert await refusals(app) == [("U0ANA", "not a technician")]
    opened_views = len(slack_api.views_opened())
    await app.slash("close HD-1")
    closure = await slack_api.wait_for_method("views.open", count=opened_views + 1)
    assert "Resolution note" in json.dumps(closure[-1]["view"])


async def test_the_command_form_and_verify_asks_the_manager_again_once_the_directory_is_fixed(
    make_app, slack_api: FakeSlack
):
    app = await start(make_app, slack_api)
    refuse_dms_to(slack_api, "U0BO", "user_not_found")
    await open_as(app, slack_api, opener="UTECH", requester="U0ANA", category="printer")
    await say(app, "verify HD-1")
    await given_up(app)
    # `show` gives the number to the one who asks (where it is when the DM did not arrive).
    assert f"manager unreachable: call back {ANA_PHONE}" in await say(app, "show HD-1")

    # The directory is fixed: Bo's Slack account is another one. A call-back is no longer the
    # way: Tom is told to ask Bo, and `verify` does.
    people = yaml.safe_load((app.tmp / "people.yaml").read_text())
    for person in people:
        if person["email"] == "bo@example.com":
            person["slack_id"] = "U0BO2"
    (app.tmp / "people.yaml").write_text(yaml.safe_dump(people))
    await asyncio.sleep(1.2)  # the file is looked at again after a second
    refused = await say(app, "verify HD-1 called-back")
    assert "now lists a manager who can confirm" in refused
    await say(app, "verify HD-1")
    await wait_until(lambda: posts_to(slack_api, "DU0BO2"), what="the fresh request")
    fresh = posts_to(slack_api, "DU0BO2")[0]
    first, second = await checks(app)
    assert (first.state, second.state) == ("superseded", "pending")
    assert (await ticket(app)).identity_state == "pending"
    # The first call-back notice's button stops counting: Bo is being asked.
    stale = await press(app, slack_api, callback_notice(slack_api), "UTECH")
    assert "manager is being asked" in stale
    assert "confirmed the identity" in await click(app, slack_api, fresh, "Approve", "U0BO2")
    assert (await ticket(app)).identity_state == "confirmed"
    assert await refusals(app) == [("UTECH", "manager on file now"), ("UTECH", "pending")]
    assert not await events(app, "identity.callback_confirmed")


async def test_the_same_manager_still_unreachable_leaves_the_command_form(
    make_app, slack_api: FakeSlack
):
    # Asked by `verify` after intake: `verify HD-1 called-back` records the call-back on the
    # given-up request while the directory still lists Bo with the account that failed.
    app = await start(make_app, slack_api)
    refuse_dms_to(slack_api, "U0BO", "user_disabled")
    await open_as(app, slack_api, opener="UTECH", requester="U0ANA", category="printer")
    await say(app, "verify HD-1")

    async def reported() -> bool:
        return bool(await events(app, "identity.unreachable"))

    await wait_until(reported, what="the technician told")
    assert "identity confirmed first" in await say(app, "close HD-1")
    answer = await say(app, "verify HD-1 called-back")
    assert "confirmed by call-back to the number on file" in answer and ANA_PHONE in answer
    assert (await ticket(app)).identity_state == "confirmed"
    opened = len(slack_api.views_opened())
    await app.slash("close HD-1")
    closure = await slack_api.wait_for_method("views.open", count=opened + 1)
    assert "Resolution note" in json.dumps(closure[-1]["view"])


async def test_a_retried_unanswered_or_expired_request_does_not_open_the_call_back(
    make_app, slack_api: FakeSlack
):
    # While the request to Bo is still retried (not given up), the thread is told so, not to
    # call back; a call-back is refused and the ticket stays gated. Once it gets through, Bo's
    # answer is the second channel; an answer after approval_ttl expires the request, which
    # opens no call-back either.
    app = await start(make_app, slack_api, approval_ttl="2s")
    refuse_dms_to(slack_api, "U0BO", "internal_error")
    await open_as(app, slack_api, opener="UTECH", requester="U0ANA", category="password-reset")

    retrying = "has not reached the manager (bo@example.com) on Slack yet"
    await wait_until(
        lambda: retrying in thread_said(slack_api), timeout=20, what="told it keeps trying"
    )
    said = thread_said(slack_api)
    [unreachable] = await events(app, "identity.unreachable")
    assert unreachable.data["permanent"] is False
    assert "the bot keeps trying" in said and "call the requester back" not in said
    refused = await say(app, "verify HD-1 called-back")
    assert "manager is being asked" in refused
    assert "identity confirmed first" in await say(app, "close HD-1")
    [check] = await checks(app)
    assert check.state == "pending" and (await ticket(app)).identity_state == "pending"
    assert not any(CALLED_BACK in json.dumps(p) for p in slack_api.posts())
    assert not await events(app, "identity.no_manager")

    refuse_dms_to(slack_api, "U0BO", None)  # it gets through on a later attempt
    dm = await manager_dm(slack_api)
    assert "manager is being asked" in await say(app, "verify HD-1 called-back")  # unanswered
    await asyncio.sleep(2.5)
    assert "expired" in await click(app, slack_api, dm, "Approve", "U0BO")
    [check] = await checks(app)
    assert check.state == "expired" and (await ticket(app)).identity_state == "required"
    refused = await say(app, "verify HD-1 called-back")
    assert "has no call-back to confirm" in refused
    assert "identity confirmed first" in await say(app, "close HD-1")
    assert [r for _, r in await refusals(app)] == ["pending", "pending", "no call-back asked"]
    assert not await events(app, "identity.callback_confirmed")
    assert not any(CALLED_BACK in json.dumps(p) for p in slack_api.posts())


# -- Teams -----------------------------------------------------------------------------------


async def test_teams_manager_chat_refused_for_good_leaves_the_call_back(
    make_app, connector: FakeConnector
):
    # Ana's manager Bo has a Teams id, but the connector refuses the 1:1 chat with him for
    # good (403). Tom gets the number with the button in his chat and records the call-back.
    config: dict[str, Any] = {"teams": {"service_url": connector.service_url, "tenant_id": TENANT}}
    app: AppHarness = await make_app(config=config, people=PEOPLE)
    form_posted = len(connector.activities(PERSONAL))
    await app.teams(message(connector.service_url, "ticket new Locked out"))
    await wait_until(lambda: len(connector.activities(PERSONAL)) > form_posted)
    form = card_of(connector.activities(PERSONAL)[-1])
    value = {
        **submit_action(form)["fallback"]["data"],
        **form_values(requester="ana@example.com", category="password-reset", summary="Locked"),
    }
    connector.fail("/v3/conversations", 403)  # the chat with Bo
    posted = len(connector.activities(PERSONAL))
    assert (await app.teams(activity(connector.service_url, value=value))).status == 201
    await given_up(app)
    [check] = await checks(app)
    assert (check.state, check.manager_id) == ("unreachable", "29:1bo")

    def notices() -> list[dict[str, Any]]:
        return [
            card_of(a)  # validated against the Adaptive Cards schema
            for a in connector.activities(PERSONAL)[posted:]
            if a.get("attachments") and CALLED_BACK in json.dumps(a["attachments"])
        ]

    await wait_until(lambda: notices(), what="the call-back notice")
    card = notices()[0]
    assert ANA_PHONE in json.dumps(card) and "Microsoft Teams" in json.dumps(card)
    before = len(connector.activities(PERSONAL))
    await app.teams(message(connector.service_url, "ticket close HD-1"))
    await wait_until(lambda: len(connector.activities(PERSONAL)) > before)
    assert "identity confirmed first" in json.dumps(connector.activities(PERSONAL)[before:])

    pressed = next(a for a in card["actions"] if a["title"] == CALLED_BACK)
    invoke = activity(
        connector.service_url,
        type="invoke",
        name="adaptiveCard/action",
        user=TECH_ID,
        value={
            "action": {"type": "Action.Execute", "verb": pressed["verb"], "data": pressed["data"]},
            "trigger": "manual",
        },
    )
    response = await app.teams(invoke)
    assert response.status == 200
    assert "confirmed by call-back to the number on file by Tom Tech" in json.dumps(
        (await response.json())["value"]
    )
    assert (await ticket(app)).identity_state == "confirmed"
    before = len(connector.activities(PERSONAL))
    await app.teams(message(connector.service_url, "ticket close HD-1"))
    await wait_until(
        lambda: "Resolution note" in json.dumps(connector.activities(PERSONAL)[before:])
    )


async def test_a_manager_dm_failed_for_good_is_audited_once_as_unreachable(
    make_app, slack_api: FakeSlack
):
    # The request to Bo keeps failing (the thread is told the bot keeps trying: one
    # `identity.unreachable`, not permanent), then Slack says user_not_found: the give-up is
    # one more `identity.unreachable`, permanent, and only one, with the same facts.
    app = await start(make_app, slack_api)
    refuse_dms_to(slack_api, "U0BO", "internal_error")
    await open_as(app, slack_api, opener="UTECH", requester="U0ANA", category="password-reset")

    async def told_retrying() -> bool:
        return bool(await events(app, "identity.unreachable"))

    await wait_until(told_retrying, timeout=20, what="told it keeps trying")
    refuse_dms_to(slack_api, "U0BO", "user_not_found")
    await given_up(app)
    [check] = await checks(app)
    audited = [e.data for e in await events(app, "identity.unreachable")]
    assert [a["permanent"] for a in audited] == [False, True]
    assert all(a["check"] == check.id for a in audited)
    assert (
        "user_not_found" in audited[1]["error"] and audited[1]["attempts"] > audited[0]["attempts"]
    )
    [no_manager] = await events(app, "identity.no_manager")
    assert no_manager.data["reason"] == "manager unreachable"
