"""Identity confirmation over Teams HTTP: proactive 1:1 to the manager, Execute and Submit."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from sqlalchemy import select

from storage.models import Ticket
from tests.fakes.botframework import FakeConnector
from tests.harness import AppHarness, event_kinds, only_ticket, wait_until
from tests.http.conftest_teams import (
    CARD_TYPE,
    PERSONAL,
    TECH_ID,
    TENANT,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)

BO_ID = "29:1bo"
SECURITY = "19:security@thread.tacv2"
PEOPLE = [
    {
        "email": "ana@example.com",
        "name": "Ana Lopez",
        "teams_id": "29:1ana",
        "phone": "+1 555 0100",
        "manager": "bo@example.com",
    },
    {"email": "bo@example.com", "name": "Bo Boss", "teams_id": BO_ID},
    {"email": "tech@example.com", "name": "Tom Tech", "teams_id": TECH_ID, "technician": True},
    {"email": "cy@example.com", "name": "Cy Solo", "teams_id": "29:1cy", "phone": "+1 555 0199"},
    {
        "email": "vic@example.com",
        "name": "Vic VIP",
        "teams_id": "29:1vic",
        "vip": True,
        "manager": "bo@example.com",
    },
]


async def start(make_app: Any, fake: FakeConnector, **identity: Any) -> AppHarness:
    config: dict[str, Any] = {
        "teams": {"service_url": fake.service_url, "tenant_id": TENANT},
        "queues": {"security": {"teams": SECURITY}},
    }
    if identity:
        config["identity"] = identity
    app: AppHarness = await make_app(config=config, people=PEOPLE)
    return app


def texts(fake: FakeConnector, conversation: str) -> str:
    return json.dumps([a.get("text") for a in fake.activities(conversation)])


def said(fake: FakeConnector, conversation: str) -> str:
    """Everything posted in `conversation`, texts and cards (escapes dropped)."""
    posted = [[a.get("text"), a.get("attachments")] for a in fake.activities(conversation)]
    return json.dumps(posted).replace("\\\\", "")


async def new_ticket(
    app: AppHarness,
    fake: FakeConnector,
    requester: str = "ana@example.com",
    category: str = "printer",
) -> None:
    posted = len(fake.activities(PERSONAL))
    await app.teams(message(fake.service_url, "ticket new Locked out"))
    # The form is answered in the chat; an earlier ticket's deliveries may still be arriving.
    forms = lambda: [a for a in fake.activities(PERSONAL)[posted:] if a.get("attachments")]  # noqa: E731
    await wait_until(lambda: bool(forms()), timeout=20, what="the intake form")
    form = card_of(forms()[0])
    value = {
        **submit_action(form)["fallback"]["data"],
        **form_values(requester=requester, category=category, summary="Locked out"),
    }
    response = await app.teams(activity(fake.service_url, value=value))
    assert response.status == 201


async def manager_request(fake: FakeConnector, count: int = 1) -> tuple[str, dict[str, Any]]:
    """(chat id, Adaptive Card) of the count-th request sent to Bo in a proactive 1:1 chat."""
    await wait_until(
        lambda: (
            len([c for c in fake.created_conversations() if c["members"][0]["id"] == BO_ID]) >= 1
        )
    )
    chat = next(c for c in fake.created_conversations() if c["members"][0]["id"] == BO_ID)
    assert chat["tenantID"] == TENANT
    cards = lambda: [a for a in fake.activities(chat["_id"]) if a.get("attachments")]  # noqa: E731
    await wait_until(lambda: len(cards()) >= count)
    return chat["_id"], card_of(cards()[count - 1])


def action(card: dict[str, Any], title: str) -> dict[str, Any]:
    return next(a for a in card["actions"] if a["title"] == title)


async def execute(
    app: AppHarness,
    fake: FakeConnector,
    card: dict[str, Any],
    title: str,
    *,
    user: str,
    conversation: str,
) -> str:
    """Press a button with Action.Execute; returns the invoke response's message."""
    pressed = action(card, title)
    invoke = activity(
        fake.service_url,
        type="invoke",
        name="adaptiveCard/action",
        user=user,
        conversation=conversation,
        value={
            "action": {"type": "Action.Execute", "verb": pressed["verb"], "data": pressed["data"]},
            "trigger": "manual",
        },
    )
    response = await app.teams(invoke)
    assert response.status == 200
    body = await response.json()
    assert body["statusCode"] == 200
    if body["type"] == CARD_TYPE:
        return json.dumps(body["value"])
    return str(body["value"])


