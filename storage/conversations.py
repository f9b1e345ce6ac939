"""Durable conversation (FSM) state: one row per chat/user key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.dialect import insert_for
from storage.models import ConversationState

_table = ConversationState.__table__


async def load(session: AsyncSession, key: str) -> tuple[str | None, dict[str, Any]]:
    """The stored state and data for a key; (None, {}) when nothing is stored."""
    row = (
        await session.exec(sa.select(_table.c.state, _table.c.data).where(_table.c.key == key))
    ).first()
    if row is None:
        return None, {}
    return row.state, dict(row.data or {})


async def save(
    session: AsyncSession, key: str, now: datetime, state: str | None, data: dict[str, Any]
) -> None:
    """Store the whole conversation; an empty one (no state, no data) is deleted instead."""
    if state is None and not data:
        await session.exec(sa.delete(_table).where(_table.c.key == key))
        return
    row = {"key": key, "state": state, "data": data, "updated_at": now}
    statement = insert_for(session)(_table).values(**row)
    statement = statement.on_conflict_do_update(
        index_elements=[_table.c.key], set_={"state": state, "data": data, "updated_at": now}
    )
    await session.exec(statement)
