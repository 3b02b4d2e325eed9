"""A long Slack paragraph that had to be cut next to a markup character (`0~0~0…`, no blank to
cut at) and so is shown as plain text keeps the bot's own words readable: no raw `<@U…>` nor
`*Label:*` in plain text (Slack shows those characters as they are in plain_text).

Found in review: the requester's "Does it work now?" DM quotes what they were doing (up to
3,000 characters) twice, in a paragraph that names the technician and in the facts. With such
a text the sections beside each cut were made plain text as they were, escaped mrkdwn: the
requester saw `<@UTECH> (tom@example.com) worked on HD-1.` and `*Ticket:* HD-1`, and the
typed text itself was still shown as typed. It is now shown as any paragraph whose typed
text mrkdwn could format: all of it plain text, people by name."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, wait_until
from tests.http import working_support
from tests.http.working_support import PEOPLE, SlackFlow

# What the requester was doing: mrkdwn leaves each `~` alone (inside a word), but there is no
# blank anywhere near a section's 3,000 characters, and every place to cut is next to a `~`.
DOING = "0" + "~0" * 1490


async def test_a_paragraph_cut_next_to_a_markup_character_shows_no_raw_markup(
    make_app: Any, slack_api: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(working_support, "DOING", DOING)  # the intake's "What were they doing"
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE)
    s = SlackFlow(app, slack_api)
    number = await s.ticket()
    await s.command(f"confirm {number}")
    await wait_until(lambda: s.dms("UANA", "Works now"), what="the question to Ana")
    [question] = s.dms("UANA", "Works now")

    texts = [b["text"] for b in question["blocks"] if b["type"] == "section"]
    plain = [t["text"] for t in texts if t["type"] == "plain_text"]
    assert plain, texts  # the case at hand: cut next to a `~`
    for said in plain:
        assert "&lt;@" not in said and "<@" not in said, said[:120]  # a mention, shown raw
        assert "*Ticket:*" not in said and "*What you were doing:*" not in said, said[:120]
    for text in texts:
        if text["type"] == "mrkdwn":  # kept as mrkdwn only where no cut is next to markup
            assert DOING not in text["text"]
    # The technician is named where the paragraph is plain text, and the typed text is whole
    # (once in the paragraph, once in the facts), as typed.
    joined = "".join(t["text"] for t in texts)
    assert "Tom Tech" in joined or "<@UTECH>" in joined
    assert joined.count(DOING) == 2, [t["text"][:80] for t in texts]
