"""Requests as Slack and Teams send them: signed Slack bodies and Bot Framework activities."""

from __future__ import annotations

import copy
import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

from tests.harness import slack_signature
from tests.harness import view_submission as harness_view_submission

SIGNING_SECRET = "bench-signing-secret-0123456789abcdef"
BOT_TOKEN = "xoxb-bench-0000-token"
PD_ROUTING_KEY = "bench-routing-key-0123456789abcdef"
FORM = "application/x-www-form-urlencoded"

TEAMS_USER = "29:1bench-tech"
TEAMS_BOT = "28:helpdesk-bot"
TEAMS_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"

_trigger = itertools.count(1)
_activity = itertools.count(1_800_000_000_001)


def signed(body: str, content_type: str = FORM) -> tuple[bytes, dict[str, str]]:
    """The body and the headers Slack sends with it (v0 HMAC-SHA256 of `v0:ts:body`)."""
    ts = str(int(time.time()))
    headers = {
        "Content-Type": content_type,
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack_signature(SIGNING_SECRET, ts, body),
    }
    return body.encode(), headers


def slash(
    text: str, *, user: str = "UTECH", channel: str = "C0HELP"
) -> tuple[bytes, dict[str, str]]:
    form = {
        "token": "legacy", "team_id": "T0TEAM", "team_domain": "acme",
        "channel_id": channel, "channel_name": "helpdesk", "user_id": user,
        "user_name": user.lower(), "command": "/ticket", "text": text,
        "api_app_id": "A0APP", "response_url": "http://127.0.0.1:9/unused",
        "trigger_id": f"trigger-{next(_trigger)}",
    }  # fmt: skip
    return signed(urlencode(form))


SUMMARY = "Printer jams on floor 3"


def intake_states(priority: str = "P2", summary: str = SUMMARY) -> dict[str, dict[str, Any]]:
    """What a technician fills into the Slack intake modal."""
    return {
        "requester": {"type": "users_select", "selected_user": "UANA"},
        "summary": {"type": "plain_text_input", "value": summary},
        "error_text": {"type": "plain_text_input", "value": "Error 0x8007001F: paper path"},
        "doing": {"type": "plain_text_input", "value": "Printing the Q3 report"},
        "reproducible": {"type": "static_select", "selected_option": {"value": "intermittent"}},
        "users_affected": {"type": "number_input", "value": "1"},
        "priority": {"type": "static_select", "selected_option": {"value": priority}},
        "category": {"type": "static_select", "selected_option": {"value": "printer"}},
        "asset": {"type": "plain_text_input", "value": "PRN-0042"},
        "client": {"type": "plain_text_input", "value": "Acme"},
    }


def view_submission(
    view: dict[str, Any],
    *,
    view_id: str,
    priority: str = "P2",
    channel: str | None = None,
    user: str = "UTECH",
    summary: str = SUMMARY,
) -> tuple[bytes, dict[str, str]]:
    """A signed view_submission of the modal `view` (as the bot rendered it), unique view id."""
    rendered = copy.copy(view)
    if channel is not None:
        rendered["private_metadata"] = json.dumps({"channel": channel})
    states = intake_states(priority, summary)
    payload = harness_view_submission(rendered, states, user=user, view_id=view_id)
    return signed(urlencode({"payload": json.dumps(payload)}))


def activity(service_url: str, **fields: Any) -> dict[str, Any]:
    """An inbound Teams activity in the technician's 1:1 chat, with a unique id."""
    body: dict[str, Any] = {
        "type": "message",
        "id": str(next(_activity)),
        "timestamp": "2025-01-06T09:10:00.000Z",
        "channelId": "msteams",
        "serviceUrl": service_url,
        "from": {"id": TEAMS_USER, "name": "Tom Tech",
                 "aadObjectId": "7faf8ab2-3d56-4244-b585-20c8a42ed2b8"},
        "conversation": {"id": "a:1bench-personal-chat", "conversationType": "personal",
                         "tenantId": TEAMS_TENANT},
        "recipient": {"id": TEAMS_BOT, "name": "Helpdesk"},
        "channelData": {"tenant": {"id": TEAMS_TENANT}},
        "locale": "en-US",
    }  # fmt: skip
    body.update(fields)
    return body


def teams_message(service_url: str, text: str) -> tuple[bytes, dict[str, str]]:
    body = activity(service_url, text=text, textFormat="plain")
    return json.dumps(body).encode(), {"Content-Type": "application/json"}


def teams_submit(service_url: str) -> tuple[bytes, dict[str, str]]:
    """An Action.Submit of the intake card: a message activity whose `value` holds the inputs."""
    value = {
        "action": "ticket.create",
        "channel": "a:1bench-personal-chat",
        "requester": "ana@example.com",
        "summary": "Printer jams on floor 3",
        "error_text": "Error 0x8007001F: paper path",
        "doing": "Printing the Q3 report",
        "reproducible": "intermittent",
        "users_affected": "1",
        "priority": "P2",
        "category": "printer",
        "asset": "PRN-0042",
        "client": "Acme",
    }
    body = activity(service_url, value=value)
    return json.dumps(body).encode(), {"Content-Type": "application/json"}
