"""`patterns.repeat_threshold` above the count a new ticket reads per error (100), over Slack
HTTP on SQLite and PostgreSQL: the ticket that reaches the threshold is still a pattern."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select

from storage.models import Ticket, TicketSignature
from tests.fakes.slack_api import FakeSlack
from tests.http.diagnosis_support import PEOPLE, flat, open_ticket

ERROR = "Windows Update failed with error 0x80070005"
THRESHOLD = 120


async def test_a_threshold_above_one_hundred_still_makes_a_pattern(
    make_app: Any, slack_api: FakeSlack
) -> None:
    """SPEC: `repeat_threshold` counts every ticket with the same error, the new one included;
    the ticket that reaches it says it is a pattern, also when that is more than 100."""
    app = await make_app(
        slack=slack_api, config={"patterns": {"repeat_threshold": THRESHOLD}}, people=PEOPLE
    )
    first, card = await open_ticket(app, slack_api, error=ERROR, client="acme")
    assert "Pattern" not in flat(card)
    # Earlier reports of the error, copies of the first (their own prefix, so the numbering
    # of tickets opened in chat goes on as it was): with the first, THRESHOLD - 2 of them.
    async with app.services.sessions() as session, session.begin():
        model = (await session.execute(select(Ticket).where(Ticket.number == first))).scalar_one()
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
        for n in range(1, THRESHOLD - 2):
            row = columns | {"number": f"OLD-{n}", "prefix": "OLD", "seq": n}
            new_id = (
                await session.execute(insert(Ticket).values(row).returning(Ticket.id))
            ).scalar_one()
            await session.execute(
                insert(TicketSignature),
                [{"ticket_id": new_id, "signature": k} for k in keys],
            )
    _, card = await open_ticket(app, slack_api, error=ERROR, client="acme")
    # THRESHOLD - 1 tickets so far: not yet.
    assert "Pattern" not in flat(card), flat(card)
    number, card = await open_ticket(app, slack_api, error=ERROR, client="acme")
    shown = flat(card)
    # More than the card counts up to (100): "one of more than 100 tickets".
    assert f"Pattern: {number} is one of more than 100 tickets with this error" in shown, shown
