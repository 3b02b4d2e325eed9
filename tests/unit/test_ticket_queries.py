"""Repository queries on both databases: `mine` ordering, roles and limit; delivery dedup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from storage import db
from storage import tickets as repo

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


async def _ticket(
    session, *, seq: int, requester: str, technician: str, status: str = "open", email: str = ""
):
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
        requester_email=email,
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


async def test_mine_lists_tickets_on_file_by_the_e_mail_in_any_case(db_url: str) -> None:
    """A requester on file by e-mail: found by the e-mail given in any case, once each; no
    e-mail finds none of the tickets on file without one. A ticket on file by a chat id (HD-2)
    is not found by its e-mail: that address may be someone else's by now."""
    engine = db.create_engine(db_url)
    sessions = db.session_factory(engine)
    async with sessions() as session, session.begin():
        await _ticket(
            session, seq=1, requester="Ana@Example.com", technician="T", email="Ana@Example.com"
        )
        await _ticket(session, seq=2, requester="UANA", technician="T", email="ana@example.com")
        await _ticket(
            session, seq=3, requester="bo@example.com", technician="T", email="bo@example.com"
        )
        await _ticket(
            session,
            seq=4,
            requester="ana@example.com",
            technician="T",
            email="ana@example.com",
            status="closed",
        )
        await _ticket(session, seq=5, requester="UPAT", technician="T")
    async with sessions() as session:
        ana = await repo.list_open_for(session, person_id="29:1ana", email="ANA@example.COM")
        no_email = await repo.list_open_for(session, person_id="29:1pat", email="")
        blank = await repo.list_open_for(session, person_id="29:1pat", email="  ")
    await engine.dispose()
    assert [line.number for line in ana] == ["HD-1"]
    assert no_email == blank == []


async def test_mine_by_e_mail_is_an_index_range_scan(db_url: str) -> None:
    """Every branch of `mine` reads an index, the one by e-mail too (no scan of the table)."""
    engine = db.create_engine(db_url)
    sessions = db.session_factory(engine)
    async with sessions() as session, session.begin():
        for seq in range(1, 41):
            await _ticket(session, seq=seq, requester=f"U{seq}", technician="T", email=f"p{seq}@x")
    query = repo._open_for(25, by_email=True).params(person="U1", alias="U1", email="P1@X")
    sqlite = db_url.startswith("sqlite")
    async with engine.connect() as conn:
        if not sqlite:
            await conn.execute(text("ANALYZE tickets"))
            await conn.execute(text("SET enable_seqscan = off"))  # 40 rows: a scan is cheaper
        sql = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        explain = "EXPLAIN QUERY PLAN" if sqlite else "EXPLAIN"
        rows = (await conn.execute(text(f"{explain} {sql}"))).all()
    await engine.dispose()
    plan = "\n".join(str(row[-1]) for row in rows)
    if sqlite:
        assert "USING INDEX ix_tickets_requester_email_open (<expr>=? AND status=?)" in plan, plan
        assert "SCAN tickets\n" not in plan + "\n", plan
    else:
        assert "ix_tickets_requester_email_open" in plan and "Seq Scan" not in plan, plan


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
