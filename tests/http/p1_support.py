"""P1 test support: pager fakes as fixtures, the env that points the app at them, helpers."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from sqlalchemy import select

from storage.models import OutboxMessage
from tests.fakes.pagers import FakeOpsgenie, FakePagerDuty
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, view_submission, wait_until

ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"
GENIE_KEY = "genie-key-0000-1111-2222"
BRIDGE = "https://meet.example.com/p1-bridge"
INCIDENT_CHANNEL = "C0INCIDENT"
INCIDENT_CONVERSATION = "19:incident@thread.tacv2"


def fake_pagerduty() -> FakePagerDuty:
    """Refuses any other routing key (400), like PagerDuty."""
    return FakePagerDuty(routing_key=ROUTING_KEY)


def fake_opsgenie() -> FakeOpsgenie:
    """Refuses any other GenieKey (401), like Opsgenie."""
    return FakeOpsgenie(api_key=GENIE_KEY)


def pager_env(pd: FakePagerDuty | None, og: FakeOpsgenie | None) -> dict[str, str]:
    env = {}
    if pd is not None:
        env |= {"PAGERDUTY_ROUTING_KEY": ROUTING_KEY, "PAGERDUTY_EVENTS_URL": pd.events_url}
    if og is not None:
        env |= {"OPSGENIE_API_KEY": GENIE_KEY, "OPSGENIE_API_URL": og.url}
    return env


eventually = wait_until


async def outbox_rows(app: AppHarness) -> list[OutboxMessage]:
    async with app.services.sessions() as session:
        query = select(OutboxMessage).order_by(OutboxMessage.id)
        return list((await session.execute(query)).scalars())


async def assert_secrets_not_stored(app: AppHarness) -> None:
    stored = json.dumps([r.payload for r in await outbox_rows(app)])
    assert ROUTING_KEY not in stored and GENIE_KEY not in stored


def notice_text(body: Any) -> str:
    """Everything a posted message shows, as one string (blocks or card JSON)."""
    return json.dumps(body, ensure_ascii=False).replace("\\\\", "\\")


# -- Slack -----------------------------------------------------------------------------------

SLACK_PEOPLE = [
    {"email": "tom@example.com", "name": "Tom Tech", "slack_id": "UTECH", "technician": True},
    {"email": "ana@example.com", "name": "Ana Lopez", "slack_id": "UANA"},
    {"email": "bob@example.com", "name": "Bob User", "slack_id": "UBOB"},
]
GOOD_NOTE = "Restarted the VPN concentrator VPN-01 and failed over to the standby tunnel"
_views = itertools.count(1)


def _text(value: str) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


def _choice(value: str) -> dict[str, Any]:
    return {"type": "static_select", "selected_option": {"value": value}}


def slack_posts(fake: FakeSlack, channel: str) -> list[dict[str, Any]]:
    return [p for p in fake.posts() if p.get("channel") == channel]


async def slack_modal(app: AppHarness, fake: FakeSlack, text: str) -> dict[str, Any]:
    opened = len(fake.views_opened())
    response = await app.slash(text)
    assert response.status == 200
    await fake.wait_for_method("views.open", count=opened + 1)
    return fake.views_opened()[-1]["view"]


async def slack_ticket(app: AppHarness, fake: FakeSlack, *, priority: str = "P1",
                       users: int = 40, user: str = "UTECH") -> float:  # fmt: skip
    """Open a ticket through the intake modal; returns when the submission was answered."""
    response = await submit_ticket(app, fake, priority=priority, users=users, user=user)
    assert response.status == 200
    return time.monotonic()


async def submit_ticket(app: AppHarness, fake: FakeSlack, *, priority: str = "P1",
                        users: int = 40, user: str = "UTECH") -> Any:  # fmt: skip
    """The intake modal's submission by `user`; returns the HTTP answer."""
    view = await slack_modal(app, fake, "new VPN down")
    values = {
        "requester": {"type": "users_select", "selected_user": "UANA"},
        "summary": _text("VPN down for the whole Lisbon office"),
        "error_text": _text("Error 809: the network connection could not be established"),
        "doing": _text("Connecting in the morning"), "reproducible": _choice("yes"),
        "users_affected": {"type": "number_input", "value": str(users)},
        "priority": _choice(priority), "category": _choice("network"),
        "asset": _text("VPN-01"), "client": _text(""),
    }  # fmt: skip
    submission = view_submission(view, values, user=user, view_id=f"VP{next(_views)}")
    return await app.interactive(submission)


async def slack_close(app: AppHarness, fake: FakeSlack, number: str) -> None:
    view = await slack_modal(app, fake, f"close {number}")
    values = {"resolution_note": _text(GOOD_NOTE), "resolution_category": _choice("Incident"),
              "time_spent": _text("1h"), "kb_article": _text("KB0012345")}  # fmt: skip
    response = await app.interactive(view_submission(view, values, view_id=f"VC{next(_views)}"))
    assert response.status == 200
    body = await response.text()
    assert not body or "errors" not in body, body
