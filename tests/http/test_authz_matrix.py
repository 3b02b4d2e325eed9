"""Who may do what, over HTTP through the real app, on Slack and Teams (SPEC "Errors and
safety", "Second wave"): every technician-only text refused to the requester, the requester's
manager, an unrelated member and someone from another workspace; `show` to technicians and the
requester only; nothing changed by a refusal. And the authorization review's findings: a
`verify` (or **Verify identity**) from someone who is not a technician is audited."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlencode

import yaml
from sqlalchemy import func, select

from storage.models import IdentityCheck, OutboxMessage, Ticket, TicketEvent, TimeEntry
from tests.directory_people import TOM
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, block_actions, wait_until
from tests.harness import slack_button as button
from tests.http.conftest_teams import TECH_ID, message
from tests.http.test_directory_teams import new_ticket as teams_ticket
from tests.http.test_identity_slack import PEOPLE, new_ticket, posts_to, start

# Technician-only texts (SPEC) and the words of their refusal.
TECHNICIAN_ONLY = {
    "p1 HD-1": "Only technicians can raise a ticket to P1",
    "escalate HD-1": "Only technicians can escalate",
    "time HD-1 45m": "Only technicians can log time",
    "close HD-1": "Only technicians can close",
    "confirm HD-1": "Only technicians can ask a requester to confirm",
    "link HD-1 HD-2": "Only technicians can file tickets under a P1",
    "report": "Only technicians can run reports",
    "similar HD-1": "Only technicians can look for similar tickets",
    "kb printer": "Only technicians can search",
    "verify HD-1": "Only technicians can start an identity check",
}
# Ana is the requester, Bo her manager, Cy works there too; none is a technician.
NOT_TECHNICIANS = ("U0ANA", "U0BO", "U0CY")


async def slash_from(
    app: AppHarness, text: str, *, user: str, team: str = "T0TEAM", channel: str = "C0HELP"
) -> str:
    """`/ticket <text>` from `user` of workspace `team`: the ephemeral answer, as text."""
    form = {
        "token": "legacy",
        "team_id": team,
        "team_domain": "elsewhere" if team != "T0TEAM" else "acme",
        "channel_id": channel,
        "channel_name": "helpdesk",
        "user_id": user,
        "user_name": user.lower(),
        "command": "/ticket",
        "text": text,
        "api_app_id": "A0APP",
        "response_url": "http://127.0.0.1:9/unused",
        "trigger_id": f"trigger-{time.monotonic_ns()}",
    }
    response = await app.slack(urlencode(form), content_type="application/x-www-form-urlencoded")
    assert response.status == 200
    answer = await response.json()
    assert answer.get("response_type") == "ephemeral", answer
    return json.dumps(answer)


async def state(app: AppHarness) -> tuple[Any, ...]:
    """What a refused request must leave as it was."""
    async with app.services.sessions() as session:
        tickets = (await session.execute(select(Ticket).order_by(Ticket.id))).scalars().all()
        times = (await session.execute(select(func.count()).select_from(TimeEntry))).scalar()
        checks = (await session.execute(select(func.count()).select_from(IdentityCheck))).scalar()
        rows = (await session.execute(select(func.count()).select_from(OutboxMessage))).scalar()
    return (
        [(t.priority, t.status, t.filed_under, t.identity_state, t.fix_state) for t in tickets],
        times,
        checks,
        rows,
    )


async def verify_refusals(app: AppHarness) -> list[tuple[str, str, Any, str]]:
    async with app.services.sessions() as session:
        query = (
            select(TicketEvent)
            .where(TicketEvent.kind == "identity.verify_refused")
            .order_by(TicketEvent.id)
        )
        found = (await session.execute(query)).scalars().all()
    return [(e.actor_id, e.channel, e.ticket_id, e.data["reason"]) for e in found]


async def test_slack_technician_only_texts_are_refused_to_everyone_else(
    make_app, slack_api: FakeSlack
) -> None:
    app = await start(make_app, slack_api)
    await new_ticket(app, slack_api)  # HD-1: Tom's, for Ana
    await new_ticket(app, slack_api)  # HD-2
    before = await state(app)
    views = len(slack_api.views_opened())
    outsiders = [(user, "T0TEAM") for user in NOT_TECHNICIANS] + [("U0EXT", "T0OTHER")]
    for user, team in outsiders:
        for text, refusal in TECHNICIAN_ONLY.items():
            answer = await slash_from(app, text, user=user, team=team)
            assert refusal in answer, (user, text, answer)
        # `show`: the requester's own ticket only; nobody else's.
        shown = await slash_from(app, "show HD-1", user=user, team=team)
        if user == "U0ANA":
            assert "Locked out of my laptop" in shown and "Only technicians" not in shown
        else:
            assert "Only technicians and the requester can see HD-1" in shown, (user, shown)
            assert "Locked out of my laptop" not in shown
        mine = await slash_from(app, "mine", user=user, team=team)
        assert ("HD-1" in mine) == (user == "U0ANA"), (user, mine)
    assert await state(app) == before
    assert len(slack_api.views_opened()) == views  # no escalation or closure form opened
    # Every refused `verify` is audited, with who asked and where.
    assert await verify_refusals(app) == [
        ("U0ANA", "C0HELP", 1, "not a technician"),
        ("U0BO", "C0HELP", 1, "not a technician"),
        ("U0CY", "C0HELP", 1, "not a technician"),
        ("U0EXT", "C0HELP", 1, "not a technician"),
    ]
    # The technician may do each (the check of who may, not of what each does).
    assert "Only technicians" not in await slash_from(app, "similar HD-1", user="UTECH")
    assert "Only technicians" not in await slash_from(app, "verify HD-1", user="UTECH")


async def test_slack_card_buttons_are_refused_to_the_requester_and_verify_is_audited(
    make_app, slack_api: FakeSlack
) -> None:
    app = await start(make_app, slack_api)
    await new_ticket(app, slack_api)
    [card] = [p for p in posts_to(slack_api, "C0HELP") if "HD-1" in p.get("text", "")][:1]
    before = await state(app)
    views = len(slack_api.views_opened())
    for n, (title, refusal) in enumerate(
        [
            ("Verify identity", "Only technicians can start an identity check"),
            ("Escalate", "Only technicians can escalate"),
            ("Close", "Only technicians can close"),
        ],
        start=1,
    ):
        payload = block_actions(
            button(card, title),
            user="U0ANA",
            channel="C0HELP",
            n=n,
            response_url=slack_api.response_url_for(f"b{n}"),
            message_ts=card.get("ts", "1.1"),
        )
        assert (await app.interactive(payload)).status == 200
        await slack_api.wait_for(f"/response/b{n}")
        told = json.dumps(slack_api.responses(f"b{n}"))
        assert refusal in told, (title, told)
    # A button value naming another ticket is no way round it either.
    forged = block_actions(
        button(card, "Verify identity"),
        user="U0ANA",
        channel="C0HELP",
        n=9,
        response_url=slack_api.response_url_for("b9"),
        value=json.dumps({"ticket": "HD-7"}),
    )
    assert (await app.interactive(forged)).status == 200
    await slack_api.wait_for("/response/b9")
    assert "Only technicians can start an identity check" in json.dumps(slack_api.responses("b9"))
    assert await state(app) == before
    assert len(slack_api.views_opened()) == views
    refusals = await verify_refusals(app)
    assert refusals[0] == ("U0ANA", "C0HELP", 1, "not a technician"), refusals
    assert len(refusals) == 2 and refusals[1][2] is None  # HD-7: no such ticket


PEOPLE_TEAMS = [
    {"email": "ana@example.com", "name": "Ana Lopez", "teams_id": "29:1ana",
     "manager": "bo@example.com"},
    {"email": "bo@example.com", "name": "Bo Boss", "teams_id": "29:1bo"},
    {"email": "cy@example.com", "name": "Cy Solo", "teams_id": "29:1cy"},
    {"email": "tech@example.com", "name": "Tom Tech", "teams_id": TECH_ID, "technician": True},
]  # fmt: skip


async def say_teams(
    app: AppHarness, connector: FakeConnector, text: str, *, user: str
) -> tuple[int, str]:
    """`ticket <text>` from `user` in their 1:1 chat: (HTTP status, what the bot said there)."""
    chat = f"a:chat-{user}"
    before = len(connector.activities(chat))
    sent = message(connector.service_url, f"ticket {text}", user=user, conversation=chat)
    sent["from"]["aadObjectId"] = f"00000000-0000-0000-0000-{abs(hash(user)) % 10**12:012d}"
    response = await app.teams(sent)
    posted = connector.activities(chat)[before:]
    return response.status, json.dumps([[a.get("text"), a.get("attachments")] for a in posted])


async def test_teams_technician_only_texts_are_refused_to_everyone_else(
    make_app, connector: FakeConnector
) -> None:
    tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
    config = {"teams": {"service_url": connector.service_url, "tenant_id": tenant}}
    app = await make_app(config=config, people=PEOPLE_TEAMS)
    await teams_ticket(app, connector, TOM, typed="ana@example.com")  # HD-1, for Ana
    await teams_ticket(app, connector, TOM, typed="ana@example.com")  # HD-2
    before = await state(app)
    for user in ("29:1ana", "29:1bo", "29:1cy", "29:1stranger"):
        for text, refusal in TECHNICIAN_ONLY.items():
            status, said = await say_teams(app, connector, text, user=user)
            assert status == 201 and refusal in said, (user, text, said)
        status, shown = await say_teams(app, connector, "show HD-1", user=user)
        if user == "29:1ana":
            assert "Only technicians" not in shown and "HD-1" in shown
        else:
            assert "Only technicians and the requester can see HD-1" in shown, (user, shown)
    # (Someone of another tenant is not served at all with `teams.tenant_id` set and Bot
    # Framework tokens checked: tests/http/test_teams_auth.py.)
    assert await state(app) == before
    refusals = await verify_refusals(app)
    assert [r[0] for r in refusals] == ["29:1ana", "29:1bo", "29:1cy", "29:1stranger"]
    assert {r[2] for r in refusals} == {1} and {r[1] for r in refusals} == {
        f"a:chat-{u}" for u in ("29:1ana", "29:1bo", "29:1cy", "29:1stranger")
    }
    await wait_until(lambda: True)


async def test_a_directory_file_reloaded_without_any_technician_opens_nothing_to_everyone(
    make_app, slack_api: FakeSlack
) -> None:
    """Found by the security review: the directory file is reloaded while the bot runs, and a
    version listing no technician (emptied while being rewritten, wiped by mistake, every
    `technician: true` lost in an edit) made everyone a technician at once: Cy, a member of
    staff, could log time, raise to P1 and close. "Everyone counts as one" is for a directory
    that never listed a technician (and start-up warns of it); a running bot keeps the last
    copy that did, and says why."""
    app = await start(make_app, slack_api)
    await new_ticket(app, slack_api)  # HD-1: Tom's, for Ana
    before = await state(app)
    path = app.tmp / "people.yaml"
    assert "technician: true" in path.read_text()
    for rewritten in ("", yaml.safe_dump([{**p, "technician": False} for p in PEOPLE])):
        path.write_text(rewritten)
        # The file is looked at again at most once a second.
        await asyncio.sleep(1.2)
        for text, refusal in TECHNICIAN_ONLY.items():
            answer = await slash_from(app, text, user="U0CY")
            assert refusal in answer, (rewritten[:20], text, answer)
        assert await state(app) == before
    assert "Only technicians" not in await slash_from(app, "similar HD-1", user="UTECH")
