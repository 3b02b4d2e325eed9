"""A Slack message over a section's 3,000 characters is split into several sections; where the
text has no blank to split at, it was cut at a fixed place, next to a `*`, `_` or `~` that
mrkdwn leaves alone inside a word (`0~0`) but may read as markup at a section's edge (found by
tests/unit/test_typed_text_properties.py); where the cut cannot move off one (`0~0~0…`), the
sections beside it are plain text. Over HTTP: a resolution note ending in a long trace
with no blank, quoted in the closure notice in the ticket's thread."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.slack_api import FakeSlack
from tests.harness import wait_until
from tests.http.test_closure_slack import GOOD_NOTE, new_ticket, posts_to, start, submit_close
from tests.unit.test_typed_text_properties import markup_at_a_word_edge

NOTE = f"{GOOD_NOTE}, trace " + "0~" * 1450 + "0"


async def test_a_long_note_is_never_split_next_to_a_markup_character(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app = await start(make_app, slack_api)
    number = await new_ticket(app, slack_api)
    assert await submit_close(app, slack_api, number, note=NOTE) == {}

    def notice() -> dict[str, Any] | None:
        found = [p for p in posts_to(slack_api, "C0HELP") if "was closed by" in json.dumps(p)]
        return found[-1] if found else None

    await wait_until(lambda: notice() is not None, timeout=20)
    post = notice()
    assert post is not None
    sections = [b["text"] for b in post["blocks"] if b["type"] == "section"]
    assert len(sections) > 1
    for section in sections:  # plain text where the cut could not move off a `~`
        if section["type"] == "mrkdwn":
            assert not markup_at_a_word_edge(section["text"]), section["text"][-20:]
    assert "0~" * 1450 in "".join(s["text"] for s in sections)
