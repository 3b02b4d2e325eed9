"""Identity confirmation over Slack HTTP: verify -> manager DM -> Approve / Deny / refusals."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from sqlalchemy import select

from storage.models import IdentityCheck, TicketEvent
from tests.fakes.slack_api import FakeSlack
from tests.harness import (
    AppHarness,
    block_actions,
    event_kinds,
    only_ticket,
    view_submission,
    wait_until,
)
from tests.harness import slack_button as button

PEOPLE = [
    {
        "email": "ana@example.com",
        "name": "Ana Lopez",
        "slack_id": "U0ANA",
        "phone": "+1 555 0100",
        "manager": "bo@example.com",
    },
    {"email": "bo@example.com", "name": "Bo Boss", "slack_id": "U0BO"},
    {"email": "tom@example.com", "name": "Tom Tech", "slack_id": "UTECH", "technician": True},
    {"email": "cy@example.com", "name": "Cy Solo", "slack_id": "U0CY", "phone": "+1 555 0199"},
    {
        "email": "vic@example.com",
        "name": "Vic VIP",
        "slack_id": "U0VIC",
        "vip": True,
        "manager": "bo@example.com",
    },
]
CONFIG: dict[str, Any] = {"queues": {"security": {"slack": "C0SECURITY"}}}
_clicks = itertools.count(1)


async def start(make_app: Any, fake: FakeSlack, **identity: Any) -> AppHarness:
    config = {**CONFIG, "identity": identity} if identity else CONFIG
    app: AppHarness = await make_app(slack=fake, config=config, people=PEOPLE)
    return app


async def new_ticket(
    app: AppHarness, fake: FakeSlack, requester: str = "U0ANA", category: str = "printer"
) -> None:
    """Open the intake modal and submit it; waits for the ticket card in C0HELP."""
    opened = len(fake.views_opened())
    await app.slash("new Locked out")
    await fake.wait_for_method("views.open", count=opened + 1)
    view = fake.views_opened()[-1]["view"]
    selected = {"users_select": {"type": "users_select", "selected_user": requester}}
    text = {"type": "plain_text_input", "value": "Locked out of my laptop"}
    values = {
        "requester": selected["users_select"],
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
    posts = len(posts_to(fake, "C0HELP"))
    response = await app.interactive(view_submission(view, values, view_id=f"V{time.time_ns()}"))
    assert response.status == 200
    await wait_until(lambda: len(posts_to(fake, "C0HELP")) > posts)


def posts_to(fake: FakeSlack, channel: str) -> list[dict[str, Any]]:
    return [p for p in fake.posts() if p.get("channel") == channel]


async def manager_dm(fake: FakeSlack, count: int = 1) -> dict[str, Any]:
    """The count-th request DM to Bo (conversations.open + chat.postMessage to DU0BO)."""
    opened = await fake.wait_for_method("conversations.open", count=count)
    assert opened[count - 1]["users"] == "U0BO"
    await wait_until(lambda: len(posts_to(fake, "DU0BO")) >= count)
    return posts_to(fake, "DU0BO")[count - 1]


async def click(
    app: AppHarness,
    fake: FakeSlack,
    post: dict[str, Any],
    title: str,
    user: str,
    *,
    value: str | None = None,
) -> str:
    """Press a button in `post` as `user`; returns the text of the bot's (ephemeral) answer."""
    element = button(post, title)
    n = next(_clicks)
    payload = block_actions(
        element,
        user=user,
        channel="DU0BO",
        n=n,
        response_url=fake.response_url_for(f"r{n}"),
        message_ts=post.get("ts", "1.1"),
        text=post.get("text", ""),
        value=value,
    )
    response = await app.interactive(payload)
    assert response.status == 200
    await fake.wait_for(f"/response/r{n}")
    return json.dumps(fake.responses(f"r{n}")[-1])


async def test_verify_refuses_non_manager_and_manager_approves(make_app, slack_api: FakeSlack):
    app = await start(make_app, slack_api)
    await new_ticket(app, slack_api)
    answer = await (await app.slash("verify HD-1")).json()
    assert answer["response_type"] == "ephemeral" and "Bo Boss" in json.dumps(answer)
    dm = await manager_dm(slack_api)
    rendered = json.dumps(dm["blocks"])
    for part in (
        "HD-1",
        "did Ana Lopez (ana@example.com) ask",
        "*Requester:* <@U0ANA> (ana@example.com)",  # Slack shows mentions as names
        "*Technician:* <@UTECH> (tom@example.com)",
        "Locked out of my laptop",
        "Slack, channel C0HELP",
        "printer",
    ):
        assert part in rendered
    value = json.loads(button(dm, "Approve")["value"])
    assert list(value) == ["check"] and value == json.loads(button(dm, "Deny")["value"])

    for intruder in ("U0ANA", "UTECH"):
        refused = await click(app, slack_api, dm, "Approve", intruder)
        assert "Only the requester's manager" in refused
    forged = await click(app, slack_api, dm, "Approve", "U0BO", value='{"check":"HD-1"}')
    assert "not valid" in forged
    assert (await only_ticket(app)).identity_state == "pending"
    assert (await event_kinds(app)).count("identity.refused") == 3

    approved = await click(app, slack_api, dm, "Approve", "U0BO")
    assert "confirmed the identity for HD-1" in approved
    assert (await only_ticket(app)).identity_state == "confirmed"
    thread = (await only_ticket(app)).source_thread
    await wait_until(
        lambda: any(
            "Identity confirmed for HD-1" in json.dumps(p) for p in posts_to(slack_api, "C0HELP")
        )
    )
    told = next(p for p in posts_to(slack_api, "C0HELP") if "Identity confirmed" in json.dumps(p))
    assert told["thread_ts"] == thread
    # The request's buttons are replaced by the outcome; the ticket card shows the identity
    # (it was refreshed once before, when `verify` recorded the first response).
    updates = await slack_api.wait_for_method("chat.update", count=3)
    [retired] = [u for u in updates if u["channel"] == "DU0BO"]
    assert "Approve" not in json.dumps(retired["blocks"])
    first, card = [u for u in updates if u["channel"] == "C0HELP"]
    assert card["ts"] == first["ts"] == thread and "confirmed" in json.dumps(card["blocks"])
    again = await click(app, slack_api, dm, "Deny", "U0BO")
    assert "already answered" in again and (await only_ticket(app)).identity_state == "confirmed"


