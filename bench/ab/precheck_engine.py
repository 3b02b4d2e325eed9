"""B: the redelivery look before a change read through the engine's one SQLite connection
(as before the sixteenth session); A: through the file's reader of its own (now)."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from storage import inbound

NOW = inbound.recorded_before


async def through_the_engine(sessions: Any, key: str) -> inbound.Claimed | None:
    engine = getattr(sessions, "kw", {}).get("bind")
    if isinstance(engine, AsyncEngine):
        async with engine.connect() as conn:
            row = (await conn.execute(inbound._SEEN, {"key": key})).first()
        return None if row is None else inbound.Claimed(answer=row.answer, at=row.at)
    async with sessions() as session:
        return await inbound.recorded(session, key)


def apply() -> None:
    inbound.recorded_before = through_the_engine


def undo() -> None:
    inbound.recorded_before = NOW
