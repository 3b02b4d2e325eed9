"""Typed text that hypothesis found turning into Markdown on Teams (tests/unit/
test_typed_text_properties.py), over HTTP: a ticket whose error text and "what they were doing"
hold a quote marker without a space (`>x`), a line indented by a tab or four spaces (a pasted
stack trace: an indented code block, where the escapes show as backslashes) and a lone `\\r`
(a line break to Markdown: `\\r# step` was a heading). The card shows them as typed, read back
with a real CommonMark parser.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.botframework import FakeConnector
from tests.harness import AppHarness, only_ticket, wait_until
from tests.http.conftest_teams import (
    PERSONAL,
    activity,
    card_of,
    form_values,
    message,
    submit_action,
)
from tests.typed_text import commonmark_text, formatting, shown, tokens

PEOPLE = [
    {"email": "ana@example.com", "name": "Ana Lopez", "teams_id": "29:1ana"},
    {"email": "tech@example.com", "name": "Tom Tech", "teams_id": "29:1tech", "technician": True},
]
ERROR = ">Access denied <!here>\n\n\tat Vpn.Connect() *retry*\r# step 2\n    at Main()"
DOING = "Connecting\r- from home\r\n>twice"


async def answer(app: AppHarness, fake: FakeConnector, body: dict[str, Any]) -> dict[str, Any]:
    posted = len(fake.activities(PERSONAL))
    assert (await app.teams(body)).status == 201
    await wait_until(lambda: len(fake.activities(PERSONAL)) > posted)
    return fake.activities(PERSONAL)[-1]


async def test_quote_indent_and_carriage_return_in_typed_text_show_as_typed(
    make_app: Any, connector: FakeConnector
) -> None:
    app: AppHarness = await make_app(people=PEOPLE)
    svc = connector.service_url
    form = card_of(await answer(app, connector, message(svc, "ticket new")))
    values = form_values(summary=">VPN down", error_text=ERROR, doing=DOING)
    data = {**submit_action(form)["fallback"]["data"], **values}
    card = card_of(await answer(app, connector, activity(svc, value=data)))
    ticket = await only_ticket(app)
    assert (ticket.error_text, ticket.doing) == (ERROR, DOING)  # stored verbatim
    texts = [e["text"] for e in card["body"] if e["type"] == "TextBlock"]
    error = texts[texts.index("Exact error text") + 1]
    doing = texts[texts.index("What they were doing") + 1]
    for typed, text in ((ERROR, error), (DOING, doing), ("HD-1 (P2): >VPN down", texts[0])):
        assert formatting(text) == [], text
        assert commonmark_text(text) == shown(typed), text


async def test_a_line_of_blanks_in_typed_text_still_separates_paragraphs(
    make_app: Any, connector: FakeConnector
) -> None:
    """A pasted trace often has "empty" lines that keep their indentation (editors leave it):
    a line of four blanks or a tab is a blank line, a paragraph break, not indentation to turn
    into no-break spaces (which made it a line of text, joining the paragraphs around it)."""
    typed = "Access denied\n    \n\tat Vpn.Connect()\n\t\nat Main()"
    app: AppHarness = await make_app(people=PEOPLE)
    svc = connector.service_url
    form = card_of(await answer(app, connector, message(svc, "ticket new")))
    values = form_values(summary="VPN down", error_text=typed, doing="Connecting")
    data = {**submit_action(form)["fallback"]["data"], **values}
    card = card_of(await answer(app, connector, activity(svc, value=data)))
    texts = [e["text"] for e in card["body"] if e["type"] == "TextBlock"]
    error = texts[texts.index("Exact error text") + 1]
    assert formatting(error) == [], error
    assert commonmark_text(error) == shown(typed), error
    paragraphs = [t.type for t in tokens(error)].count("paragraph_open")
    assert paragraphs == 3, error