async def test_verify_refuses_non_manager_and_manager_approves(make_app, connector: FakeConnector):
    app = await start(make_app, connector)
    await new_ticket(app, connector)
    await app.teams(message(connector.service_url, "ticket verify HD-1"))
    chat, card = await manager_request(connector)
    rendered = json.dumps(card).replace("\\\\", "")
    for part in (
        "HD-1",
        "Ana Lopez (ana@example.com)",
        "Tom Tech",
        "Locked out",
        "Microsoft Teams, personal chat",
    ):
        assert part in rendered
    approve, deny = action(card, "Approve"), action(card, "Deny")
    assert approve["type"] == "Action.Execute" and approve["fallback"]["type"] == "Action.Submit"
    assert (
        set(approve["data"]) == {"action", "check"}
        and approve["data"]["check"] == deny["data"]["check"]
    )

    for intruder, where in ((TECH_ID, PERSONAL), ("29:1ana", "a:1ana-chat")):
        refused = await execute(app, connector, card, "Approve", user=intruder, conversation=where)
        assert "Only the requester's manager" in refused
    assert (await only_ticket(app)).identity_state == "pending"
    assert (await event_kinds(app)).count("identity.refused") == 2

    approved = await execute(app, connector, card, "Approve", user=BO_ID, conversation=chat)
    assert "confirmed the identity for HD-1" in approved
    assert (await only_ticket(app)).identity_state == "confirmed"
    await wait_until(lambda: "Identity confirmed for HD-1" in texts(connector, PERSONAL))
    # Also refreshed once before, when `verify` recorded the first response.
    await wait_until(lambda: len(connector.updates()) == 3, timeout=20)
    [update] = [u for u in connector.updates() if u["_conversation_id"] == chat]
    assert "Approve" not in json.dumps(update)
    card_of(update)
    # The ticket card (sent in the technician's chat) now shows the confirmed identity.
    *_, refreshed = [u for u in connector.updates() if u["_conversation_id"] == PERSONAL]
    assert refreshed["_activity_id"] == (await only_ticket(app)).card_message
    assert "confirmed" in json.dumps(card_of(refreshed))


async def test_deny_by_submit_flags_and_notifies_security(make_app, connector: FakeConnector):
    app = await start(make_app, connector)
    await new_ticket(app, connector, category="password-reset")  # gated: starts by itself
    chat, card = await manager_request(connector)
    submitted = activity(
        connector.service_url,
        user=BO_ID,
        conversation=chat,
        value=action(card, "Deny")["fallback"]["data"],
    )
    assert (await app.teams(submitted)).status == 201
    await wait_until(lambda: "security team" in texts(connector, chat))
    assert (await only_ticket(app)).identity_state == "denied"
    assert {"identity.denied", "ticket.flagged"} <= set(await event_kinds(app))
    await wait_until(lambda: "Possible impersonation on HD-1" in texts(connector, SECURITY))
    await wait_until(lambda: "DO NOT PROCEED with HD-1" in texts(connector, PERSONAL))


async def test_late_answer_is_refused(make_app, connector: FakeConnector):
    app = await start(make_app, connector, approval_ttl="1s")
    await new_ticket(app, connector)
    await app.teams(message(connector.service_url, "ticket verify HD-1"))
    chat, card = await manager_request(connector)
    await asyncio.sleep(1.5)
    late = await execute(app, connector, card, "Approve", user=BO_ID, conversation=chat)
    assert "expired" in late
    assert (await only_ticket(app)).identity_state == "required"
    await wait_until(lambda: "answered after the request expired" in texts(connector, PERSONAL))


async def test_vip_ticket_starts_the_check_on_creation(make_app, connector: FakeConnector):
    app = await start(make_app, connector)
    await new_ticket(app, connector, requester="vic@example.com")
    _, card = await manager_request(connector)
    assert "Vic VIP" in json.dumps(card)
    assert (await only_ticket(app)).identity_state == "pending"
    # The technician's notice follows the ticket card (sent in the turn) into its reply chain.
    asked = "Identity check for HD-1: asked"
    await wait_until(lambda: asked in texts(connector, PERSONAL), timeout=5, what="the notice")
    posted = connector.activities(PERSONAL)
    [ticket_card] = [
        a for a in posted if a.get("attachments") and "HD-1 (P" in json.dumps(a["attachments"])
    ][:1]
    [notice] = [a for a in posted if asked in (a.get("text") or "")]
    assert notice["_reply_to_id"] == ticket_card["_id"], notice


