"""Identity confirmation core (no HTTP): Deps with a file directory and a migrated database."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from bot.directory.file import FileDirectory
from cards.model import ActionId, Card, Mention, Rich, Typed, plain
from handlers import closure, deliveries, dispatch, identity, working
from handlers.commands import Command
from handlers.config import HelpdeskConfig
from handlers.deps import Deps
from handlers.directory import DirectoryAmbiguous, DirectoryUnavailable, Person
from handlers.identity.service import _not_independent
from handlers.types import Actor, Forbidden, InvalidInput
from storage import db
from storage import tickets as repo
from storage.models import Ticket, TicketEvent
from tests.unit.identity_support import (
    BO_SLACK,
    PEOPLE,
    TECH,
    Clock,
    answer,
    new_ticket,
    state,
    texts,
    turn,
    verify,
)


@pytest.fixture
async def deps(db_url: str, tmp_path: Path) -> AsyncIterator[Deps]:
    path = tmp_path / "people.yaml"
    path.write_text(yaml.safe_dump(PEOPLE))
    engine = db.create_engine(db_url)
    config = HelpdeskConfig.model_validate({"queues": {"security": {"slack": "C0SECURITY"}}})
    yield Deps(
        config=config,
        sessions=db.session_factory(engine),
        directory=FileDirectory(path),
        clock=Clock(),
    )
    await engine.dispose()


async def test_verify_dms_the_manager_with_an_opaque_nonce(deps: Deps):
    number = await new_ticket(deps)
    reply = await verify(deps, number)
    assert "Bo Boss" in plain(reply.text) and "Slack" in plain(reply.text)
    ticket, [check], events, rows = await state(deps, number)
    assert ticket.identity_state == "pending"
    assert (check.state, check.manager_platform, check.manager_id) == ("pending", "slack", "U0BO")
    assert len(check.nonce) >= 40 and check.expires_at == check.created_at + timedelta(minutes=15)
    [dm] = [r for r in rows if r.kind == "dm"]
    assert (dm.payload["user"], dm.payload["platform"], dm.payload["purpose"]) == (
        "U0BO",
        "slack",
        "identity",
    )
    card = Card.from_dict(dm.payload["card"])
    assert [(b.title, b.action, b.value) for b in card.buttons] == [
        ("Approve", ActionId.IDENTITY_APPROVE, {"check": check.nonce}),
        ("Deny", ActionId.IDENTITY_DENY, {"check": check.nonce}),
    ]
    facts = {plain(k): v for k, v in next(e for e in card.body if e.kind == "facts").items}
    assert facts["Requester"] == Mention("Ana Lopez", "ana@example.com", "U0ANA")
    assert plain(facts["Technician"]) == "Tom Tech (tom@example.com)"
    assert facts["Request"] == Typed("Locked out <!channel>")  # the renderers escape it
    assert facts["Ticket"] == f"{number} (P2)"
    assert facts["Channel"] == Rich("Slack, channel ", Typed("C0HELP"))  # the id: literal
    assert plain(facts["Asked at"]).endswith("UTC")
    assert events[-2:] == ["identity.requested", "identity.sent"]


async def test_verify_is_for_technicians_only(deps: Deps):
    number = await new_ticket(deps)
    with pytest.raises(Forbidden):
        await verify(deps, number, Actor("slack", "U0ANA"))
    assert (await state(deps, number))[1] == []


async def test_only_the_manager_can_answer(deps: Deps):
    number = await new_ticket(deps)
    await verify(deps, number)
    nonce = (await state(deps, number))[1][0].nonce
    for intruder in (Actor("slack", "U0ANA"), TECH, Actor("teams", "29:1bo"), Actor("slack", "")):
        reply = await answer(deps, nonce, intruder)
        assert "Only the requester's manager" in plain(reply.text)
    ticket, [check], events, _ = await state(deps, number)
    assert ticket.identity_state == "pending" and check.state == "pending"
    assert events.count("identity.refused") == 4
    async with deps.sessions() as session:
        refused = (
            (
                await session.execute(
                    select(TicketEvent).where(TicketEvent.kind == "identity.refused")
                )
            )
            .scalars()
            .all()
        )
    assert {e.actor_id for e in refused} == {"U0ANA", "UTECH", "29:1bo", ""}
    assert {e.data["reason"] for e in refused} == {"not the manager"}


async def test_altered_or_missing_nonce_matches_nothing(deps: Deps):
    number = await new_ticket(deps)
    await verify(deps, number)
    nonce = (await state(deps, number))[1][0].nonce
    for bad in (nonce[:-1] + ("A" if nonce[-1] != "A" else "B"), number, "", None, 7, "x" * 500):
        reply = await answer(deps, bad)
        assert "not valid" in plain(reply.text)
    reply = await identity.approve(deps, turn(BO_SLACK, data={"ticket": number}))
    assert "not valid" in plain(reply.text)
    ticket, _, _, _ = await state(deps, number)
    assert ticket.identity_state == "pending"
    async with deps.sessions() as session:
        unbound = (
            (
                await session.execute(
                    select(TicketEvent).where(TicketEvent.kind == "identity.refused")
                )
            )
            .scalars()
            .all()
        )
    assert len(unbound) == 7 and all(e.ticket_id is None for e in unbound)


async def test_approve_confirms_tells_technician_and_second_answer_changes_nothing(deps: Deps):
    number = await new_ticket(deps)
    await verify(deps, number)
    nonce = (await state(deps, number))[1][0].nonce
    reply = await answer(deps, nonce)
    assert "confirmed" in plain(reply.text)
    ticket, [check], events, rows = await state(deps, number)
    assert (ticket.identity_state, check.state, check.answered_by) == (
        "confirmed",
        "approved",
        "U0BO",
    )
    identity.require_confirmed(ticket)
    [told] = texts(rows, channel="C0HELP", purpose="identity")
    assert told.startswith(f"Identity confirmed for {number}") and "Bo Boss" in told
    assert "identity.approved" in events
    again = await answer(deps, nonce, approve=False)
    assert "already answered" in plain(again.text)
    ticket, [check], events, _ = await state(deps, number)
    assert (ticket.identity_state, check.state) == ("confirmed", "approved")
    assert events[-1] == "identity.refused"


async def test_deny_flags_ticket_notifies_security_and_blocks_work(deps: Deps):
    number = await new_ticket(deps, category="password-reset")
    nonce = (await state(deps, number))[1][0].nonce
    reply = await answer(deps, nonce, approve=False)
    assert "security" in plain(reply.text)
    ticket, [check], events, rows = await state(deps, number)
    assert (ticket.identity_state, check.state) == ("denied", "denied")
    assert {"identity.denied", "ticket.flagged"} <= set(events)
    [security] = texts(rows, channel="C0SECURITY")
    assert security.startswith(f"Possible impersonation on {number}") and "Bo Boss" in security
    assert any(t.startswith(f"DO NOT PROCEED with {number}") for t in texts(rows, channel="C0HELP"))
    with pytest.raises(Forbidden, match="impersonation"):
        identity.require_confirmed(ticket)
    refused = await verify(deps, number)  # refused, and audited
    assert "impersonation" in plain(refused.text)
    assert (await state(deps, number))[2][-1] == "identity.gate_refused"


async def test_deny_without_security_queue_tells_technician_to_report_it(deps: Deps):
    bare = dataclasses.replace(deps, config=HelpdeskConfig())
    number = await new_ticket(bare, category="mfa")
    nonce = (await state(bare, number))[1][0].nonce
    reply = await answer(bare, nonce, approve=False)
    assert "stopped" in plain(reply.text) and "security" not in plain(reply.text)
    ticket, _, events, rows = await state(bare, number)
    assert ticket.identity_state == "denied" and "ticket.flagged" in events
    assert any("No security queue is configured" in t for t in texts(rows, channel="C0HELP"))
    assert not texts(rows, channel="C0SECURITY")


async def test_late_answer_is_refused_and_check_can_restart(deps: Deps):
    number = await new_ticket(deps)
    await verify(deps, number)
    old = (await state(deps, number))[1][0].nonce
    deps.clock.now += timedelta(minutes=15, seconds=1)  # type: ignore[attr-defined]
    reply = await answer(deps, old)
    assert "expired" in plain(reply.text)
    ticket, [check], events, rows = await state(deps, number)
    assert (ticket.identity_state, check.state) == ("required", "expired")
    assert "identity.expired" in events
    assert any("answered after the request expired" in t for t in texts(rows, channel="C0HELP"))
    assert "has expired" in plain((await answer(deps, old, approve=False)).text)
    assert (await state(deps, number))[1][0].state == "expired"
    await verify(deps, number)
    fresh = (await state(deps, number))[1][1].nonce
    assert "confirmed" in plain((await answer(deps, fresh)).text)


async def test_verify_again_supersedes_the_pending_request(deps: Deps):
    number = await new_ticket(deps)
    await verify(deps, number)
    await verify(deps, number)
    _, [first, second], events, rows = await state(deps, number)
    assert (first.state, second.state) == ("superseded", "pending")
    assert len([r for r in rows if r.kind == "dm"]) == 2
    assert "replaced by a newer one" in plain((await answer(deps, first.nonce)).text)
    ticket, _, _, _ = await state(deps, number)
    assert ticket.identity_state == "pending" and "identity.superseded" in events
    assert "confirmed" in plain((await answer(deps, second.nonce)).text)


@pytest.mark.parametrize(
    ("requester", "expected"),
    [
        ("U0CY", ["no manager on file for Cy Solo", "+1 555 0199", "never a number the caller"]),
        (
            "U0DEE",
            ["Eve Offline (eve@example.com) has no Slack or Teams", "no phone number on file"],
        ),
        ("U0NOBODY", ["U0NOBODY is not in the directory", "no phone number on file"]),
    ],
)
async def test_no_manager_tells_technician_to_call_back_number_on_file(
    deps: Deps, requester: str, expected: list[str]
):
    number = await new_ticket(deps, requester)
    reply = await verify(deps, number)
    ticket, [check], events, rows = await state(deps, number)
    assert (ticket.identity_state, check.state) == ("required", "no_manager")
    for part in expected:
        assert part in plain(reply.text)
    [told] = texts(rows, purpose="identity")
    dms = [r for r in rows if r.kind == "dm"]
    if "+1 555 0199" in expected:
        # The number goes only to the technician who asked (a direct message); the ticket's
        # thread, which others may read, is told where it went, never the number.
        assert "+1 555 0199" not in told and "sent to Tom Tech" in told and "privately" in told
        assert [(r.payload["user"], r.payload["text"]) for r in dms] == [
            (TECH.id, plain(reply.text))
        ]
    else:
        assert told == plain(reply.text) and not dms
    assert "identity.no_manager" in events
    with pytest.raises(Forbidden):
        identity.require_confirmed(ticket)
    assert "not valid" in plain((await answer(deps, check.nonce, Actor("slack", ""))).text)


async def test_manager_is_asked_on_the_other_platform_when_needed(deps: Deps):
    number = await new_ticket(deps, "U0ANA")
    async with deps.sessions() as session, session.begin():
        ticket = await repo.get_by_number(session, number)
        assert ticket is not None
        ticket.source_platform, ticket.requester_id = "teams", "fay@example.com"
        ticket.requester_email = "fay@example.com"
    await verify(deps, number)
    [check] = (await state(deps, number))[1]
    assert (check.manager_platform, check.manager_id) == ("slack", "U0GUS")


async def test_vip_and_gated_categories_start_the_check_on_creation(deps: Deps):
    vip = await new_ticket(deps, "U0VIC")
    ticket, [check], _, rows = await state(deps, vip)
    assert (ticket.identity_state, check.manager_id) == ("pending", "U0BO")
    assert any(t.startswith(f"Identity check for {vip}: asked Bo Boss") for t in texts(rows))
    with pytest.raises(Forbidden, match="not answered yet"):
        identity.require_confirmed(ticket)
    reset = await new_ticket(deps, category="password-reset")
    assert (await state(deps, reset))[0].identity_state == "pending"
    printer = await new_ticket(deps)
    ticket = (await state(deps, printer))[0]
    assert ticket.identity_state == "not_required"
    identity.require_confirmed(ticket)


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        ("not_required", True),
        ("confirmed", True),
        ("required", False),
        ("pending", False),
        ("denied", False),
    ],
)
def test_require_confirmed(value: str, allowed: bool):
    ticket = Ticket(number="HD-9", identity_state=value)
    if allowed:
        identity.require_confirmed(ticket)
    else:
        with pytest.raises(Forbidden, match="HD-9"):
            identity.require_confirmed(ticket)


async def test_delivery_restarts_the_window_and_failures_reach_the_technician(deps: Deps):
    number = await new_ticket(deps)
    await verify(deps, number)
    _, [check], _, rows = await state(deps, number)
    [dm] = [r for r in rows if r.kind == "dm"]
    async with deps.sessions() as session, session.begin():
        dm.attempts = 1
        await deliveries.after_failure(
            session, message=dm, error="slack: ratelimited", permanent=False
        )
        dm.attempts = 3
        for _ in range(2):
            await deliveries.after_failure(
                session, message=dm, error="slack: internal_error", permanent=False
            )
    _, [still], events, rows = await state(deps, number)
    [told] = [t for t in texts(rows, purpose="identity") if "has not reached" in t]
    # Still retried: the manager's answer is still the second channel, no call-back yet.
    assert "the bot keeps trying" in told and "NOT confirmed" in told
    assert "call" not in told and "+1 555 0100" not in told
    assert events.count("identity.unreachable") == 1 and still.state == "pending"
    async with deps.sessions() as session, session.begin():
        dm.status, dm.result = "delivered", {"channel": "DU0BO", "ts": "1.0001"}
        await session.merge(dm)
        await deliveries.after_delivery(session, config=deps.config, message=dm, result=dm.result)
    _, [delivered], events, _ = await state(deps, number)
    assert delivered.sent_at is not None and "identity.delivered" in events
    assert delivered.expires_at - delivered.sent_at == timedelta(minutes=15)
    await answer(deps, check.nonce)
    [update] = [r for r in (await state(deps, number))[3] if r.kind == "update"]
    assert (update.payload["channel"], update.payload["ts"]) == ("DU0BO", "1.0001")
    assert Card.from_dict(update.payload["card"]).buttons == []


async def test_a_request_given_up_opens_the_call_back_once(deps: Deps):
    number = await new_ticket(deps)
    await verify(deps, number)
    _, [check], _, rows = await state(deps, number)
    [dm] = [r for r in rows if r.kind == "dm"]
    assert check.callback_phone == "+1 555 0100"  # read from the directory when asked
    assert dm.payload["callback_to"] == {
        "platform": "slack",
        "user": "UTECH",
        "technician": "Tom Tech (tom@example.com)",
    }
    async with deps.sessions() as session, session.begin():
        dm.attempts = 1
        for _ in range(2):
            await deliveries.after_failure(
                session, message=dm, error="slack: user_not_found", permanent=True
            )
    ticket, [given_up], events, rows = await state(deps, number)
    assert (given_up.state, ticket.identity_state) == ("unreachable", "required")
    assert events.count("identity.unreachable") == 1 and events.count("identity.no_manager") == 1
    [told] = [t for t in texts(rows, purpose="identity") if "given up" in t]
    # The thread others may read is told where the number went, never the number.
    assert "+1 555 0100" not in told and "sent to Tom Tech (tom@example.com) privately" in told
    [number_dm] = [r for r in rows if r.kind == "dm" and r.payload.get("identity_callback")]
    assert (number_dm.payload["user"], number_dm.payload["identity_callback"]) == (
        "UTECH",
        check.id,
    )
    assert "+1 555 0100" in number_dm.payload["text"]
    # The manager's answer to the given-up request does not count, whenever it comes.
    reply = await answer(deps, check.nonce)
    assert "given up" in plain(reply.text)
    ticket, [still], events, _ = await state(deps, number)
    assert (still.state, ticket.identity_state) == ("unreachable", "required")
    assert "identity.approved" not in events


async def test_retried_click_approves_once_and_is_answered_as_the_first(deps: Deps):
    number = await new_ticket(deps)
    await verify(deps, number)
    nonce = (await state(deps, number))[1][0].nonce
    click = turn(
        BO_SLACK,
        action=ActionId.IDENTITY_APPROVE,
        data={"check": nonce},
        delivery_id="slack:action:1:2",
    )
    first, retry = await dispatch.handle(deps, click), await dispatch.handle(deps, click)
    assert first.text and (retry.text, retry.duplicate) == (first.text, False)
    assert (await state(deps, number))[2].count("identity.approved") == 1


@pytest.fixture
async def boss_deps(db_url: str, tmp_path: Path) -> AsyncIterator[Deps]:
    """Bo (Ana's and Vic's manager) is also a technician."""
    people = [dict(p, technician=True) if p["email"] == "bo@example.com" else p for p in PEOPLE]
    path = tmp_path / "people.yaml"
    path.write_text(yaml.safe_dump(people))
    engine = db.create_engine(db_url)
    yield Deps(
        config=HelpdeskConfig.model_validate({}),
        sessions=db.session_factory(engine),
        directory=FileDirectory(path),
        clock=Clock(),
    )
    await engine.dispose()


@pytest.mark.parametrize(
    ("requester", "opened_by", "verified_by", "conflict"),
    [
        ("U0ANA", BO_SLACK, BO_SLACK, "the manager on file is the technician asking"),
        ("U0ANA", BO_SLACK, TECH, "the manager on file is the ticket's technician"),
    ],
)
async def test_a_manager_who_is_not_independent_is_never_asked(
    boss_deps: Deps, requester: str, opened_by: Actor, verified_by: Actor, conflict: str
):
    """Whoever is on the ticket (or the requester) must not vouch for the requester."""
    number = await new_ticket(boss_deps, requester, actor=opened_by)
    reply = await verify(boss_deps, number, actor=verified_by)
    ticket, [check], _, rows = await state(boss_deps, number)
    assert (ticket.identity_state, check.state) == ("required", "no_manager")
    assert conflict in plain(reply.text) and "not be an independent second channel" in plain(
        reply.text
    )
    # No manager's request; only the asking technician's direct message with the number.
    assert not [r for r in rows if r.kind == "dm" and "identity_check" in r.payload]
    assert [r.payload["user"] for r in rows if r.kind == "dm"] == [verified_by.id]
    async with boss_deps.sessions() as session:
        [data] = (
            await session.execute(
                select(TicketEvent.data).where(
                    TicketEvent.ticket_id == ticket.id, TicketEvent.kind == "identity.no_manager"
                )
            )
        ).scalars()
    assert data["conflict"] == conflict
    # Even holding the nonce, the manager cannot answer a check that was never sent to them.
    assert "not valid" in plain((await answer(boss_deps, check.nonce, BO_SLACK)).text)
    assert (await state(boss_deps, number))[0].identity_state == "required"
    with pytest.raises(Forbidden):
        identity.require_confirmed(ticket)


async def test_an_independent_manager_is_still_asked_when_a_technician_is_a_manager(
    boss_deps: Deps,
):
    """Bo being a technician changes nothing when Tom works Ana's ticket: Bo is asked."""
    number = await new_ticket(boss_deps, "U0ANA")
    await verify(boss_deps, number)
    _, [check], _, rows = await state(boss_deps, number)
    assert (check.state, check.manager_id) == ("pending", "U0BO")
    assert [r for r in rows if r.kind == "dm"]


