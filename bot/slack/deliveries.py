"""Stable ids of Slack deliveries: a retry or a redelivered envelope carries the same one.

Slack retries over HTTP (`X-Slack-Retry-Num`) and redelivers Socket Mode envelopes with the
same body, so the id comes from the body: a command's `trigger_id`, a button press's message
(or modal) and `action_ts`, a form submission's view id and hash (a corrected resubmission of
a refused form has the same hash: only a delivery that changed something is remembered), an
event's `event_id`. The core runs each state-changing request once per id (handlers/dispatch).
"""

from __future__ import annotations

from typing import Any


def delivery_id(body: dict[str, Any]) -> str | None:
    """`slack:<kind>:...` for a body that passed `shapes.inspect`; None when it has none."""
    if "command" in body:
        return f"slack:command:{body['trigger_id']}"
    kind = body.get("type")
    if kind == "block_actions":
        action = body["actions"][0]
        user = body["user"]["id"]
        message = body.get("message") or {}
        view = body.get("view") or {}
        where = message.get("ts") or view.get("id") or ""
        return f"slack:action:{user}:{where}:{action['action_id']}:{action['action_ts']}"
    if kind == "view_submission":
        view = body["view"]
        return f"slack:view:{view['id']}:{view.get('hash') or ''}"
    if kind == "event_callback":
        return f"slack:event:{body['event_id']}"
    return None
