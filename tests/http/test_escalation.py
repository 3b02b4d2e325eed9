"""Escalation over Slack and Teams HTTP: the form, required facts, the queue notice."""

from __future__ import annotations

import asyncio
import functools
import html
import json
import re
import time
from typing import Any

import pytest
from sqlalchemy import select

from storage.models import Ticket, TicketEvent
from tests.adaptive_schema import validate_adaptive_card
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, view_submission, wait_until
from tests.http.conftest_teams import (
    ANA_ID,
    CARD_TYPE,
    PERSONAL,
    TECH_ID,
    activity,
    card_of,
    form_values,
    inputs,
    message,
    note_under,
    submit_action,
)
from tests.http.working_support import SlackFlow

TEAMS_QUEUE = "19:network@thread.tacv2"
PEOPLE = [
    {
        "email": "tom@example.com",
        "name": "Tom Tech",
        "slack_id": "UTECH",
        "teams_id": TECH_ID,
        "technician": True,
    },
    {"email": "ana@example.com", "name": "Ana Lopez", "slack_id": "UANA", "teams_id": ANA_ID},
]
CONFIG: dict[str, Any] = {
    "queues": {
        "networking": {"slack": "C0NETWORK", "teams": TEAMS_QUEUE},
        "security": {"slack": "C0SECURITY"},
    },
    "escalation": {"queues": {"network": "networking", "m365": "messaging"}},
}
LABELS = ["Reproduction steps", "Error text", "Already tried", "Asset link", "User impact", "Queue"]
FACTS = {
    "repro_steps": "Connect to VPN from home",
    "error_text": "Error 809",
    "already_tried": "Reinstalled the VPN client",
    "asset_link": "https://rmm.example.com/devices/4711",
    "user_impact": "Cannot work remotely <!channel>",
    "queue": "networking",
}
FACT_IDS = ["repro_steps", "error_text", "already_tried", "asset_link", "user_impact"]
# A bare handoff: "please assist" (and its kin) in every fact, the queue chosen.
BARE = {
    "repro_steps": "please assist",
    "error_text": "Please assist!",
    "already_tried": "n/a",
    "asset_link": "-",
    "user_impact": "ASAP",
    "queue": "networking",
}
# Every fact a queue needs, typed with the characters people type.
COMPLETE = {
    "repro_steps": "1. Connect to VPN from home\n2. Open Outlook\n3. Error 809 appears",
    "error_text": "Error 809: The network connection between your computer and the VPN server "
    "could not be established",
    "already_tried": "Reinstalled the VPN client (v5.2) and reset the network adapter",
    "asset_link": "https://rmm.example.com/devices/4711?tab=overview&x=1",
    "user_impact": "12 people in Berlin can't work remotely; payroll run due at 17:00",
    "queue": "networking",
}


def full_width(text: str) -> str:
    """`text` as an East Asian input method types it: full-width forms, the space kept."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def unescape(text: str) -> str:
    """Card text with Markdown escapes removed: what a person reads."""
    return re.sub(r"\\(.)", r"\1", text)


def texts_of(card: dict[str, Any]) -> str:
    """Every text a rendered card or message shows, joined (Block Kit or Adaptive Card)."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("text", "title", "value") and isinstance(value, str):
                    found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(card)
    return "\n".join(found)


def posts_to(fake: FakeSlack, channel: str) -> list[dict[str, Any]]:
    return [p for p in fake.posts() if p.get("channel") == channel]


async def escalated_events(app: AppHarness) -> list[TicketEvent]:
    async with app.services.sessions() as session:
        rows = (await session.execute(select(TicketEvent))).scalars().all()
    return [e for e in rows if e.kind == "ticket.escalated"]


# -- Slack -------------------------------------------------------------------------------------


