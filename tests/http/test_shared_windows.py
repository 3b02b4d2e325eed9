"""Retry-After windows are shared by every process on the database (SPEC "Errors and safety",
"Running"): a window one process learns from a refusal holds the others back too."""

from __future__ import annotations

import asyncio

from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import wait_until
from tests.http.conftest_teams import PEOPLE, PERSONAL, message
from tests.http.p1_support import INCIDENT_CHANNEL, SLACK_PEOPLE, slack_posts, slack_ticket

CONFIG = {"slack": {"incident_channel": INCIDENT_CHANNEL}}


async def test_second_process_posts_inside_the_channels_retry_after_window(
    make_app, slack_api: FakeSlack
):
    a = await make_app(slack=slack_api, config=CONFIG, people=SLACK_PEOPLE)
    b = await make_app(slack=slack_api, config=CONFIG, people=SLACK_PEOPLE)
    slack_api.limit_posts(burst=1, per_second=0.05, retry_after=8)
    await slack_ticket(a, slack_api)
    await wait_until(lambda: slack_posts(slack_api, INCIDENT_CHANNEL), what="HD-1 notice")
    await slack_ticket(b, slack_api)
    await wait_until(
        lambda: [r for r in slack_api.refusals if r[0] == INCIDENT_CHANNEL],
        what="the 429 for the incident channel",
    )
    await slack_ticket(a, slack_api)
    await asyncio.sleep(3)
    assert [v for v in slack_api.violations if v[0] == INCIDENT_CHANNEL] == []


async def test_a_teams_conversation_throttled_in_one_process_waits_in_the_other(
    make_app, connector: FakeConnector
):
    a = await make_app(people=PEOPLE, config={})
    b = await make_app(people=PEOPLE, config={})
    url = connector.service_url
    connector.throttle(PERSONAL, times=1, retry_after=3)
    await a.teams(message(url, "ticket mine"))
    await wait_until(lambda: connector.refusals, what="the refusal")
    # The other process answers in the same conversation: not inside the window.
    response = await b.teams(message(url, "ticket help"))
    assert response.status in (200, 201)
    await wait_until(lambda: len(connector.activities(PERSONAL)) == 2, timeout=15)
    assert connector.violations == []
