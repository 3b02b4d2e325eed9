"""Card.to_dict gives what dataclasses.asdict gave (the outbox payload format is unchanged)."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cards.model import (
    ActionId,
    Button,
    Card,
    Facts,
    Form,
    Link,
    LinkButton,
    Mention,
    Rich,
    Select,
    Text,
    Typed,
)
from storage import db
from storage import tickets as repo
from storage.models import Base, Ticket


def test_to_dict_matches_asdict_and_round_trips() -> None:
    card = Card(
        title=Rich("HD-1 (P2): ", Typed("Printer *jams*"), Mention("Ana", "ana@example.com")),
        body=[
            Facts([("Ticket", "HD-1"), ("Client", Rich(Typed("Acme"), " (gold)"))]),
            Text(Typed("Error 0x8007001F"), muted=True),
            Select("priority", "Priority", [("P1", "P1 - down")], value="P1"),
            Link("KB-1", "https://kb.example.com/1"),
        ],
        buttons=[Button(ActionId.VERIFY, "Verify identity", {"ticket": "HD-1"}, style="danger")],
        form=Form(ActionId.TICKET_CREATE, "Open ticket", {"channel": "C0HELP"}),
        fallback="HD-1",
        links=[LinkButton("Open", "https://psa.example.com/1")],
    )
    data = card.to_dict()
    assert data == {**asdict(card), "format": data["format"]}
    assert json.dumps(data) == json.dumps({**asdict(card), "format": data["format"]})
    assert Card.from_dict(json.loads(json.dumps(data))) == card


def _ticket(n: int, **extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "number": f"HD-{n}", "prefix": "HD", "seq": n, "summary": "x", "reproducible": "yes",
        "priority": "P3", "tier": "standard", "requester_id": "UANA", "technician_id": "UTECH",
        "source_platform": "slack", "respond_by": now, "resolve_by": now, **extra,
    }  # fmt: skip


async def test_card_and_thread_in_one_update_keep_a_known_thread(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    sessions = db.session_factory(engine)
    try:
        async with sessions() as session, session.begin():
            first = await repo.create(session, **_ticket(1, source_channel="C0HELP"))
            second = await repo.create(
                session, **_ticket(2, source_channel="C0OLD", source_thread="111.1")
            )
        async with sessions() as session, session.begin():
            for ticket in (first, second):
                await repo.set_card_and_thread(
                    session, ticket_id=ticket.id, channel="C0NEW", message="222.2", thread="222.2"
                )
        async with sessions() as session:
            one = await session.get(Ticket, first.id)
            two = await session.get(Ticket, second.id)
            assert one is not None and two is not None
            assert (one.card_channel, one.card_message) == ("C0NEW", "222.2")
            assert (one.source_channel, one.source_thread) == ("C0NEW", "222.2")
            assert (two.card_channel, two.card_message) == ("C0NEW", "222.2")
            assert (two.source_channel, two.source_thread) == ("C0OLD", "111.1")
    finally:
        await engine.dispose()