async def test_no_manager_gives_callback_number(make_app, connector: FakeConnector):
    app = await start(make_app, connector)
    await new_ticket(app, connector, requester="cy@example.com")
    await app.teams(message(connector.service_url, "ticket verify HD-1"))
    # The call-back notice is a card (it carries the technician's button).
    await wait_until(lambda: "+1 555 0199" in said(connector, PERSONAL))
    assert "never a number the caller gives you" in said(connector, PERSONAL)
    assert (await only_ticket(app)).identity_state == "required"
    assert not connector.created_conversations()


async def test_gated_ticket_cannot_be_closed_before_confirmation(
    make_app, connector: FakeConnector
):
    app = await start(make_app, connector)
    await new_ticket(app, connector, category="password-reset")
    chat, card = await manager_request(connector)
    await app.teams(message(connector.service_url, "ticket close HD-1"))
    await wait_until(lambda: "identity confirmed first" in texts(connector, PERSONAL))
    await execute(app, connector, card, "Approve", user=BO_ID, conversation=chat)
    posted = len(connector.activities(PERSONAL))
    await app.teams(message(connector.service_url, "ticket close HD-1"))
    # The approval notice (outbox) may land before or after the form: look at everything new.
    await wait_until(
        lambda: "Resolution note" in json.dumps(connector.activities(PERSONAL)[posted:])
    )


async def test_a_forged_closure_or_escalation_of_a_gated_ticket_is_refused_and_audited(
    make_app, connector: FakeConnector
):
    # A Teams card's submit data is typed by the client: a technician can send the closure or
    # escalation form's Action.Submit for a ticket whose form the bot never gave them. It is
    # refused while the identity is pending, and the attempt is in the audit trail.
    from sqlalchemy import select

    from storage.models import TicketEvent

    app = await start(make_app, connector)
    await new_ticket(app, connector, category="password-reset")
    await manager_request(connector)
    forged = [
        {
            "action": "ticket.close.submit",
            "ticket": "HD-1",
            "resolution_note": "Reset the password of Ana's account in Entra ID and unlocked it",
            "resolution_category": "Request",
            "time_spent": "10m",
        },
        {
            "action": "ticket.escalate.submit",
            "ticket": "HD-1",
            "repro_steps": "Sign in to the portal as Ana",
            "error_text": "Account locked",
            "already_tried": "Unlocked the account in the admin centre",
            "user_impact": "Ana cannot work",
            "queue": "security",
        },
    ]
    for value in forged:
        assert (await app.teams(activity(connector.service_url, value=value))).status == 201
    await wait_until(lambda: texts(connector, PERSONAL).count("identity confirmed first") >= 2)
    assert (await only_ticket(app)).status == "open"
    async with app.services.sessions() as session:
        query = select(TicketEvent).where(TicketEvent.kind == "identity.gate_refused")
        events = (await session.execute(query.order_by(TicketEvent.id))).scalars().all()
    assert [(e.actor_id, e.data["action"], e.data["identity"]) for e in events] == [
        (TECH_ID, "close", "pending"),
        (TECH_ID, "escalate", "pending"),
    ]
    assert "ticket.escalated" not in await event_kinds(app)


async def test_a_vips_address_with_invisible_or_wide_characters_is_still_the_vip(
    make_app, connector: FakeConnector
):
    # Teams takes the Requester as a typed e-mail address. Pasted from a caller's message it
    # can carry a zero-width space, or come in full-width letters: it looks like Vic's, but
    # the directory has nobody by that exact text, so Vic (a VIP) went unchecked. An address
    # is read as the text it shows: the VIP is found and the check starts.
    app = await start(make_app, connector)
    await new_ticket(app, connector, requester="vic\u200b@example.com")
    _, card = await manager_request(connector)
    assert "Vic VIP" in json.dumps(card)
    ticket = await only_ticket(app)
    assert (ticket.identity_state, ticket.requester_email) == ("pending", "vic@example.com")
    await new_ticket(app, connector, requester="\uff56\uff49\uff43@example.com")  # full width
    await manager_request(connector, count=2)


