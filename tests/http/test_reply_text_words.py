"""Text replies and notes say whose words they are (issue #16 part 4), over HTTP on both
platforms: what people typed or another system answered (a summary, a client, a mistyped
date, a pager's or a PSA's error text) is shown literally, and the bot's own words beside it
are not escaped (Teams: no backslash before its backticks; Slack: its backticks in mrkdwn).
"""

from __future__ import annotations

import json
import re
from typing import Any

from cards.teams import escape_markdown
from tests.fakes.botframework import FakeConnector
from tests.fakes.pagers import FakePagerDuty
from tests.fakes.psa_autotask import FakeAutotask
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, wait_until
from tests.http.conftest_teams import (
    PEOPLE,
    PERSONAL,
    TENANT,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)
from tests.http.p1_support import INCIDENT_CONVERSATION, pager_env
from tests.http.psa_support import all_synced, escalate, open_ticket, posts_to, seed, start_app
from tests.http.test_slack_text import text_objects

# Markdown (Teams) and mrkdwn (Slack) would each make something of these.
EVIL = "[x](https://evil.example) **b** <u> _i_"
SUMMARY = f"Printer {EVIL}"
CLIENT = "Acme **gold** _x_"
DATE = "2026-03-31T**b**_i_"  # date-shaped: `report` names it back
USAGE = "`report [client] [YYYY-MM-DD YYYY-MM-DD]`"


def literal(text: str) -> str:
    """`text` as Teams shows typed text in the middle of a line (escaped)."""
    return escape_markdown(text, line_start=False)


async def say(app: AppHarness, fake: FakeConnector, text: str = "", **kw: Any) -> dict[str, Any]:
    """Send `text` (or a card submission) in the technician's 1:1 chat; the bot's answer."""
    posted = len(fake.activities(PERSONAL))
    sent = activity(fake.service_url, **kw) if kw else message(fake.service_url, text)
    assert (await app.teams(sent)).status == 201
    await wait_until(lambda: len(fake.activities(PERSONAL)) > posted, what="the bot's answer")
    return fake.activities(PERSONAL)[-1]


def texts(card: dict[str, Any]) -> str:
    return json.dumps(card, ensure_ascii=False)