def test_a_requester_listed_as_their_own_manager_is_not_independent():
    """The file directory refuses such an entry; Graph and LDAP can still return one."""
    zed = Person(email="zed@example.com", slack_id="U0ZED")
    ticket = Ticket(source_platform="slack", requester_id="U0ZED", technician_id="UTECH")
    same = Person(email="ZED@example.com")
    assert _not_independent(ticket, TECH, requester=zed, manager=same) == (
        "the requester is listed as their own manager"
    )
    by_id = Person(email="other@example.com", slack_id="U0ZED")
    assert _not_independent(ticket, TECH, requester=None, manager=by_id) == (
        "the requester is listed as their own manager"
    )
    bo = Person(email="bo@example.com", slack_id="U0BO")
    assert _not_independent(ticket, TECH, requester=zed, manager=bo) == ""
    # Same person, other ids: the asker found through another platform or AAD.
    assert _not_independent(
        ticket, Actor("teams", "29:x"), requester=zed, manager=bo, asker=bo
    ) == ("the manager on file is the technician asking")
    assert _not_independent(
        ticket, TECH, requester=zed, manager=bo, technician=Person(email="BO@example.com")
    ) == ("the manager on file is the ticket's technician")


async def test_a_manager_known_on_teams_only_by_aad_id_cannot_vouch(db_url: str, tmp_path: Path):
    """Bo's directory entry has a Slack id and an AAD object id, no Teams id: when Bo works
    Ana's ticket in Teams he is still recognised, and the request never goes to his Slack."""
    people = [
        {
            "email": "bo@example.com",
            "name": "Bo Boss",
            "slack_id": "U0BO",
            "aad_object_id": "aad-bo",
            "technician": True,
        }
        if p["email"] == "bo@example.com"
        else p
        for p in PEOPLE
    ]
    path = tmp_path / "people.yaml"
    path.write_text(yaml.safe_dump(people))
    engine = db.create_engine(db_url)
    deps = Deps(
        config=HelpdeskConfig.model_validate({}),
        sessions=db.session_factory(engine),
        directory=FileDirectory(path),
        clock=Clock(),
    )
    try:
        bo_teams = Actor("teams", "29:1bo-unlisted", "bo", aad_object_id="aad-bo")
        number = await new_ticket(deps, "ana@example.com", actor=bo_teams)
        reply = await verify(deps, number, actor=bo_teams)
        assert "the manager on file is the technician asking" in plain(reply.text)
        _, [check], _, rows = await state(deps, number)
        assert check.state == "no_manager"
        assert not [r for r in rows if r.kind == "dm" and "identity_check" in r.payload]
        assert [r.payload["user"] for r in rows if r.kind == "dm"] == [bo_teams.id]
        assert "not valid" in plain((await answer(deps, check.nonce, BO_SLACK)).text)
        assert (await state(deps, number))[0].identity_state == "required"
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("platform", "technician_id"),
    [("slack", "U0BO"), ("teams", "29:1bo")],
    ids=["same-platform", "bo-in-teams"],
)
async def test_a_manager_who_takes_over_the_ticket_can_no_longer_answer(
    boss_deps: Deps, platform: str, technician_id: str
):
    """The request went to Bo on Slack; Bo then took the ticket over (on Slack, or in Teams
    under his Teams id): his answer on Slack is refused."""
    number = await new_ticket(boss_deps, "U0ANA")
    await verify(boss_deps, number)
    _, [check], _, _ = await state(boss_deps, number)
    async with boss_deps.sessions() as session, session.begin():
        ticket = await repo.get_by_number(session, number)
        assert ticket is not None
        ticket.source_platform, ticket.technician_id = platform, technician_id
    reply = await answer(boss_deps, check.nonce, BO_SLACK)
    assert "cannot confirm" in plain(reply.text)
    ticket, [check], events, _ = await state(boss_deps, number)
    assert (ticket.identity_state, check.state) == ("pending", "pending")
    assert "identity.refused" in events and "identity.approved" not in events


