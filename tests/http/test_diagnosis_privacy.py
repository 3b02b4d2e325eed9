"""The ticket card's diagnosis section (every client's resolved tickets with the first line of
their resolution, KB articles, the pattern) is for technicians, as `similar` and `kb` are.

Found by the authorization review: Ana, a requester and no technician, is refused `similar`
and `kb`, and her `show` leaves the section out; but she could open a ticket herself
(`/ticket new`, or `ticket new` in Teams) with any error text and read, on the card posted
where she typed, other clients' ticket numbers, names and fixes (and, once the KB answered,
its internal articles). The card of a ticket a non-technician opens now leaves the section
out, also when it is refreshed; a technician's `show` and `similar` still list it all."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.fakes.botframework import FakeConnector
from tests.fakes.kb_hudu import FakeHudu
from tests.fakes.slack_api import FakeSlack
from tests.harness import view_submission, wait_until
from tests.http.conftest_teams import ANA_ID, activity, form_values, message, submit_action
from tests.http.diagnosis_support import (
    ERROR_NEW,
    PEOPLE,
    card_update,
    flat,
    posts_to,
    select_state,
    text_state,
    ticket,
)
from tests.http.test_diagnosis_slack import resolved_pair
from tests.http.test_diagnosis_teams import PEOPLE as TEAMS_PEOPLE
from tests.http.test_diagnosis_teams import card_text, close
from tests.http.test_diagnosis_teams import open_ticket as teams_ticket

# What only a technician may read: the earlier tickets' clients and their fixes.
OTHER_CLIENTS = ("acme", "globex", "SoftwareDistribution", "catroot2", "KB0042", "Similar")


@pytest.fixture
async def hudu() -> Any:
    async with FakeHudu() as fake:
        yield fake


async def test_a_ticket_a_requester_opens_on_slack_shows_no_other_clients_fixes(
    make_app: Any, slack_api: FakeSlack, hudu: FakeHudu, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    hudu.add_article("Windows Update 0x80070005: reset the update components", "internal")
    app = await make_app(
        slack=slack_api,
        config={"patterns": {"repeat_threshold": 3}, "kb": {"source": "hudu", "url": hudu.url}},
        people=PEOPLE,
        env={"KB_API_KEY": hudu.api_key},
    )
    first, second = await resolved_pair(app, slack_api)  # acme, globex (opened by Tom)

    opened = len(slack_api.views_opened())
    assert (await app.slash("new Update fails", user="UANA", channel="C0ANA")).status == 200
    await slack_api.wait_for_method("views.open", count=opened + 1)
    view = slack_api.views_opened()[-1]["view"]
    values = {
        "requester": {"type": "users_select", "selected_user": "UANA"},
        "summary": text_state("Update fails"),
        "error_text": text_state(ERROR_NEW),
        "doing": text_state("Installing the monthly updates"),
        "reproducible": select_state("yes"),
        "users_affected": {"type": "number_input", "value": "1"},
        "priority": select_state("P3"),
        "category": select_state("windows"),
        "asset": text_state(""),
        "client": text_state("initech"),
    }
    sent = await app.interactive(view_submission(view, values, user="UANA", view_id="VANA1"))
    assert sent.status == 200
    await wait_until(lambda: posts_to(slack_api, "C0ANA"), timeout=10, what="Ana's card")
    number = "HD-3"
    card = flat(posts_to(slack_api, "C0ANA"))
    assert number in card and "There were problems installing" in card  # the card itself
    for secret in (first, second, *OTHER_CLIENTS):
        assert secret not in card, secret
    # Nor once the KB has answered and the card is refreshed in place.
    await wait_until(lambda: len(hudu.calls("/api/v1/articles")) >= 1, what="the KB asked")
    refreshed = flat(await card_update(app, slack_api, number, number, timeout=8))
    for secret in (first, second, "reset the update components", *OTHER_CLIENTS):
        assert secret not in refreshed, secret
    assert any(
        f"{number} was opened by slack:UANA, not a technician" in r.getMessage()
        for r in caplog.records
    )
    # Tom's `show` still has the section (with the KB's article once it answered), and
    # `similar` lists both earlier tickets; the closure rule of the pattern still holds.
    await wait_until(lambda: _kb_stored(app, number), what="the KB's articles stored", timeout=8)
    shown = flat(await (await app.slash(f"show {number}")).json())
    assert f"{first} (acme)" in shown and f"{second} (globex)" in shown
    assert "reset the update components" in shown
    assert f"{first} (acme)" in flat(await (await app.slash(f"similar {number}")).json())
    assert (await ticket(app, number)).status == "open"


async def _kb_stored(app: Any, number: str) -> bool:
    from sqlalchemy import select

    from storage.models import Ticket, TicketDiagnosis

    async with app.services.sessions() as session:
        query = (
            select(TicketDiagnosis.kb_state)
            .join(Ticket, Ticket.id == TicketDiagnosis.ticket_id)
            .where(Ticket.number == number)
        )
        return (await session.execute(query)).scalar_one() == "ok"


async def test_a_ticket_a_requester_opens_on_teams_shows_no_other_clients_fixes(
    make_app: Any, connector: FakeConnector
) -> None:
    config: dict[str, Any] = {
        "teams": {"service_url": connector.service_url, "tenant_id": "t-1"},
        "patterns": {"repeat_threshold": 3},
    }
    app = await make_app(config=config, people=TEAMS_PEOPLE)
    first, _ = await teams_ticket(app, connector, error=ERROR_NEW, client="acme")
    await close(app, connector, first, note="Reset the SoftwareDistribution folder", kb="KB0042")

    chat = "a:1personal-chat-with-ana"

    def cards() -> list[dict[str, Any]]:
        return [a for a in connector.activities(chat) if a.get("attachments")]

    ask = message(connector.service_url, "ticket new Update fails", user=ANA_ID, conversation=chat)
    assert (await app.teams(ask)).status == 201
    await wait_until(lambda: cards() != [], what="Ana's form")
    form = cards()[-1]["attachments"][0]["content"]
    values = form_values(
        requester="ana@example.com", error_text=ERROR_NEW, client="initech", category="windows"
    )
    submit = activity(
        connector.service_url,
        user=ANA_ID,
        conversation=chat,
        value={**submit_action(form)["fallback"]["data"], **values},
    )
    posted = len(cards())
    assert (await app.teams(submit)).status == 201
    await wait_until(lambda: len(cards()) > posted, what="Ana's card")
    shown = card_text(cards()[-1]["attachments"][0]["content"])
    assert "HD-2" in shown
    for secret in (first, *OTHER_CLIENTS):
        assert secret not in shown, secret
    # Tom's `show` has it.
    tom = message(connector.service_url, "ticket show HD-2")
    before = len(connector.activities("a:1personal-chat-with-tech"))
    assert (await app.teams(tom)).status == 201

    def toms() -> list[dict[str, Any]]:
        return connector.activities("a:1personal-chat-with-tech")[before:]

    await wait_until(lambda: toms() != [], what="Tom's show")
    assert f"{first} (acme)" in card_text(toms()[-1]["attachments"][0]["content"])
