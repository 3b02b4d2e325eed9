"""PSA test support: the four fakes seeded alike, the app's settings for them, Slack flows."""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select

from storage.models import OutboxMessage, Ticket
from tests import log_audit
from tests.fakes.psa_autotask import FakeAutotask
from tests.fakes.psa_common import PsaFake
from tests.fakes.psa_connectwise import FakeConnectWise
from tests.fakes.psa_freshservice import FakeFreshservice
from tests.fakes.psa_servicenow import FakeServiceNow
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, block_actions, view_submission, wait_until
from tests.harness import slack_button as button

SYSTEMS = ["servicenow", "freshservice", "connectwise", "autotask"]
FAKES: dict[str, type[PsaFake]] = {
    "servicenow": FakeServiceNow,
    "freshservice": FakeFreshservice,
    "connectwise": FakeConnectWise,
    "autotask": FakeAutotask,
}
NAMES = {
    "servicenow": "ServiceNow",
    "freshservice": "Freshservice",
    "connectwise": "ConnectWise",
    "autotask": "Autotask",
}
PEOPLE = [
    {"email": "tom@example.com", "name": "Tom Tech", "slack_id": "UTECH", "technician": True},
    {
        "email": "ana@example.com",
        "name": "Ana Lopez",
        "slack_id": "UANA",
        "manager": "bo@example.com",
        "phone": "+1 555 0100",
    },
    {"email": "bo@example.com", "name": "Bo Boss", "slack_id": "U0BO"},
]
CONTRACT = "Gold Support"
GOOD_NOTE = "Restarted the VPN concentrator VPN-01 and failed over to the standby tunnel"
FACTS = {
    "repro_steps": "Connect to the VPN from the Lisbon office",
    "error_text": "Error 809",
    "already_tried": "Reinstalled the VPN client and rebooted",
    "asset_link": "VPN-01",
    "user_impact": "Whole office offline",
}
_views = itertools.count(1)


def seed(fake: PsaFake) -> None:
    """Acme with an active Gold Support contract (and a lapsed one); Tom and Ana known."""
    company = fake.add_company("Acme", [("Bronze (lapsed)", False), (CONTRACT, True)])
    fake.add_company("Globex", [])
    if isinstance(fake, FakeServiceNow):
        fake.add_person("tom@example.com")
        fake.add_person("ana@example.com")
        fake.add_ci("VPN-01")
    elif isinstance(fake, FakeAutotask):
        fake.add_resource("tom@example.com")
        fake.add_contact(company, "ana@example.com")
    else:
        fake.add_person("tom@example.com")


def remember_secrets(fake: PsaFake) -> None:
    """The log audit also looks for the credentials and the Basic header made of them."""
    env = fake.env()
    log_audit.SEEN.update(fake.secrets())
    pairs = {
        "servicenow": (env.get("PSA_USERNAME", ""), env.get("PSA_PASSWORD", "")),
        "freshservice": (env.get("PSA_API_KEY", ""), "X"),
        "connectwise": (
            f"{env.get('PSA_COMPANY_ID')}+{env.get('PSA_PUBLIC_KEY')}",
            env.get("PSA_PRIVATE_KEY", ""),
        ),
    }
    if fake.SYSTEM in pairs:
        user, password = pairs[fake.SYSTEM]
        log_audit.SEEN.add(base64.b64encode(f"{user}:{password}".encode()).decode())


def app_config(fake: PsaFake, **extra: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "psa": fake.config(tiers={CONTRACT: "gold"}),
        "queues": {"networking": {"slack": "C0NETWORK"}, "security": {"slack": "C0SECURITY"}},
        "escalation": {"queues": {"network": "networking"}},
    }
    config.update(extra)
    return config


async def start_app(
    make_app: Any,
    slack: FakeSlack,
    fake: PsaFake,
    *,
    scheduler: bool = True,
    clock: Callable[[], datetime] | None = None,
    **extra: Any,
) -> AppHarness:
    remember_secrets(fake)
    app: AppHarness = await make_app(
        slack=slack,
        config=app_config(fake, **extra),
        people=PEOPLE,
        env=fake.env(),
        scheduler=scheduler,
        clock=clock,
    )
    return app


def _text(value: str) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


def _choice(value: str) -> dict[str, Any]:
    return {"type": "static_select", "selected_option": {"value": value}}


