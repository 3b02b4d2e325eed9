"""The card's similar tickets and `similar` find an earlier resolved ticket behind many newer
open ones with the same error (an outage reported by many), over Slack HTTP on SQLite and
PostgreSQL (SPEC: "up to three earlier resolved tickets with the same error")."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import insert, select

from storage.models import Ticket, TicketSignature
from tests.fakes.slack_api import FakeSlack
from tests.http.diagnosis_support import PEOPLE, close, ephemeral, flat, open_ticket

ERROR = "Outlook cannot connect: error 0x800CCC0E"
NOTE = "Re-created the Outlook profile and re-added the mailbox"
OPEN_REPORTS = 20


@pytest.mark.parametrize("threshold", [1000, 3])
async def test_a_resolved_ticket_behind_many_open_ones_is_still_listed(
    make_app: Any, slack_api: FakeSlack, threshold: int
) -> None:
    """With a threshold reached, the pattern suggests the KB article the resolved one named,
    on the card and in the closure form."""
    app = await make_app(
        slack=slack_api, config={"patterns": {"repeat_threshold": threshold}}, people=PEOPLE
    )
    fixed, _ = await open_ticket(app, slack_api, error=ERROR, client="acme")
    assert (await close(app, slack_api, fixed, note=NOTE, kb="KB0077"))[1] == {}
    reported, _ = await open_ticket(app, slack_api, error=ERROR, client="globex")
    # Many more open reports of the error since (copies of the open one, their own prefix).
    async with app.services.sessions() as session, session.begin():
        model = (
            await session.execute(select(Ticket).where(Ticket.number == reported))
        ).scalar_one()
        keys = (
            (
                await session.execute(
                    select(TicketSignature.signature).where(TicketSignature.ticket_id == model.id)
                )
            )
            .scalars()
            .all()
        )
        columns = {c.key: getattr(model, c.key) for c in Ticket.__table__.columns if c.key != "id"}
        for n in range(1, OPEN_REPORTS):
            row = columns | {"number": f"OPEN-{n}", "prefix": "OPEN", "seq": n}
            new_id = (
                await session.execute(insert(Ticket).values(row).returning(Ticket.id))
            ).scalar_one()
            await session.execute(
                insert(TicketSignature), [{"ticket_id": new_id, "signature": k} for k in keys]
            )
    number, card = await open_ticket(app, slack_api, error=ERROR, client="initech")
    shown = flat(card)
    assert "Similar tickets" in shown and f"{fixed} (acme)" in shown, shown
    assert "Re-created the Outlook profile" in shown
    if threshold == 3:
        assert "Suggested KB article" in shown and "KB0077" in shown, shown
        view, ack = await close(app, slack_api, number, note=NOTE)
        assert "KB0077" in flat(view) and ack["response_action"] == "errors"
    answer = flat(await ephemeral(app, f"similar {number}"))
    same = answer.partition("Similar error text")[0].partition("Related resolved tickets")[0]
    assert f"{fixed} (acme)" in same and "same error: 0x800ccc0e" in same, answer
