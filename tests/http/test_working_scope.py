"""Tier 1 scope and the remote session (#15), over Slack and Teams HTTP: the card says
**Tier 1** or **Tier 2/3: escalate early**; an out-of-scope ticket not escalated
`escalation.nudge_after` after it was opened gets exactly one nudge (never a Tier 1 one, never
after an escalation); with `remote.url_template` the card carries a **Remote session** link to
the asset, percent-encoded, and none without an asset."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, slack_button, wait_until
from tests.http.conftest_teams import PERSONAL
from tests.http.working_support import (
    PEOPLE,
    SlackFlow,
    TeamsFlow,
    rows,
    shown,
    teams_config,
)

NUDGE_AFTER = 3
CONFIG: dict[str, Any] = {
    "tier1_scope": ["printer", "password-reset"],
    "escalation": {"nudge_after": f"{NUDGE_AFTER}s", "queues": {"network": "networking"}},
    "queues": {"networking": {"slack": "C0NETWORK"}},
    "remote": {"url_template": "https://control.example.com/join?asset={asset}&via=helpdesk"},
}
FACTS = {
    "repro_steps": "Connect to the VPN from home",
    "error_text": "Error 809",
    "already_tried": "Reinstalled the VPN client twice",
    "asset_link": "https://rmm.example.com/devices/4711",
    "user_impact": "Ana cannot work remotely",
}


async def test_slack_tier_labels_one_nudge_and_none_after_an_escalation(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app: AppHarness = await make_app(slack=slack_api, config=CONFIG, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    tier1 = await s.ticket(category="printer")
    outside = await s.ticket(category="network", summary="VPN drops")
    escalated = await s.ticket(category="network", summary="VPN drops again")
    assert "*Scope:* Tier 1" in shown(s.card(tier1))
    assert "Tier 2/3" not in shown(s.card(tier1))
    assert "*Scope:* Tier 2/3: escalate early" in shown(s.card(outside))

    view = await s.modal(f"escalate {escalated}")
    values = {k: {"type": "plain_text_input", "value": v} for k, v in FACTS.items()}
    values["queue"] = {"type": "static_select", "selected_option": {"value": "networking"}}
    answer = await s.submit(view, values, "UTECH")
    assert not answer or "errors" not in shown(answer), answer
    await wait_until(lambda: s.posts("C0NETWORK"), what="the escalation")

    await wait_until(
        lambda: s.thread(outside, "escalate early"), timeout=NUDGE_AFTER + 5, what="the nudge"
    )
    [nudge] = s.thread(outside, "escalate early")
    assert f"{outside} is outside Tier 1 scope" in shown(nudge)
    assert nudge["thread_ts"] == (s.card(outside) or {}).get("ts")
    await asyncio.sleep(1.5)
    assert len(s.thread(outside, "escalate early")) == 1
    assert not s.thread(tier1, "outside Tier 1") and not s.thread(escalated, "outside Tier 1")
    states = {r.payload["ticket"]: r for r in await rows(app, "tier-nudge")}
    assert set(states) == {outside, escalated}  # Tier 1 tickets get none at all
    assert states[outside].status == "delivered"
    assert states[escalated].status == "cancelled"
    assert "escalated" in states[escalated].last_error


async def test_slack_remote_session_link_with_the_encoded_asset(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app: AppHarness = await make_app(slack=slack_api, config=CONFIG, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    with_asset = await s.ticket(asset="LAPTOP 42/B&Co")
    without = await s.ticket(asset="")
    button = slack_button(s.card(with_asset), "Remote session")  # type: ignore[arg-type]
    assert button["url"] == (
        "https://control.example.com/join?asset=LAPTOP%2042%2FB%26Co&via=helpdesk"
    )
    assert "Remote session" not in shown(s.card(without))
    # Pressing the link button only opens the browser: Slack's notice of it is acknowledged.
    assert "Remote session" not in await s.press(s.card(with_asset), "Verify identity", "UTECH")


async def test_slack_remote_session_for_assets_in_a_path_template(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """`{asset}` in the template's path: `&`, `#`, `?`, spaces and unicode are encoded; an
    asset `..` gets no button (the browser would resolve it to another page of the tool); an
    asset too long for a Slack link button gets none, and the card is still posted."""
    path = "https://rmm.example.com/" + "x" * 700 + "/devices/{asset}/connect"
    config = {**CONFIG, "remote": {"url_template": path}}
    app: AppHarness = await make_app(slack=slack_api, config=config, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    odd = await s.ticket(asset="PC 7?x=1#top&y Ünï ☃")
    button = slack_button(s.card(odd), "Remote session")  # type: ignore[arg-type]
    assert button["url"] == path.replace(
        "{asset}", "PC%207%3Fx%3D1%23top%26y%20%C3%9Cn%C3%AF%20%E2%98%83"
    )
    up = await s.ticket(asset="..", summary="Up one")
    assert "Remote session" not in shown(s.card(up))
    # 200 characters (the form's limit), 12 once encoded each: 2,400, plus the template.
    emoji = await s.ticket(asset="\U0001f5a5" * 200, summary="Emoji asset")
    card = s.card(emoji)
    assert card is not None and "Remote session" not in shown(card)


async def test_teams_tier_label_nudge_in_the_technician_chat_and_remote_session(
    make_app: Any, connector: FakeConnector
) -> None:
    app: AppHarness = await make_app(
        config=teams_config(connector, **{k: v for k, v in CONFIG.items() if k != "queues"}),
        people=PEOPLE,
    )
    t = TeamsFlow(app, connector)
    tier1 = await t.ticket(category="printer", asset="")
    outside = await t.ticket(category="network", asset="PC 7/ana", summary="VPN drops")
    assert "Tier 1" in shown(t.card(tier1)) and "Tier 2/3" not in shown(t.card(tier1))
    card = t.card(outside)
    assert card is not None and "Tier 2/3: escalate early" in shown(card)
    [link] = [a for a in card["actions"] if a["type"] == "Action.OpenUrl"]
    assert link == {
        "type": "Action.OpenUrl",
        "title": "Remote session",
        "url": "https://control.example.com/join?asset=PC%207%2Fana&via=helpdesk",
    }
    assert not [a for a in (t.card(tier1) or {})["actions"] if a["type"] == "Action.OpenUrl"]
    await wait_until(
        lambda: t.texts(PERSONAL, "escalate early"), timeout=NUDGE_AFTER + 5, what="the nudge"
    )
    await asyncio.sleep(1.5)
    [nudge] = t.texts(PERSONAL, "escalate early")
    assert f"{outside} is outside Tier 1 scope" in nudge.replace("\\", "")


async def test_slack_scope_without_tier1_scope_is_spec_list_and_an_empty_list_turns_it_off(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """No `tier1_scope` in the config: SPEC's list (password-reset, mfa, printer, outlook), so
    every card says its scope; `tier1_scope: []` shows none and queues no nudge."""
    app: AppHarness = await make_app(slack=slack_api, config={}, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    printer = await s.ticket(category="printer")
    network = await s.ticket(category="network", summary="VPN drops")
    assert "*Scope:* Tier 1" in shown(s.card(printer))
    assert "*Scope:* Tier 2/3: escalate early" in shown(s.card(network))
    assert {r.payload["ticket"] for r in await rows(app, "tier-nudge")} == {network}

    off: AppHarness = await make_app(slack=slack_api, config={"tier1_scope": []}, people=PEOPLE)
    s_off = SlackFlow(off, slack_api)
    quiet = await s_off.ticket(category="network", summary="VPN drops on another desk")
    assert "Scope:" not in shown(s_off.card(quiet))
    # One database for both apps: the first one's nudge is there, none for this ticket.
    assert {r.payload["ticket"] for r in await rows(off, "tier-nudge")} == {network}


async def test_slack_the_nudge_of_an_identity_gated_ticket_names_the_check_first(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """An `account` ticket (in `identity.categories`, outside Tier 1 scope) cannot be
    escalated before its requester's identity is confirmed: its nudge said only "escalate
    early (`ticket escalate HD-1`)", a command the bot then refuses. It names the check first;
    an ungated ticket's nudge is as before."""
    app: AppHarness = await make_app(slack=slack_api, config=CONFIG, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    gated = await s.ticket(category="account", summary="Cannot sign in")
    plain = await s.ticket(category="network", summary="VPN drops")
    for number in (gated, plain):
        await wait_until(
            lambda number=number: s.thread(number, "escalate early"),
            timeout=NUDGE_AFTER + 5,
            what=f"the nudge of {number}",
        )
    [nudge] = s.thread(gated, "escalate early")
    assert f"`/ticket verify {gated}`, then `/ticket escalate {gated}`" in shown(nudge)
    [ungated] = s.thread(plain, "escalate early")
    assert "verify" not in shown(ungated)
    assert f"escalate early (`/ticket escalate {plain}`)" in shown(ungated)
