"""A direct message goes only to a platform this deployment is connected to.

The requester's confirmation question (and survey), and the manager's identity request, go
"on the platform the ticket came through, else the other one". In a Teams-only help desk (no
Slack tokens) a person the directory knows only by a Slack id cannot be reached at all: the
technician is told so at once (as for someone with no chat id), instead of "Asked ... on
Slack" and a message retried for ever. The identity check then stays open like one with no
manager to ask: the ticket stays gated until a technician calls the requester back on the
number on file. Over HTTP, on both databases.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from storage.models import IdentityCheck, OutboxMessage
from tests.fakes.botframework import FakeConnector
from tests.harness import AppHarness, event_kinds, only_ticket, wait_until
from tests.http.conftest_teams import PERSONAL, TECH_ID
from tests.http.test_identity_teams import new_ticket as teams_ticket
from tests.http.test_identity_teams import said
from tests.http.working_support import TeamsFlow, teams_config

CY_PHONE = "+1 555 0199"

# A Teams help desk whose directory also carries Slack ids (filled in for another tool).
TEAMS_ONLY_PEOPLE: list[dict[str, Any]] = [
    {"email": "tom@example.com", "name": "Tom Tech", "teams_id": TECH_ID, "technician": True},
    # Ana is known only by her Slack id: this help desk cannot write to her.
    {"email": "ana@example.com", "name": "Ana User", "slack_id": "UANA"},
    # Cy is on Teams; his manager Bo only on Slack.
    {
        "email": "cy@example.com",
        "name": "Cy User",
        "teams_id": "29:1cy",
        "phone": CY_PHONE,
        "manager": "bo@example.com",
    },
    {"email": "bo@example.com", "name": "Bo Boss", "slack_id": "UBO"},
]


async def dm_rows(app: AppHarness) -> list[OutboxMessage]:
    async with app.services.sessions() as session:
        query = select(OutboxMessage).where(OutboxMessage.kind == "dm")
        return list((await session.execute(query)).scalars())


async def the_check(app: AppHarness) -> IdentityCheck:
    """The latest identity check (`verify` supersedes the one started at intake)."""
    async with app.services.sessions() as session:
        query = select(IdentityCheck).order_by(IdentityCheck.id.desc()).limit(1)
        return (await session.execute(query)).scalar_one()


# -- Teams only --------------------------------------------------------------------------------


async def test_teams_only_confirm_to_a_requester_known_only_on_slack_is_refused(
    make_app: Any, connector: FakeConnector
) -> None:
    app: AppHarness = await make_app(config=teams_config(connector), people=TEAMS_ONLY_PEOPLE)
    t = TeamsFlow(app, connector)
    number = await t.ticket(requester="ana@example.com")
    assert await t.say(f"ticket confirm {number}") == 201
    await wait_until(lambda: t.texts(PERSONAL, "cannot ask them"), what="the refusal")
    [refused] = t.texts(PERSONAL, "cannot ask them")
    assert "(Ana User (ana@example.com)) has no Teams id in the directory" in refused, refused
    assert "Slack is not connected" in refused
    assert not t.texts(PERSONAL, "Asked Ana")
    assert not [r for r in await dm_rows(app) if r.payload.get("platform") == "slack"]
    assert "fix.asked" not in await event_kinds(app)
    assert (await only_ticket(app)).fix_state == ""


async def test_teams_only_a_manager_known_only_on_slack_is_not_asked_and_the_gate_holds(
    make_app: Any, connector: FakeConnector
) -> None:
    """Cy's password reset: his manager is known only on Slack, which this help desk is not
    connected to. Nobody is asked; the check stays open as with no manager on file (the number
    on file to Tom, privately), the ticket cannot be closed, and only the call-back confirms."""
    app: AppHarness = await make_app(config=teams_config(connector), people=TEAMS_ONLY_PEOPLE)
    await teams_ticket(app, connector, requester="cy@example.com", category="password-reset")
    await wait_until(lambda: CY_PHONE in said(connector, PERSONAL), what="the call-back notice")
    told = said(connector, PERSONAL)
    assert "Bo Boss (bo@example.com)" in told and "Slack" in told
    assert "Asked" not in told and "Bo Boss" in told
    check = await the_check(app)
    assert check.state == "no_manager" and check.manager_id in ("", None)
    assert (await only_ticket(app)).identity_state == "required"
    assert not [r for r in await dm_rows(app) if r.payload.get("platform") == "slack"]

    # `verify` asks nobody either; closing stays refused by the gate.
    t = TeamsFlow(app, connector)
    posted = len(connector.activities(PERSONAL))
    assert await t.say("ticket verify HD-1") == 201
    await wait_until(lambda: len(connector.activities(PERSONAL)) > posted, what="the answer")
    assert not [r for r in await dm_rows(app) if r.payload.get("platform") == "slack"]
    posted = len(connector.activities(PERSONAL))
    assert await t.say("ticket close HD-1") == 201
    await wait_until(lambda: len(connector.activities(PERSONAL)) > posted, what="the refusal")
    assert "identity" in json.dumps(connector.activities(PERSONAL)[posted:]).lower()
    assert (await only_ticket(app)).status == "open"

    # The call-back on the number on file is what confirms it.
    posted = len(connector.activities(PERSONAL))
    assert await t.say("ticket verify HD-1 called-back") == 201
    await wait_until(lambda: len(connector.activities(PERSONAL)) > posted, what="the answer")

    async def confirmed() -> bool:
        return (await only_ticket(app)).identity_state == "confirmed"

    await wait_until(confirmed, what="the call-back recorded")
