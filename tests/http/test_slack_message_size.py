"""A Slack ticket card whose typed text is long still arrives (over HTTP).

Slack refuses a message whose blocks hold too much text in all with the undocumented
`msg_blocks_too_long` (about 12,000 characters over every `text`; bolt-js #2509, #2867), and
the fake does the same. Typed `&`, `<` and `>` grow when escaped (`&lt;`), so three
3,000-character fields of a pasted HTML error page came to about 17,000 (and the
outbox retried the refusal). The card must arrive
with the typed texts cut (marked "…") and the bot's own labels, SLA times and buttons intact.
"""

from __future__ import annotations

from typing import Any

import pytest

from storage.models import Ticket
from tests.fakes.slack_api import BLOCKS_TEXT_MAX, FakeSlack, blocks_text_size
from tests.harness import AppHarness, only_ticket, view_submission, wait_until
from tests.http.test_slack_intake import CONFIG, open_modal, states

MAX_TEXT = 3000  # what the intake form takes per field
MAX_SHORT = 200

TEXTS = {
    "markup": "<html><body>&nbsp;<b>500 & <i>Internal Server Error</i></b></body></html>\n",
    "ascii": "Exception in thread main java.lang.NullPointerException at Foo.bar(Foo.java:42)\n",
}


def typed(value: str) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


def escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@pytest.mark.parametrize("kind", TEXTS)
async def test_a_ticket_card_with_long_typed_text_arrives_within_the_block_text_limit(
    make_app, slack_api: FakeSlack, kind: str
):
    app: AppHarness = await make_app(slack=slack_api, config=CONFIG)
    view = await open_modal(app, slack_api)
    text = (TEXTS[kind] * MAX_TEXT)[:MAX_TEXT]
    short = (TEXTS[kind] * MAX_SHORT)[:MAX_SHORT]
    values = states(
        summary=typed(text),
        error_text=typed(text),
        doing=typed(text),
        asset=typed(short),
        client=typed(short),
    )
    assert (await app.interactive(view_submission(view, values))).status == 200
    ticket: Ticket = await only_ticket(app)  # the ticket is filed whatever happens to the card
    assert (ticket.summary, ticket.error_text, ticket.doing) == (text, text, text)

    await wait_until(lambda: slack_api.posts() or slack_api.too_long, what="the card")
    assert slack_api.too_long == [], [blocks_text_size(p["blocks"]) for p in slack_api.too_long]
    [post] = slack_api.posts()
    blocks = post["blocks"]
    assert blocks_text_size(blocks) <= BLOCKS_TEXT_MAX - 1000  # with a margin

    shown = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    facts = next(s for s in shown if s.startswith("*Ticket:*"))
    title = shown[: shown.index(facts)]  # a long title takes several bold sections
    contexts = [e["text"] for b in blocks if b["type"] == "context" for e in b["elements"]]
    assert "Exact error text" in contexts and "What they were doing" in contexts
    typed_sections = [
        b["text"]["text"] for b in blocks if b.get("text", {}).get("type") == "plain_text"
    ]
    assert title[0].startswith("*HD-1 (P2): ")
    if kind == "ascii":
        # 3 x 3,000 plain characters fit the budget: shown in full, nothing cut.
        assert "".join(typed_sections).replace("\n", "") == (text + text).replace("\n", "")
    else:
        # Cut, marked, and what was typed up to the cut.
        assert title[-1].endswith("…*"), title
        assert len(typed_sections) == 2  # the error, then what they were doing
        for section in typed_sections:
            assert section.endswith("…") and len(section) > 1000
            assert escaped(text).startswith(section[:-1])

    # Nothing of the bot's own is cut: labels, numbers, SLA times, buttons.
    assert "*Ticket:* HD-1" in facts and "*Priority:* P2" in facts
    assert "*Respond by:* " + ticket.respond_by.strftime("%Y-%m-%d %H:%M UTC") in facts
    assert "*Resolve by:* " + ticket.resolve_by.strftime("%Y-%m-%d %H:%M UTC") in facts
    assert "*Asset:* " in facts and "*Client:* " in facts
    buttons = [e["text"]["text"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert {"Verify identity", "Escalate", "Close"} <= set(buttons)
    assert post["text"].startswith("HD-1 (P2) ")


async def test_the_fake_refuses_blocks_over_the_observed_limit(make_app, slack_api: FakeSlack):
    """The fake counts as outside reports do: every `text` in the blocks, summed."""
    app: AppHarness = await make_app(slack=slack_api)
    assert app.http is not None
    url = f"{slack_api.url}/api/chat.postMessage"

    def blocks(size: int) -> list[dict[str, Any]]:
        return [
            {"type": "section", "text": {"type": "plain_text", "text": "x" * (size // 4)}}
            for _ in range(4)
        ]

    for size, ok in ((BLOCKS_TEXT_MAX, True), (BLOCKS_TEXT_MAX + 4, False)):
        body = {"channel": "C0HELP", "text": "t", "blocks": blocks(size)}
        async with app.http.post(url, json=body) as response:
            answer = await response.json()
        assert answer["ok"] is ok and answer.get("error") in (None, "msg_blocks_too_long")


async def test_msg_blocks_too_long_is_not_retried(make_app, slack_api: FakeSlack):
    """Sending the same blocks again cannot succeed: the card is reported as refused at once."""
    app: AppHarness = await make_app(slack=slack_api, config=CONFIG)
    view = await open_modal(app, slack_api)
    slack_api.fail_ok_false("chat.postMessage", "msg_blocks_too_long", times=1)
    assert (await app.interactive(view_submission(view, states()))).status == 200

    def report() -> list[dict[str, Any]]:
        return [p for p in slack_api.posts() if "will not be retried" in p.get("text", "")]

    await wait_until(report, timeout=5, what="the report that the card was refused")
    assert "HD-1" in report()[0]["text"]