async def test_identity_categories_written_in_capitals_still_gate(deps: Deps):
    """The form files categories in lower case; the config's `MFA`, `Password-Reset` and a
    custom `VPN` must gate those tickets (they used to open `not_required`, or for a custom
    category not at all: the form offered `VPN` and then refused it)."""
    config = HelpdeskConfig.model_validate(
        {
            "identity": {"categories": ["Password-Reset", " MFA ", "VPN"]},
            "queues": {"security": {"slack": "C0SECURITY"}},
        }
    )
    shouting = dataclasses.replace(deps, config=config)
    assert config.identity.categories == ["password-reset", "mfa", "vpn"]
    for category in ("MFA", "mfa", "password-reset", "VPN"):
        number = await new_ticket(shouting, category=category)
        ticket, _, _, _ = await state(shouting, number)
        assert ticket.category == category.lower()
        # Gated: the manager is asked at once (pending).
        assert ticket.identity_state == "pending", category
    printer = await new_ticket(shouting, category="printer")
    assert (await state(shouting, printer))[0].identity_state == "not_required"


async def test_closing_a_p1_leaves_filed_reports_whose_identity_is_not_confirmed_open(deps: Deps):
    """SPEC: a ticket in `identity.categories` is not closed before its requester is confirmed.
    Closing a P1 closes the reports filed under it, but not a denied (possible impersonation)
    or pending one: those stay open, audited, and the closer is told."""
    p1 = await new_ticket(deps, "U0CY", category="printer")
    async with deps.sessions() as session, session.begin():
        found = await repo.get_by_number(session, p1)
        assert found is not None
        found.priority = "P1"
    denied = await new_ticket(deps, "U0ANA", category="password-reset")
    confirmed = await new_ticket(deps, "U0ANA", category="password-reset")
    pending = await new_ticket(deps, "U0VIC", category="printer")  # a VIP: always checked
    # Filed while their checks are pending (a Deny before would refuse the filing), answered
    # after.
    for report in (denied, confirmed, pending):
        await working.link_command(deps, turn(TECH), Command("link", f"{report} {p1}"))
    await answer(deps, (await state(deps, denied))[1][0].nonce, approve=False)
    await answer(deps, (await state(deps, confirmed))[1][0].nonce)
    assert [(await state(deps, n))[0].identity_state for n in (denied, confirmed, pending)] == [
        "denied",
        "confirmed",
        "pending",
    ]
    data = {
        "ticket": p1,
        "resolution_note": "Restarted the print spooler on PRN-0042 (KB-12)",
        "resolution_category": "Incident",
        "time_spent": "45m",
        "kb_article": "",
    }
    reply = await closure.submit(deps, turn(TECH, action=ActionId.CLOSE_SUBMIT, data=data))
    assert f"Also closed with it: {confirmed}" in plain(reply.text)
    assert f"Still open: {denied}, {pending}" in plain(reply.text)
    assert "identity is not confirmed" in plain(reply.text)
    assert (await state(deps, confirmed))[0].status == "closed"
    for number in (denied, pending):
        ticket, _, events, _ = await state(deps, number)
        assert ticket.status == "open", number
        assert ticket.resolution_note in ("", None)
        assert events[-1] == "ticket.kept_open" and "ticket.closed" not in events
    # Such a report is still filed under the P1, which is over: raising it says so (not that
    # "that incident is paged already").
    from handlers import incidents

    with pytest.raises(InvalidInput) as raised:
        await incidents.raise_p1_command(deps, turn(TECH), Command("p1", pending))
    assert f"filed under the P1 {p1}, which is closed" in str(raised.value)
    assert "paged already" not in str(raised.value)
    # A survey for the P1 and the report closed with it; none for the reports left open.
    _, _, _, rows = await state(deps, denied)
    surveyed = {r.dedup_key for r in rows if (r.dedup_key or "").startswith("csat-survey:")}
    ids = {}
    for number in (p1, confirmed, denied, pending):
        ids[number] = (await state(deps, number))[0].id
    assert surveyed == {f"csat-survey:{ids[p1]}", f"csat-survey:{ids[confirmed]}"}


