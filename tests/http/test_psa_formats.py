"""Text written into a PSA in that PSA's own format: nothing typed in chat becomes markup there."""

from __future__ import annotations

import itertools
import json
from typing import Any

from tests.fakes.psa_servicenow import FakeServiceNow
from tests.fakes.slack_api import FakeSlack
from tests.harness import view_submission, wait_until
from tests.http.psa_support import FACTS, all_synced, modal, open_ticket, seed, start_app

_views = itertools.count(1)
INJECTED = "Event log: [code]<img src=x onerror=alert(document.cookie)>[/code] Ünïcode & <b>"


def _text(value: str) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


async def test_servicenow_work_note_never_carries_a_code_tag_typed_in_chat(
    make_app, slack_api: FakeSlack
):
    # ServiceNow renders the text of a journal field (work notes) wrapped in [code]...[/code]
    # as HTML ("Journal fields render text wrapped in code tags as HTML", Journal field type,
    # servicenow.com docs): a fact typed or pasted into the escalation form became live HTML
    # (a script in an <img onerror>) in the incident's activity stream. The tag is broken up;
    # every other character arrives as typed.
    fake = FakeServiceNow()
    seed(fake)
    async with fake:
        app = await start_app(make_app, slack_api, fake)
        await open_ticket(app, slack_api)
        await wait_until(lambda: all_synced(app), what="the incident")
        view = await modal(app, slack_api, "escalate HD-1")
        states: dict[str, Any] = {k: _text(v) for k, v in FACTS.items()}
        states["error_text"] = _text(INJECTED)
        states["queue"] = {"type": "static_select", "selected_option": {"value": "networking"}}
        response = await app.interactive(
            view_submission(view, states, view_id=f"VFMT{next(_views)}")
        )
        assert response.status == 200 and "errors" not in (await response.text())
        await wait_until(lambda: fake.only().notes, what="the escalation note")

        [note] = fake.only().notes
        assert "[code]" not in note.lower() and "[/code]" not in note.lower()
        assert "<img src=x onerror=alert(document.cookie)>" in note  # the words as typed
        assert "Ünïcode & <b>" in note
        sent = [c.json for c in fake.calls("/api/now/table/incident/*") if c.method == "PATCH"]
        assert not any("[code]" in json.dumps(b).lower() for b in sent)
