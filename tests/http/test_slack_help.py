"""`/ticket help` over HTTP: answered by the front door after its checks (no Bolt dispatch),
with exactly the answer Bolt's dispatch gives, and every check of any other request."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp.payload import StringPayload
from slack_bolt.adapter.aiohttp import to_aiohttp_response

from bot.slack import shapes
from bot.slack.front import CheckedRequest
from tests.fakes.slack_api import FakeSlack
from tests.harness import SIGNING_SECRET, AppHarness

FORM = "application/x-www-form-urlencoded"
COMMAND = {
    "token": "legacy",
    "team_id": "T0TEAM",
    "team_domain": "acme",
    "channel_id": "C0HELP",
    "channel_name": "helpdesk",
    "user_id": "UTECH",
    "user_name": "utech",
    "command": "/ticket",
    "text": "help",
    "api_app_id": "A0APP",
    "response_url": "http://127.0.0.1:9/unused",
    "trigger_id": "trigger-help",
}
REFUSED = "slack: unsigned, badly signed or stale request refused (401)"


def signed(
    body: bytes, *, timestamp: str | None = None, secret: str = SIGNING_SECRET
) -> dict[str, str]:
    ts = timestamp or str(int(time.time()))
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest.hexdigest()}"}


async def post(
    app: AppHarness, body: bytes, headers: dict[str, str], content_type: str = FORM
) -> tuple[int, bytes, str]:
    assert app.http is not None
    sent = {"Content-Type": content_type, **headers}
    async with app.http.post(
        f"{app.url}/slack/events", data=io.BytesIO(body), headers=sent
    ) as response:
        return response.status, await response.read(), response.headers.get("Content-Type", "")


async def through_bolt(
    app: AppHarness, raw: str, content_type: str = FORM
) -> tuple[int, bytes, str]:
    """What Bolt's dispatch answers to the same signed body (the path of any other command,
    and of Socket Mode), as the aiohttp response the front door would send."""
    front = app.services.slack
    assert front is not None
    headers = {"Content-Type": content_type, **signed(raw.encode())}
    request = CheckedRequest(
        raw=raw, body=shapes.parse(raw, content_type), query="", headers=headers
    )
    answer = await to_aiohttp_response(await front.app.async_dispatch(request))
    assert isinstance(answer.body, StringPayload)
    return answer.status, answer.body._value, answer.headers["Content-Type"]


@pytest.mark.parametrize("text", ["help", "HELP", "frobnicate the printer", "help with payload"])
async def test_help_over_http_is_bolts_answer_byte_for_byte(
    make_app: Any, slack_api: FakeSlack, text: str
) -> None:
    app: AppHarness = await make_app(slack=slack_api)
    raw = urlencode({**COMMAND, "text": text})
    expected = await through_bolt(app, raw)
    assert expected[0] == 200 and b"ticket show" in expected[1]
    for _ in range(3):  # the first answer and the kept ones
        got = await post(app, raw.encode(), signed(raw.encode()))
        assert got == expected
    assert got[2] == "application/json"
    # Sent as JSON (Bolt reads a JSON body with `command` as a slash command too).
    as_json = json.dumps({**COMMAND, "text": text})
    got = await post(app, as_json.encode(), signed(as_json.encode()), "application/json")
    assert got == await through_bolt(app, as_json, "application/json")


async def test_help_is_refused_unsigned_badly_signed_or_stale(
    make_app: Any, slack_api: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    app: AppHarness = await make_app(slack=slack_api)
    body = urlencode(COMMAND).encode()
    good = signed(body)
    now = int(time.time())
    cases: dict[str, dict[str, str]] = {
        "no headers": {},
        "no signature": {"X-Slack-Request-Timestamp": good["X-Slack-Request-Timestamp"]},
        "no timestamp": {"X-Slack-Signature": good["X-Slack-Signature"]},
        "another secret": signed(body, secret="not-the-secret"),
        "6 minutes old": signed(body, timestamp=str(now - 6 * 60)),
        "6 minutes ahead": signed(body, timestamp=str(now + 6 * 60)),
        "not a number": {**good, "X-Slack-Request-Timestamp": "soon"},
        "signed for another body": signed(urlencode({**COMMAND, "text": "mine"}).encode()),
        "v1 signature": {**good, "X-Slack-Signature": "v1=" + good["X-Slack-Signature"][3:]},
    }
    for name, headers in cases.items():
        caplog.clear()
        status, answer, _ = await post(app, body, headers)
        assert status == 401, name
        assert b"ticket show" not in answer, name
        assert REFUSED in [r.getMessage() for r in caplog.records], name
    assert (await post(app, body, good))[0] == 200


async def test_help_is_still_shape_checked(
    make_app: Any, slack_api: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    app: AppHarness = await make_app(slack=slack_api)
    caplog.set_level(logging.INFO)
    for name, form in {
        "no user": {k: v for k, v in COMMAND.items() if k != "user_id"},
        "NUL in the text": {**COMMAND, "text": "help\x00"},
        "oversized channel": {**COMMAND, "channel_id": "C" * 300},
    }.items():
        caplog.clear()
        body = urlencode(form).encode()
        status, answer, _ = await post(app, body, signed(body))
        assert status == 400 and b"ticket show" not in answer, name
        assert any("refused (400)" in r.getMessage() for r in caplog.records), name


async def test_what_bolt_answers_differently_still_goes_to_bolt(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """Help bodies Bolt itself would not answer with the card are still Bolt's to answer."""
    app: AppHarness = await make_app(slack=slack_api)
    # An SSL check that also names a command: Bolt's ssl_check answers it, empty.
    body = urlencode({**COMMAND, "ssl_check": "1"}).encode()
    assert (await post(app, body, signed(body)))[:2] == (200, b"")
    # A command Bolt's listener pattern (`^/.+`) does not match: no listener, 404.
    body = urlencode({**COMMAND, "command": "/\nticket"}).encode()
    status, answer, _ = await post(app, body, signed(body))
    assert status == 404 and b"ticket show" not in answer
    # A charset other than UTF-8: Bolt verifies the signature over the text re-encoded as
    # UTF-8, which is not what was signed once it holds a non-ASCII character: 401.
    without_text = {k: v for k, v in COMMAND.items() if k != "text"}
    body = urlencode(without_text).encode() + b"&text=help+caf\xe9"
    status, answer, _ = await post(app, body, signed(body), FORM + "; charset=latin-1")
    assert status == 401 and b"ticket show" not in answer
