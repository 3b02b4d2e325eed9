"""Slash-command text arrives HTML-escaped from Slack; it is stored and prefilled as typed."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select

from storage.models import TimeEntry
from tests.fakes.slack_api import FakeSlack
from tests.harness import wait_until
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


# Typed text mrkdwn would format: Slack has no escape for `*`, `_`, `~` or backticks there.
URGENT = "*urgent* printer <!channel> on floor 3, tray 2 jams on every job since the driver "
# 150 characters (the most a summary takes): the card's title is too long for a header.
SUMMARY = (URGENT + "update; toner replaced, still jams " * 3)[:150].rstrip()
ASSET = "~/x~"
ERROR = "Cannot write `code` to _tmp_ <!channel>"
FILE = "*x*"


def text_objects(value: Any) -> list[dict[str, Any]]:
    """Every text object (`{"type": "mrkdwn" | "plain_text", "text": ...}`) in Block Kit."""
    if isinstance(value, dict):
        found = [value] if value.get("type") in ("mrkdwn", "plain_text") else []
        return found + [o for v in value.values() for o in text_objects(v)]
    if isinstance(value, list):
        return [o for v in value for o in text_objects(v)]
    return []


def assert_literal(blocks: list[dict[str, Any]], *typed: str) -> None:
    """Each typed text shows as typed (in a plain_text section, emoji codes off), none of it
    in mrkdwn, where it would turn bold, italic, struck or code; `<!channel>` stays inert."""
    objects = text_objects(blocks)
    mrkdwn = [o["text"] for o in objects if o["type"] == "mrkdwn"]
    sections = [b["text"] for b in blocks if b["type"] == "section"]
    literal = [o["text"] for o in sections if o["type"] == "plain_text" and o["emoji"] is False]
    for words in typed:
        shown = words.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert not [t for t in mrkdwn if words in t or shown in t], (words, mrkdwn)
        assert [t for t in literal if shown in t], (words, literal)
    assert "<!channel>" not in json.dumps(blocks)


async def test_typed_text_mrkdwn_would_format_shows_literally_on_slack(
    make_app, slack_api: FakeSlack
):
    """A summary `*urgent* printer`, an asset `~/x~`, an error with `` `code` `` and `_tmp_`,
    a file named `*x*`: on the card and in `show` they appear exactly as typed (before, the
    card's fact lines and long title were mrkdwn: bold, struck and code, `**x*:*` in show);
    the bot's own labels stay bold where nothing typed needs otherwise."""
    from tests.http.working_support import PEOPLE, SlackFlow

    app = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    number = await s.ticket(summary=SUMMARY, asset=ASSET, error=ERROR)
    card = s.card(number)
    assert card is not None
    blocks = card["blocks"] if isinstance(card["blocks"], list) else json.loads(card["blocks"])
    assert_literal(blocks, "*urgent* printer <!channel>", f"Asset: {ASSET}", ERROR)
    texts = [o["text"] for o in text_objects(blocks) if o["type"] == "mrkdwn"]
    assert any(f"*Ticket:* {number}\n" in t for t in texts), texts

    # A file named `*x*` shared in the card's thread, then `show`.
    shared = {
        "id": "F0X",
        "name": FILE,
        "title": FILE,
        "mimetype": "text/plain",
        "size": 10,
        "permalink": "https://fake-team.slack.com/files/UANA/F0X/x",
    }
    event = s.event(user="UANA", thread=card["ts"], files=[shared])
    assert (await app.slack(event, content_type="application/json")).status == 200
    await wait_until(lambda: _recorded(app), what="the file recorded")
    answer = await (await app.slash(f"show {number}")).json()
    assert_literal(answer["blocks"], f"{FILE}: https://fake-team.slack.com/files/UANA/F0X/x")
    assert_literal(answer["blocks"], ASSET, ERROR, "*urgent* printer")
    assert "**x*:*" not in json.dumps(answer)


async def _recorded(app: Any) -> bool:
    from storage.models import TicketAttachment

    async with app.services.sessions() as session:
        return bool((await session.execute(select(TicketAttachment.id))).first())


async def test_commands_the_bot_quotes_in_slack_are_slash_commands(make_app, slack_api: FakeSlack):
    """SPEC (Slack surface): the commands are the slash command `/ticket`. The bot's answers
    quoted them as Teams takes them (`Which ticket? Try `ticket verify HD-7`.`, `run `ticket
    verify HD-1``): a technician who typed that into Slack posted a message to the channel
    and nothing happened. In Slack they read `/ticket …`, as `help` lists them; what people
    typed is still shown as typed."""
    app = await start(make_app, slack_api)
    typed = "Copier says `ticket jam` on tray 2"
    view_id = "VQ1"
    await app.slash("new Copier")
    await slack_api.wait_for_method("views.open")
    view = slack_api.views_opened()[-1]["view"]
    from tests.harness import view_submission
    from tests.http.test_slack_intake import states

    await app.interactive(
        view_submission(
            view, states(summary={"type": "plain_text_input", "value": typed}), view_id=view_id
        )
    )
    await wait_until(lambda: slack_api.posts(), what="the ticket card")
    assert typed in json.dumps(slack_api.posts()[0], ensure_ascii=False)

    for text, quoted in [
        ("verify", "`/ticket verify HD-7`"),
        ("p1", "`/ticket p1 HD-7`"),
        ("show", "`/ticket show HD-7`"),
        ("time HD-1 soon", "`/ticket time HD-7 45m [note]`"),
        ("link HD-1", "`/ticket link HD-9 HD-7`"),
    ]:
        said = json.dumps(await (await app.slash(text)).json())
        assert quoted in said, (text, said)
        assert "`ticket " not in said, (text, said)


async def test_a_command_typed_in_full_width_forms_is_that_command(make_app, slack_api: FakeSlack):
    """An East Asian input method left in full-width mode types `show HD-1` in the same
    letters, digits and hyphen's full-width forms (U+FF01-U+FF5E) with an ideographic
    space. It was the help card, or "Which ticket?". They read as the ASCII they show (as
    Users affected already reads full-width digits); a superscript is no digit for that
    (`HD-1²` is not HD-12)."""
    app = await start(make_app, slack_api)
    number = await new_ticket(app, slack_api)
    assert number == "HD-1"
    for text in ("\uff53\uff48\uff4f\uff57\u3000\uff28\uff24\uff0d\uff11", "show \uff48\uff44-1"):
        said = json.dumps(await (await app.slash(text)).json(), ensure_ascii=False)
        assert "Printer jams on floor 3" in said and "Help desk commands" not in said, said
    mine = json.dumps(await (await app.slash("\uff4d\uff49\uff4e\uff45")).json())
    assert "HD-1 (P3)" in mine and "Help desk commands" not in mine, mine
    shown = json.dumps(await (await app.slash("show HD-1\u00b2")).json())
    assert "Printer jams" not in shown and "Which ticket?" in shown, shown
