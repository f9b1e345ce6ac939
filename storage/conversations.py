"""Durable conversation (FSM) state: one row per chat/user key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

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


# Written once per dialog step, so built once: the same text on SQLite and PostgreSQL, and
# half the cost of building the upsert each time.
_UPSERT = sa.text(
    'INSERT INTO conversation_state ("key", state, data, updated_at) '
    "VALUES (:key, :state, :data, :updated_at) "
    'ON CONFLICT ("key") DO UPDATE SET state = excluded.state, data = excluded.data, '
    "updated_at = excluded.updated_at"
).bindparams(
    sa.bindparam("data", type_=_table.c.data.type),
    sa.bindparam("updated_at", type_=_table.c.updated_at.type),
)


async def save(
    session: AsyncSession, key: str, now: datetime, state: str | None, data: dict[str, Any]
) -> None:
    """Store the whole conversation; an empty one (no state, no data) is deleted instead."""
    if state is None and not data:
        await session.exec(sa.delete(_table).where(_table.c.key == key))
        return
    params = {"key": key, "state": state, "data": data, "updated_at": now}
    await session.exec(_UPSERT, params=params)
