"""Slash-command text arrives HTML-escaped from Slack; it is stored and prefilled as typed."""

from __future__ import annotations

import json

from sqlalchemy import select

from storage.models import TimeEntry
from tests.fakes.slack_api import FakeSlack
from tests.http.test_closure_slack import new_ticket, start


async def test_slash_text_is_unescaped_before_storing(make_app, slack_api: FakeSlack):
    """Typed: `/ticket time HD-1 30m swapped <toner> & drum`. Slack sends the text escaped
    (platform-facts §5: inbound text arrives escaped; unescape before storing)."""
    app = await start(make_app, slack_api)
    number = await new_ticket(app, slack_api)
    logged = await (await app.slash(f"time {number} 30m swapped &lt;toner&gt; &amp; drum")).json()
    assert "Logged 30m" in json.dumps(logged)
    async with app.services.sessions() as session:
        note = (await session.execute(select(TimeEntry.note))).scalar_one()
    assert note == "swapped <toner> & drum"


async def test_slash_new_prefill_is_unescaped(make_app, slack_api: FakeSlack):
    """Typed: `/ticket new VPN <error 809> & Wi-Fi` -> modal prefilled with what was typed."""
    app = await start(make_app, slack_api)
    await app.slash("new VPN &lt;error 809&gt; &amp; Wi-Fi")
    await slack_api.wait_for_method("views.open")
    view = slack_api.views_opened()[-1]["view"]
    summary = next(b for b in view["blocks"] if b.get("block_id") == "summary")
    assert summary["element"]["initial_value"] == "VPN <error 809> & Wi-Fi"


def test_unescape_gives_back_what_was_typed() -> None:
    from bot.slack.front import unescape

    assert unescape("a &lt;b&gt; &amp; c") == "a <b> & c"
    assert unescape("&amp;lt; stays typed") == "&lt; stays typed"  # typed `&lt;`
    assert unescape("no entities") == "no entities"