async def test_the_outcome_in_the_thread_starts_with_a_mention_of_the_technician(
    make_app, slack_api: FakeSlack
):
    """Approve and Deny are told to Tom in the ticket's thread, which he does not follow (he
    typed `/ticket`, the card is the bot's): a thread reply without a mention notified nobody.
    Each note now starts with `<@UTECH>`, its words as before."""
    app = await start(make_app, slack_api)
    await new_ticket(app, slack_api)
    await app.slash("verify HD-1")
    approved = await click(app, slack_api, await manager_dm(slack_api), "Approve", "U0BO")
    assert "confirmed the identity for HD-1" in approved

    def told(words: str) -> list[dict[str, Any]]:
        return [
            p for p in posts_to(slack_api, "C0HELP") if p.get("thread_ts") and words in p["text"]
        ]

    await wait_until(lambda: told("Identity confirmed for HD-1"), what="the approval note")
    [note] = told("Identity confirmed for HD-1")
    assert note["text"].startswith("<@UTECH> Identity confirmed for HD-1: "), note["text"]
    assert note["blocks"][0]["text"]["text"] == "<@UTECH>"
    assert note["blocks"][1]["text"]["text"].startswith("Identity confirmed for HD-1: ")

    await new_ticket(app, slack_api, category="password-reset")  # gated: starts by itself
    denied = await click(app, slack_api, await manager_dm(slack_api, count=2), "Deny", "U0BO")
    assert "security team" in denied
    await wait_until(lambda: told("DO NOT PROCEED with HD-2"), what="the denial note")
    [note] = told("DO NOT PROCEED with HD-2")
    assert note["text"].startswith("<@UTECH> DO NOT PROCEED with HD-2: "), note["text"]
    # The security queue's notice is for the queue: it names Tom, it does not ping him.
    [notice] = posts_to(slack_api, "C0SECURITY")
    assert not notice["text"].startswith("<@")


async def test_deny_flags_ticket_and_notifies_security(make_app, slack_api: FakeSlack):
    app = await start(make_app, slack_api)
    await new_ticket(app, slack_api, category="password-reset")  # gated: starts by itself
    dm = await manager_dm(slack_api)
    denied = await click(app, slack_api, dm, "Deny", "U0BO")
    assert "security team" in denied
    assert (await only_ticket(app)).identity_state == "denied"
    assert {"identity.denied", "ticket.flagged"} <= set(await event_kinds(app))
    await wait_until(lambda: posts_to(slack_api, "C0SECURITY"))
    assert "Possible impersonation on HD-1" in json.dumps(posts_to(slack_api, "C0SECURITY"))
    await wait_until(
        lambda: any(
            "DO NOT PROCEED with HD-1" in json.dumps(p) for p in posts_to(slack_api, "C0HELP")
        )
    )


async def test_late_answer_is_refused_and_verify_restarts(make_app, slack_api: FakeSlack):
    app = await start(make_app, slack_api, approval_ttl="1s")
    await new_ticket(app, slack_api)
    await app.slash("verify HD-1")
    dm = await manager_dm(slack_api)
    await asyncio.sleep(1.5)
    late = await click(app, slack_api, dm, "Approve", "U0BO")
    assert "expired" in late
    assert (await only_ticket(app)).identity_state == "required"
    assert "identity.expired" in await event_kinds(app)
    await app.slash("verify HD-1")
    fresh = await manager_dm(slack_api, count=2)
    assert button(fresh, "Approve")["value"] != button(dm, "Approve")["value"]
    assert "confirmed" in await click(app, slack_api, fresh, "Approve", "U0BO")
    assert (await only_ticket(app)).identity_state == "confirmed"


