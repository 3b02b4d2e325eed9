"""Whose words the identity check's messages are (issue #16 part 4, text replies), over HTTP.

Names, e-mail addresses and numbers on file come from the directory, summaries from whoever
opened the ticket: a vishing caller can choose them. Every message of the check (the answer to
`verify`, the manager's request, the manager's answers, the technician's and security's
notices, the call-back) shows them literally on both platforms: on Teams escaped where they
would start Markdown (never a link, bold or italic in a manager's DM), on Slack never a ping or
a link, and a paragraph quoting markup is `plain_text`. The bot's own words around them reach
Teams unescaped (its backticks are code, no backslash before them).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import yaml

from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, only_ticket, view_submission, wait_until
from tests.http.conftest_teams import (
    PERSONAL,
    TECH_ID,
    TENANT,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)
from tests.http.test_identity_slack import click, manager_dm, posts_to
from tests.http.test_identity_teams import execute, manager_request

# What a caller may have put in a directory entry or a summary, and how Teams must show it
# (escaped only where it starts markup).
HOSTILE = "[x](https://evil.example) **b** <u> _i_"
ESCAPED = r"\[x\](https://evil.example) \*\*b\*\* \<u> \_i\_"
# None of this may reach a Teams message unescaped.
MARKUP = re.compile(r"\[x\]\(|\*\*b\*\*|(?<!\\)_i_|(?<!\\)<u>")
PHONE = "+1 555 0199 **ext** _9_"
PHONE_ESCAPED = r"+1 555 0199 \*\*ext\*\* \_9\_"
SUMMARY = f"Locked out {HOSTILE}"
BO_ID = "29:1bo"
SECURITY = "19:security@thread.tacv2"
TEAMS_PEOPLE = [
    {
        "email": "ana@example.com",
        "name": f"Ana {HOSTILE}",
        "teams_id": "29:1ana",
        "phone": "+1 555 0100",
        "manager": "bo@example.com",
    },
    {"email": "bo@example.com", "name": f"Bo {HOSTILE}", "teams_id": BO_ID},
    {"email": "tech@example.com", "name": "Tom Tech", "teams_id": TECH_ID, "technician": True},
    # No manager on file: the call-back on the number on file.
    {"email": "cy@example.com", "name": f"Cy {HOSTILE}", "teams_id": "29:1cy", "phone": PHONE},
]


def markdown_texts(posted: dict[str, Any]) -> Iterator[str]:
    """What Teams reads as Markdown in a posted activity (or an update, or an invoke's card):
    its text, and its card's TextBlocks and facts."""
    if posted.get("text"):
        yield str(posted["text"])
    cards = [a["content"] for a in posted.get("attachments") or []]
    if posted.get("type") == "AdaptiveCard":
        cards.append(posted)
    for card in cards:
        for element in card.get("body", []):
            if element.get("type") == "TextBlock":
                yield element["text"]
            for fact in element.get("facts", []):
                yield fact["title"]
                yield fact["value"]


def teams_said(fake: FakeConnector, conversation: str) -> list[str]:
    return [t for a in fake.activities(conversation) for t in markdown_texts(a)]


def one(texts: list[str], start: str) -> str:
    found = [t for t in texts if t.startswith(start)]
    assert found, (start, texts)
    return found[-1]


async def teams_ticket(app: AppHarness, fake: FakeConnector, requester: str) -> None:
    posted = len(fake.activities(PERSONAL))
    await app.teams(message(fake.service_url, "ticket new"))
    await wait_until(lambda: len(fake.activities(PERSONAL)) > posted, what="the intake form")
    form = card_of(fake.activities(PERSONAL)[posted])
    values = form_values(requester=requester, category="printer", summary=SUMMARY)
    value = {**submit_action(form)["fallback"]["data"], **values}
    assert (await app.teams(activity(fake.service_url, value=value))).status == 201


async def teams_say(app: AppHarness, fake: FakeConnector, text: str, start: str) -> str:
    """Say `text` in the technician's chat; the Markdown of the answer starting with `start`."""
    posted = len(fake.activities(PERSONAL))
    await app.teams(message(fake.service_url, text))

    def later() -> list[str]:
        return [t for a in fake.activities(PERSONAL)[posted:] for t in markdown_texts(a)]

    await wait_until(lambda: any(t.startswith(start) for t in later()), what=start)
    return one(later(), start)


async def test_teams_identity_messages_show_directory_names_and_summaries_literally(
    make_app, connector: FakeConnector
):
    config = {
        "teams": {"service_url": connector.service_url, "tenant_id": TENANT},
        "queues": {"security": {"teams": SECURITY}},
    }
    app: AppHarness = await make_app(config=config, people=TEAMS_PEOPLE)
    await teams_ticket(app, connector, "ana@example.com")

    # The answer to `verify`: the manager and the requester by name, shown literally.
    sent = await teams_say(app, connector, "ticket verify HD-1", "Identity check for HD-1: asked")
    assert sent.startswith(
        f"Identity check for HD-1: asked Bo {ESCAPED} (bo@example.com), manager of "
        f"Ana {ESCAPED} (ana@example.com), on Microsoft Teams to confirm."
    ), sent
    # The gate's refusal: the bot's own words, its command as code (no backslash).
    refused = await teams_say(app, connector, "ticket close HD-1", "HD-1 needs the requester")
    assert "(`ticket verify HD-1` sends a fresh request)" in refused and "\\" not in refused

    # The manager's DM: the request and the card's title quote the summary and the names.
    chat, card = await manager_request(connector)
    request = list(markdown_texts(card))
    assert f"Identity check for HD-1: did Ana {ESCAPED} (ana@example.com) ask" in request[0]
    assert f"Locked out {ESCAPED}" in request and f"Bo {ESCAPED}" in request[1]

    # The manager denies: their answer, the technician's and security's notices.
    answered = await execute(app, connector, card, "Deny", user=BO_ID, conversation=chat)
    assert "HD-1 is stopped and the security team is told" in answered
    await wait_until(lambda: any("DO NOT PROCEED" in t for t in teams_said(connector, PERSONAL)))
    denied = one(teams_said(connector, PERSONAL), "DO NOT PROCEED")
    assert denied.startswith(f"DO NOT PROCEED with HD-1: Bo {ESCAPED} (bo@example.com) denied")
    await wait_until(lambda: bool(teams_said(connector, SECURITY)), what="security told")
    security = one(teams_said(connector, SECURITY), "Possible impersonation")
    assert security.startswith(
        f"Possible impersonation on HD-1: Bo {ESCAPED} (bo@example.com) denied that "
        f'Ana {ESCAPED} (ana@example.com) asked for "Locked out {ESCAPED}" (category printer). '
        "Technician: Tom Tech (tech@example.com). Request came in through Microsoft Teams, "
        "personal chat with the help-desk bot at "
    ), security
    assert (await only_ticket(app)).identity_state == "denied"

    # No manager on file: the call-back names the requester and the number on file literally,
    # and the bot's command is code.
    await teams_ticket(app, connector, "cy@example.com")
    await teams_say(app, connector, "ticket verify HD-2", "Identity check for HD-2")

    # The answer (with the button) and the direct message with the number on file.
    def callbacks() -> set[str]:
        return {
            t
            for t in teams_said(connector, PERSONAL)
            if t.startswith("Identity check for HD-2") and " back on +1 555" in t
        }

    await wait_until(lambda: len(callbacks()) == 1, what="the call-back notice")
    [callback] = callbacks()
    assert callback.startswith(
        f"Identity check for HD-2: there is no manager on file for Cy {ESCAPED} "
        f"(cy@example.com). Call Cy {ESCAPED} (cy@example.com) back on {PHONE_ESCAPED}, the "
        "number on file in the directory"
    ), callback
    assert callback.endswith("(or `ticket verify HD-2 called-back`).")

    # The ticket's thread (here the same chat) is told where the number went, not the number.
    def told() -> list[str]:
        return [
            t
            for t in teams_said(connector, PERSONAL)
            if t.startswith("Identity check for HD-2") and "privately" in t
        ]

    await wait_until(lambda: bool(told()), what="the thread told")
    [thread] = told()
    assert thread.startswith(
        f"Identity check for HD-2: there is no manager on file for Cy {ESCAPED} "
        "(cy@example.com). The number on file in the directory was sent to Tom Tech "
        f"(tech@example.com) privately, in a direct message: call Cy {ESCAPED} (cy@example.com) "
        "back on it"
    ), thread
    # The answer names the number called; the ticket's thread (here the same 1:1 chat) is
    # told without it, and either may arrive first.
    posted = len(connector.activities(PERSONAL))
    await app.teams(message(connector.service_url, "ticket verify HD-2 called-back"))

    def answers() -> list[str]:
        return [
            t
            for a in connector.activities(PERSONAL)[posted:]
            for t in markdown_texts(a)
            if t.startswith("Identity confirmed for HD-2") and PHONE_ESCAPED in t
        ]

    await wait_until(lambda: bool(answers()), what="the answer to called-back")
    [confirmed] = answers()
    assert confirmed.startswith(
        "Identity confirmed for HD-2: confirmed by call-back to the number on file by Tom Tech "
        "(tech@example.com) at "
    ) and confirmed.endswith(f" ({PHONE_ESCAPED}). You may proceed."), confirmed

    # Nowhere (texts, cards, updates, in every chat) does typed markup reach Teams unescaped,
    # and the bot's backticks never carry a backslash.
    everything = [
        t for a in [*connector.activities(), *connector.updates()] for t in markdown_texts(a)
    ]
    for text in everything:
        assert not MARKUP.search(text), text
        assert "\\`" not in text, text


async def test_teams_a_refusal_naming_the_manager_shows_their_name_literally(
    make_app, connector: FakeConnector
):
    # Bo's entry names another Teams account once the request is out: Bo's old account's Deny
    # is refused, and the technician is told, naming Bo (twice) and the account that answered.
    config = {"teams": {"service_url": connector.service_url, "tenant_id": TENANT}}
    app: AppHarness = await make_app(config=config, people=TEAMS_PEOPLE)
    await teams_ticket(app, connector, "ana@example.com")
    await teams_say(app, connector, "ticket verify HD-1", "Identity check for HD-1: asked")
    chat, card = await manager_request(connector)
    people = yaml.safe_load((app.tmp / "people.yaml").read_text())
    for person in people:
        if person["email"] == "bo@example.com":
            person["teams_id"] = "29:1bo-new"
    (app.tmp / "people.yaml").write_text(yaml.safe_dump(people))
    await asyncio.sleep(1.2)  # the file is looked at again after a second
    refused = await execute(app, connector, card, "Deny", user=BO_ID, conversation=chat)
    assert "Only the requester's manager can answer" in refused

    def told() -> list[str]:
        return [t for t in teams_said(connector, PERSONAL) if "is no longer Bo" in t]

    await wait_until(lambda: bool(told()), what="the technician told")
    [text] = told()
    assert text == (
        "Identity check for HD-1: the request was pressed Deny from teams user 29:1bo, which is "
        f"no longer Bo {ESCAPED} (bo@example.com)'s account in the directory, so nothing was "
        "recorded or confirmed. Treat the request with suspicion: do not reset passwords, "
        "change MFA or discuss the account. Run `ticket verify HD-1` to ask "
        f"Bo {ESCAPED} (bo@example.com) on the account now on file."
    )


# -- Slack ---------------------------------------------------------------------------------------

SLACK_HOSTILE = "<@U0EVIL> <!here> *b* _i_ <https://evil.example|x>"
# What must never reach Slack as written (a ping, a broadcast, a link).
CONTROLS = ("<@U0EVIL>", "<!here>", "<https://evil")
SLACK_PHONE = "+1 555 0199 *ext* <!here>"
SLACK_PEOPLE = [
    {
        "email": "ana@example.com",
        "name": f"Ana {SLACK_HOSTILE}",
        "slack_id": "U0ANA",
        "phone": "+1 555 0100",
        "manager": "bo@example.com",
    },
    {"email": "bo@example.com", "name": f"Bo {SLACK_HOSTILE}", "slack_id": "U0BO"},
    {"email": "tom@example.com", "name": "Tom Tech", "slack_id": "UTECH", "technician": True},
    {
        "email": "cy@example.com",
        "name": f"Cy {SLACK_HOSTILE}",
        "slack_id": "U0CY",
        "phone": SLACK_PHONE,
    },
]


def slack_texts(message: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every text object of a message's blocks (sections and context)."""
    for block in message.get("blocks") or []:
        if isinstance(block.get("text"), dict):
            yield block["text"]
        for element in block.get("elements") or []:
            if isinstance(element, dict) and element.get("type") in ("mrkdwn", "plain_text"):
                yield element


def slack_text(message: dict[str, Any], start: str) -> dict[str, Any]:
    found = [t for t in slack_texts(message) if t["text"].startswith(start)]
    assert found, (start, message)
    return found[-1]


async def slack_ticket(app: AppHarness, fake: FakeSlack, requester: str) -> None:
    opened = len(fake.views_opened())
    await app.slash("new Locked out")
    await fake.wait_for_method("views.open", count=opened + 1)
    view = fake.views_opened()[-1]["view"]
    text = lambda value: {"type": "plain_text_input", "value": value}  # noqa: E731
    values = {
        "requester": {"type": "users_select", "selected_user": requester},
        "summary": text(f"Locked out {SLACK_HOSTILE}"),
        "error_text": text(""),
        "doing": text(""),
        "reproducible": {"type": "static_select", "selected_option": {"value": "yes"}},
        "users_affected": {"type": "number_input", "value": "1"},
        "priority": {"type": "static_select", "selected_option": {"value": "P2"}},
        "category": {"type": "static_select", "selected_option": {"value": "printer"}},
        "asset": text(""),
        "client": text(""),
    }
    posts = len(posts_to(fake, "C0HELP"))
    payload = view_submission(view, values, view_id=f"V{time.time_ns()}")
    assert (await app.interactive(payload)).status == 200
    await wait_until(lambda: len(posts_to(fake, "C0HELP")) > posts)


def literal(said: dict[str, Any], *quoted: str) -> None:
    """`said` quotes typed markup: plain_text (shown as typed), Slack's controls escaped."""
    assert said["type"] == "plain_text" and said.get("emoji") is False, said
    for text in quoted:
        assert text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in said["text"]


async def test_slack_identity_messages_never_ping_link_or_format_what_was_typed(
    make_app, slack_api: FakeSlack
):
    config = {"queues": {"security": {"slack": "C0SECURITY"}}}
    app: AppHarness = await make_app(slack=slack_api, config=config, people=SLACK_PEOPLE)
    await slack_ticket(app, slack_api, "U0ANA")

    answer = await (await app.slash("verify HD-1")).json()
    sent = slack_text(answer, "Identity check for HD-1: asked")
    literal(sent, f"Bo {SLACK_HOSTILE} (bo@example.com)", f"Ana {SLACK_HOSTILE} (ana@example.com)")
    # The gate's refusal quotes nothing typed: mrkdwn, the bot's command as code.
    refused = slack_text(await (await app.slash("close HD-1")).json(), "HD-1 needs the requester")
    assert (
        refused["type"] == "mrkdwn"
        and "(`/ticket verify HD-1` sends a fresh request)" in (refused["text"])
    )

    dm = await manager_dm(slack_api)
    assert "Deny" in json.dumps(dm["blocks"])
    assert "stopped" in await click(app, slack_api, dm, "Deny", "U0BO")
    await wait_until(
        lambda: any("DO NOT PROCEED" in json.dumps(p) for p in posts_to(slack_api, "C0HELP"))
    )
    [told] = [p for p in posts_to(slack_api, "C0HELP") if "DO NOT PROCEED" in json.dumps(p)]
    literal(slack_text(told, "DO NOT PROCEED with HD-1: "), f"Bo {SLACK_HOSTILE}")
    await wait_until(lambda: bool(posts_to(slack_api, "C0SECURITY")), what="security told")
    [security] = posts_to(slack_api, "C0SECURITY")
    literal(
        slack_text(security, "Possible impersonation on HD-1: "),
        f"Bo {SLACK_HOSTILE}",
        f"Ana {SLACK_HOSTILE}",
        f'"Locked out {SLACK_HOSTILE}"',
    )

    # No manager: the call-back notice (the technician's answer and their DM) and the thread.
    await slack_ticket(app, slack_api, "U0CY")
    callback = await (await app.slash("verify HD-2")).json()
    literal(
        slack_text(callback, "Identity check for HD-2: there is no manager on file for Cy"),
        f"Cy {SLACK_HOSTILE}",
        SLACK_PHONE,
    )
    confirmed = await (await app.slash("verify HD-2 called-back")).json()
    literal(slack_text(confirmed, "Identity confirmed for HD-2: "), SLACK_PHONE)

    # Nothing anyone typed pings, broadcasts or links anywhere the bot wrote.
    sent_anywhere = json.dumps(
        [slack_api.posts(), slack_api.method_calls("chat.update"), answer, callback, confirmed]
    )
    for control in CONTROLS:
        assert control not in sent_anywhere, control