async def test_teams_text_replies_quote_typed_and_outside_text_literally(
    make_app: Any, connector: FakeConnector, pagerduty: FakePagerDuty
) -> None:
    config = {
        "sla": {"clients": {"acme": "gold"}},
        "teams": {
            "service_url": connector.service_url,
            "tenant_id": TENANT,
            "incident_conversation": INCIDENT_CONVERSATION,
        },
    }
    app: AppHarness = await make_app(config=config, people=PEOPLE, env=pager_env(pagerduty, None))
    # The pager refuses the page for good, saying something Markdown would format.
    pagerduty.fail("/v2/enqueue", 400, body={"status": "invalid event", "message": EVIL})
    form = card_of(await say(app, connector, "ticket new"))
    values = form_values(summary=SUMMARY, client=CLIENT, priority="P3")
    await say(app, connector, value={**submit_action(form)["fallback"]["data"], **values})

    # `mine`: the bot's heading as written, the summary literally.
    lines = (await say(app, connector, "ticket mine"))["text"].split("\n\n")
    assert lines[0] == "Your open tickets (1):"
    assert lines[1].startswith(f"HD-1 (P3) Printer {literal(EVIL)} - resolve by "), lines
    assert EVIL not in lines[1]

    # `report` with a mistyped date: named back literally, the bot's usage unescaped.
    said = (await say(app, connector, f"ticket report {DATE}"))["text"]
    assert said == f"'{literal(DATE)}' is not a date like 2026-03-31 (YYYY-MM-DD). Try {USAGE}, " \
        "e.g. `report acme 2026-01-01 2026-03-31`.", said  # fmt: skip

    # An unknown command is answered with help, echoing nothing typed.
    helped = card_of(await say(app, connector, f"ticket {EVIL}"))
    assert helped["body"][0]["text"] == "Help desk commands"
    assert "evil" not in texts(helped)

    # `similar` / `kb` titles and `show`'s client: typed text escaped, the bot's words not.
    similar = card_of(await say(app, connector, "ticket similar HD-1"))
    assert similar["body"][0]["text"] == f"Similar to HD-1: Printer {literal(EVIL)}"
    found = card_of(await say(app, connector, "ticket kb **b** _i_"))
    assert found["body"][0]["text"] == "KB search: \\*\\*b\\*\\* \\_i\\_"
    shown = card_of(await say(app, connector, "ticket show HD-1"))
    client = next(
        f["value"]
        for e in shown["body"]
        if e["type"] == "FactSet"
        for f in e["facts"]
        if f["title"] == "Client"
    )
    assert client.startswith(literal(CLIENT) + " ("), client

    # `p1`: the notice's headline literal; the pager's refusal told to the technician.
    assert (await app.teams(message(connector.service_url, "ticket p1 HD-1"))).status == 201

    def answered(start: str) -> list[str]:
        found = [str(a.get("text")) for a in connector.activities(PERSONAL)]
        return [t for t in found if t.startswith(start)]

    # (The pager's refusal may be told before the answer is posted.)
    await wait_until(lambda: answered("HD-1 is now P1"), what="the answer to p1")
    [raised] = answered("HD-1 is now P1")
    assert raised.startswith("HD-1 is now P1 (respond by ") and "\\" not in raised, raised
    await wait_until(lambda: connector.activities(INCIDENT_CONVERSATION), what="the notice")
    notice = card_of(connector.activities(INCIDENT_CONVERSATION)[0])
    assert notice["body"][0]["text"] == f"P1 incident HD-1: Printer {literal(EVIL)}"

    def told() -> list[str]:
        return [
            str(a.get("text"))
            for a in connector.activities()
            if "failed and will not be retried" in str(a.get("text"))
        ]

    await wait_until(told, timeout=10, what="the technician told of the failed page")
    [note] = told()
    assert note.endswith(
        f"The PagerDuty page for HD-1 failed and will not be retried: pagerduty: HTTP 400 "
        f"{literal(EVIL)}. Reach the on-call another way."
    ), note
    assert EVIL not in note

    # Raised again: the earlier page's state names the pager's answer literally.
    again = (await say(app, connector, "ticket p1 HD-1"))["text"].split("\n\n")
    assert again[0] == "HD-1 is already P1.", again
    assert (
        "The PagerDuty page failed and will not be retried: pagerduty: HTTP 400 "
        f"{literal(EVIL)}. Reach the on-call another way."
    ) in again, again


# Slack: mentions typed or answered by another system must never ping; `*` and `_` must not
# format (mrkdwn has no escape for them: such a paragraph is plain_text).
SLACK_EVIL = "*b* <!here> <@U0EVIL> _i_"


def literal_on_slack(blocks: Any, typed: str) -> None:
    """`typed` is shown in a plain_text section (as Slack escapes it), never in mrkdwn."""
    shown = typed.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    objects = text_objects(blocks)
    assert not [o for o in objects if o["type"] == "mrkdwn" and shown in o["text"]], objects
    assert [o for o in objects if o["type"] == "plain_text" and shown in o["text"]], objects
    assert "<!here>" not in json.dumps(blocks) and "<@U0EVIL>" not in json.dumps(blocks)


