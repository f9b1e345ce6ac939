"""The inbound updates table: what was received, what was handled (storage.models.InboundUpdate).

Each function runs in the caller's session; the caller commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import InboundUpdate

_inbound = InboundUpdate.__table__
ERROR_LIMIT = 500


def _insert(session: AsyncSession) -> Any:
    """INSERT in the dialect of the session's database (both have ON CONFLICT)."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return (postgresql if dialect == "postgresql" else sqlite).insert(_inbound)


async def record_received(
    session: AsyncSession, bot_id: int, updates: Sequence[tuple[int, str]], now: datetime
) -> set[int]:
    """Keep updates not seen before (update_id, its JSON text); the ids that were new."""
    if not updates:
        return set()
    statement = (
        _insert(session)
        .values(
            [
                {"bot_id": bot_id, "update_id": update_id, "payload": payload, "received_at": now}
                for update_id, payload in updates
            ]
        )
        .on_conflict_do_nothing(index_elements=["bot_id", "update_id"])
        .returning(_inbound.c.update_id)
    )
    result = await session.exec(statement)
    return {row[0] for row in result}


@cache
def _claim_statement(dialect: str) -> Any:
    """The claim's upsert, built once per database kind: building it costs far more than
    running it, and every update runs it."""
    insert = (postgresql if dialect == "postgresql" else sqlite).insert(_inbound)
    statement = insert.values(
        bot_id=sa.bindparam("bot_id"),
        update_id=sa.bindparam("update_id"),
        received_at=sa.bindparam("now"),
        handled_at=sa.bindparam("now"),
        error=sa.bindparam("error"),
    )
    return statement.on_conflict_do_update(
        index_elements=["bot_id", "update_id"],
        set_={
            "handled_at": statement.excluded.handled_at,
            "error": statement.excluded.error,
            "payload": None,
        },
        where=_inbound.c.handled_at.is_(None),
    ).returning(_inbound.c.update_id)


async def claim_update(
    session: AsyncSession, bot_id: int, update_id: int, now: datetime, error: str | None = None
) -> bool:
    """Mark an update handled in the session's transaction; False if it already was.

    Inserts the row if the update was never recorded (webhook mode keeps no receipt). On
    PostgreSQL, a second transaction claiming the same update waits for the first and then
    finds it handled.
    """
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    result = await session.exec(
        _claim_statement(dialect),
        params={
            "bot_id": bot_id,
            "update_id": update_id,
            "now": now,
            "error": error[:ERROR_LIMIT] if error else None,
        },
    )
    return result.first() is not None


async def unhandled(
    session: AsyncSession, bot_id: int, *, received_before: datetime, limit: int = 1000
) -> list[str]:
    """The JSON of updates received before a time and never handled, oldest first."""
    result = await session.exec(
        sa.select(_inbound.c.payload)
        .where(
            _inbound.c.bot_id == bot_id,
            _inbound.c.handled_at.is_(None),
            _inbound.c.received_at < received_before,
        )
        .order_by(_inbound.c.update_id)
        .limit(limit)
    )
    return [row[0] for row in result if row[0] is not None]


async def prune_handled(session: AsyncSession, *, before: datetime) -> int:
    """Forget updates received before a time and handled (Telegram redelivers for a day at
    most); by the received_at index, so the cost grows with what is forgotten."""
    result = await session.exec(
        sa.delete(_inbound).where(
            _inbound.c.received_at < before, _inbound.c.handled_at.is_not(None)
        )
    )
    return result.rowcount
