"""A P1 whose page is held back, not attempted, because its pager asked the bot to wait: a
503 with `Retry-After` answered to another ticket's page holds every send to that pager until
the window has passed (bot.places). The on-call is not paged meanwhile, so the technician is
told at once that the page has not gone through yet (as after a first failed attempt, SPEC "P1
incidents"), and again when it does: exactly once each."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.fakes.pagers import FakePagerDuty
from tests.fakes.slack_api import FakeSlack
from tests.http.p1_support import (
    INCIDENT_CHANNEL,
    SLACK_PEOPLE,
    eventually,
    outbox_rows,
    pager_env,
    slack_posts,
    slack_ticket,
)

CONFIG = {"slack": {"incident_channel": INCIDENT_CHANNEL}}
WINDOW = 9


def told(slack: FakeSlack, words: str) -> list[str]:
    """Texts posted in the help channel (the tickets' threads) that contain `words`."""
    return [json.dumps(p) for p in slack_posts(slack, "C0HELP") if words in json.dumps(p)]


async def test_a_page_held_by_the_pagers_retry_after_is_reported_at_once_and_when_through(
    make_app: Any, slack_api: FakeSlack, pagerduty: FakePagerDuty
) -> None:
    app = await make_app(slack=slack_api, config=CONFIG, people=SLACK_PEOPLE,
                         env=pager_env(pagerduty, None))  # fmt: skip
    pagerduty.fail("/v2/enqueue", 503, times=1, headers={"Retry-After": str(WINDOW)})
    await slack_ticket(app, slack_api)
    await pagerduty.wait_for("/v2/enqueue")
    await eventually(lambda: told(slack_api, "page for HD-1 has not gone through yet"),
                     what="HD-1's technician told")  # fmt: skip
    # HD-2 is opened inside PagerDuty's window: its page is held, not sent.
    await slack_ticket(app, slack_api)
    await eventually(lambda: told(slack_api, "page for HD-2 has not gone through yet"),
                     timeout=5, what="HD-2's technician told while its page is held")  # fmt: skip
    assert len(pagerduty.calls("/v2/enqueue")) == 1  # nothing sent inside the window
    [held] = told(slack_api, "page for HD-2 has not gone through yet")
    assert "PagerDuty" in held and "Retry-After" in held, held

    await eventually(lambda: len(pagerduty.events("trigger")) == 2, timeout=WINDOW + 8,
                     what="both pages once the window passed")  # fmt: skip
    await eventually(lambda: told(slack_api, "page for HD-2 has gone through now"),
                     what="HD-2's technician told it went through")  # fmt: skip
    await asyncio.sleep(1.0)
    assert len(told(slack_api, "page for HD-2 has not gone through yet")) == 1
    assert len(told(slack_api, "page for HD-2 has gone through now")) == 1
    assert len(told(slack_api, "page for HD-1 has not gone through yet")) == 1
    assert len(told(slack_api, "page for HD-1 has gone through now")) == 1
    assert sorted(e["dedup_key"] for e in pagerduty.events("trigger")) == ["HD-1", "HD-2"]
    pages = [r for r in await outbox_rows(app) if r.kind == "page.pagerduty"]
    assert [r.status for r in pages] == ["delivered", "delivered"]
