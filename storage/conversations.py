"""Conversation references (Teams) for proactive messages: one row per (platform, key)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import ConversationRef, utcnow
from storage.tickets import _insert_ignore


async def save_reference(
    session: AsyncSession, *, platform: str, key: str, reference: dict[str, Any]
) -> None:
    """Insert or replace the reference stored under (platform, key), in one statement."""
    now = utcnow()
    stmt = _insert_ignore(session, ConversationRef).values(
        platform=platform, key=key, reference=reference, updated_at=now
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["platform", "key"],
        set_={"reference": stmt.excluded.reference, "updated_at": stmt.excluded.updated_at},
    )
    await session.execute(stmt)


async def get_reference(session: AsyncSession, *, platform: str, key: str) -> dict[str, Any] | None:
    """The stored reference, or None."""
    query = select(ConversationRef.reference).where(
        ConversationRef.platform == platform, ConversationRef.key == key
    )
    found = (await session.execute(query)).scalar_one_or_none()
    return dict(found) if found else None