async def test_a_late_deny_is_audited_as_a_deny_and_the_technician_is_told(
    make_app, slack_api: FakeSlack
):
    # A manager's Deny is the one sign of a vishing call the check exists to catch. Pressed
    # after the request expired it is refused (SPEC), but it must not vanish: the audit trail
    # names the answer and who gave it, and the technician learns it was a Deny, not merely a
    # late answer to be asked again.
    app = await start(make_app, slack_api, approval_ttl="1s")
    await new_ticket(app, slack_api, category="password-reset")
    dm = await manager_dm(slack_api)
    await asyncio.sleep(1.5)
    assert "expired" in await click(app, slack_api, dm, "Deny", "U0BO")
    assert (await only_ticket(app)).identity_state == "required"
    async with app.services.sessions() as session:
        query = select(TicketEvent).where(TicketEvent.kind == "identity.expired")
        [expired] = (await session.execute(query)).scalars().all()
    assert (expired.actor_id, expired.channel) == ("U0BO", "DU0BO")
    assert expired.data["answer"] == "deny"
    async with app.services.sessions() as session:
        check = (await session.execute(select(IdentityCheck))).scalar_one()
    assert (check.state, check.answered_by) == ("expired", "U0BO")
    await wait_until(
        lambda: any(
            "pressed Deny after the request expired" in json.dumps(p)
            for p in posts_to(slack_api, "C0HELP")
        )
    )


async def test_vip_ticket_starts_the_check_on_creation(make_app, slack_api: FakeSlack):
    app = await start(make_app, slack_api)
    await new_ticket(app, slack_api, requester="U0VIC")
    dm = await manager_dm(slack_api)
    assert "Vic VIP" in json.dumps(dm["blocks"])
    assert (await only_ticket(app)).identity_state == "pending"


async def test_no_manager_gives_callback_number_from_directory(make_app, slack_api: FakeSlack):
    app = await start(make_app, slack_api)
    await new_ticket(app, slack_api, requester="U0CY")
    answer = json.dumps(await (await app.slash("verify HD-1")).json())
    assert "+1 555 0199" in answer and "never a number the caller gives you" in answer
    # The number goes to Tom's direct message; the ticket's thread (a channel) only says so.
    await wait_until(lambda: "+1 555 0199" in json.dumps(posts_to(slack_api, "DUTECH")))
    await wait_until(lambda: "privately" in json.dumps(posts_to(slack_api, "C0HELP")))
    assert "+1 555 0199" not in json.dumps(posts_to(slack_api, "C0HELP"))
    async with app.services.sessions() as session:
        check = (await session.execute(select(IdentityCheck))).scalar_one()
    assert check.state == "no_manager" and (await only_ticket(app)).identity_state == "required"
    assert [c["users"] for c in slack_api.method_calls("conversations.open")] == ["UTECH"]


async def test_unreachable_manager_is_reported_to_technician(make_app, slack_api: FakeSlack):
    app = await start(make_app, slack_api)
    await new_ticket(app, slack_api)
    slack_api.fail_ok_false("conversations.open", "user_not_found")
    await app.slash("verify HD-1")
    await wait_until(
        lambda: any("was given up" in json.dumps(p) for p in posts_to(slack_api, "C0HELP"))
    )
    told = json.dumps(posts_to(slack_api, "C0HELP"))
    # The thread (a channel others read) never names the requester's number on file: it went
    # to the technician who asked, for the call-back (tests/http/test_identity_unreachable.py).
    assert "cannot be delivered on Slack (slack: user_not_found)" in told
    assert "+1 555 0100" not in told and "sent to Tom Tech (tom@example.com) privately" in told
    assert "identity.unreachable" in await event_kinds(app)


async def test_gated_ticket_cannot_be_closed_or_escalated_before_confirmation(
    make_app, slack_api: FakeSlack
):
    app = await start(make_app, slack_api)
    await new_ticket(app, slack_api, category="password-reset")
    dm = await manager_dm(slack_api)
    opened = len(slack_api.views_opened())
    for command in ("close HD-1", "escalate HD-1"):
        refused = json.dumps(await (await app.slash(command)).json())
        assert "needs the requester's identity confirmed first" in refused, refused
    assert len(slack_api.views_opened()) == opened
    await click(app, slack_api, dm, "Approve", "U0BO")
    await app.slash("close HD-1")
    closure = await slack_api.wait_for_method("views.open", count=opened + 1)
    assert "Resolution note" in json.dumps(closure[-1]["view"])


async def test_verify_on_a_ticket_already_confirmed_is_its_first_response(
    make_app, slack_api: FakeSlack
):
    # The check starts by itself (gated category) and Bo approves before Tom touches it: Tom's
    # `verify` is still him working the ticket (SPEC "SLA clock": verify is a first response).
    app = await start(make_app, slack_api)
    await new_ticket(app, slack_api, category="password-reset")
    dm = await manager_dm(slack_api)
    assert "confirmed" in await click(app, slack_api, dm, "Approve", "U0BO")
    assert (await only_ticket(app)).first_response_at is None
    answer = json.dumps(await (await app.slash("verify HD-1")).json())
    assert "already confirmed" in answer
    ticket = await only_ticket(app)
    assert ticket.first_response_by == "UTECH" and ticket.respond_met is True
    assert "sla.first_response" in await event_kinds(app)
