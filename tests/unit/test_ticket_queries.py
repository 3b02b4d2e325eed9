"""Repository queries on both databases: `mine` ordering, roles and limit; delivery dedup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage import db
from storage import tickets as repo

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


async def _ticket(session, *, seq: int, requester: str, technician: str, status: str = "open"):
    return await repo.create(
        session,
        number=f"HD-{seq}",
        prefix="HD",
        seq=seq,
        status=status,
        summary=f"s{seq}",
        reproducible="yes",
        priority="P3",
        tier="standard",
        requester_id=requester,
        technician_id=technician,
        source_platform="slack",
        source_channel="C1",
        created_at=NOW,
        respond_by=NOW + timedelta(hours=8),
        resolve_by=NOW + timedelta(days=3),
    )


async def test_mine_lists_both_roles_newest_first_once_each(db_url: str) -> None:
    engine = db.create_engine(db_url)
    sessions = db.session_factory(engine)
    async with sessions() as session, session.begin():
        await _ticket(session, seq=1, requester="UANA", technician="UTECH")
        await _ticket(session, seq=2, requester="UBO", technician="UANA")
        await _ticket(session, seq=3, requester="UANA", technician="UANA")
        await _ticket(session, seq=4, requester="UANA", technician="UTECH", status="closed")
        await _ticket(session, seq=5, requester="UBO", technician="UTECH")
        for seq in range(6, 12):
            await _ticket(session, seq=seq, requester="UANA", technician="UTECH")
    async with sessions() as session:
        lines = await repo.list_open_for(session, person_id="UANA", limit=25)
        limited = await repo.list_open_for(session, person_id="UANA", limit=3)
        nobody = await repo.list_open_for(session, person_id="UNONE")
    await engine.dispose()
    assert [line.number for line in lines] == [f"HD-{n}" for n in (11, 10, 9, 8, 7, 6, 3, 2, 1)]
    assert [line.number for line in limited] == ["HD-11", "HD-10", "HD-9"]
    assert nobody == []
    assert lines[0].resolve_by == NOW + timedelta(days=3)


async def test_claim_delivery_is_true_once(db_url: str) -> None:
    engine = db.create_engine(db_url)
    sessions = db.session_factory(engine)
    async with sessions() as session, session.begin():
        first = await repo.claim_delivery(session, "slack:view:V1")
        again = await repo.claim_delivery(session, "slack:view:V1")
    async with sessions() as session, session.begin():
        later = await repo.claim_delivery(session, "slack:view:V1")
    await engine.dispose()
    assert (first, again, later) == (True, False, False)
