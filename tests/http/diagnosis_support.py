"""Slack helpers for the diagnosis tests: tickets through the intake modal, closure, texts."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

from sqlalchemy import select

from storage.models import Ticket
from tests.fakes.slack_api import FakeSlack
from tests.harness import AppHarness, view_submission, wait_until

PEOPLE = [
    {"email": "tom@example.com", "name": "Tom Tech", "slack_id": "UTECH", "technician": True},
    {"email": "ana@example.com", "name": "Ana Lopez", "slack_id": "UANA"},
    {"email": "bo@example.com", "name": "Bo Berg", "slack_id": "UBO"},
]
# One error (Windows Update, access denied) as two users saw it: other time, other path.
ERROR_ACME = (
    "2026-11-10 08:12:44 Installation Failure: Windows failed to install the following update "
    "with error 0x80070005: 2026-11 Cumulative Update (KB5032190). "
    r"Log: C:\Windows\Logs\CBS\CBS.log"
)
ERROR_GLOBEX = (
    "2026-12-09 16:03:10 Installation Failure: Windows failed to install the following update "
    "with error 0x80070005: 2026-12 Cumulative Update (KB5033375). "
    r"Log: D:\Windows\Logs\CBS\CBS-2.log"
)
ERROR_NEW = "Windows Update: There were problems installing some updates (0x80070005)"
NOTE_ACME = (
    "Reset the SoftwareDistribution folder with `net stop wuauserv` and re-ran Windows Update\n"
    "Second line that the card does not show"
)
NOTE_GLOBEX = "Re-registered the Windows Update agent DLLs and cleared the catroot2 cache"
_ids = itertools.count(1)


def text_state(value: str) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


def select_state(value: str | None) -> dict[str, Any]:
    return {"type": "static_select", "selected_option": {"value": value} if value else None}


def flat(data: Any) -> str:
    """Every string in a Slack payload, entities decoded, as one text."""
    text = json.dumps(data, ensure_ascii=False)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def posts_to(fake: FakeSlack, channel: str) -> list[dict[str, Any]]:
    return [p for p in fake.posts() if p.get("channel") == channel]


async def modal(app: AppHarness, fake: FakeSlack, text: str) -> dict[str, Any]:
    opened = len(fake.views_opened())
    response = await app.slash(text)
    assert response.status == 200
    await fake.wait_for_method("views.open", count=opened + 1)
    return fake.views_opened()[-1]["view"]


async def open_ticket(
    app: AppHarness,
    fake: FakeSlack,
    *,
    error: str,
    client: str,
    summary: str = "Windows Update fails",
    category: str = "windows",
    asset: str = "",
    requester: str = "UANA",
) -> tuple[str, dict[str, Any]]:
    """Submit the intake modal; the ticket number and its card as posted in C0HELP."""
    view = await modal(app, fake, f"new {summary}")
    values = {
        "requester": {"type": "users_select", "selected_user": requester},
        "summary": text_state(summary),
        "error_text": text_state(error),
        "doing": text_state("Installing the monthly updates"),
        "reproducible": select_state("yes"),
        "users_affected": {"type": "number_input", "value": "1"},
        "priority": select_state("P3"),
        "category": select_state(category),
        "asset": text_state(asset),
        "client": text_state(client),
    }
    response = await app.interactive(view_submission(view, values, view_id=f"VD{next(_ids)}"))
    assert response.status == 200, await response.text()
    async with app.services.sessions() as session:
        number = (await session.execute(select(Ticket.number).order_by(Ticket.id.desc()))).scalar()

    def cards() -> list[dict[str, Any]]:
        return [p for p in posts_to(fake, "C0HELP") if p.get("text", "").startswith(f"{number} (")]

    # Tests that move the clock days ahead make earlier tickets' SLA alarms due at once: posts
    # to C0HELP are paced (about one a second after three), so the card may queue behind them.
    await wait_until(lambda: cards() != [], timeout=15, what=f"the card of {number}")
    return str(number), cards()[0]


async def close(
    app: AppHarness, fake: FakeSlack, number: str, *, note: str, kb: str = ""
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`/ticket close` then submit the modal: (the modal, the JSON ack or {})."""
    view = await modal(app, fake, f"close {number}")
    values = {
        "resolution_note": text_state(note),
        "resolution_category": select_state("Incident"),
        "time_spent": text_state("30m"),
        "kb_article": text_state(kb),
    }
    response = await app.interactive(view_submission(view, values, view_id=f"VC{next(_ids)}"))
    assert response.status == 200
    body = await response.text()
    return view, (json.loads(body) if body else {})


async def ephemeral(app: AppHarness, text: str) -> dict[str, Any]:
    """A slash command's JSON ack (the answer only the caller sees)."""
    response = await app.slash(text)
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    assert body.get("response_type") == "ephemeral", body
    return body


async def ticket(app: AppHarness, number: str) -> Ticket:
    async with app.services.sessions() as session:
        return (await session.execute(select(Ticket).where(Ticket.number == number))).scalar_one()


def numbers(text: str) -> list[str]:
    return sorted(set(re.findall(r"HD-\d+", text)))


async def card_update(
    app: AppHarness,
    fake: FakeSlack,
    number: str,
    saying: str,
    timeout: float = 6.0,  # noqa: ASYNC109
) -> dict[str, Any]:
    """The first `chat.update` of the ticket's card message that says `saying`."""

    async def found() -> dict[str, Any] | None:
        current = await ticket(app, number)
        for update in fake.method_calls("chat.update"):
            if update.get("ts") == current.card_message and saying in flat(update):
                return update
        return None

    await wait_until(found, timeout=timeout, what=f"an update of {number}'s card: {saying}")
    result = await found()
    assert result is not None
    return result
