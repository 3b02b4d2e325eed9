"""A requester whose account is disabled in the directory (someone who left?), over HTTP.

The classic call: "I'm <someone who has left>, I'm locked out, please reset my password". Their
manager is not asked to vouch for an account that should not be in use; the technician is told
in the ticket's thread to reset nothing and to check with the manager or HR through a channel
they already know; the check says why in the audit trail; the card and `show` warn, on Slack
and Teams. An ungated ticket only gets the warning. Each test runs on SQLite and PostgreSQL;
the directory is the file, a real slapd (AD's userAccountControl) or the Graph fake
(accountEnabled).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import yaml
from sqlalchemy import select

from storage.models import IdentityCheck, TicketEvent
from tests.directory_people import ANA, BO
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, event_kinds, only_ticket, wait_until
from tests.http import test_directory_slack as on_directory
from tests.http import test_identity_slack as slack
from tests.http import test_identity_teams as teams
from tests.http.conftest_teams import PERSONAL, card_of, message
from tests.http.directory_support import Source, identity_rows

WARNING = "Requester's account is disabled in the directory"
TOLD = "is disabled in the directory (someone who left?), so no manager was asked"
RESET_NOTHING = "Do not reset passwords, change MFA or re-enable anything for them"
KNOWN_CHANNEL = "through a channel you already know"


def disabled(people: list[dict[str, Any]], email: str) -> list[dict[str, Any]]:
    return [{**p, "disabled": True} if p["email"] == email else p for p in people]


async def no_manager_events(app: AppHarness) -> list[dict[str, Any]]:
    async with app.services.sessions() as session:
        query = (
            select(TicketEvent)
            .where(TicketEvent.kind == "identity.no_manager")
            .order_by(TicketEvent.id)
        )
        return [dict(e.data) for e in (await session.execute(query)).scalars().all()]


async def check_states(app: AppHarness) -> list[str]:
    async with app.services.sessions() as session:
        query = select(IdentityCheck.state).order_by(IdentityCheck.id)
        return list((await session.execute(query)).scalars().all())


def c0help(fake: FakeSlack) -> str:
    return json.dumps(slack.posts_to(fake, "C0HELP"))


# -- the file directory, Slack ----------------------------------------------------------------


async def test_a_disabled_requesters_password_reset_asks_no_manager(make_app, slack_api: FakeSlack):
    app: AppHarness = await make_app(
        slack=slack_api, config=slack.CONFIG, people=disabled(slack.PEOPLE, "ana@example.com")
    )
    await slack.new_ticket(app, slack_api, requester="U0ANA", category="password-reset")
    await wait_until(lambda: TOLD in c0help(slack_api), what="the technician's notice")
    told = c0help(slack_api)
    assert RESET_NOTHING in told and KNOWN_CHANNEL in told and "Bo Boss (bo@example.com)" in told
    assert "+1 555 0100" not in json.dumps(slack_api.posts())  # a leaver's number proves nothing
    # The card (in C0HELP, the thread's opener) warns.
    card = slack.posts_to(slack_api, "C0HELP")[0]
    assert "HD-1" in json.dumps(card["blocks"]) and WARNING in json.dumps(card["blocks"])
    ticket = await only_ticket(app)
    assert ticket.identity_state == "required" and ticket.requester_disabled
    assert not slack_api.method_calls("conversations.open")  # Bo is never asked
    assert await check_states(app) == ["no_manager"]
    [audited] = await no_manager_events(app)
    assert audited["requester_disabled"] is True and audited["manager_asked"] is False
    assert "identity.sent" not in await event_kinds(app)

    shown = json.dumps(await (await app.slash("show HD-1")).json())
    assert WARNING in shown
    # `verify` asks nobody either: Tom is told why, and the gate holds.
    answer = json.dumps(await (await app.slash("verify HD-1")).json())
    assert TOLD in answer and RESET_NOTHING in answer
    assert await check_states(app) == ["superseded", "no_manager"]
    assert [e["requester_disabled"] for e in await no_manager_events(app)] == [True, True]
    assert not slack_api.method_calls("conversations.open")
    refused = json.dumps(await (await app.slash("close HD-1")).json())
    assert "needs the requester's identity confirmed first" in refused


async def test_an_enabled_requester_is_asked_about_as_before(make_app, slack_api: FakeSlack):
    app = await slack.start(make_app, slack_api)
    await slack.new_ticket(app, slack_api, requester="U0ANA", category="password-reset")
    dm = await slack.manager_dm(slack_api)
    assert "Ana Lopez" in json.dumps(dm["blocks"])
    ticket = await only_ticket(app)
    assert ticket.identity_state == "pending" and not ticket.requester_disabled
    assert WARNING not in c0help(slack_api) and TOLD not in c0help(slack_api)
    assert WARNING not in json.dumps(await (await app.slash("show HD-1")).json())
    assert "confirmed" in await slack.click(app, slack_api, dm, "Approve", "U0BO")


async def test_a_disabled_requesters_ungated_ticket_only_warns(make_app, slack_api: FakeSlack):
    app: AppHarness = await make_app(
        slack=slack_api, config=slack.CONFIG, people=disabled(slack.PEOPLE, "ana@example.com")
    )
    await slack.new_ticket(app, slack_api, requester="U0ANA", category="printer")
    await wait_until(lambda: WARNING in c0help(slack_api), what="the card's warning")
    ticket = await only_ticket(app)
    assert ticket.identity_state == "not_required" and ticket.requester_disabled
    assert WARNING in json.dumps(await (await app.slash("show HD-1")).json())
    assert not [k for k in await event_kinds(app) if k.startswith("identity.")]
    assert TOLD not in c0help(slack_api)


# -- the file directory, Teams ----------------------------------------------------------------


async def test_teams_card_and_show_warn_and_no_manager_is_asked(make_app, connector: FakeConnector):
    config: dict[str, Any] = {"teams": {"service_url": connector.service_url}}
    app: AppHarness = await make_app(
        config=config, people=disabled(teams.PEOPLE, "ana@example.com")
    )
    posted = len(connector.activities(PERSONAL))
    await teams.new_ticket(app, connector, category="password-reset")
    await wait_until(lambda: TOLD in teams.texts(connector, PERSONAL), what="the notice")
    assert RESET_NOTHING in teams.texts(connector, PERSONAL)
    [card] = [
        card_of(a)  # validated against the Adaptive Card schema
        for a in connector.activities(PERSONAL)[posted:]
        if a.get("attachments") and "HD-1 (P" in json.dumps(a["attachments"])
    ][:1]
    blocks = [e.get("text", "") for e in card["body"] if e["type"] == "TextBlock"]
    assert any(WARNING in text for text in blocks), blocks
    assert not connector.created_conversations()  # Bo is never asked
    ticket = await only_ticket(app)
    assert ticket.identity_state == "required" and ticket.requester_disabled
    assert [e["requester_disabled"] for e in await no_manager_events(app)] == [True]

    posted = len(connector.activities(PERSONAL))
    await app.teams(message(connector.service_url, "ticket show HD-1"))
    await wait_until(lambda: len(connector.activities(PERSONAL)) > posted)
    shown = card_of(connector.activities(PERSONAL)[-1])
    assert WARNING in json.dumps(shown["body"])
    await app.teams(message(connector.service_url, "ticket verify HD-1"))
    await wait_until(lambda: teams.texts(connector, PERSONAL).count(TOLD) >= 2)
    assert not connector.created_conversations()


# -- LDAP (AD userAccountControl) and Graph (accountEnabled), Slack --------------------------


async def test_a_requester_disabled_in_the_directory_is_not_vouched_for(
    make_app, slack_api: FakeSlack, source: Source
):
    app = await on_directory.start(make_app, slack_api, source, cache_ttl="0s")
    source.disable(ANA)
    await on_directory.new_ticket(app, slack_api, ANA.slack, category="password-reset")
    await wait_until(lambda: TOLD in c0help(slack_api), timeout=10, what="the notice")
    assert RESET_NOTHING in c0help(slack_api) and ANA.phone not in json.dumps(slack_api.posts())
    assert WARNING in json.dumps(slack.posts_to(slack_api, "C0HELP")[0]["blocks"])
    assert await identity_rows(app) == (1, ["identity.requested", "identity.no_manager"])
    assert not on_directory.posts_to(slack_api, f"D{BO.slack}")
    assert [e["requester_disabled"] for e in await no_manager_events(app)] == [True]
    assert WARNING in await on_directory.command(app, slack_api, "show HD-1")


async def test_a_requester_disabled_after_their_manager_was_asked(
    make_app, slack_api: FakeSlack, source: Source
):
    """Ana's account is disabled after Bo was asked: the next `verify` asks nobody (Bo's
    request stops counting), tells Tom, and the card gets the warning."""
    app = await on_directory.start(make_app, slack_api, source, cache_ttl="0s")
    await on_directory.new_ticket(app, slack_api, ANA.slack, category="password-reset")
    await on_directory.manager_dm(slack_api, 1)
    assert not (await only_ticket(app)).requester_disabled
    source.disable(ANA)
    answer = await on_directory.command(app, slack_api, "verify HD-1")
    assert TOLD in answer and RESET_NOTHING in answer
    assert (await only_ticket(app)).requester_disabled
    assert await check_states(app) == ["superseded", "no_manager"]
    assert len(on_directory.posts_to(slack_api, f"D{BO.slack}")) == 1  # asked once, not again
    await wait_until(
        lambda: any(WARNING in json.dumps(c) for c in slack_api.method_calls("chat.update")),
        timeout=10,
        what="the card refreshed with the warning",
    )


async def test_a_call_back_cannot_confirm_a_disabled_requester(make_app, slack_api: FakeSlack):
    # The leaver's check found no manager to ask (by design): a technician's "called back:
    # confirmed" must not turn that into a confirmed identity.
    app: AppHarness = await make_app(
        slack=slack_api, config=slack.CONFIG, people=disabled(slack.PEOPLE, "ana@example.com")
    )
    await slack.new_ticket(app, slack_api, requester="U0ANA", category="password-reset")
    await wait_until(lambda: TOLD in c0help(slack_api), what="the technician's notice")
    answer = json.dumps(await (await app.slash("verify HD-1 called-back")).json())
    assert "disabled in the directory, so a call-back cannot confirm them" in answer
    ticket = await only_ticket(app)
    assert ticket.identity_state == "required"
    assert "identity.callback_confirmed" not in await event_kinds(app)
    assert "identity.callback_refused" in await event_kinds(app)
    refused = json.dumps(await (await app.slash("close HD-1")).json())
    assert "identity confirmed first" in refused


async def test_a_manager_cannot_approve_a_requester_disabled_since_they_were_asked(
    make_app, slack_api: FakeSlack
):
    # Bo was asked while Ana's account was in use; it is disabled before he answers (she left,
    # the caller is not her): his Approve must not confirm an account that should not be in
    # use. Refused, audited, the technician told once; nothing confirmed.
    app: AppHarness = await make_app(slack=slack_api, config=slack.CONFIG, people=slack.PEOPLE)
    await slack.new_ticket(app, slack_api, requester="U0ANA", category="password-reset")
    dm = await slack.manager_dm(slack_api)
    people = yaml.safe_load((app.tmp / "people.yaml").read_text())
    (app.tmp / "people.yaml").write_text(yaml.safe_dump(disabled(people, "ana@example.com")))
    await asyncio.sleep(1.2)  # the file is looked at again after a second
    refused = await slack.click(app, slack_api, dm, "Approve", "U0BO")
    assert "disabled in the directory by now, so your approval cannot confirm" in refused
    ticket = await only_ticket(app)
    assert ticket.identity_state == "pending" and ticket.requester_disabled
    async with app.services.sessions() as session:
        query = select(TicketEvent).where(TicketEvent.kind == "identity.refused")
        [event] = (await session.execute(query)).scalars().all()
    assert (event.actor_id, event.data["reason"]) == ("U0BO", "requester disabled")
    await wait_until(lambda: "pressed Approve, but the requester's account" in c0help(slack_api))
    assert "identity.approved" not in await event_kinds(app)
