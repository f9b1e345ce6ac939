"""What a ticket use case writes besides the ticket row: its events and its outbox messages.

Both are collected in memory and inserted with one executemany each (no ORM objects), in
the use case's own transaction, just before it commits. The sweep escalates thousands of
tickets in one transaction through the same path.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import Clock
from domain.outbox import QUEUED
from storage.enums import Lane, OutboxStatus, TicketStatus
from storage.models import OutboxMessage, Ticket, TicketEvent

_events = TicketEvent.__table__
_outbox = OutboxMessage.__table__


class Changes:
    """Events and outbox rows of one transaction, written by `write`."""

    def __init__(self, clock: Clock) -> None:
        self.now = clock.now()
        self.events: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []

    def event(
        self,
        ticket: Ticket,
        *,
        actor_id: int | None,
        kind: str,
        from_status: TicketStatus | None,
        note: str | None = None,
        **data: object,
    ) -> None:
        """A line of the ticket's history: who, when, from what to its status now, and why."""
        self.events.append(
            {
                "ticket_id": ticket.id,
                "at": self.now,
                "actor_id": actor_id,
                "kind": str(kind),
                "from_status": from_status,
                "to_status": ticket.status,
                "note": note,
                "data": dict(data),
            }
        )

    def message(self, chat_id: int, kind: str, data: dict[str, Any], lane: Lane) -> None:
        """An outbox row for someone other than the person acting."""
        self.messages.append(
            {
                "chat_id": chat_id,
                "lane": int(lane),
                "kind": kind,
                "data": data,
                "status": OutboxStatus.PENDING,
                "attempts": 0,
                "not_before": self.now,
                "created_at": self.now,
            }
        )

    async def write(self, session: AsyncSession, chunk: int = 2000) -> None:
        """Insert what was collected into the session's transaction; the caller commits."""
        await session.flush()  # the tickets the events refer to exist first
        for table, rows in ((_events, self.events), (_outbox, self.messages)):
            for start in range(0, len(rows), chunk):
                await session.exec(sa.insert(table), params=rows[start : start + chunk])
        if self.messages:
            session.info[QUEUED] = True
        self.events, self.messages = [], []

    async def commit(self, session: AsyncSession) -> None:
        await self.write(session)
        await session.commit()
