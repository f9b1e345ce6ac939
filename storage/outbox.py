"""The outbox table as the sender reads and writes it: the rows due now, by lane then age,
with the recipient's language; and the outcome of each send."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.bulk import insert_rows
from storage.enums import OutboxStatus
from storage.models import OutboxMessage, Person

_outbox = OutboxMessage.__table__
_person = Person.__table__


async def insert_outbox_rows(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Many rows at once in the session's transaction (storage.bulk: COPY on PostgreSQL,
    executemany on SQLite; no ORM objects)."""
    await insert_rows(session, _outbox, rows)


# Spelled as a literal so SQLite and PostgreSQL match it to the partial index ix_outbox_pending.
_PENDING = sa.text("outbox.status = 'pending'")


@dataclass(slots=True)
class PendingRow:
    """A row the sender may send now, with the recipient's language if they are a Person."""

    id: int
    chat_id: int
    lane: int
    kind: str
    data: dict[str, Any]
    attempts: int
    language: str | None


def pending_query(
    *, now: datetime, limit: int, exclude_chats: Collection[int] = ()
) -> sa.Select[Any]:
    """The sender's read: pending rows due by `now`, by lane then age, skipping some chats.

    The recipient's language comes along (a join on person.telegram_id).
    """
    statement = (
        sa.select(
            _outbox.c.id,
            _outbox.c.chat_id,
            _outbox.c.lane,
            _outbox.c.kind,
            _outbox.c.data,
            _outbox.c.attempts,
            _person.c.language,
        )
        .select_from(_outbox.outerjoin(_person, _person.c.telegram_id == _outbox.c.chat_id))
        .where(_PENDING, _outbox.c.not_before <= now)
        .order_by(_outbox.c.lane, _outbox.c.id)
        .limit(limit)
    )
    if exclude_chats:
        statement = statement.where(_outbox.c.chat_id.not_in(list(exclude_chats)))
    return statement


async def fetch_pending(
    session: AsyncSession,
    *,
    now: datetime,
    limit: int,
    exclude_chats: Collection[int] = (),
) -> list[PendingRow]:
    """Run pending_query; rows as PendingRow."""
    result = await session.exec(pending_query(now=now, limit=limit, exclude_chats=exclude_chats))
    return [PendingRow(*row) for row in result]


@dataclass(slots=True)
class Result:
    """What happened to one row: its new status and bookkeeping."""

    id: int
    status: OutboxStatus
    attempts: int
    not_before: datetime
    sent_at: datetime | None = None
    telegram_message_id: int | None = None
    error: str | None = None


async def record_results(session: AsyncSession, results: Sequence[Result]) -> None:
    """Write outcomes by primary key in one executemany; the caller commits."""
    if not results:
        return
    await session.exec(
        sa.update(OutboxMessage),
        params=[
            {
                "id": r.id,
                "status": r.status,
                "attempts": r.attempts,
                "not_before": r.not_before,
                "sent_at": r.sent_at,
                "telegram_message_id": r.telegram_message_id,
                "error": r.error,
            }
            for r in results
        ],
    )


async def count_by_status(session: AsyncSession) -> dict[OutboxStatus, int]:
    """How many rows are pending, sent and failed."""
    result = await session.exec(
        sa.select(_outbox.c.status, sa.func.count()).group_by(_outbox.c.status)
    )
    counts = dict.fromkeys(OutboxStatus, 0)
    for status, count in result:
        counts[OutboxStatus(status)] = count
    return counts