async def test_a_manager_removed_from_the_chain_meanwhile_cannot_approve(
    db_url: str, tmp_path: Path
):
    """The request went to Bo; the directory then gave Ana a new manager (Gus). Bo's Approve
    must not confirm her: it is refused, audited, Bo is told why and the technician is told
    to ask again; the check stays pending so `verify` asks the manager now on file."""
    path = tmp_path / "people.yaml"
    path.write_text(yaml.safe_dump(PEOPLE))
    engine = db.create_engine(db_url)
    deps = Deps(
        config=HelpdeskConfig.model_validate({}),
        sessions=db.session_factory(engine),
        directory=FileDirectory(path, check_interval=0),
        clock=Clock(),
    )
    try:
        number = await new_ticket(deps, "U0ANA", category="password-reset")
        _, [check], _, _ = await state(deps, number)
        assert (check.state, check.manager_id) == ("pending", "U0BO")
        moved = [
            {**p, "manager": "GUS@example.com"} if p["email"] == "ana@example.com" else p
            for p in PEOPLE
        ]
        path.write_text(yaml.safe_dump(moved) + "\n# changed\n")
        for approve in (True, False, True):  # a second click tells the technician only once
            reply = await answer(deps, check.nonce, approve=approve)
            assert "no longer listed as the requester's manager" in plain(reply.text)
            assert f"ticket verify {number}" in plain(reply.text)
        ticket, [check], events, rows = await state(deps, number)
        assert (ticket.identity_state, check.state, check.answered_by) == (
            "pending",
            "pending",
            None,
        )
        assert "identity.approved" not in events and "identity.denied" not in events
        async with deps.sessions() as session:
            refused = (
                (
                    await session.execute(
                        select(TicketEvent).where(TicketEvent.kind == "identity.refused")
                    )
                )
                .scalars()
                .all()
            )
        assert [e.data["reason"] for e in refused] == ["no longer the manager"] * 3
        assert refused[0].data["manager"] == "bo@example.com"
        assert refused[0].data["current_manager"] == "gus@example.com"  # as listed
        [told] = [t for t in texts(rows, purpose="identity") if "no longer" in t]
        assert number in told and "Bo Boss" in told and f"ticket verify {number}" in told
        # `verify` now asks Gus, whose answer counts.
        await verify(deps, number)
        _, checks, _, _ = await state(deps, number)
        assert (checks[-1].state, checks[-1].manager_id) == ("pending", "U0GUS")
        gus = Actor("slack", "U0GUS", "gus")
        assert "confirmed" in plain((await answer(deps, checks[-1].nonce, gus)).text)
        assert (await state(deps, number))[0].identity_state == "confirmed"
    finally:
        await engine.dispose()


