"""Durable conversation (FSM) state: one row per chat/user key, upserted."""

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


async def save(session: AsyncSession, key: str, now: datetime, **values: Any) -> None:
    """Upsert `state` and/or `data` for a key; an empty conversation is deleted instead."""
    insert = insert_for(session)
    row = {"key": key, "state": None, "data": {}, "updated_at": now, **values}
    stmt = insert(_table).values(**row)
    stmt = stmt.on_conflict_do_update(
        index_elements=[_table.c.key], set_={**values, "updated_at": now}
    )
    await session.exec(stmt)
    # Forget conversations that hold nothing any more, so the table stays small.
    await session.exec(
        sa.delete(_table).where(
            _table.c.key == key, _table.c.state.is_(None), sa.cast(_table.c.data, sa.Text) == "{}"
        )
    )
