"""What people see on a ticket card, exactly (issue 16.4 and 16.6), over HTTP on both platforms.

Teams: the bot's own words arrive without a single backslash (`HD-1 (P2): Outlook keeps
crashing`), typed text is escaped only where it would start markup, plain-text fields carry the
text as typed, and people appear as `Name (email)` from the directory, never as raw ids.
Slack: people are mentions (Slack shows their names), typed text can never ping or link.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from handlers.commands import USAGE, VERBS
from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, only_ticket, view_submission, wait_until
from tests.http.conftest_teams import (
    PERSONAL,
    TECH_ID,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)

PEOPLE = [
    {"email": "ana@example.com", "name": "Ana Lopez", "teams_id": "29:1ana", "slack_id": "U0ANA"},
    {
        "email": "tech@example.com",
        "name": "Tom Tech",
        "teams_id": TECH_ID,
        "slack_id": "UTECH",
        "technician": True,
    },
]
CONFIG = {"sla": {"clients": {"acme": "gold"}}}
ERROR = "Error 0x80070005: [reset here](https://evil.example) **now**\n- then it closes"


async def teams_answer(app: AppHarness, fake: FakeConnector, body: dict[str, Any]) -> dict:
    posted = len(fake.activities(PERSONAL))
    assert (await app.teams(body)).status == 201
    await wait_until(lambda: len(fake.activities(PERSONAL)) > posted)
    return fake.activities(PERSONAL)[-1]


def facts_of(card: dict[str, Any]) -> dict[str, str]:
    return {
        f["title"]: f["value"] for e in card["body"] if e["type"] == "FactSet" for f in e["facts"]
    }


async def test_the_teams_ticket_card_says_exactly_this(make_app, connector: FakeConnector):
    app: AppHarness = await make_app(config=CONFIG, people=PEOPLE)
    form = card_of(await teams_answer(app, connector, message(connector.service_url, "ticket new")))
    values = form_values(
        summary="Outlook keeps crashing",
        error_text=ERROR,
        doing="Opening _the_ shared calendar",
        asset="LT-0042",
        category="email",
    )
    data = {**submit_action(form)["fallback"]["data"], **values}
    reply = await teams_answer(app, connector, activity(connector.service_url, value=data))
    card = card_of(reply)
    ticket = await only_ticket(app)
    due = {
        "Respond by": ticket.respond_by.strftime("%Y-%m-%d %H:%M UTC"),
        "Resolve by": ticket.resolve_by.strftime("%Y-%m-%d %H:%M UTC"),
    }
    texts = [e["text"] for e in card["body"] if e["type"] == "TextBlock"]

    def due_text(due: datetime) -> str:
        # The time alone on the day the ticket was opened, else with its date (a ticket opened
        # late in the UTC day is due tomorrow).
        same_day = due.date() == ticket.created_at.date()
        return due.strftime("%H:%M UTC" if same_day else "%Y-%m-%d %H:%M UTC")

    assert texts == [
        "HD-1 (P2): Outlook keeps crashing",
        "Opened HD-1",
        f"Respond: pending (due {due_text(ticket.respond_by)})",
        f"Resolve: pending (due {due_text(ticket.resolve_by)})",
        "Exact error text",
        "Error 0x80070005: \\[reset here\\](https://evil.example) \\*\\*now\\*\\*"
        "\n\\- then it closes",
        "What they were doing",
        "Opening \\_the\\_ shared calendar",
    ]
    assert facts_of(card) == {
        "Ticket": "HD-1",
        "Priority": "P2",
        "Status": "open",
        "Requester": "Ana Lopez (ana@example.com)",
        "Technician": "Tom Tech (tech@example.com)",
        "Category": "email",
        "Users affected": "1",
        "Reproducible": "intermittent",
        **due,
        "Asset": "LT-0042",
        "Client": "Acme (gold tier, from sla.clients)",
        "Scope": "Tier 2/3: escalate early",  # email is not in the default tier1_scope
    }
    plain = (
        f"HD-1 (P2) Outlook keeps crashing - respond by {due['Respond by']}, "
        f"resolve by {due['Resolve by']}"
    )
    assert card["fallbackText"] == plain and reply["summary"] == plain
    # No raw Bot Framework id anywhere a person reads.
    assert "29:1ana" not in json.dumps(card["body"]) and TECH_ID not in json.dumps(card["body"])

    # `show` adds the time entries: by name and e-mail too.
    await teams_answer(app, connector, message(connector.service_url, "ticket time HD-1 20m"))
    shown = card_of(
        await teams_answer(app, connector, message(connector.service_url, "ticket show HD-1"))
    )
    entries = [v for v in facts_of(shown).values() if v.startswith("20m by ")]
    assert entries == ["20m by Tom Tech (tech@example.com)"]


async def test_help_and_welcome_on_teams_are_cards_that_cannot_run_together(
    make_app, connector: FakeConnector
):
    app: AppHarness = await make_app(config=CONFIG, people=PEOPLE)
    card = card_of(
        await teams_answer(app, connector, message(connector.service_url, "ticket help"))
    )
    assert card["body"][0]["text"] == "Help desk commands"
    commands = [(f["title"], f["value"]) for f in card["body"][1]["facts"]]
    assert commands[:3] == [
        ("ticket new [summary]", "open the intake form"),
        ("ticket show HD-7", "show a ticket"),
        ("ticket mine", "your open tickets"),
    ]
    # One line per command the bot knows.
    assert len(commands) == len(VERBS) == len(USAGE)
    assert "\\" not in json.dumps(commands, ensure_ascii=False)
    assert ("ticket confirm HD-7", dict(USAGE)["confirm HD-7"]) in commands
    # `kb <words>`: Teams took `<words>` for an HTML tag and showed only "ticket kb" (seen in
    # the Agents Playground); single angle quotation marks keep the argument, unescaped.
    assert ("ticket kb \u2039words\u203a", dict(USAGE)["kb <words>"]) in commands


async def test_every_command_the_teams_help_quotes_starts_with_ticket(
    make_app, connector: FakeConnector
):
    """The help's `verify` line said to record a call-back with `verify HD-7 called-back`: in
    Teams, a message starting with `verify` is no command (the bot answers with its hint), so
    following the help to the letter did nothing. Every command it quotes starts with the
    platform's `ticket`, as the lines themselves do."""
    app: AppHarness = await make_app(config=CONFIG, people=PEOPLE)
    card = card_of(
        await teams_answer(app, connector, message(connector.service_url, "ticket help"))
    )
    values = [f["value"] for f in card["body"][1]["facts"]]
    quoted = [q for value in values for q in re.findall(r"`([^`]+)`", value)]
    assert "ticket verify HD-7 called-back" in quoted
    assert [q for q in quoted if not q.startswith("ticket ")] == []


