"""Property tests over HTTP: no request body, however malformed, is answered 5xx (SPEC, Errors
and safety: malformed bodies get 400 and a log line, the process keeps serving).

Hypothesis takes the well-formed examples of tests/http/test_slack_malformed.py and
test_teams_malformed.py (every interactivity kind, slash commands, every Teams activity kind)
and changes several fields at once: removed, null, numbers (huge ones too), booleans, lists,
nested objects, empty and long strings, hostile text; and it writes command texts with odd
arguments. Every body is correctly signed (Slack) or accepted as Emulator traffic (Teams, as the
table-driven tests send it). One app serves a whole test: hypothesis runs in a worker thread
and sends each example to the app on the test's event loop. Property: the answer is below 500
and nothing logs a traceback; afterwards `/healthz` is 200 and a normal command still works.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.botframework import FakeConnector
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, only_ticket, view_submission
from tests.http import test_slack_malformed as slack_cases
from tests.http import test_teams_malformed as teams_cases
from tests.http.conftest_teams import CONFIG, PEOPLE, activity, form_values
from tests.typed_text import TYPED

# FUZZ_EXAMPLES=2000 FUZZ_RANDOM=1 hunts longer, with new examples each run.
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "30")),
    deadline=None,
    derandomize=not os.environ.get("FUZZ_RANDOM"),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MISSING = object()

TEXT = st.one_of(
    TYPED,
    st.sampled_from(["", " ", "x" * 5000, "HD-1", "HD-99999999999999999999", "U0ANA", "null"]),
)
NUMBER = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False))
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
JSON = st.recursive(
    SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
REPLACEMENT = st.one_of(st.just(MISSING), JSON)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key and index in `value`, outermost first."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    found: list[tuple[Any, ...]] = []
    for key, item in items:
        found.append((*prefix, key))
        if isinstance(item, dict | list) and item:
            found.extend(paths(item, (*prefix, key)))
    return found


def broken(data: st.DataObject, base: Any) -> Any:
    """`base` with one to four of its fields removed or replaced."""
    body = copy.deepcopy(base)
    for _ in range(data.draw(st.integers(1, 4), label="changes")):
        if not isinstance(body, dict | list) or not (found := paths(body)):
            break
        path = data.draw(st.sampled_from(found), label="path")
        parent: Any = body
        for key in path[:-1]:
            parent = parent[key]
        new = data.draw(REPLACEMENT, label=".".join(map(str, path)))
        if new is MISSING:
            del parent[path[-1]]
        else:
            parent[path[-1]] = new
    return body


Send = Callable[[], Coroutine[Any, Any, tuple[int, bytes]]]


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{r.name}: {r.getMessage()[:300]}"
        for r in caplog.records
        if r.exc_info or r.levelno >= logging.ERROR
    ]


async def run_examples(
    caplog: pytest.LogCaptureFixture, test: Callable[[Callable[[Send], tuple[int, bytes]]], None]
) -> None:
    """Run the hypothesis `test` in a worker thread; `ask(send)` sends one request on this
    event loop (where the app serves) and checks its answer."""
    loop = asyncio.get_running_loop()

    def ask(send: Send) -> tuple[int, bytes]:
        caplog.clear()
        status, answer = asyncio.run_coroutine_threadsafe(send(), loop).result(timeout=30)
        assert status < 500, (status, answer[:300])
        assert not tracebacks(caplog), tracebacks(caplog)[:3]
        return status, answer

    await asyncio.to_thread(test, ask)


VERBS = [
    "",
    "new",
    "show",
    "mine",
    "verify",
    "p1",
    "escalate",
    "time",
    "close",
    "help",
    "similar",
    "kb",
    "confirm",
    "link",
    "report",
]
ARGUMENT = st.one_of(
    st.sampled_from(
        [
            "HD-1",
            "HD-0",
            "HD-99999999999999999999",
            "hd-1",
            "45m",
            "99999999999h",
            "1.5h",
            "-5m",
            "0m",
            "1e308h",
            "2026-02-30",
            "2026-01-01",
            "9999-12-31",
            "0001-01-01",
            "acme",
            "<!here>",
        ]
    ),
    TYPED,
)
COMMAND_TEXT = st.tuples(st.sampled_from(VERBS), st.lists(ARGUMENT, max_size=4)).map(
    lambda parts: " ".join([parts[0], *parts[1]])
)


async def test_slack_requests_are_never_answered_5xx(
    make_app: Any, slack_api: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    app: AppHarness = await make_app(slack=slack_api, people=PEOPLE, config=CONFIG)
    caplog.set_level(logging.INFO)
    response_url = slack_api.response_url_for("fuzz")
    kinds = [k for k in slack_cases.BASES if k not in ("event_callback", "url_verification")]
    bases = {
        kind: json.loads(json.dumps(slack_cases.BASES[kind]).replace("RESPONSE_URL", response_url))
        for kind in kinds
    }

    def test(ask: Callable[[Send], tuple[int, bytes]]) -> None:
        @FUZZ
        @given(st.data(), st.sampled_from(kinds))
        def interactivity(data: st.DataObject, kind: str) -> None:
            payload = broken(data, bases[kind])
            ask(lambda: slack_cases.post(app, slack_cases.interactive(payload), slack_cases.FORM))

        @FUZZ
        @given(st.data(), COMMAND_TEXT)
        def commands(data: st.DataObject, text: str) -> None:
            form = {**slack_cases.COMMAND, "text": text, "response_url": response_url}
            if data.draw(st.booleans(), label="odd fields"):
                form = broken(data, form)
                form = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in form.items()}
            body = urlencode(form).encode()
            ask(lambda: slack_cases.post(app, body, slack_cases.FORM))

        interactivity()
        commands()

    await run_examples(caplog, test)
    await slack_cases.still_serving(app)


async def test_teams_activities_are_never_answered_5xx(
    make_app: Any, connector: FakeConnector, caplog: pytest.LogCaptureFixture
) -> None:
    app: AppHarness = await make_app(config=CONFIG, people=PEOPLE)
    caplog.set_level(logging.INFO)
    svc = connector.service_url
    bases = {
        kind: teams_cases.with_service_url(base, svc) for kind, base in teams_cases.BASES.items()
    }
    number = iter(range(10**9))

    def test(ask: Callable[[Send], tuple[int, bytes]]) -> None:
        @FUZZ
        @given(st.data(), st.sampled_from(list(bases)))
        def activities(data: st.DataObject, kind: str) -> None:
            body = broken(data, bases[kind])
            if isinstance(body, dict) and isinstance(body.get("id"), str):
                body["id"] = f"{body['id'][:50]}-{next(number)}"  # a new activity each time
            raw = json.dumps(body).encode()
            ask(lambda: teams_cases.post(app, raw))

        @FUZZ
        @given(COMMAND_TEXT)
        def messages(text: str) -> None:
            raw = json.dumps(activity(svc, text=f"ticket {text}", textFormat="plain")).encode()
            ask(lambda: teams_cases.post(app, raw))

        activities()
        messages()

    await run_examples(caplog, test)
    await teams_cases.still_serving(app, connector)


# Every form field and button value the bot reads, and what people (or a forged client) may
# put there: text, odd numbers, durations, ticket numbers.
FIELDS = [
    *form_values(),
    "ticket",
    "logged",
    "resolution_note",
    "resolution_category",
    "time_spent",
    "kb_article",
    "repro_steps",
    "error_text",
    "already_tried",
    "asset_link",
    "user_impact",
    "queue",
    "rating",
    "comment",
    "check",
    "target",
]
FIELD_VALUE = st.one_of(
    TEXT,
    ARGUMENT,
    st.sampled_from(["1e9", "99999999999999999999", "-1", "0", "1.5", "NaN", "P0", "Incident"]),
)
ACTIONS = st.sampled_from(
    [
        "ticket.create",
        "ticket.verify",
        "ticket.escalate",
        "ticket.close",
        "ticket.escalate.submit",
        "ticket.close.submit",
        "identity.approve",
        "identity.deny",
        "identity.called_back",
        "csat.rate",
        "csat.comment",
        "fix.works",
        "fix.broken",
        "fix.comment",
        "ticket.file_under",
    ]
)


async def test_teams_forms_and_buttons_with_any_values_are_never_answered_5xx(
    make_app: Any, connector: FakeConnector, caplog: pytest.LogCaptureFixture
) -> None:
    """Against a real ticket (HD-1, open), every form and button with any values in its fields,
    as Action.Submit and as Action.Execute."""
    app: AppHarness = await make_app(config=CONFIG, people=PEOPLE)
    caplog.set_level(logging.INFO)
    svc = connector.service_url
    intake = {"action": "ticket.create", **form_values()}
    status, _ = await teams_cases.post(app, json.dumps(activity(svc, value=intake)).encode())
    assert status == 201 and (await only_ticket(app)).number == "HD-1"

    def test(ask: Callable[[Send], tuple[int, bytes]]) -> None:
        @FUZZ
        @given(
            ACTIONS,
            st.dictionaries(st.sampled_from(FIELDS), FIELD_VALUE, max_size=8),
            st.sampled_from(["HD-1", "HD-2", "hd-1", ""]),
            st.booleans(),
        )
        def forms(action: str, values: dict[str, str], ticket: str, execute: bool) -> None:
            data = {"ticket": ticket, **values, "action": action}
            if execute:
                invoke = {"action": {"type": "Action.Execute", "verb": action, "data": data}}
                body = activity(svc, type="invoke", name="adaptiveCard/action", value=invoke)
            else:
                body = activity(svc, value=data, replyToId="1700000000000")
            raw = json.dumps(body).encode()
            ask(lambda: teams_cases.post(app, raw))

        forms()

    await run_examples(caplog, test)
    before = len(connector.activities())
    status, _ = await teams_cases.post(app, json.dumps(activity(svc, text="ticket mine")).encode())
    assert status == 201
    await connector.wait_for(lambda r: r.method == "POST", count=before + 1)
    assert connector.activities()[-1]["text"].startswith("Your open tickets")
    assert app.http is not None
    async with app.http.get(f"{app.url}/healthz") as health:
        assert health.status == 200


SLACK_PEOPLE = [
    {"email": "ana@example.com", "name": "Ana Lopez", "slack_id": "U0ANA"},
    {"email": "tech@example.com", "name": "Tom Tech", "slack_id": "UTECH", "technician": True},
]
SELECTS = {"reproducible", "priority", "category", "resolution_category", "queue"}


def slack_state(field: str, value: str) -> dict[str, Any]:
    if field == "requester":
        return {"type": "users_select", "selected_user": value}
    if field == "users_affected":
        return {"type": "number_input", "value": value}
    if field in SELECTS:
        return {"type": "static_select", "selected_option": {"value": value}}
    return {"type": "plain_text_input", "value": value}


async def test_slack_forms_with_any_values_are_never_answered_5xx(
    make_app: Any, slack_api: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    """Against a real ticket (HD-1, open), the intake, escalation and closure forms submitted
    with any values in their fields."""
    app: AppHarness = await make_app(slack=slack_api, people=SLACK_PEOPLE, config=CONFIG)
    caplog.set_level(logging.INFO)
    good = {**form_values(), "requester": "U0ANA"}
    view = {
        "type": "modal",
        "callback_id": "ticket.create",
        "private_metadata": '{"channel":"C0HELP"}',
    }
    first = view_submission(view, {k: slack_state(k, v) for k, v in good.items()})
    status, _ = await slack_cases.post(app, slack_cases.interactive(first), slack_cases.FORM)
    assert status == 200 and (await only_ticket(app)).number == "HD-1"

    def test(ask: Callable[[Send], tuple[int, bytes]]) -> None:
        @FUZZ
        @given(
            st.sampled_from(["ticket.create", "ticket.escalate.submit", "ticket.close.submit"]),
            st.dictionaries(st.sampled_from(FIELDS), FIELD_VALUE, max_size=8),
            st.dictionaries(st.sampled_from(["ticket", "channel", "logged"]), FIELD_VALUE),
        )
        def forms(callback: str, values: dict[str, str], context: dict[str, str]) -> None:
            metadata = json.dumps({"ticket": "HD-1", "channel": "C0HELP", **context})
            form = {"type": "modal", "callback_id": callback, "private_metadata": metadata}
            fields = {k: slack_state(k, v) for k, v in values.items() if k != "ticket"}
            body = slack_cases.interactive(view_submission(form, fields))
            ask(lambda: slack_cases.post(app, body, slack_cases.FORM))

        forms()

    await run_examples(caplog, test)
    await slack_cases.still_serving(app)