async def slack_ticket(app: AppHarness, fake: FakeSlack, category: str = "network") -> None:
    await app.slash("new VPN down")
    await fake.wait_for_method("views.open")
    view = fake.views_opened()[-1]["view"]

    def text(value: str) -> dict[str, Any]:
        return {"type": "plain_text_input", "value": value}

    def choice(value: str) -> dict[str, Any]:
        return {"type": "static_select", "selected_option": {"value": value}}

    values = {
        "requester": {"type": "users_select", "selected_user": "UANA"},
        "summary": text("VPN down"),
        "error_text": text("Error 809"),
        "doing": text(""),
        "reproducible": choice("yes"),
        "users_affected": {"type": "number_input", "value": "1"},
        "priority": choice("P2"),
        "category": choice(category),
        "asset": text("LAPTOP-0192"),
        "client": text(""),
    }
    await app.interactive(view_submission(view, values, view_id="VINTAKE"))
    await wait_until(lambda: posts_to(fake, "C0HELP") != [])


def states(facts: dict[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {
        k: {"type": "plain_text_input", "value": v} for k, v in facts.items() if k != "queue"
    }
    out["queue"] = {
        "type": "static_select",
        "selected_option": {"value": facts["queue"]} if facts["queue"] else None,
    }
    return out


async def test_slack_escalation_form_validation_and_queue_notice(make_app, slack_api: FakeSlack):
    app: AppHarness = await make_app(slack=slack_api, config=CONFIG, people=PEOPLE)
    await slack_ticket(app, slack_api)
    await app.slash("escalate HD-1")
    await slack_api.wait_for_method("views.open", count=2)
    view = slack_api.views_opened()[-1]["view"]
    assert [b["label"]["text"] for b in view["blocks"] if b["type"] == "input"] == LABELS
    queue = next(b for b in view["blocks"] if b.get("block_id") == "queue")["element"]
    assert [o["value"] for o in queue["options"]] == ["messaging", "networking", "security"]
    assert queue["initial_option"]["value"] == "networking"

    missing = await app.interactive(
        view_submission(
            view,
            states(FACTS | {"already_tried": " ", "user_impact": "", "queue": ""}),
            view_id="VESC",
        )
    )
    body = await missing.json()
    assert body["response_action"] == "errors"
    assert set(body["errors"]) == {"already_tried", "user_impact", "queue"}
    assert await escalated_events(app) == []

    done = await app.interactive(view_submission(view, states(FACTS), view_id="VESC"))
    assert done.status == 200
    await wait_until(lambda: posts_to(slack_api, "C0NETWORK") != [])
    notice = json.dumps(posts_to(slack_api, "C0NETWORK")[0]["blocks"])
    for part in (
        "HD-1",
        "Reproduction steps",
        "Connect to VPN from home",
        "Error 809",
        "Reinstalled the VPN client",
        "<@UTECH> (tom@example.com)",  # Slack shows the mention as Tom's name
        "&lt;!channel&gt;",
    ):
        assert part in notice, part
    assert "<!channel>" not in notice
    [event] = await escalated_events(app)
    assert event.data["queue"] == "networking" and event.actor_id == "UTECH"
    await wait_until(
        lambda: any(
            "escalated to networking" in json.dumps(p) for p in posts_to(slack_api, "C0HELP")
        )
    )
    told = next(p for p in posts_to(slack_api, "C0HELP") if "escalated to" in json.dumps(p))
    assert told.get("thread_ts")


async def test_slack_escalate_button_refusals(make_app, slack_api: FakeSlack):
    app: AppHarness = await make_app(slack=slack_api, config=CONFIG, people=PEOPLE)
    await slack_ticket(app, slack_api, category="password-reset")
    card = posts_to(slack_api, "C0HELP")[0]
    button = next(
        e
        for b in card["blocks"]
        for e in b.get("elements", [])
        if e.get("type") == "button" and e["text"]["text"] == "Escalate"
    )
    for n, user in enumerate(("UANA", "UTECH")):
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower()},
            "api_app_id": "A0APP",
            "token": "legacy",
            "trigger_id": f"trigger-{n}",
            "team": {"id": "T0TEAM"},
            "channel": {"id": "C0HELP"},
            "message": {"type": "message", "ts": card.get("ts", "1.1"), "text": ""},
            "response_url": slack_api.response_url_for(f"esc{n}"),
            "actions": [
                {
                    "type": "button",
                    "action_id": button["action_id"],
                    "block_id": "b",
                    "value": button["value"],
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        assert (await app.interactive(payload)).status == 200
        await slack_api.wait_for(f"/response/esc{n}")
    refusals = [json.dumps(slack_api.responses(f"esc{n}")) for n in range(2)]
    assert "Only technicians can escalate" in refusals[0]
    assert "identity" in refusals[1].lower()
    assert len(slack_api.views_opened()) == 1  # only the intake modal


# -- Teams -------------------------------------------------------------------------------------


async def say(
    app: AppHarness, fake: FakeConnector, value: dict[str, Any] | None = None, text: str = ""
) -> dict[str, Any]:
    posted = len(fake.activities(PERSONAL))
    sent = activity(fake.service_url, value=value) if value else message(fake.service_url, text)
    assert (await app.teams(sent)).status == 201
    await wait_until(lambda: len(fake.activities(PERSONAL)) > posted)
    return fake.activities(PERSONAL)[-1]


async def test_teams_escalation(make_app, connector: FakeConnector):
    config = {**CONFIG, "teams": {"service_url": connector.service_url, "tenant_id": "t-1"}}
    app: AppHarness = await make_app(config=config, people=PEOPLE)
    form = card_of(await say(app, connector, text="ticket new VPN down"))
    await say(
        app,
        connector,
        {**submit_action(form)["fallback"]["data"], **form_values(category="network")},
    )
    escalate = card_of(await say(app, connector, text="ticket escalate HD-1"))
    assert [i["label"] for i in inputs(escalate)] == LABELS
    submit = submit_action(escalate)["fallback"]["data"]
    assert submit == {"action": "ticket.escalate.submit", "ticket": "HD-1"}

    again = card_of(await say(app, connector, {**submit, **FACTS, "repro_steps": ""}))
    assert [i["label"] for i in inputs(again)] == LABELS
    assert "required to escalate" in json.dumps(again)
    assert json.dumps(again).count("required to escalate") == 1
    assert "required to escalate" in note_under(again, "repro_steps")
    assert await escalated_events(app) == []

    told = await say(app, connector, {**submit, **FACTS})
    assert "escalated to networking" in (told.get("text") or json.dumps(told))
    await wait_until(lambda: connector.activities(TEAMS_QUEUE) != [])
    notice = card_of(connector.activities(TEAMS_QUEUE)[0])
    assert "Connect to VPN from home" in json.dumps(notice)
    [event] = await escalated_events(app)
    assert (event.data["queue"], event.actor_platform) == ("networking", "teams")


# -- the facts a queue needs (SPEC "Escalation facts") ------------------------------------------


async def test_slack_bare_handoff_bounces_field_by_field_and_a_complete_one_reaches_the_queue(
    make_app, slack_api: FakeSlack
):
    app: AppHarness = await make_app(slack=slack_api, config=CONFIG, people=PEOPLE)
    await slack_ticket(app, slack_api)  # its asset: LAPTOP-0192
    await app.slash("escalate HD-1")
    await slack_api.wait_for_method("views.open", count=2)
    view = slack_api.views_opened()[-1]["view"]
    asset = next(b for b in view["blocks"] if b.get("block_id") == "asset_link")
    assert asset["optional"] is False  # the ticket has an asset: its link is required
    assert asset["element"]["initial_value"] == "LAPTOP-0192"

    refused = await app.interactive(view_submission(view, states(BARE), view_id="VESC"))
    body = await refused.json()
    assert body["response_action"] == "errors"
    assert sorted(body["errors"]) == sorted(FACT_IDS)
    for ident in FACT_IDS:
        assert "placeholder" in body["errors"][ident], (ident, body["errors"][ident])
    assert "'please assist'" in body["errors"]["repro_steps"]
    short = await app.interactive(
        view_submission(view, states(COMPLETE | {"already_tried": "Rebooted it"}), view_id="VESC")
    )
    assert list((await short.json())["errors"]) == ["already_tried"]
    assert await escalated_events(app) == []

    done = await app.interactive(view_submission(view, states(COMPLETE), view_id="VESC"))
    assert done.status == 200
    assert "errors" not in json.loads(await done.read() or b"{}")
    await wait_until(lambda: posts_to(slack_api, "C0NETWORK") != [])
    await wait_until(
        lambda: any("escalated to" in json.dumps(p) for p in posts_to(slack_api, "C0HELP"))
    )
    [notice] = posts_to(slack_api, "C0NETWORK")  # the refused handoffs never reached it
    shown = html.unescape(texts_of(notice["blocks"]))
    for ident in FACT_IDS:
        assert COMPLETE[ident] in shown, ident
    [event] = await escalated_events(app)
    assert {k: event.data[k] for k in FACT_IDS} == {k: COMPLETE[k] for k in FACT_IDS}


async def test_teams_bare_handoff_is_shown_again_with_reasons_and_a_complete_one_reaches_the_queue(
    make_app, connector: FakeConnector
):
    config = {**CONFIG, "teams": {"service_url": connector.service_url, "tenant_id": "t-1"}}
    app: AppHarness = await make_app(config=config, people=PEOPLE)
    form = card_of(await say(app, connector, text="ticket new VPN down"))
    await say(
        app,
        connector,
        {**submit_action(form)["fallback"]["data"], **form_values(category="network")},
    )
    escalate = card_of(await say(app, connector, text="ticket escalate HD-1"))
    asset = next(i for i in inputs(escalate) if i["id"] == "asset_link")
    assert asset["isRequired"] is True and asset["value"] == "PRN-0042"
    submit = submit_action(escalate)["fallback"]["data"]

    again = card_of(await say(app, connector, {**submit, **BARE}))
    assert [i["label"] for i in inputs(again)] == LABELS
    body = again["body"]
    for ident in FACT_IDS:
        at = next(n for n, e in enumerate(body) if e.get("id") == ident)
        assert body[at]["value"] == BARE[ident]  # what was typed stays in the form
        reason = unescape(body[at + 1]["text"])  # and the reason right under it
        assert "placeholder" in reason and BARE[ident] in reason, (ident, reason)
    assert await escalated_events(app) == []

    told = await say(app, connector, {**submit, **COMPLETE})
    assert "escalated to networking" in (told.get("text") or json.dumps(told))
    await wait_until(lambda: connector.activities(TEAMS_QUEUE) != [])
    [notice] = connector.activities(TEAMS_QUEUE)  # the refused handoff never reached it
    shown = unescape(texts_of(card_of(notice)))
    for ident in FACT_IDS:
        assert COMPLETE[ident] in shown, ident


async def test_teams_form_shown_again_still_requires_the_asset_link_of_a_ticket_with_an_asset(
    make_app, connector: FakeConnector
):
    """The ticket has an asset, so the server requires its link: the form Teams shows again
    with the errors (Action.Submit and Action.Execute) marks Asset link required, as the first
    one does, and says why under it."""
    config = {**CONFIG, "teams": {"service_url": connector.service_url, "tenant_id": "t-1"}}
    app: AppHarness = await make_app(config=config, people=PEOPLE)
    form = card_of(await say(app, connector, text="ticket new VPN down"))
    await say(
        app,
        connector,
        {**submit_action(form)["fallback"]["data"], **form_values(category="network")},
    )
    escalate = card_of(await say(app, connector, text="ticket escalate HD-1"))
    first = next(i for i in inputs(escalate) if i["id"] == "asset_link")
    assert first["isRequired"] is True and first["value"] == "PRN-0042"
    action = submit_action(escalate)
    data = {**action["fallback"]["data"], **COMPLETE, "asset_link": ""}

    again = card_of(await say(app, connector, data))
    response = await app.teams(
        activity(
            connector.service_url,
            type="invoke",
            name="adaptiveCard/action",
            value={"action": {"type": "Action.Execute", "verb": action["verb"], "data": data}},
        )
    )
    assert response.status == 200
    executed = await response.json()
    assert executed["type"] == CARD_TYPE
    validate_adaptive_card(executed["value"])

    for card in (again, executed["value"]):
        assert [i["label"] for i in inputs(card)] == LABELS
        assert [i["isRequired"] for i in inputs(card)] == [
            i["isRequired"] for i in inputs(escalate)
        ]
        body = card["body"]
        at = next(n for n, e in enumerate(body) if e.get("id") == "asset_link")
        assert body[at]["isRequired"] is True and body[at].get("value", "") == ""
        assert "Asset link is required to escalate" in unescape(body[at + 1]["text"])
    assert await escalated_events(app) == []


async def test_slack_facts_written_in_another_script_reach_the_queue(
    make_app, slack_api: FakeSlack
):
    """Facts typed in Cyrillic or Japanese are facts, counted in their own words: the user's
    exact error text in Russian is not 'a placeholder', nor are four Russian words 'too short'."""
    app: AppHarness = await make_app(slack=slack_api, config=CONFIG, people=PEOPLE)
    await slack_ticket(app, slack_api)
    await app.slash("escalate HD-1")
    await slack_api.wait_for_method("views.open", count=2)
    view = slack_api.views_opened()[-1]["view"]
    facts = {
        **COMPLETE,
        "repro_steps": "Подключиться к VPN из дома, открыть Outlook",
        "error_text": "Доступ запрещён",
        "already_tried": "Переустановили VPN-клиент, та же ошибка",
        "user_impact": "東京オフィスの全員がリモートで作業できません",
    }
    done = await app.interactive(view_submission(view, states(facts), view_id="VESC"))
    assert done.status == 200
    assert json.loads(await done.read() or b"{}").get("errors") is None
    await wait_until(lambda: posts_to(slack_api, "C0NETWORK") != [])
    shown = html.unescape(texts_of(posts_to(slack_api, "C0NETWORK")[0]["blocks"]))
    for ident in FACT_IDS:
        assert facts[ident] in shown, ident


async def test_slack_steps_written_in_chinese_or_japanese_are_not_one_word(
    make_app, slack_api: FakeSlack
):
    """Chinese and Japanese put no spaces between words: a whole sentence of reproduction
    steps was counted as one or two words and refused as under three. A run of such script
    counts a word per two characters (about a Chinese word's length), so a sentence is
    accepted and still a bare verb or two is too short."""
    app: AppHarness = await make_app(slack=slack_api, config=CONFIG, people=PEOPLE)
    await slack_ticket(app, slack_api)
    await app.slash("escalate HD-1")
    await slack_api.wait_for_method("views.open", count=2)
    view = slack_api.views_opened()[-1]["view"]
    short = {**COMPLETE, "repro_steps": "再起動", "already_tried": "重启电脑"}
    refused = await app.interactive(view_submission(view, states(short), view_id="VESC"))
    errors = (await refused.json())["errors"]
    assert sorted(errors) == ["already_tried", "repro_steps"]
    assert all("at least 3 words" in reason for reason in errors.values()), errors
    facts = {
        **COMPLETE,
        # "Connecting to the VPN from home and opening Outlook shows error 809."
        "repro_steps": "自宅からVPNに接続してOutlookを開くとエラー809が表示されます",
        # "Reinstalled the VPN client, still the same error."
        "already_tried": "重新安装了VPN客户端，还是同样的错误",  # noqa: RUF001 (CJK comma)
    }
    done = await app.interactive(view_submission(view, states(facts), view_id="VESC"))
    assert done.status == 200
    assert json.loads(await done.read() or b"{}").get("errors") is None
    await wait_until(lambda: posts_to(slack_api, "C0NETWORK") != [])
    shown = html.unescape(texts_of(posts_to(slack_api, "C0NETWORK")[0]["blocks"]))
    for ident in FACT_IDS:
        assert facts[ident] in shown, ident


async def test_slack_see_ticket_with_its_number_is_still_a_plea(make_app, slack_api: FakeSlack):
    """`see ticket` is a plea SPEC names; `See ticket HD-1.` (the ticket being escalated, or
    another one) says no more, and made three words that every fact took. A number of this
    help desk's tickets is no fact for the queue: such a text bounces as a placeholder, field
    by field, and nothing reaches the queue. A fact that mentions a ticket among real words,
    or an error code shaped like a ticket number of another prefix, still goes through."""
    app: AppHarness = await make_app(slack=slack_api, config=CONFIG, people=PEOPLE)
    await slack_ticket(app, slack_api)  # its asset: LAPTOP-0192
    await app.slash("escalate HD-1")
    await slack_api.wait_for_method("views.open", count=2)
    view = slack_api.views_opened()[-1]["view"]
    pleas = {
        "repro_steps": "See ticket HD-1.",
        "error_text": "see hd-1",
        "already_tried": "Please see ticket HD-0001",
        "asset_link": "same as HD-1",
        "user_impact": "HD-1",
        "queue": "networking",
    }
    refused = await app.interactive(view_submission(view, states(pleas), view_id="VESC"))
    errors = (await refused.json())["errors"]
    assert sorted(errors) == sorted(FACT_IDS)
    for ident in FACT_IDS:
        assert "placeholder" in errors[ident], (ident, errors[ident])
    assert await escalated_events(app) == []
    facts = {
        **COMPLETE,
        "error_text": "E-809",
        "already_tried": "Reinstalled the VPN client, as on HD-1 last week",
    }
    done = await app.interactive(view_submission(view, states(facts), view_id="VESC"))
    assert json.loads(await done.read() or b"{}").get("errors") is None
    await wait_until(lambda: posts_to(slack_api, "C0NETWORK") != [])
    [notice] = posts_to(slack_api, "C0NETWORK")
    assert facts["already_tried"] in html.unescape(texts_of(notice["blocks"]))


async def test_slack_placeholders_typed_in_look_alike_characters_bounce(
    make_app, slack_api: FakeSlack
):
    """A plea typed in the full-width forms of an East Asian input method ('TBD', 'please
    assist!') or with an invisible character inside a word is still only a plea: refused field
    by field as a placeholder, and nothing reaches the queue."""
    app: AppHarness = await make_app(slack=slack_api, config=CONFIG, people=PEOPLE)
    await slack_ticket(app, slack_api)
    await app.slash("escalate HD-1")
    await slack_api.wait_for_method("views.open", count=2)
    view = slack_api.views_opened()[-1]["view"]
    look_alikes = {
        "error_text": full_width("TBD"),
        "user_impact": full_width("please assist!"),
        "asset_link": full_width("N") + "/" + full_width("A"),
        "already_tried": "see\u200b ticket",
    }
    refused = await app.interactive(
        view_submission(view, states(COMPLETE | look_alikes), view_id="VESC")
    )
    body = await refused.json()
    assert body["response_action"] == "errors"
    assert sorted(body["errors"]) == sorted(look_alikes)
    for ident in look_alikes:
        assert "placeholder" in body["errors"][ident], (ident, body["errors"][ident])
    await app.services.slack.drain()  # type: ignore[union-attr]
    assert posts_to(slack_api, "C0NETWORK") == []
    assert await escalated_events(app) == []


# -- the same escalation twice ------------------------------------------------------------------


async def test_teams_escalate_pressed_twice_notifies_the_queue_once(
    make_app, connector: FakeConnector
):
    """Teams keeps the escalation form on screen after it was accepted (Action.Execute answers
    with a message): a second press of Escalate with the same facts, or a form opened twice
    and sent twice, is the same handoff. The queue hears of it once, the PSA gets one note,
    and Tom is told it was escalated already; a changed fact or another queue is a new
    escalation and goes through."""
    config = {**CONFIG, "teams": {"service_url": connector.service_url, "tenant_id": "t-1"}}
    app: AppHarness = await make_app(config=config, people=PEOPLE)
    form = card_of(await say(app, connector, text="ticket new VPN down"))
    await say(
        app,
        connector,
        {**submit_action(form)["fallback"]["data"], **form_values(category="network")},
    )
    escalate = card_of(await say(app, connector, text="ticket escalate HD-1"))
    action = submit_action(escalate)
    data = {**action["fallback"]["data"], **COMPLETE}

    async def press(values: dict[str, Any]) -> str:
        response = await app.teams(
            activity(
                connector.service_url,
                type="invoke",
                name="adaptiveCard/action",
                value={
                    "action": {"type": "Action.Execute", "verb": action["verb"], "data": values}
                },
            )
        )
        assert response.status == 200
        return json.dumps(await response.json())

    assert "HD-1 was escalated to networking" in await press(data)
    again = await press(data)
    assert "already escalated to networking" in again and "not notified again" in again
    await wait_until(lambda: connector.activities(TEAMS_QUEUE) != [])
    # Action.Submit (a client without Action.Execute), the same facts: the same answer.
    told = await say(app, connector, data)
    assert "already escalated to networking" in json.dumps(told)
    await asyncio.sleep(1.5)  # the outbox delivers within about 1 s
    assert len(connector.activities(TEAMS_QUEUE)) == 1
    assert len(await escalated_events(app)) == 1

    # What changed is a new handoff: it reaches the queue.
    more = {**data, "user_impact": COMPLETE["user_impact"] + "; now the whole Munich office too"}
    assert "HD-1 was escalated to networking" in await press(more)
    await wait_until(
        lambda: len(connector.activities(TEAMS_QUEUE)) == 2, what="the new notice", timeout=20
    )
    assert len(await escalated_events(app)) == 2


async def test_teams_a_numbered_list_left_empty_bounces(make_app, connector: FakeConnector):
    """Reproduction steps '1.' '2.' '3.' (the template's list, nothing written in it) and
    Already tried '1) 2) 3)' name no step: refused as placeholders under those two fields, and
    nothing reaches the queue."""
    config = {**CONFIG, "teams": {"service_url": connector.service_url, "tenant_id": "t-1"}}
    app: AppHarness = await make_app(config=config, people=PEOPLE)
    form = card_of(await say(app, connector, text="ticket new VPN down"))
    await say(
        app,
        connector,
        {**submit_action(form)["fallback"]["data"], **form_values(category="network")},
    )
    escalate = card_of(await say(app, connector, text="ticket escalate HD-1"))
    submit = submit_action(escalate)["fallback"]["data"]
    skeleton = {"repro_steps": "1.\n2.\n3.", "already_tried": "1) 2) 3)"}
    again = card_of(await say(app, connector, {**submit, **COMPLETE, **skeleton}))
    body = again["body"]
    for ident in FACT_IDS:
        at = next(n for n, e in enumerate(body) if e.get("id") == ident)
        below = body[at + 1] if at + 1 < len(body) else {}
        reason = unescape(below.get("text", "")) if below.get("type") == "TextBlock" else ""
        if ident in skeleton:
            assert "placeholder" in reason, (ident, reason)
        else:
            assert "placeholder" not in reason and "required" not in reason, (ident, reason)
    await asyncio.sleep(1.0)
    assert connector.activities(TEAMS_QUEUE) == []
    assert await escalated_events(app) == []


async def test_teams_escalate_button_keeps_its_form_on_a_ticket_with_no_response_yet(
    make_app, connector: FakeConnector
):
    """As **Close** (test_closure_teams): the click is the first response, whose refresh of the
    ticket card overwrote the escalation form Action.Execute had just put in its place."""
    config = {**CONFIG, "teams": {"service_url": connector.service_url, "tenant_id": "t-1"}}
    app: AppHarness = await make_app(config=config, people=PEOPLE)
    form = card_of(await say(app, connector, text="ticket new VPN down"))
    values = {**submit_action(form)["fallback"]["data"], **form_values(category="network")}
    card = card_of(await say(app, connector, values))
    async with app.services.sessions() as session:
        ticket = (await session.execute(select(Ticket))).scalar_one()
    assert ticket.card_message and ticket.first_response_at is None
    [button] = [a for a in card["actions"] if a.get("title") == "Escalate"]
    sent = activity(
        connector.service_url,
        type="invoke",
        name="adaptiveCard/action",
        value={
            "action": {"type": "Action.Execute", "verb": button["verb"], "data": button["data"]}
        },
        replyToId=ticket.card_message,  # Teams: the clicked card's message
    )
    answer = await (await app.teams(sent)).json()
    assert answer["type"] == CARD_TYPE, answer
    validate_adaptive_card(answer["value"])
    assert [i["label"] for i in inputs(answer["value"])] == LABELS
    with pytest.raises(AssertionError, match="timed out"):
        await wait_until(
            lambda: any(u["_activity_id"] == ticket.card_message for u in connector.updates()),
            timeout=1.0,
        )


async def test_an_asset_typed_as_n_a_does_not_make_the_bot_refuse_its_own_prefilled_link(
    make_app, slack_api: FakeSlack, connector: FakeConnector
):
    """Asset link is required "when the ticket has an asset (prefilled with it)". An Asset
    typed at intake as `n/a` or `-` says the ticket has none: the form prefilled the link with
    it, required it, and then refused its own prefill as a placeholder, so the technician
    could not escalate without inventing a device. Such an asset is no asset: the link is
    optional, taken as typed, and the handoff reaches the queue. A real asset still needs it."""
    config = {**CONFIG, "teams": {"service_url": connector.service_url, "tenant_id": "t-1"}}
    app: AppHarness = await make_app(slack=slack_api, config=config, people=PEOPLE)
    s = SlackFlow(app, slack_api)

    def notified(number: str) -> bool:
        return any(number in json.dumps(p) for p in posts_to(slack_api, "C0NETWORK"))

    for asset in ("n/a", " - "):
        number = await s.ticket(category="network", asset=asset, summary=f"VPN down {asset}")
        view = await s.modal(f"escalate {number}")
        block = next(b for b in view["blocks"] if b.get("block_id") == "asset_link")
        assert block["optional"] is True, (asset, block)
        assert block["element"]["initial_value"] == asset
        facts = {**COMPLETE, "asset_link": asset}
        answer = await s.submit(view, states(facts), "UTECH")
        assert not answer or "errors" not in answer, (asset, answer)
        await wait_until(functools.partial(notified, number), what=f"{number}'s notice")
    real = await s.ticket(category="network", asset="LAPTOP-0192", summary="VPN down again")
    view = await s.modal(f"escalate {real}")
    block = next(b for b in view["blocks"] if b.get("block_id") == "asset_link")
    assert block["optional"] is False
    answer = await s.submit(view, states({**COMPLETE, "asset_link": "n/a"}), "UTECH")
    assert answer is not None and "placeholder" in answer["errors"]["asset_link"]

    # Teams: the same form, and the form shown again with another fact's error.
    form = card_of(await say(app, connector, text="ticket new VPN down"))
    values = form_values(category="network", asset="N/A")
    await say(app, connector, {**submit_action(form)["fallback"]["data"], **values})
    escalate = card_of(await say(app, connector, text="ticket escalate HD-4"))
    link = next(i for i in inputs(escalate) if i["id"] == "asset_link")
    assert link.get("isRequired") is not True and link["value"] == "N/A"
    data = {**submit_action(escalate)["fallback"]["data"], **COMPLETE, "asset_link": "N/A"}
    again = card_of(await say(app, connector, {**data, "user_impact": ""}))
    assert next(i for i in inputs(again) if i["id"] == "asset_link").get("isRequired") is not True
    assert note_under(again, "asset_link") == ""
    told = await say(app, connector, data)
    assert "escalated to networking" in (told.get("text") or json.dumps(told))
    await wait_until(lambda: connector.activities(TEAMS_QUEUE) != [], what="the Teams notice")


async def test_a_p1_with_reports_filed_under_it_tells_the_queue_every_user_affected(
    make_app, slack_api: FakeSlack
):
    """SPEC "Duplicate reports of a P1": "The P1's users affected becomes its own plus those of
    every filed ticket". Its card said 42 (40 on HD-1 + 2 in 1 filed report) while the notice
    its escalation sent the queue said 40: the queue under-read the impact it was asked to
    act on. The notice says what the card says."""
    app: AppHarness = await make_app(slack=slack_api, config=CONFIG, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    outage = {"summary": "VPN down in Lisbon", "category": "network", "error": "Error 809"}
    p1 = await s.ticket(priority="P1", users=40, asset="VPN-01", client="Acme", **outage)
    report = await s.ticket(users=2, asset="VPN-01", client="Acme", summary="No VPN")
    assert f"{report} is filed under {p1}" in await s.command(f"link {report} {p1}")
    view = await s.modal(f"escalate {p1}")
    answer = await s.submit(view, states({**COMPLETE, "asset_link": "VPN-01"}), "UTECH")
    assert not answer or "errors" not in answer, answer
    await wait_until(lambda: posts_to(slack_api, "C0NETWORK") != [], what="the queue notice")
    [notice] = posts_to(slack_api, "C0NETWORK")
    shown = html.unescape(texts_of(notice["blocks"]))
    assert f"*Users affected:* 42 (40 on {p1} + 2 in 1 filed report)" in shown, shown
