"""Signatures and the full-text index on both databases: earlier tickets get their signatures
(an upgrade), the index follows closing, reopening and edits through its triggers, and the
searches find what they should."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from handlers.diagnosis import backfill_signatures
from storage import db, error_signatures, search
from storage import tickets as repo
from storage.models import Ticket

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def _ticket(session, *, seq: int, error: str, summary: str = "s", status: str = "open"):
    return await repo.create(
        session,
        number=f"HD-{seq}",
        prefix="HD",
        seq=seq,
        status=status,
        summary=summary,
        error_text=error,
        resolution_note="Reset the Windows Update components on PC-1" if status == "closed" else "",
        reproducible="yes",
        priority="P3",
        tier="standard",
        requester_id="UANA",
        technician_id="UTECH",
        source_platform="slack",
        source_channel="C1",
        created_at=NOW,
        respond_by=NOW + timedelta(hours=8),
        resolve_by=NOW + timedelta(days=3),
    )


async def test_backfill_and_the_index_follow_the_tickets(db_url: str) -> None:
    engine = db.create_engine(db_url)
    sessions = db.session_factory(engine)
    async with sessions() as session, session.begin():
        await _ticket(session, seq=1, error="Update failed 0x80070005", status="closed")
        await _ticket(session, seq=2, error="0x80070005 again", summary="Windows Update")
        await _ticket(session, seq=3, error="")
        four = await _ticket(session, seq=4, error="AADSTS50126: bad password")
        await error_signatures.add_signatures(session, ticket_id=four.id, keys=["aadsts:50126"])
    assert await backfill_signatures(sessions, batch=2) == 2
    assert await backfill_signatures(sessions) == 0  # nothing twice
    async with sessions() as session:
        found, more = await error_signatures.with_signatures(
            session, ["hex:0x80070005"], before=10**9
        )
        assert [f.number for f in found] == ["HD-2", "HD-1"] and more == set()
        assert (
            await error_signatures.count_with_signatures(session, ["hex:0x80070005"], before=10**9)
            == 2
        )
        # Only resolved tickets are in the full-text index.
        hits = await search.ranked_with_any(session, ["0x80070005", "windows"])
        assert [h.number for h in hits] == ["HD-1"]
        stated = await search.newest_with_all(session, ["reset", "components"])
        assert [h.number for h in stated] == ["HD-1"]
    async with sessions() as session, session.begin():
        await session.execute(
            update(Ticket)
            .where(Ticket.seq == 2)
            .values(status="closed", resolution_note="Cleared the catroot2 folder on PC-2")
        )
        await session.execute(update(Ticket).where(Ticket.seq == 1).values(status="open"))
    async with sessions() as session:
        hits = await search.ranked_with_any(session, ["0x80070005"])
        assert [h.number for h in hits] == ["HD-2"]
        assert await search.newest_with_all(session, ["catroot2"]) != []
        assert await search.newest_with_all(session, ["components"]) == []
        # `kb` words must be in the summary, error text or resolution note.
        assert await search.newest_with_all(session, ["windows", "update"]) != []
    async with sessions() as session, session.begin():
        await session.execute(
            update(Ticket).where(Ticket.seq == 2).values(resolution_note="Replaced the SSD")
        )
    async with sessions() as session:
        assert await search.newest_with_all(session, ["catroot2"]) == []
        assert [h.number for h in await search.newest_with_all(session, ["ssd"])] == ["HD-2"]
    await engine.dispose()


async def test_kb_finds_a_file_name_a_host_and_an_address(db_url: str) -> None:
    """PostgreSQL's parser keeps `winword.exe` (a host name, an address) as one token in the
    stored text, where the bot's words are `winword` and `exe`: the search matches either. What
    was typed stays a value, never tsquery syntax."""
    from handlers.diagnosis import rules

    engine = db.create_engine(db_url)
    sessions = db.session_factory(engine)
    error = "Faulting application winword.exe on fs-01.corp.local for bob@example.com"
    async with sessions() as session, session.begin():
        await _ticket(session, seq=1, error=error, summary="Word crashes on start", status="closed")
        await _ticket(session, seq=2, error="winword exe", summary="Other", status="closed")

    async def found(typed: str) -> list[str]:
        async with sessions() as session:
            words = rules.terms(typed, numbers=True)
            hits = await search.newest_with_all(session, words, fields="stated", typed=typed)
            return sorted(h.number for h in hits)

    assert await found("winword.exe") == ["HD-1", "HD-2"]  # the split words match HD-2 too
    assert await found("word WINWORD.EXE") == ["HD-1"]
    assert await found("fs-01.corp.local") == ["HD-1"]
    assert await found("bob@example.com crashes") == ["HD-1"]
    for typed in ("winword.exe'|!x", "winword.exe&':*", "winword.exe\\' | 'x", "a.b:* & !c.d"):
        await found(typed)  # no syntax error: typed text is never parsed as operators
    await engine.dispose()


async def test_many_signatures_are_looked_up_in_bounded_statements(db_url: str) -> None:
    """Hundreds of signatures (a pasted dump) are found and counted like a few, and the
    statements kept for them do not grow with how many signatures a ticket had: one was built
    and kept per count seen (300 MB for counts up to 150), and SQLite refused more than 500."""
    engine = db.create_engine(db_url)
    sessions = db.session_factory(engine)
    keys = [f"hex:0x{n:x}" for n in range(1, 601)]
    async with sessions() as session, session.begin():
        one = await _ticket(session, seq=1, error="dump", status="closed")
        two = await _ticket(session, seq=2, error="dump")
        three = await _ticket(session, seq=3, error="0x258")
        await error_signatures.add_signatures(session, ticket_id=one.id, keys=keys)
        await error_signatures.add_signatures(session, ticket_id=two.id, keys=keys[::2])
        await error_signatures.add_signatures(session, ticket_id=three.id, keys=["hex:0x258"])
    async with sessions() as session:
        for count in range(1, len(keys) + 1, 37):
            await error_signatures.brief_with_signatures(session, keys[:count], before=10**9, per=3)
        brief, per_key = await error_signatures.brief_with_signatures(
            session, keys, before=10**9, per=3
        )
        assert [b.number for b in brief] == ["HD-3", "HD-2", "HD-1"]
        assert per_key["hex:0x1"] == 2 and per_key["hex:0x258"] == 2 and per_key["hex:0x2"] == 1
        assert len(brief[2].matched) == len(keys)
        found, more = await error_signatures.with_signatures(session, keys, before=10**9, per=2)
        assert [f.number for f in found] == ["HD-3", "HD-2", "HD-1"] and "hex:0x1" in more
        assert await error_signatures.count_with_signatures(session, keys, before=10**9) == 3
        assert await error_signatures.count_with_signatures(session, keys, before=3) == 2
        odd = keys[1:-1:2]  # only HD-1's
        assert await error_signatures.count_with_signatures(session, odd, before=10**9) == 1
    assert len(error_signatures._BY_SIGNATURES) <= 2 * error_signatures.CHUNK
    assert len(error_signatures._COUNTS) + len(error_signatures._IDS) <= 2 * error_signatures.CHUNK
    await engine.dispose()


async def test_brief_and_count_is_the_brief_and_the_count(db_url: str) -> None:
    """The intake's one statement (the earlier tickets listed, and the count of a frequent
    error's tickets) answers what `brief_with_signatures` and `count_with_signatures` answer,
    for one signature, several, more than one statement takes, none found, and `before`."""
    engine = db.create_engine(db_url)
    sessions = db.session_factory(engine)
    keys = [f"hex:0x{n:x}" for n in range(1, 12)]
    async with sessions() as session, session.begin():
        for seq in range(1, 16):
            ticket = await _ticket(
                session, seq=seq, error="e", status="closed" if seq % 3 else "open"
            )
            # hex:0x1 on every ticket (frequent), the others on a few.
            mine = [keys[0], *(k for i, k in enumerate(keys[1:], 2) if seq % i == 0)]
            await error_signatures.add_signatures(session, ticket_id=ticket.id, keys=mine)
    async with sessions() as session:
        for chosen in (keys[:1], keys[1:2], keys[:3], keys[2:9], keys, ["hex:0xdead"], []):
            for before in (10**9, 9, 2, 1):
                for per, cap in ((12, 100), (3, 100), (3, 5)):
                    brief, per_key = await error_signatures.brief_with_signatures(
                        session, chosen, before=before, per=per
                    )
                    both = await error_signatures.brief_and_count(
                        session, chosen, before=before, per=per, cap=cap
                    )
                    assert both[:2] == (brief, per_key), (chosen, before, per)
                    if any(n >= per for n in per_key.values()):
                        counted = await error_signatures.count_with_signatures(
                            session, list(per_key), before=before, cap=cap
                        )
                        assert both[2] == counted, (chosen, before, per, cap)
    await engine.dispose()