async def test_a_vips_address_pasted_in_quotes_brackets_or_an_address_line_is_still_the_vip(
    make_app, connector: FakeConnector
):
    # "My address is "vic@example.com"": pasted with its quotes (straight or a word
    # processor's curly ones), brackets, backticks, a colon or a bracket left over, or as an
    # address line without the space (`Vic<vic@example.com>`), the address was kept as typed:
    # nobody in the directory, so a ticket for Vic (a VIP) opened with no identity check.
    app = await start(make_app, connector)
    pasted = (
        '"vic@example.com"',
        "\u201cvic@example.com\u201d",
        "'vic@example.com'",
        "`vic@example.com`",
        "(vic@example.com)",
        "[vic@example.com]",
        "vic@example.com:",
        "vic@example.com)",
        '"vic@example.com',
        "Vic<vic@example.com>",
        "Vic VIP <mailto:vic@example.com>",
    )
    for count, typed in enumerate(pasted, start=1):
        await new_ticket(app, connector, requester=typed)
        _, card = await manager_request(connector, count=count)
        assert "Vic VIP" in json.dumps(card), typed
    async with app.services.sessions() as session:
        tickets = (await session.execute(select(Ticket).order_by(Ticket.id))).scalars().all()
    assert [(t.identity_state, t.requester_email) for t in tickets] == [
        ("pending", "vic@example.com")
    ] * len(pasted)


async def test_a_look_alike_of_a_vips_address_in_another_script_is_still_the_vip(
    make_app, connector: FakeConnector
):
    # Vishing set-up: the caller sends the technician "my address" to paste, with a Cyrillic
    # i (or a Greek iota, a dotless i, a Cyrillic a in the domain, a dot below the i). It
    # reads as Vic's, but NFKC leaves other scripts alone, so the directory had nobody by it:
    # the ticket opened with no identity check for a VIP (SPEC "VIP requesters are always
    # checked"), its card naming an address anyone takes for Vic's. It is Vic's ticket now.
    app = await start(make_app, connector)
    pasted = (
        "v\u0456c@example.com",  # Cyrillic i
        "v\u03b9c@example.com",  # Greek iota
        "v\u0131c@example.com",  # dotless i
        "vic@ex\u0430mple.com",  # Cyrillic a in the domain
        "vi\u0323c@example.com",  # i with a combining dot below
    )
    for count, typed in enumerate(pasted, start=1):
        await new_ticket(app, connector, requester=typed)
        _, card = await manager_request(connector, count=count)
        assert "Vic VIP" in json.dumps(card), typed
    # An address the directory does not have, look-alike or not, is still kept as typed.
    await new_ticket(app, connector, requester="jos\u00e9@client.example")
    async with app.services.sessions() as session:
        tickets = (await session.execute(select(Ticket).order_by(Ticket.id))).scalars().all()
    assert [(t.identity_state, t.requester_email) for t in tickets] == [
        ("pending", "vic@example.com")
    ] * len(pasted) + [("not_required", "jos\u00e9@client.example")]


async def test_a_vips_address_pasted_as_a_link_or_with_its_punctuation_is_still_the_vip(
    make_app, connector: FakeConnector
):
    # Copied from an e-mail link (`mailto:`), an address line (`<...>`) or a recipient list
    # (`...;`), Vic's address reads as Vic's, but the directory had nobody by that text: the
    # ticket opened with no identity check for a VIP, and the card named "mailto:vic@...".
    app = await start(make_app, connector)
    pasted = (
        "mailto:vic@example.com",
        "<vic@example.com>",
        "vic@example.com;",
        "MAILTO:Vic@Example.com,",
    )
    for count, typed in enumerate(pasted, start=1):
        await new_ticket(app, connector, requester=typed)
        _, card = await manager_request(connector, count=count)
        assert "Vic VIP" in json.dumps(card), typed
    async with app.services.sessions() as session:
        tickets = (await session.execute(select(Ticket).order_by(Ticket.id))).scalars().all()
    assert [(t.identity_state, t.requester_email) for t in tickets] == [
        ("pending", "vic@example.com")
    ] * len(pasted)
