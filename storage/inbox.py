"""The inbound updates table: what was received, what was handled (storage.models.InboundUpdate).

Each function runs in the caller's session; the caller commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.dialect import Driver, db_time
from storage.models import InboundUpdate

_inbound = InboundUpdate.__table__
ERROR_LIMIT = 500


_RECORD = (
    "INSERT INTO inbound_update (bot_id, update_id, payload, received_at) VALUES {rows} "
    "ON CONFLICT (bot_id, update_id) DO NOTHING RETURNING update_id"
)


@cache
def _record_sql(count: int) -> str:
    return _RECORD.format(rows=", ".join(["(?, ?, ?, ?)"] * count))


async def record_received(
    session: AsyncSession, bot_id: int, updates: Sequence[tuple[int, str]], now: datetime
) -> set[int]:
    """Keep updates not seen before (update_id, its JSON text); the ids that were new.

    One statement for a poll's whole batch (up to 100 updates), straight to the driver like
    the claim below."""
    if not updates:
        return set()
    db = await Driver.of(session)
    stamp = db_time(now, db.dialect)
    params = [
        value for update_id, payload in updates for value in (bot_id, update_id, payload, stamp)
    ]
    return {row[0] for row in await db.rows(_record_sql(len(updates)), params)}


# The claim, straight to the driver in the session's transaction: every update runs it, and
# through SQLAlchemy's statement machinery it cost about 100 us of the event loop where the
# database takes a few (storage.dialect). The upsert inserts the row of an update never
# recorded (webhook mode keeps no receipt) and returns nothing for one already handled.
_CLAIM = (
    "INSERT INTO inbound_update (bot_id, update_id, received_at, handled_at, error) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (bot_id, update_id) DO UPDATE SET "
    "handled_at = excluded.handled_at, error = excluded.error, payload = NULL "
    "WHERE inbound_update.handled_at IS NULL RETURNING update_id"
)


async def claim_update(
    session: AsyncSession, bot_id: int, update_id: int, now: datetime, error: str | None = None
) -> bool:
    """Mark an update handled in the session's transaction; False if it already was.

    On PostgreSQL, a second transaction claiming the same update waits for the first and then
    finds it handled.
    """
    db = await Driver.of(session)
    stamp = db_time(now, db.dialect)
    rows = await db.rows(
        _CLAIM, (bot_id, update_id, stamp, stamp, error[:ERROR_LIMIT] if error else None)
    )
    return bool(rows)


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