async def test_a_manager_whose_address_changed_case_still_counts(db_url: str, tmp_path: Path):
    """Only a different manager is refused: `Bo@Example.com` on Ana's entry is still Bo."""
    path = tmp_path / "people.yaml"
    path.write_text(yaml.safe_dump(PEOPLE))
    engine = db.create_engine(db_url)
    deps = Deps(
        config=HelpdeskConfig.model_validate({}),
        sessions=db.session_factory(engine),
        directory=FileDirectory(path, check_interval=0),
        clock=Clock(),
    )
    try:
        number = await new_ticket(deps, "U0ANA", category="password-reset")
        _, [check], _, _ = await state(deps, number)
        same = [
            {**p, "manager": "Bo@Example.com"} if p["email"] == "ana@example.com" else p
            for p in PEOPLE
        ]
        path.write_text(yaml.safe_dump(same) + "\n# changed\n")
        assert "confirmed" in plain((await answer(deps, check.nonce)).text)
        assert (await state(deps, number))[0].identity_state == "confirmed"
    finally:
        await engine.dispose()


async def test_an_answer_while_the_directory_cannot_say_who_the_manager_is_changes_nothing(
    deps: Deps,
):
    """Same as for the other answer-time look-ups: not recorded, nothing changed; but the
    answer is audited (SPEC: every identity decision), and a Deny is told to the technician
    (the manager said the caller is not the requester: nobody may go on as if unheard)."""
    number = await new_ticket(deps, "U0ANA", category="password-reset")
    _, [check], before, rows_before = await state(deps, number)

    async def down(person: Person) -> Person | None:
        raise DirectoryUnavailable("LDAP", "server down")

    directory = deps.directory
    assert isinstance(directory, FileDirectory)
    original = directory.manager_of
    directory.manager_of = down  # type: ignore[method-assign]
    try:
        approved = await answer(deps, check.nonce)
        denied = await answer(deps, check.nonce, approve=False)
        again = await answer(deps, check.nonce, approve=False)
        stranger = await answer(deps, check.nonce, TECH, approve=False)
        # Slack retries the same press: one audit, and the retry is answered as the first was.
        pressed = turn(
            BO_SLACK,
            action=ActionId.IDENTITY_DENY,
            data={"check": check.nonce},
            delivery_id="slack:action:retried",
        )
        first, retry = await dispatch.handle(deps, pressed), await dispatch.handle(deps, pressed)
    finally:
        directory.manager_of = original  # type: ignore[method-assign]
    for reply in (approved, denied, again, first):
        assert "could not be reached" in plain(reply.text) and "not recorded" in plain(reply.text)
    assert retry.text == first.text and not (first.duplicate or retry.duplicate)
    assert "could not be reached" not in plain(stranger.text)  # refused for who they are
    ticket, [check], events, rows = await state(deps, number)
    assert (ticket.identity_state, check.state) == ("pending", "pending")
    assert events == [*before, *["identity.refused"] * 5]
    async with deps.sessions() as session:
        audited = (
            (
                await session.execute(
                    select(TicketEvent)
                    .where(TicketEvent.kind == "identity.refused")
                    .order_by(TicketEvent.id)
                )
            )
            .scalars()
            .all()
        )
    assert [(e.data["reason"], e.data["answer"], e.actor_id) for e in audited] == [
        ("directory unavailable", "approve", "U0BO"),
        ("directory unavailable", "deny", "U0BO"),
        ("directory unavailable", "deny", "U0BO"),
        ("not the manager", "deny", TECH.id),
        ("directory unavailable", "deny", "U0BO"),
    ]
    # The technician hears of the Deny once, and nothing else is sent.
    [told] = [t for t in texts(rows) if t not in texts(rows_before)]
    assert told.startswith(f"Identity check for {number}: ") and "pressed Deny" in told
    assert "could not be reached" in told and "possible impersonation" in told
    assert "confirmed" in plain((await answer(deps, check.nonce)).text)


