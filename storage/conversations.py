"""Conversation references (Teams) for proactive messages: one row per (platform, key)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import statements
from storage.models import ConversationRef, utcnow

_REFS = statements.table_of(ConversationRef)


async def save_reference(
    session: AsyncSession, *, platform: str, key: str, reference: dict[str, Any]
) -> None:
    """Insert or replace the reference stored under (platform, key), in one statement."""
    now = utcnow()
    stmt = statements.upsert(
        session, _REFS, keys=("platform", "key"), update=("reference", "updated_at")
    )
    conn = await statements.connection(session)
    await conn.execute(
        stmt, {"platform": platform, "key": key, "reference": reference, "updated_at": now}
    )


async def get_reference(session: AsyncSession, *, platform: str, key: str) -> dict[str, Any] | None:
    """The stored reference, or None."""
    query = select(ConversationRef.reference).where(
        ConversationRef.platform == platform, ConversationRef.key == key
    )
    found = (await session.execute(query)).scalar_one_or_none()
    return dict(found) if found else None


async def latest_reference(session: AsyncSession, *, platform: str) -> dict[str, Any] | None:
    """The reference stored or refreshed last on `platform`, or None."""
    query = (
        select(ConversationRef.reference)
        .where(ConversationRef.platform == platform)
        .order_by(ConversationRef.updated_at.desc(), ConversationRef.id.desc())
        .limit(1)
    )
    found = (await session.execute(query)).scalar_one_or_none()
    return dict(found) if found else None