async def test_slack_text_replies_quote_typed_and_outside_text_literally(
    make_app: Any, slack_api: FakeSlack, pagerduty: FakePagerDuty
) -> None:
    config = {"slack": {"incident_channel": "C0INCIDENT"}}
    people = [
        {"email": "tom@example.com", "name": "Tom Tech", "slack_id": "UTECH", "technician": True},
        {"email": "ana@example.com", "name": "Ana Lopez", "slack_id": "UANA"},
    ]
    app: AppHarness = await make_app(
        slack=slack_api, config=config, people=people, env=pager_env(pagerduty, None)
    )
    pagerduty.fail("/v2/enqueue", 400, body={"status": "invalid event", "message": SLACK_EVIL})
    await open_ticket(app, slack_api, summary=f"Printer {SLACK_EVIL}", client="", priority="P3")

    mine = await (await app.slash("mine")).json()
    literal_on_slack(mine["blocks"], f"HD-1 (P3) Printer {SLACK_EVIL}")

    wrong = await (await app.slash("report 2026-03-31T*b*_i_")).json()
    literal_on_slack(wrong["blocks"], "'2026-03-31T*b*_i_' is not a date")
    # Nothing typed that mrkdwn would format: the bot's backticks are code there.
    usage = await (await app.slash("report 2026-13-45")).json()
    mrkdwn = [o["text"] for o in text_objects(usage["blocks"]) if o["type"] == "mrkdwn"]
    assert [t for t in mrkdwn if USAGE in t and "'2026-13-45' is not a date" in t], usage

    await app.slash("p1 HD-1")

    def told() -> list[dict[str, Any]]:
        return [p for p in posts_to(slack_api, "C0HELP") if "will not be retried" in str(p)]

    await wait_until(told, timeout=10, what="the technician told of the failed page")
    [note] = told()
    literal_on_slack(note["blocks"], f"pagerduty: HTTP 400 {SLACK_EVIL}")
    again = await (await app.slash("p1 HD-1")).json()
    literal_on_slack(again["blocks"], f"pagerduty: HTTP 400 {SLACK_EVIL}")


async def test_a_psa_refusal_is_told_with_the_psas_words_literal_on_slack(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """Autotask refuses a note for good (its business rules: HTTP 500 and its `errors`), in
    words mrkdwn would format and a mention: told to the technician, and on `show`, as
    written, pinging nobody."""
    fake = FakeAutotask()
    seed(fake)
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(lambda: all_synced(app), what="the Autotask ticket")
        notes = f"/zone5/atservicesrest/v1.0/Tickets/{fake.only().id}/Notes"
        fake.fail(notes, 500, times=100, body={"errors": [f"Invalid {SLACK_EVIL}"]})
        await escalate(app, slack_api, "HD-1")

        def told() -> list[dict[str, Any]]:
            words = "Autotask refused the note for HD-1 and it will not be retried"
            return [p for p in posts_to(slack_api, "C0HELP") if words in json.dumps(p)]

        await wait_until(told, timeout=15, what="the technician told")
        literal_on_slack(told()[0]["blocks"], f"Invalid {SLACK_EVIL}")
        shown = await (await app.slash("show HD-1")).json()
        literal_on_slack(shown["blocks"], f"Invalid {SLACK_EVIL}")


async def test_a_psa_refusal_is_told_with_the_psas_words_literal_on_teams(
    make_app: Any, connector: FakeConnector
) -> None:
    """The same refusal in a Teams ticket's conversation: the PSA's words escaped, the bot's
    words around them as written (no backslash)."""
    fake = FakeAutotask()
    seed(fake)
    async with fake:
        from tests.http.psa_support import PEOPLE as PSA_PEOPLE
        from tests.http.psa_support import app_config, remember_secrets

        remember_secrets(fake)
        people = [*PSA_PEOPLE, PEOPLE[1]]  # and Tom Tech on Teams
        people[1] = {**people[1], "teams_id": PEOPLE[0]["teams_id"]}  # Ana on Teams
        config = app_config(fake, teams={"service_url": connector.service_url})
        app: AppHarness = await make_app(config=config, people=people, env=fake.env())
        tickets = "/zone5/atservicesrest/v1.0/Tickets"
        fake.fail(tickets, 500, times=100, body={"errors": [f"Invalid {EVIL}"]})
        form = card_of(await say(app, connector, "ticket new"))
        values = form_values(client="acme", category="network")
        await say(app, connector, value={**submit_action(form)["fallback"]["data"], **values})

        def told() -> list[str]:
            return [
                str(a.get("text"))
                for a in connector.activities()
                if "will not be retried" in str(a.get("text"))
            ]

        await wait_until(told, timeout=15, what="the technician told")
        [note] = told()
        assert re.search(
            r"Autotask refused the ticket for HD-1 and it will not be retried: .*"
            + re.escape(f"Invalid {literal(EVIL)}")
            + r".*\. Enter it in Autotask by hand\.$",
            note,
        ), note
        assert EVIL not in note
