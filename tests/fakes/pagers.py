"""Fake PagerDuty Events API v2 and Opsgenie Alert API.

PagerDuty: ``PAGERDUTY_EVENTS_URL=f"{fake.url}/v2/enqueue"`` (``fake.events_url``).
Opsgenie: ``OPSGENIE_API_URL=fake.url``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
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
    """Opsgenie Alert API: create (``POST /v2/alerts``), close (``POST
    /v2/alerts/{identifier}/close``) and Get Request Status (``GET
    /v2/alerts/requests/{requestId}``).

    What it relies on, with its source:
    - "Alert creation, deletion, and action requests are processed asynchronously ...
      therefore valid requests for those endpoints are responded to with HTTP status 202 -
      Accepted. The Get Request Status endpoint is used to track the status and alert details
      (if any) of the request whose identifier is given" [doc: docs.opsgenie.com/docs/alert-api,
      "Get Request Status"]. Its 200 answer is ``{"data": {"success", "action",
      "processedAt", "integrationId", "isSuccess", "status", "alertId", "alias"}, "took",
      "requestId"}`` (the top-level ``requestId`` is the status call's own); the samples there
      are a processed create (``isSuccess: true``, ``status: "Created alert"``, ``action:
      "Create"``, the new ``alertId``) and a failed action (``isSuccess: false``, ``status:
      "Alert does not exist"``, empty ``alertId`` and ``alias``). Same shape in the OpenAPI
      spec (opsgenie/opsgenie-oas ``GetRequestStatusResponse`` / ``AlertRequestStatus``).
    - Until a request is processed its status answers ``404 {"message": "Request not found. It
      might not be processed, yet.", "took", "requestId"}`` [code: weaveworks/service
      notification-sender/opsgenie.go, which polls through 404/429/503 with backoff; the same
      text is quoted in other clients' tests; SumoLogic/sumologic-documentation#6263 retries
      the 404 "because the request hasn't been fully processed yet"].
    - Processing can fail after the 202, the alert then never appears (e.g. an integration
      whose create rule yields an empty message) [issue: prometheus/alertmanager#3598].
    Not documented, so chosen here: a create with the alias of an alert still open is
    processed successfully with that alert's id (Opsgenie de-duplicates it); a close of an
    alias that never had an alert fails with "Alert does not exist".

    Switches: ``processing_delay`` (seconds a request stays unprocessed: its status is the 404
    meanwhile); ``fail_processing("create"|"close", status, times=1)`` (the next accepted
    creates / closes fail processing with that status text); ``delete_alert(alias)`` (deleted
    by hand in Opsgenie).
    """

    def __init__(self, *, api_key: str | None = None, threaded: bool | None = None) -> None:
        """``api_key``: if set, ``Authorization: GenieKey <other>`` is refused (401)."""
        super().__init__(threaded=threaded)
        self.api_key = api_key
        self.processing_delay = 0.0
        self._requests: dict[str, dict[str, Any]] = {}
        self._failing: dict[str, list[str]] = {"create": [], "close": []}
        self._alert_ids: dict[str, str] = {}  # alias -> id of its open alert
        self._created: set[str] = set()  # aliases that ever had an alert
        self._request_ids = itertools.count(1)

    def alerts(self) -> list[dict[str, Any]]:
        """Create-alert bodies accepted (202) and processed successfully, in order."""
        return [r["body"] for r in self._processed("create") if r["ok"]]

    def closes(self) -> list[dict[str, Any]]:
        """Closes accepted and processed successfully: ``{"identifier", "identifierType",
        "body"}``."""
        return [r["close"] for r in self._processed("close") if r["ok"]]

    def requests(self, action: str | None = None) -> list[dict[str, Any]]:
        """Every accepted request: ``{"id", "action", "alias", "ok", "status", "alertId",
        "processed"}``."""
        now = time.monotonic()
        return [
            {k: r[k] for k in ("id", "action", "alias", "ok", "status", "alertId")}
            | {"processed": r["ready_at"] <= now}
            for r in list(self._requests.values())
            if action in (None, r["action"])
        ]

    def open_aliases(self) -> list[str]:
        closed = {c["identifier"] for c in self.closes() if c["identifierType"] == "alias"}
        return [a["alias"] for a in self.alerts() if a.get("alias") and a["alias"] not in closed]

    def fail_processing(self, action: str, status: str, times: int = 1) -> None:
        """The next ``times`` accepted ``action`` ("create" / "close") requests fail processing
        with ``status`` (``isSuccess: false``); nothing is created or closed."""
        self._failing[action].extend([status] * times)

    def delete_alert(self, alias: str) -> None:
        """Someone deleted the alert in Opsgenie (its UI): a close of its alias then fails
        with "Alert does not exist", as for an alias that never had one."""
        self._alert_ids.pop(alias, None)
        self._created.discard(alias)

    def reset_state(self) -> None:
        self._requests.clear()
        self._alert_ids.clear()
        self._created.clear()
        for queue in self._failing.values():
            queue.clear()
        self.processing_delay = 0.0

    def default_error_body(self, status: int) -> Any:
        return self._body({"message": f"scripted {status}"})

    def _processed(self, action: str) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [r for r in list(self._requests.values())
                if r["action"] == action and r["ready_at"] <= now]  # fmt: skip

    def _body(self, data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "took": 0.1, "requestId": f"req-{next(self._request_ids):06d}-fake"}

    def _accepted(self, action: str, alias: str, **extra: Any) -> web.Response:
        """202 now; the outcome is decided now and shown once ``processing_delay`` passed."""
        answer = self._body({"result": "Request will be processed"})
        failing = self._failing[action]
        status = failing.pop(0) if failing else ""
        ok, alert_id = not status, ""
        if ok and action == "create":
            alert_id = self._alert_ids.get(alias) or str(uuid.uuid4())
            if alias:
                self._alert_ids[alias] = alert_id
                self._created.add(alias)
            status = "Created alert"
        elif ok and alias in self._alert_ids:
            alert_id, status = self._alert_ids.pop(alias), "Closed alert"
        elif ok and (alias in self._created or extra["close"]["identifierType"] != "alias"):
            status = "Closed alert"  # closed before (or not by alias): nothing changes
        elif ok:
            ok, status = False, "Alert does not exist"
        self._requests[answer["requestId"]] = {
            "id": answer["requestId"],
            "action": action,
            "alias": alias,
            "ok": ok,
            "status": status,
            "alertId": alert_id,
            "ready_at": time.monotonic() + self.processing_delay,
            "processed_at": dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.processing_delay),
            **extra,
        }
        return web.json_response(answer, status=202)

    def _request_status(self, request_id: str) -> web.Response:
        found = self._requests.get(request_id)
        if found is None or found["ready_at"] > time.monotonic():
            data = {"message": "Request not found. It might not be processed, yet."}
            return web.json_response(self._body(data), status=404)
        processed_at = found["processed_at"].isoformat(timespec="milliseconds")
        data = {
            "success": found["ok"],
            "action": found["action"].capitalize(),
            "processedAt": processed_at.replace("+00:00", "Z"),
            "integrationId": "c9cec2cb-e782-4ebb-bc1d-1b2fa703cf03",
            "isSuccess": found["ok"],
            "status": found["status"],
            "alertId": found["alertId"],
            "alias": found["alias"] if found["ok"] else "",
        }
        return web.json_response(self._body({"data": data}))

    async def handle(self, rec: Recorded, request: web.Request) -> web.StreamResponse:
        parts = rec.path.strip("/").split("/")
        is_status = rec.method == "GET" and parts[:3] == ["v2", "alerts", "requests"]
        if not is_status and (
            rec.method != "POST" or parts[:2] != ["v2", "alerts"] or len(parts) not in (2, 4)
        ):
            return web.json_response(self._body({"message": "Not Found"}), status=404)
        auth = rec.headers.get("Authorization", "")
        key = auth.removeprefix("GenieKey ").strip() if auth.startswith("GenieKey ") else ""
        if not key or (self.api_key is not None and key != self.api_key):
            return web.json_response(self._body({"message": "Could not authenticate"}), status=401)
        if is_status:
            if len(parts) != 4:
                return web.json_response(self._body({"message": "Not Found"}), status=404)
            return self._request_status(parts[3])
        body = rec.json if isinstance(rec.json, dict) else None
        if len(parts) == 2:
            if body is None or not str(body.get("message") or "").strip():
                errors = {"message": "Message can not be empty."}
                data = {"message": "Request body is not processable. Please check the errors.",
                        "errors": errors}  # fmt: skip
                return web.json_response(self._body(data), status=422)
            return self._accepted("create", str(body.get("alias") or ""), body=body)
        if parts[3] != "close":
            return web.json_response(self._body({"message": "Not Found"}), status=404)
        id_type = rec.query.get("identifierType", "id")
        if id_type not in ("id", "alias", "tiny"):
            data = {"message": "Invalid identifier type. Should be one of ['id', 'alias', 'tiny']"}
            return web.json_response(self._body(data), status=422)
        close = {"identifier": parts[2], "identifierType": id_type, "body": body or {}}
        return self._accepted("close", parts[2], close=close)
