"""The outbox: messages for people other than the one chatting, written with the change behind them.

Use cases call `enqueue` (or `enqueue_many` for a call to thousands) inside their own
transaction and commit it together with their change; nothing here commits. The sender
(bot/outbox.py) reads rows with `fetch_pending` and writes outcomes with `record_results`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import Clock
from storage.bulk import insert_rows
from storage.enums import Lane, OutboxStatus
from storage.models import OutboxMessage, Person

# Set in session.info when rows were queued, so whoever runs the session can wake the sender.
QUEUED = "gridbot_outbox_queued"

_outbox = OutboxMessage.__table__
_person = Person.__table__
# Spelled as a literal so SQLite and PostgreSQL match it to the partial index ix_outbox_pending.
_PENDING = sa.text("outbox.status = 'pending'")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message for enqueue_many."""

    chat_id: int
    kind: str
    data: dict[str, Any]
    lane: Lane = Lane.BULK
    not_before: datetime | None = None


def enqueue(
    session: AsyncSession,
    *,
    chat_id: int,
    kind: str,
    data: dict[str, Any],
    lane: Lane = Lane.INTERACTIVE,
    not_before: datetime | None = None,
    clock: Clock,
) -> OutboxMessage:
    """Add one outbox row to the caller's session; the caller commits it with its change."""
    now = clock.now()
    message = OutboxMessage(
        chat_id=chat_id,
        lane=int(Lane(lane)),
        kind=kind,
        data=data,
        status=OutboxStatus.PENDING,
        attempts=0,
        not_before=not_before or now,
        created_at=now,
    )
    session.add(message)
    session.info[QUEUED] = True
    return message


async def enqueue_many(
    session: AsyncSession,
    items: Iterable[Outgoing],
    *,
    clock: Clock,
    chunk_size: int = 5000,
) -> int:
    """Insert many outbox rows in the caller's transaction (storage.bulk: COPY on PostgreSQL,
    executemany on SQLite; no ORM objects)."""
    now = clock.now()
    rows = (
        {
            "chat_id": item.chat_id,
            "lane": int(Lane(item.lane)),
            "kind": item.kind,
            "data": item.data,
            "status": OutboxStatus.PENDING,
            "attempts": 0,
            "not_before": item.not_before or now,
            "created_at": now,
        }
        for item in items
    )
    total = 0
    while chunk := list(islice(rows, chunk_size)):
        await insert_rows(session, _outbox, chunk)
        total += len(chunk)
    if total:
        session.info[QUEUED] = True
    return total


def broadcast(
    chat_ids: Iterable[int], kind: str, data: dict[str, Any], lane: Lane = Lane.BULK
) -> Iterable[Outgoing]:
    """The same message for many chats, for enqueue_many."""
    return (Outgoing(chat_id, kind, data, lane) for chat_id in chat_ids)


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
