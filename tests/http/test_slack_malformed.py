"""Malformed Slack requests never answer 5xx (issue 16.2): signed, over HTTP, table-driven.

For every payload kind Bolt routes, every field of a well-formed example is removed, given a
value of the wrong type, emptied and made oversized, one at a time. Each variant is answered
400 with a log line (or 200 where Slack expects an ack and there is nothing to do), nothing is
stored, and the server goes on serving.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select

from storage.models import (
    CsatSurvey,
    IdentityCheck,
    InboundDelivery,
    OutboxMessage,
    Ticket,
    TicketEvent,
    TimeEntry,
)
from tests.fakes.slack_api import FakeSlack
from tests.harness import SIGNING_SECRET, AppHarness

FORM = "application/x-www-form-urlencoded"
MISSING = object()
OVERSIZED = "x" * 50_000
# What each field is replaced with, in turn.
WRONG: list[Any] = [MISSING, None, 0, 2.5, True, [], {}, "", OVERSIZED]
FORM_WRONG: list[Any] = [MISSING, "", OVERSIZED]

USER = {"id": "UTECH", "username": "utech", "name": "utech", "team_id": "T0TEAM"}
TEAM = {"id": "T0TEAM", "domain": "acme"}
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
    "trigger_id": "trigger-cmd",
}
MODAL = {
    "id": "V0MAL",
    "type": "modal",
    "hash": "h-1",
    "team_id": "T0TEAM",
    "callback_id": "ticket.create",
    "private_metadata": '{"channel":"C0HELP"}',
}
BASES: dict[str, dict[str, Any]] = {
    # Verify identity on a ticket that does not exist: refused, nothing stored.
    "block_actions": {
        "type": "block_actions",
        "team": TEAM,
        "user": USER,
        "api_app_id": "A0APP",
        "token": "legacy",
        "trigger_id": "trigger-act",
        "container": {"type": "message", "message_ts": "1700000000.000100"},
        "channel": {"id": "C0HELP", "name": "helpdesk"},
        "message": {"type": "message", "ts": "1700000000.000100", "text": "HD-404"},
        "response_url": "RESPONSE_URL",
        "actions": [
            {
                "type": "button",
                "action_id": "ticket.verify",
                "block_id": "b",
                "value": '{"ticket":"HD-404"}',
                "text": {"type": "plain_text", "text": "Verify identity"},
                "action_ts": "1700000001.000200",
            }
        ],
    },
    # An intake form whose Summary is blank: field errors, nothing stored.
    "view_submission": {
        "type": "view_submission",
        "team": TEAM,
        "user": USER,
        "api_app_id": "A0APP",
        "token": "legacy",
        "trigger_id": "trigger-view",
        "view": {
            **MODAL,
            "state": {
                "values": {
                    "requester": {"requester": {"type": "users_select", "selected_user": "U0ANA"}},
                    "summary": {"summary": {"type": "plain_text_input", "value": "   "}},
                    "reproducible": {
                        "reproducible": {
                            "type": "static_select",
                            "selected_option": {"value": "yes"},
                        }
                    },
                    "users_affected": {"users_affected": {"type": "number_input", "value": "1"}},
                }
            },
        },
    },
    "view_closed": {
        "type": "view_closed",
        "team": TEAM,
        "user": USER,
        "api_app_id": "A0APP",
        "view": MODAL,
        "is_cleared": False,
    },
    "shortcut": {
        "type": "shortcut",
        "team": TEAM,
        "user": USER,
        "callback_id": "open_ticket",
        "trigger_id": "trigger-sc",
        "action_ts": "1700000002.000300",
    },
    "message_action": {
        "type": "message_action",
        "team": TEAM,
        "user": USER,
        "callback_id": "ticket_from_message",
        "trigger_id": "trigger-ma",
        "channel": {"id": "C0HELP", "name": "helpdesk"},
        "message": {"type": "message", "user": "U0ANA", "ts": "1.2", "text": "printer on fire"},
        "response_url": "RESPONSE_URL",
    },
    "block_suggestion": {
        "type": "block_suggestion",
        "team": TEAM,
        "user": USER,
        "action_id": "requester",
        "block_id": "requester",
        "value": "an",
        "container": {"type": "view", "view_id": "V0MAL"},
    },
    "event_callback": {
        "token": "legacy",
        "team_id": "T0TEAM",
        "api_app_id": "A0APP",
        "type": "event_callback",
        "event_id": "Ev0MAL",
        "event_time": 1700000000,
        "event": {
            "type": "message",
            "channel": "C0HELP",
            "user": "U0ANA",
            "text": "is the printer fixed?",
            "ts": "1700000000.000300",
            "channel_type": "channel",
        },
        "authorizations": [
            {"team_id": "T0TEAM", "user_id": "UBOT", "is_bot": True, "is_enterprise_install": False}
        ],
    },
    "url_verification": {"token": "legacy", "challenge": "c-123", "type": "url_verification"},
}


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key and index in `value`, outermost first."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        yield (*prefix, key)
        if isinstance(item, dict | list) and item:
            yield from paths(item, (*prefix, key))


def mutated(base: dict[str, Any], path: tuple[Any, ...], new: Any) -> dict[str, Any]:
    body = copy.deepcopy(base)
    parent: Any = body
    for key in path[:-1]:
        parent = parent[key]
    if new is MISSING:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return body


def label(path: tuple[Any, ...], new: Any) -> str:
    what = "missing" if new is MISSING else ("oversized" if new is OVERSIZED else repr(new))
    return f"{'.'.join(map(str, path))} = {what}"


def sign(body: bytes, *, timestamp: str | None = None) -> dict[str, str]:
    ts = timestamp or str(int(time.time()))
    base = b"v0:" + ts.encode() + b":" + body
    digest = hmac.new(SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


async def post(
    app: AppHarness, body: bytes, content_type: str, *, signed: bool = True
) -> tuple[int, bytes]:
    headers = {"Content-Type": content_type, **(sign(body) if signed else {})}
    assert app.http is not None
    data = io.BytesIO(body)  # aiohttp warns about large raw byte bodies
    async with app.http.post(f"{app.url}/slack/events", data=data, headers=headers) as response:
        return response.status, await response.read()


def interactive(payload: Any) -> bytes:
    return urlencode({"payload": json.dumps(payload)}).encode()


async def stored(app: AppHarness) -> dict[str, int]:
    """Rows in every table a request could write to."""
    counts = {}
    async with app.services.sessions() as session:
        for model in (
            Ticket,
            TicketEvent,
            InboundDelivery,
            OutboxMessage,
            IdentityCheck,
            TimeEntry,
            CsatSurvey,
        ):
            query = select(func.count()).select_from(model)
            counts[model.__tablename__] = (await session.execute(query)).scalar_one()
    return counts


NOTHING = {
    "tickets": 0,
    "ticket_events": 0,
    "inbound_deliveries": 0,
    "outbox": 0,
    "identity_checks": 0,
    "time_entries": 0,
    "csat_surveys": 0,
}


def refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("bot.slack")
        and r.levelno == logging.WARNING
        and "(400)" in r.getMessage()
    ]


async def still_serving(app: AppHarness) -> None:
    status, body = await post(app, urlencode(COMMAND).encode(), FORM)
    assert status == 200 and b"ticket show" in body, body[:300]
    assert app.http is not None
    async with app.http.get(f"{app.url}/healthz") as health:
        assert health.status == 200


@pytest.mark.parametrize("kind", [*BASES, "command", "command_json"])
async def test_every_field_of_every_kind_broken_in_turn(
    make_app: Any, slack_api: FakeSlack, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    app: AppHarness = await make_app(slack=slack_api)
    caplog.set_level(logging.INFO)
    if kind == "command":
        base: dict[str, Any] = dict(COMMAND)
        variants = [(p, w) for p in paths(base) for w in FORM_WRONG]
    else:
        base = BASES.get(kind, COMMAND)
        raw = json.dumps(base).replace("RESPONSE_URL", slack_api.response_url_for("mal"))
        base = json.loads(raw)
        variants = [(p, w) for p in paths(base) for w in WRONG]
    problems: list[str] = []
    answered: dict[int, int] = {}
    for path, new in [((), None), *variants]:
        body_obj = base if not path else mutated(base, path, new)
        if kind == "command":
            body = urlencode(body_obj).encode()
            status, answer = await post(app, body, FORM)
        elif kind in ("event_callback", "url_verification", "command_json"):
            status, answer = await post(app, json.dumps(body_obj).encode(), "application/json")
        else:
            status, answer = await post(app, interactive(body_obj), FORM)
        answered[status] = answered.get(status, 0) + 1
        what = label(path, new) if path else "the well-formed example"
        if status not in (200, 400):
            problems.append(f"{what}: HTTP {status} {answer[:200]!r}")
        elif not path and status != 200:
            problems.append(f"{what}: HTTP {status} {answer[:200]!r}")
        elif status == 400 and not refusals(caplog):
            problems.append(f"{what}: 400 without a log line")
        caplog.clear()
    assert not problems, "\n".join(problems[:30])
    # Every kind has fields whose breakage is refused, and the example went through.
    assert answered.get(400, 0) > 0 and answered.get(200, 0) > 0, answered
    assert await stored(app) == NOTHING
    await still_serving(app)


async def test_the_issue_cases_and_other_bodies_are_refused_with_400(
    make_app: Any, slack_api: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    app: AppHarness = await make_app(slack=slack_api)
    actions = mutated(BASES["block_actions"], ("actions",), [])
    nested: list[Any] = []
    for _ in range(70):
        nested = [nested]
    deep_event = mutated(BASES["event_callback"], ("event", "blocks"), nested)
    cases: list[tuple[str, bytes, str, int]] = [
        ("payload holding a JSON array", b"payload=%5B%5D", FORM, 400),
        ("block_actions with no actions", interactive(actions), FORM, 400),
        ("payload null", b"payload=null", FORM, 400),
        ("payload a string", b"payload=%22x%22", FORM, 400),
        ("payload a number", b"payload=5", FORM, 400),
        ("JSON array body", b"[]", "application/json", 400),
        ("JSON string body", b'"hello"', "application/json", 400),
        ("form without a command", b"foo=bar", FORM, 400),
        ("empty body", b"", FORM, 400),
        ("unknown type", interactive({"type": "dialog_open", "user": USER}), FORM, 400),
        ("nested 10,000 deep", b"[" * 10_000 + b"]" * 10_000, "application/json", 400),
        ("payload nested 200,000 deep", b"payload=" + b"[" * 200_000 + b"]" * 200_000, FORM, 400),
        ("an event nested 70 deep", json.dumps(deep_event).encode(), "application/json", 400),
        ("not UTF-8", b"command=%2Fticket&text=\xff\xfe", FORM, 400),
        ("NUL in the text", urlencode({**COMMAND, "text": "help\x00"}).encode(), FORM, 400),
        (
            "lone surrogate in a form value",
            interactive(
                mutated(
                    BASES["view_submission"],
                    ("view", "state", "values", "summary", "summary", "value"),
                    "\ud800",
                )
            ),
            FORM,
            400,
        ),
        (
            "user given as a string in a button press",
            interactive(mutated(BASES["block_actions"], ("user",), "UTECH")),
            FORM,
            400,
        ),
        (
            "private_metadata that is not an object",
            interactive(mutated(BASES["view_submission"], ("view", "private_metadata"), "[1]")),
            FORM,
            400,
        ),
        ("over 1 MiB", b"payload=" + b"x" * (1024 * 1024 + 10), FORM, 413),
    ]
    for name, body, content_type, expected in cases:
        caplog.clear()
        status, answer = await post(app, body, content_type)
        assert status == expected, (name, status, answer[:200])
        assert any("refused (4" in line for line in _warnings(caplog)), name
    # Signature first: a malformed body that is not signed is a 401, not a 400.
    assert (await post(app, b"payload=%5B%5D", FORM, signed=False))[0] == 401
    headers = {
        "Content-Type": FORM,
        "X-Slack-Request-Timestamp": "soon",
        "X-Slack-Signature": "v0=x",
    }
    assert app.http is not None
    async with app.http.post(f"{app.url}/slack/events", data=b"a=b", headers=headers) as response:
        assert response.status == 401
    # Found by a review: timestamps that str.isdigit() takes and int() does not (more digits
    # than int() reads, a superscript digit) were a 500 with a traceback, unsigned.
    for timestamp in ("9" * 5000, "1²"):
        caplog.clear()
        headers["X-Slack-Request-Timestamp"] = timestamp
        async with app.http.post(f"{app.url}/slack/events", data=b"a=b", headers=headers) as r:
            assert r.status == 401, timestamp[:10]
        assert not [rec for rec in caplog.records if rec.exc_info], timestamp[:10]
    assert await stored(app) == NOTHING
    await still_serving(app)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_well_formed_kinds_the_bot_does_not_use_are_acknowledged(
    make_app: Any, slack_api: FakeSlack
) -> None:
    app: AppHarness = await make_app(slack=slack_api)
    unknown_button = mutated(
        BASES["block_actions"], ("actions", 0, "action_id"), "someone.elses.button"
    )
    unknown_form = mutated(BASES["view_submission"], ("view", "callback_id"), "other.form")
    rate_limited = {"token": "t", "type": "app_rate_limited", "minute_rate_limited": 1518467820}
    for name, body, content_type, expected in [
        ("view_closed", interactive(BASES["view_closed"]), FORM, b""),
        ("shortcut", interactive(BASES["shortcut"]), FORM, b""),
        ("message_action", interactive(BASES["message_action"]), FORM, b""),
        ("block_suggestion", interactive(BASES["block_suggestion"]), FORM, b'{"options": []}'),
        ("another app's button", interactive(unknown_button), FORM, b""),
        ("another app's form", interactive(unknown_form), FORM, b""),
        ("app_rate_limited", json.dumps(rate_limited).encode(), "application/json", b""),
    ]:
        status, answer = await post(app, body, content_type)
        assert (status, answer) == (200, expected), name
    event = json.dumps(BASES["event_callback"]).encode()
    assert (await post(app, event, "application/json"))[0] == 200
    challenge = json.dumps(BASES["url_verification"]).encode()
    status, answer = await post(app, challenge, "application/json")
    assert status == 200 and json.loads(answer) == {"challenge": "c-123"}
    assert await stored(app) == NOTHING


async def test_command_text_mentioning_payload_is_served(make_app: Any, slack_api: FakeSlack):
    """Bolt's own parser reads any form body containing "payload" as empty (404)."""
    app: AppHarness = await make_app(slack=slack_api)
    status, answer = await post(
        app, urlencode({**COMMAND, "text": "help with payload"}).encode(), FORM
    )
    assert status == 200 and b"ticket show" in answer
    form = urlencode({**COMMAND, "text": "new 413 payload too large", "trigger_id": "t-pl"})
    assert (await post(app, form.encode(), FORM))[0] == 200
    await slack_api.wait_for_method("views.open")
    view = slack_api.views_opened()[-1]["view"]
    summary = next(b for b in view["blocks"] if b.get("block_id") == "summary")
    assert summary["element"]["initial_value"] == "413 payload too large"
