"""Fake PagerDuty Events API v2 and Opsgenie Alert API.

PagerDuty: ``PAGERDUTY_EVENTS_URL=f"{fake.url}/v2/enqueue"`` (``fake.events_url``).
Opsgenie: ``OPSGENIE_API_URL=fake.url``.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from aiohttp import web

from .base import FakeServer, Recorded

PD_ACTIONS = ("trigger", "acknowledge", "resolve")
PD_SEVERITIES = ("critical", "error", "warning", "info")


class FakePagerDuty(FakeServer):
    def __init__(self, *, routing_key: str | None = None, threaded: bool | None = None) -> None:
        """``routing_key``: if set, events with another key are refused (400)."""
        super().__init__(threaded=threaded)
        self.routing_key = routing_key
        self._events: list[dict[str, Any]] = []
        self._open: dict[str, dict[str, Any]] = {}

    @property
    def events_url(self) -> str:
        return f"{self.url}/v2/enqueue"

    def events(self, action: str | None = None) -> list[dict[str, Any]]:
        """Accepted event bodies (202), in order, with the effective ``dedup_key`` filled in."""
        return [e for e in list(self._events) if action in (None, e.get("event_action"))]

    def open_dedup_keys(self) -> list[str]:
        """Alerts triggered and not yet resolved."""
        return list(self._open)

    def reset_state(self) -> None:
        self._events.clear()
        self._open.clear()

    def default_error_body(self, status: int) -> Any:
        if status == 429:
            message = "Requests for this service are arriving too quickly.  Please retry later."
            return {"status": "throttle event", "message": message}
        return {"status": "error", "message": f"scripted {status}"}

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        if rec.path != "/v2/enqueue":
            return web.json_response({"status": "error", "message": "Not Found"}, status=404)
        if rec.method != "POST":
            return web.json_response(
                {"status": "error", "message": "Method Not Allowed"}, status=405
            )
        if not isinstance(rec.json, dict):
            return _pd_invalid(["Event object is invalid: body is not a JSON object"])
        event = rec.json
        errors = _pd_errors(event)
        if not errors and self.routing_key is not None and event["routing_key"] != self.routing_key:
            errors = ["Invalid routing key"]
        if errors:
            return _pd_invalid(errors)
        dedup_key = str(event.get("dedup_key") or uuid.uuid4().hex)
        accepted = {**event, "dedup_key": dedup_key}
        self._events.append(accepted)
        if event["event_action"] == "trigger":
            self._open.setdefault(dedup_key, accepted)
        elif event["event_action"] == "resolve":
            self._open.pop(dedup_key, None)
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": dedup_key},
            status=202,
        )


def _pd_errors(event: dict[str, Any]) -> list[str]:
    errors: list[str] = []
    if not event.get("routing_key"):
        errors.append("'routing_key' is missing or blank")
    action = event.get("event_action")
    if not action:
        errors.append("'event_action' is missing or blank")
    elif action not in PD_ACTIONS:
        errors.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    if action in ("acknowledge", "resolve") and not event.get("dedup_key"):
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict) or not payload:
            errors.append("'payload' is missing or blank")
        else:
            for name in ("summary", "source", "severity"):
                if not payload.get(name):
                    errors.append(f"'payload.{name}' is missing or blank")
            if payload.get("severity") and payload["severity"] not in PD_SEVERITIES:
                errors.append("'payload.severity' is invalid")
            if len(str(payload.get("summary", ""))) > 1024:
                errors.append("'payload.summary' is too long (max 1024)")
    if len(str(event.get("dedup_key") or "")) > 255:
        errors.append("'dedup_key' is too long (max 255)")
    return errors


def _pd_invalid(errors: list[str]) -> web.Response:
    body = {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
    return web.json_response(body, status=400)


class FakeOpsgenie(FakeServer):
    def __init__(self, *, api_key: str | None = None, threaded: bool | None = None) -> None:
        """``api_key``: if set, ``Authorization: GenieKey <other>`` is refused (401)."""
        super().__init__(threaded=threaded)
        self.api_key = api_key
        self._alerts: list[dict[str, Any]] = []
        self._closes: list[dict[str, Any]] = []
        self._request_ids = itertools.count(1)

    def alerts(self) -> list[dict[str, Any]]:
        """Accepted create-alert bodies (202), in order."""
        return list(self._alerts)

    def closes(self) -> list[dict[str, Any]]:
        """Accepted closes: ``{"identifier", "identifierType", "body"}``."""
        return list(self._closes)

    def open_aliases(self) -> list[str]:
        closed = {c["identifier"] for c in self._closes if c["identifierType"] == "alias"}
        return [a["alias"] for a in self._alerts if a.get("alias") and a["alias"] not in closed]

    def reset_state(self) -> None:
        self._alerts.clear()
        self._closes.clear()

    def default_error_body(self, status: int) -> Any:
        return self._body({"message": f"scripted {status}"})

    def _body(self, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "took": 0.1, "requestId": f"req-{next(self._request_ids):06d}-fake"}

    def _accepted(self) -> web.Response:
        return web.json_response(self._body({"result": "Request will be processed"}), status=202)

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        parts = rec.path.strip("/").split("/")
        if rec.method != "POST" or parts[:2] != ["v2", "alerts"] or len(parts) not in (2, 4):
            return web.json_response(self._body({"message": "Not Found"}), status=404)
        auth = rec.headers.get("Authorization", "")
        key = auth.removeprefix("GenieKey ").strip() if auth.startswith("GenieKey ") else ""
        if not key or (self.api_key is not None and key != self.api_key):
            return web.json_response(self._body({"message": "Could not authenticate"}), status=401)
        body = rec.json if isinstance(rec.json, dict) else None
        if len(parts) == 2:
            if body is None or not str(body.get("message") or "").strip():
                errors = {"message": "Message can not be empty."}
                data = {"message": "Request body is not processable. Please check the errors.",
                        "errors": errors}  # fmt: skip
                return web.json_response(self._body(data), status=422)
            self._alerts.append(body)
            return self._accepted()
        if parts[3] != "close":
            return web.json_response(self._body({"message": "Not Found"}), status=404)
        id_type = rec.query.get("identifierType", "id")
        if id_type not in ("id", "alias", "tiny"):
            data = {"message": "Invalid identifier type. Should be one of ['id', 'alias', 'tiny']"}
            return web.json_response(self._body(data), status=422)
        self._closes.append({"identifier": parts[2], "identifierType": id_type, "body": body or {}})
        return self._accepted()