async def test_the_slack_ticket_card_names_people_with_mentions(make_app, slack_api: FakeSlack):
    app: AppHarness = await make_app(slack=slack_api, config=CONFIG, people=PEOPLE)
    response = await app.slash("new Outlook keeps crashing")
    assert response.status == 200
    await slack_api.wait_for_method("views.open")
    view = slack_api.views_opened()[-1]["view"]

    def text(value: str) -> dict[str, Any]:
        return {"type": "plain_text_input", "value": value}

    def choice(value: str) -> dict[str, Any]:
        return {"type": "static_select", "selected_option": {"value": value}}

    states = {
        "requester": {"type": "users_select", "selected_user": "U0ANA"},
        "summary": text("Outlook keeps crashing <!channel>"),
        "error_text": text(ERROR),
        "doing": text(""),
        "reproducible": choice("yes"),
        "users_affected": {"type": "number_input", "value": "1"},
        "priority": choice("P2"),
        "category": choice("email"),
        "asset": text(""),
        "client": text(""),
    }
    await app.interactive(view_submission(view, states))
    [post] = await slack_api.wait_for_method("chat.postMessage")
    assert post["blocks"][0]["text"]["text"] == "HD-1 (P2): Outlook keeps crashing &lt;!channel&gt;"
    facts = post["blocks"][1]["text"]["text"]
    assert "*Requester:* <@U0ANA> (ana@example.com)" in facts
    assert "*Technician:* <@UTECH> (tech@example.com)" in facts
    assert "<!channel>" not in json.dumps(post) and "<https://" not in json.dumps(post)
