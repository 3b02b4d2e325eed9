"""Slack's Web API out of reach in HTTP mode (an egress firewall, a proxy down, a Slack outage).

Found by an operator's trial: with `SLACK_API_URL` (or slack.com) unreachable, every signed
Slack request, `/ticket help` included, was answered `500` with a traceback in the log per
request. Bolt's single-workspace authorization calls `auth.test` before each request until one
succeeds and only handles Slack's error answers, not a connection that fails. Slack puts the
answer to a command in the HTTP response itself: nothing in `help`, `mine` or `show` needs the
Web API, so they must be answered; `/ticket new`, whose form needs `views.open`, logged a
traceback per request instead of one line saying Slack could not be reached. And Bolt, seeing
`SLACK_BOT_TOKEN` in the environment beside the client the bot gives it, warned at every start
that "`token` will be unused", which an operator reads as a problem with the token."""

from __future__ import annotations

import json
import logging
import socket
import time

import pytest

from tests.fakes.slack_api import FakeSlack
from tests.harness import BOT_TOKEN, wait_until


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_commands_that_need_no_web_api_are_answered_while_slack_api_is_unreachable(
    make_app, slack_api: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    away = f"http://127.0.0.1:{closed_port()}/api/"
    app = await make_app(slack=slack_api, env={"SLACK_API_URL": away})
    for text, expected in (
        ("help", "ticket show"),
        ("mine", "no open tickets"),
        ("show HD-99", "no ticket hd-99"),
    ):
        started = time.monotonic()
        answer = await app.slash(text)
        took = time.monotonic() - started
        assert answer.status == 200, (text, answer.status, await answer.text())
        body = await answer.json()
        assert body["response_type"] == "ephemeral", (text, body)
        assert expected in json.dumps(body).lower(), (text, body)
        assert took < 3, (text, took)
    # A form needs views.open: the command is answered, the failure is one line naming where.
    assert (await app.slash("new Printer jams")).status == 200

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if "failed after ack" in r.getMessage()]

    await wait_until(lambda: said(), timeout=10, what="the views.open failure line")
    assert away.removeprefix("http://").split("/")[0] in said()[0], said()
    failed = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not failed, failed
    assert not [r for r in caplog.records if r.exc_info], "no traceback for an unreachable Slack"


async def test_start_up_has_no_bolt_warning_about_the_bot_token(
    make_app,
    slack_api: FakeSlack,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In production SLACK_BOT_TOKEN is in the process environment, where Bolt reads it too.
    monkeypatch.setenv("SLACK_BOT_TOKEN", BOT_TOKEN)
    caplog.set_level(logging.INFO)
    app = await make_app(slack=slack_api)
    bolt = [r.getMessage() for r in caplog.records if r.name.startswith("slack_bolt")]
    assert not [m for m in bolt if "token" in m.lower()], bolt
    assert (await app.slash("help")).status == 200