class _DuplicatedVic(FileDirectory):
    """The file directory, but a stale second account carries Vic's mail (as LDAP or Graph
    would answer: DirectoryAmbiguous)."""

    async def find_by_platform_id(
        self, platform: str, user_id: str, *, aad_object_id: str | None = None
    ) -> Person | None:
        if user_id == "U0VIC":
            raise DirectoryAmbiguous("LDAP", "mail vic@example.com", 2)
        return await super().find_by_platform_id(platform, user_id, aad_object_id=aad_object_id)


async def test_an_ambiguous_requester_gates_the_ticket_and_says_why(deps: Deps, tmp_path: Path):
    """Two entries with Vic's mail: the ticket opens gated (a VIP cannot be ruled out), and the
    technician is told the directory holds duplicates, not that it could not be reached."""
    path = tmp_path / "people.yaml"
    deps = dataclasses.replace(deps, directory=_DuplicatedVic(path))
    number = await new_ticket(deps, "U0VIC")
    ticket, checks, events, rows = await state(deps, number)
    assert (ticket.identity_state, checks) == ("required", [])
    assert "identity.directory_unavailable" in events
    [told] = [t for t in texts(rows) if "VIP" in t]
    assert "has 2 entries with mail vic@example.com" in told and "could not be reached" not in told
    assert f"then run `verify {number}`" in told
    reply = await verify(deps, number)
    assert "has 2 entries with mail vic@example.com" in plain(reply.text)
    assert "could not be reached" not in plain(reply.text) and "duplicate entry removed" in plain(
        reply.text
    )


