"""Attacks on the identity gate over Slack HTTP: who may set a check going, and what they see."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import yaml
from sqlalchemy import select

from storage.models import IdentityCheck, OutboxMessage, TicketEvent
from tests.fakes.slack_api import FakeSlack
from tests.harness import event_kinds, only_ticket, view_submission, wait_until
from tests.http.test_identity_slack import click, manager_dm, posts_to, start


async def open_as(
    app: Any,
    fake: FakeSlack,
    *,
    opener: str,
    requester: str,
    category: str,
    channel: str = "C0HELP",
) -> None:
    """`opener` opens the intake modal in `channel` and submits it for `requester`."""
    opened = len(fake.views_opened())
    await app.slash("new Reset my password", user=opener, channel=channel)
    await fake.wait_for_method("views.open", count=opened + 1)
    view = fake.views_opened()[-1]["view"]
    text = {"type": "plain_text_input", "value": "Locked out, please reset my password"}
    values = {
        "requester": {"type": "users_select", "selected_user": requester},
        "summary": text,
        "error_text": {"type": "plain_text_input", "value": ""},
        "doing": {"type": "plain_text_input", "value": ""},
        "reproducible": {"type": "static_select", "selected_option": {"value": "yes"}},
        "users_affected": {"type": "number_input", "value": "1"},
        "priority": {"type": "static_select", "selected_option": {"value": "P2"}},
        "category": {"type": "static_select", "selected_option": {"value": category}},
        "asset": {"type": "plain_text_input", "value": ""},
        "client": {"type": "plain_text_input", "value": ""},
    }
    posts = len(posts_to(fake, channel))
    payload = view_submission(view, values, user=opener, view_id=f"V-{opener}-{opened}")
    assert (await app.interactive(payload)).status == 200
    await wait_until(lambda: len(posts_to(fake, channel)) > posts)


async def test_a_vips_check_started_by_a_non_technicians_ticket_does_not_vouch_for_them(
    make_app, slack_api: FakeSlack
):
    # Cy is no technician: `verify` is refused to him. A ticket he opens for Vic (a VIP) starts
    # its check on its own all the same (SPEC), but the request to Vic's manager must not name
    # Cy as the technician handling it (the set-up for a vishing call): it says no technician
    # has it yet and who opened it.
    app = await start(make_app, slack_api)
    refused = json.dumps(await (await app.slash("verify HD-1", user="U0CY")).json())
    assert "Only technicians can start an identity check" in refused
    await open_as(app, slack_api, opener="U0CY", requester="U0VIC", category="printer")
    dm = await manager_dm(slack_api)
    assert (await only_ticket(app)).identity_state == "pending"
    rendered = json.dumps(dm["blocks"])
    assert "Vic VIP" in rendered
    assert "*Technician:* none yet (opened by <@U0CY> (cy@example.com), not a technician)" in (
        rendered
    )
    # Still refused to Cy; a technician's `verify` asks Bo afresh, naming Tom, who asked.
    refused = json.dumps(await (await app.slash("verify HD-1", user="U0CY")).json())
    assert "Only technicians can start an identity check" in refused
    await app.slash("verify HD-1", user="UTECH")
    await wait_until(lambda: len(posts_to(slack_api, "DU0BO")) == 2, timeout=20)
    fresh = posts_to(slack_api, "DU0BO")[-1]
    rendered = json.dumps(fresh["blocks"])
    assert "*Technician:* <@UTECH> (tom@example.com)" in rendered
    assert "U0CY" not in rendered and "cy@example.com" not in rendered
    assert "confirmed" in await click(app, slack_api, fresh, "Approve", "U0BO")
    assert (await only_ticket(app)).identity_state == "confirmed"


async def test_a_non_technician_is_not_told_the_number_on_file(make_app, slack_api: FakeSlack):
    # Cy has no manager: the check tells "the technician" to call him back on his number on
    # file. Ana (no technician) opening a password reset for Cy must not learn it: the check
    # starts, finds no manager, and stays required; a technician's `verify` tells them.
    app = await start(make_app, slack_api)
    await open_as(app, slack_api, opener="U0ANA", requester="U0CY", category="password-reset")

    async def no_manager_recorded() -> bool:
        return "identity.no_manager" in await event_kinds(app)

    for _ in range(100):
        if await no_manager_recorded():
            break
        await asyncio.sleep(0.05)
    assert await no_manager_recorded()
    ticket = await only_ticket(app)
    assert ticket.identity_state == "required"
    # Nothing queued to go out (the outbox) nor posted holds the number.
    async with app.services.sessions() as session:
        queued = (await session.execute(select(OutboxMessage))).scalars().all()
    assert queued and "+1 555 0199" not in json.dumps([m.payload for m in queued])
    assert "+1 555 0199" not in json.dumps(slack_api.posts())
    answer = json.dumps(await (await app.slash("verify HD-1", user="UTECH")).json())
    assert "+1 555 0199" in answer


async def gate_refusals(app: Any) -> list[tuple[str, str, str, str]]:
    """(who, where, action, identity state) of each audited gate refusal, oldest first."""
    async with app.services.sessions() as session:
        query = (
            select(TicketEvent)
            .where(TicketEvent.kind == "identity.gate_refused")
            .order_by(TicketEvent.id)
        )
        events = (await session.execute(query)).scalars().all()
    return [(e.actor_id, e.channel, e.data["action"], e.data["identity"]) for e in events]


async def test_work_refused_by_the_gate_is_in_the_audit_trail(make_app, slack_api: FakeSlack):
    # A technician who tries to close, escalate or confirm a ticket whose requester is not
    # confirmed (or whom the manager denied: a possible impersonation) is refused; each attempt
    # is an identity decision and is audited, so security can see who pushed on the gate.
    app = await start(make_app, slack_api)
    await open_as(app, slack_api, opener="UTECH", requester="U0ANA", category="password-reset")
    dm = await manager_dm(slack_api)
    for command in ("close HD-1", "escalate HD-1", "confirm HD-1"):
        refused = json.dumps(await (await app.slash(command)).json())
        assert "needs the requester's identity confirmed first" in refused, refused
    assert await gate_refusals(app) == [
        ("UTECH", "C0HELP", "close", "pending"),
        ("UTECH", "C0HELP", "escalate", "pending"),
        ("UTECH", "C0HELP", "confirm", "pending"),
    ]
    assert "stopped" in await click(app, slack_api, dm, "Deny", "U0BO")
    for command in ("close HD-1", "verify HD-1"):
        refused = json.dumps(await (await app.slash(command)).json())
        assert "possible impersonation" in refused, refused
    assert (await gate_refusals(app))[3:] == [
        ("UTECH", "C0HELP", "close", "denied"),
        ("UTECH", "C0HELP", "verify", "denied"),
    ]


async def test_an_account_no_longer_the_managers_cannot_answer(make_app, slack_api: FakeSlack):
    # Bo's entry named the Slack account U0BO when the request went out; the directory file
    # is then corrected (U0BO was not, or is no longer, Bo's: a stale or mistyped id, an
    # account handed on) and reloaded while the request is pending. Whoever holds U0BO is
    # not Bo, so their Approve is refused and audited; Bo's own account gets a fresh request.
    app = await start(make_app, slack_api)
    await open_as(app, slack_api, opener="UTECH", requester="U0ANA", category="password-reset")
    dm = await manager_dm(slack_api)
    people = yaml.safe_load((app.tmp / "people.yaml").read_text())
    for person in people:
        if person["email"] == "bo@example.com":
            person["slack_id"] = "U0BO2"
    (app.tmp / "people.yaml").write_text(yaml.safe_dump(people))
    await asyncio.sleep(1.2)  # the file is looked at again after a second
    refused = await click(app, slack_api, dm, "Approve", "U0BO")
    assert "confirmed the identity" not in refused
    assert (await only_ticket(app)).identity_state == "pending"
    async with app.services.sessions() as session:
        query = select(TicketEvent).where(TicketEvent.kind == "identity.refused")
        [event] = (await session.execute(query)).scalars().all()
    assert (event.actor_id, event.data["reason"]) == ("U0BO", "not the manager's account now")
    await wait_until(lambda: "no longer Bo Boss" in json.dumps(posts_to(slack_api, "C0HELP")))


async def test_the_number_on_file_goes_to_the_technician_who_asked_not_the_openers_chat(
    make_app, slack_api: FakeSlack
):
    # Ana (no technician) opens a password reset for Cy (no manager) in her own chat with the
    # bot: the ticket's thread is that chat. When Tom runs `verify`, Cy's number on file is
    # his to call, told to him; posting it in the ticket's thread would hand it to Ana.
    app = await start(make_app, slack_api)
    await open_as(
        app,
        slack_api,
        opener="U0ANA",
        requester="U0CY",
        category="password-reset",
        channel="D0ANA",
    )
    await wait_until(lambda: len(posts_to(slack_api, "D0ANA")) >= 1)  # the ticket card
    answer = json.dumps(await (await app.slash("verify HD-1", user="UTECH")).json())
    assert "+1 555 0199" in answer and "never a number the caller gives you" in answer
    async with app.services.sessions() as session:
        checks = (await session.execute(select(IdentityCheck))).scalars().all()
    # The intake's own check (no manager), superseded by Tom's (no manager either).
    assert [c.state for c in checks] == ["superseded", "no_manager"]
    # Told to Tom privately, in a direct message too (kept, unlike his ephemeral answer).
    await wait_until(lambda: "+1 555 0199" in json.dumps(posts_to(slack_api, "DUTECH")))
    await app.slash("help", user="UTECH")
    await asyncio.sleep(1.0)  # the outbox would have posted it by now
    others = [p for p in slack_api.posts() if p.get("channel") != "DUTECH"]
    assert "+1 555 0199" not in json.dumps(others)
