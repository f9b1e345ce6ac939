"""The outbox: messages for people other than the one chatting, written with the change behind them.

Use cases call `enqueue` (or `enqueue_many` for a call to thousands) inside their own
transaction and commit it together with their change; nothing here commits. The sender
(bot/outbox.py) reads rows and writes outcomes through storage.outbox.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import Clock
from storage.enums import Lane, OutboxStatus
from storage.models import OutboxMessage
from storage.outbox import insert_outbox_rows

# Set in session.info when rows were queued, so whoever runs the session can wake the sender.
QUEUED = "gridbot_outbox_queued"


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
    """Insert many outbox rows in the caller's transaction, in chunks, without ORM objects."""
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
        await insert_outbox_rows(session, chunk)
        total += len(chunk)
    if total:
        session.info[QUEUED] = True
    return total


def broadcast(
    chat_ids: Iterable[int], kind: str, data: dict[str, Any], lane: Lane = Lane.BULK
) -> Iterable[Outgoing]:
    """The same message for many chats, for enqueue_many."""
    return (Outgoing(chat_id, kind, data, lane) for chat_id in chat_ids)