async def test_a_deny_from_a_manager_removed_from_the_chain_is_told_as_a_deny(
    db_url: str, tmp_path: Path
):
    """Bo, no longer Ana's manager, presses Deny: it cannot count as a denial, but the
    technician is told it was a Deny (a possible impersonation), not merely "answered"."""
    path = tmp_path / "people.yaml"
    path.write_text(yaml.safe_dump(PEOPLE))
    engine = db.create_engine(db_url)
    deps = Deps(
        config=HelpdeskConfig.model_validate({}),
        sessions=db.session_factory(engine),
        directory=FileDirectory(path, check_interval=0),
        clock=Clock(),
    )
    try:
        number = await new_ticket(deps, "U0ANA", category="password-reset")
        _, [check], _, _ = await state(deps, number)
        moved = [
            {**p, "manager": "gus@example.com"} if p["email"] == "ana@example.com" else p
            for p in PEOPLE
        ]
        path.write_text(yaml.safe_dump(moved) + "\n# changed\n")
        await answer(deps, check.nonce, approve=False)
        _, [check], _, rows = await state(deps, number)
        assert check.state == "pending"
        [told] = [t for t in texts(rows, purpose="identity") if "no longer" in t]
        assert "pressed Deny" in told and "possible impersonation" in told, told
    finally:
        await engine.dispose()
