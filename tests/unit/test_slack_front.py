"""The Slack front door's Bolt request matches what Bolt itself would build."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from slack_bolt.request.async_request import AsyncBoltRequest

from bot.slack import shapes
from bot.slack.front import CheckedRequest

FORM = "application/x-www-form-urlencoded"
COMMAND = {"command": "/ticket", "text": "help", "user_id": "U1", "channel_id": "C1"}
ACTION = {
    "type": "block_actions",
    "user": {"id": "U1", "team_id": "T1"},
    "team": {"id": "T1"},
    "channel": {"id": "C1"},
    "trigger_id": "t",
    "response_url": "https://hooks.slack.com/x",
    "actions": [{"action_id": "ticket.verify", "action_ts": "1.2", "value": "{}"}],
}


def fields(request: AsyncBoltRequest) -> dict[str, Any]:
    found = dict(vars(request))
    found["context"] = dict(found["context"])
    return found


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (urlencode(COMMAND), FORM),
        (urlencode({"payload": json.dumps(ACTION)}), FORM),
        (
            json.dumps({"type": "event_callback", "event_id": "E1", "event": {"type": "x"}}),
            "application/json",
        ),
    ],
)
def test_the_checked_request_is_the_request_bolt_would_build(raw: str, content_type: str) -> None:
    headers = CIMultiDictProxy(
        CIMultiDict({"Content-Type": content_type, "X-Slack-Request-Timestamp": "1"})
    )
    body = shapes.parse(raw, content_type)
    bolt = AsyncBoltRequest(body=raw, query="a=1", headers=headers)  # type: ignore[arg-type]
    ours = CheckedRequest(raw=raw, body=body, query="a=1", headers=headers)
    assert fields(ours) == fields(bolt)


def test_a_command_mentioning_payload_is_read_as_typed() -> None:
    raw = urlencode({**COMMAND, "text": "new 413 payload too large"})
    headers = CIMultiDictProxy(CIMultiDict({"Content-Type": FORM}))
    assert AsyncBoltRequest(body=raw, headers=headers).body == {}  # type: ignore[arg-type]
    ours = CheckedRequest(raw=raw, body=shapes.parse(raw, FORM), query="", headers=headers)
    assert ours.body["text"] == "new 413 payload too large"
    assert ours.context["user_id"] == "U1" and ours.context["channel_id"] == "C1"