def posts_to(fake: FakeSlack, channel: str) -> list[dict[str, Any]]:
    return [p for p in fake.posts() if p.get("channel") == channel]


async def modal(app: AppHarness, slack: FakeSlack, text: str) -> dict[str, Any]:
    opened = len(slack.views_opened())
    response = await app.slash(text)
    assert response.status == 200
    await slack.wait_for_method("views.open", count=opened + 1)
    return slack.views_opened()[-1]["view"]


async def open_ticket(
    app: AppHarness,
    slack: FakeSlack,
    *,
    client: str = "acme",
    priority: str = "P3",
    summary: str = "VPN drops every few minutes",
    category: str = "network",
    error_text: str = "Error 809: the network connection could not be established",
    wait_card: bool = True,
) -> None:
    """Submit the intake modal (Slack); waits for the ticket card in C0HELP."""
    view = await modal(app, slack, "new VPN")
    values = {
        "requester": {"type": "users_select", "selected_user": "UANA"},
        "summary": _text(summary),
        "error_text": _text(error_text),
        "doing": _text("Connecting from home"),
        "reproducible": _choice("yes"),
        "users_affected": {"type": "number_input", "value": "1"},
        "priority": _choice(priority),
        "category": _choice(category),
        "asset": _text("VPN-01"),
        "client": _text(client),
    }
    before = len(posts_to(slack, "C0HELP"))
    response = await app.interactive(view_submission(view, values, view_id=f"VPSA{next(_views)}"))
    assert response.status == 200
    if wait_card:
        await wait_until(lambda: len(posts_to(slack, "C0HELP")) > before, what="the ticket card")


async def escalate(app: AppHarness, slack: FakeSlack, number: str) -> None:
    view = await modal(app, slack, f"escalate {number}")
    states: dict[str, Any] = {k: _text(v) for k, v in FACTS.items()}
    states["queue"] = _choice("networking")
    response = await app.interactive(view_submission(view, states, view_id=f"VE{next(_views)}"))
    assert response.status == 200 and "errors" not in (await response.text())


async def approve_identity(app: AppHarness, slack: FakeSlack, number: str) -> None:
    """`verify` and the manager's Approve click."""
    answer = await (await app.slash(f"verify {number}")).json()
    assert "Bo Boss" in json.dumps(answer), answer
    await wait_until(lambda: posts_to(slack, "DU0BO"), what="the manager's DM")
    dm = posts_to(slack, "DU0BO")[-1]
    n = next(_views)
    payload = block_actions(
        button(dm, "Approve"),
        user="U0BO",
        channel="DU0BO",
        n=n,
        response_url=slack.response_url_for(f"psa{n}"),
        message_ts=dm.get("ts", "1.1"),
    )
    assert (await app.interactive(payload)).status == 200
    await slack.wait_for(f"/response/psa{n}")


async def close(app: AppHarness, slack: FakeSlack, number: str, *, spent: str = "30m") -> None:
    view = await modal(app, slack, f"close {number}")
    values = {
        "resolution_note": _text(GOOD_NOTE),
        "resolution_category": _choice("Incident"),
        "time_spent": _text(spent),
        "kb_article": _text("KB0012345"),
    }
    response = await app.interactive(view_submission(view, values, view_id=f"VC{next(_views)}"))
    assert response.status == 200
    body = await response.text()
    assert not body or "errors" not in body, body


async def ticket(app: AppHarness, number: str = "HD-1") -> Ticket:
    async with app.services.sessions() as session:
        query = select(Ticket).where(Ticket.number == number)
        return (await session.execute(query)).scalar_one()


async def psa_rows(app: AppHarness) -> list[OutboxMessage]:
    async with app.services.sessions() as session:
        query = select(OutboxMessage).where(OutboxMessage.kind.like("psa.%"))
        return list((await session.execute(query.order_by(OutboxMessage.id))).scalars())


async def all_synced(app: AppHarness) -> bool:
    rows = await psa_rows(app)
    return bool(rows) and all(r.status == "delivered" for r in rows)


async def show(app: AppHarness, number: str = "HD-1") -> str:
    answer = await (await app.slash(f"show {number}")).json()
    return json.dumps(answer, ensure_ascii=False)


def since(start: float) -> float:
    return time.monotonic() - start
