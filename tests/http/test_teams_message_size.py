"""A Teams ticket card whose typed text is long and not ASCII still arrives (over HTTP).

Teams refuses a bot message over its size limit, counted on the whole payload in UTF-16, with
413 MessageSizeTooBig (the fake connector does the same), and the outbox never retries a 413.
botbuilder sends JSON with every non-ASCII character escaped (`\\u03a3`, an emoji as two), so
3,000 Greek characters are 36 KB on the wire: a card under a character cap could still be
refused. The card must arrive with the typed texts cut (marked "…") and the bot's own labels,
SLA times and buttons intact.
"""

from __future__ import annotations

import pytest

from tests.adaptive_schema import validate_adaptive_card
from tests.fakes.botframework import MESSAGE_LIMIT_BYTES, FakeConnector
from tests.harness import AppHarness, only_ticket, wait_until
from tests.http.conftest_teams import (
    PERSONAL,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)
from tests.http.test_card_text import CONFIG, PEOPLE, facts_of, teams_answer

MAX_TEXT = 3000  # what the intake form takes per field

TEXTS = {
    "greek": "Σφάλμα σύνδεσης στον διακομιστή αλληλογραφίας. ",
    "cjk": "无法连接到邮件服务器，错误代码未知。",  # noqa: RUF001 (CJK text has its own comma)
    "emoji": "💥🔥😱",
    "json-escapes": 'say "\\"\n\t',
}


@pytest.mark.parametrize("kind", TEXTS)
async def test_a_ticket_card_with_long_non_ascii_text_arrives_within_the_size_limit(
    make_app, connector: FakeConnector, kind: str
):
    app: AppHarness = await make_app(config=CONFIG, people=PEOPLE)
    form = card_of(await teams_answer(app, connector, message(connector.service_url, "ticket new")))
    text = (TEXTS[kind] * MAX_TEXT)[:MAX_TEXT]
    values = form_values(summary=text, error_text=text, doing=text, category="email")
    data = {**submit_action(form)["fallback"]["data"], **values}
    posted = len(connector.activities(PERSONAL))
    assert (await app.teams(activity(connector.service_url, value=data))).status == 201
    ticket = await only_ticket(app)  # the ticket is filed whatever happens to the card

    await wait_until(lambda: len(connector.activities(PERSONAL)) > posted or connector.too_big)
    assert connector.too_big == [], [(m["_method"], m["_size"]) for m in connector.too_big]
    reply = connector.activities(PERSONAL)[-1]
    card = card_of(reply)

    # The typed texts are cut and say so; nothing of the bot's own is.
    texts = [e["text"] for e in card["body"] if e["type"] == "TextBlock"]
    assert texts[0].startswith("HD-1 (P2): ") and texts[0].endswith("…")
    assert "Exact error text" in texts and "What they were doing" in texts
    error = texts[texts.index("Exact error text") + 1]
    assert error.endswith("…") and len(error) > 100
    if kind != "json-escapes":  # (Markdown escapes change that one)
        assert text.startswith(error[:-1])
    facts = facts_of(card)
    assert facts["Ticket"] == "HD-1" and facts["Priority"] == "P2"
    assert facts["Respond by"] == ticket.respond_by.strftime("%Y-%m-%d %H:%M UTC")
    assert facts["Resolve by"] == ticket.resolve_by.strftime("%Y-%m-%d %H:%M UTC")
    titles = [a["title"] for a in card["actions"]]
    assert {"Verify identity", "Escalate", "Close"} <= set(titles)
    assert reply["summary"] == card["fallbackText"] and reply["summary"].startswith("HD-1 (P2) ")


async def test_the_fake_connector_refuses_a_message_over_the_documented_limit(
    make_app, connector: FakeConnector
):
    """The fake measures as Teams does: the body as sent, in UTF-16."""
    app: AppHarness = await make_app(config=CONFIG, people=PEOPLE)
    assert app.http is not None
    url = f"{connector.service_url}v3/conversations/{PERSONAL}/activities"
    fits = {"type": "message", "text": "x" * (MESSAGE_LIMIT_BYTES // 2 - 100)}
    async with app.http.post(url, json=fits) as response:
        assert response.status == 201
    # The same number of characters, escaped as botbuilder sends them: six times the size.
    greek = {"type": "message", "text": "Σ" * (MESSAGE_LIMIT_BYTES // 12)}
    async with app.http.post(url, json=greek) as response:
        assert response.status == 413
        assert (await response.json())["error"]["code"] == "MessageSizeTooBig"


@pytest.mark.parametrize("kind", ["greek", "cjk", "emoji"])
async def test_a_form_given_back_by_action_execute_keeps_long_non_ascii_values_whole(
    make_app, connector: FakeConnector, kind: str
):
    """The intake form filled in to its limits in Greek, Chinese or emoji, with one mistake
    (the Requester), comes back with the mistake marked and every value as typed. It cut them
    to a few hundred characters (marked "…"), measured as if escaped (`\\u4e2d`, six characters
    for one), so fixing the Requester and submitting again stored the texts cut: not "verbatim
    as typed". The invoke response is the bot's own HTTP answer: written with the characters
    as themselves, the form fits Teams' limit (UTF-16, as sent) with nothing cut."""
    app: AppHarness = await make_app(config=CONFIG, people=PEOPLE)
    form = card_of(await teams_answer(app, connector, message(connector.service_url, "ticket new")))
    # Teams' maxLength counts UTF-16 code units: an emoji is two.
    limit = MAX_TEXT // 2 if kind == "emoji" else MAX_TEXT
    text = (TEXTS[kind] * MAX_TEXT)[:limit]
    values = form_values(summary=text, error_text=text, doing=text, category="email")
    pressed = submit_action(form)
    data = {**pressed["data"], **values, "requester": "not an address"}
    execute = {"action": {"type": "Action.Execute", "verb": pressed["verb"], "data": data}}
    sent = activity(connector.service_url, type="invoke", name="adaptiveCard/action", value=execute)
    response = await app.teams(sent)
    assert response.status == 200
    raw = await response.text()
    assert len(raw.encode("utf-16-le")) <= MESSAGE_LIMIT_BYTES
    body = await response.json()
    assert body["type"] == "application/vnd.microsoft.card.adaptive"
    again = body["value"]
    validate_adaptive_card(again)
    given = {e["id"]: e.get("value") for e in again["body"] if e["type"].startswith("Input.")}
    assert {k: given[k] for k in ("summary", "error_text", "doing")} == {
        k: text for k in ("summary", "error_text", "doing")
    }

    fixed = {**data, "requester": "ana@example.com"} | {k: given[k] for k in ("summary", "doing")}
    execute = {"action": {"type": "Action.Execute", "verb": pressed["verb"], "data": fixed}}
    sent = activity(connector.service_url, type="invoke", name="adaptiveCard/action", value=execute)
    assert (await app.teams(sent)).status == 200
    ticket = await only_ticket(app)
    assert (ticket.summary, ticket.error_text, ticket.doing) == (text, text, text)
