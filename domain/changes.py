"""What a ticket use case writes besides the ticket row: its events and its outbox messages.

Both are collected in memory and inserted together (storage.changes) at the end of the use
case, in its transaction (which the update's middleware or the scheduler job commits). The
sweep escalates thousands of tickets in one transaction through the same path.
"""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import Clock
from domain.outbox import QUEUED
from storage.changes import write_changes
from storage.enums import Lane, OutboxStatus, TicketStatus
from storage.models import Ticket


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
        """A line of the ticket's history: who, when, from what to its status now, and why.

        It also says which unit held the ticket when it happened (before a move hands it on),
        and, while the ticket waited to be accepted, since when and until when: the figures
        (domain.figures) are tallied from these.
        """
        held: dict[str, object] = {"unit": ticket.holder_unit_id}
        if from_status == TicketStatus.NEW:
            held["since"] = ticket.holder_since.isoformat()
            if ticket.accept_deadline is not None:
                held["due"] = ticket.accept_deadline.isoformat()
        self.events.append(
            {
                "ticket_id": ticket.id,
                "at": self.now,
                "actor_id": actor_id,
                "kind": str(kind),
                "from_status": from_status,
                "to_status": ticket.status,
                "note": note,
                "data": held | data,
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

    async def write(self, session: AsyncSession) -> None:
        """Insert what was collected into the session's transaction, after what the session
        holds; the caller commits."""
        await write_changes(session, self.events, self.messages)
        if self.messages:
            session.info[QUEUED] = True
        self.events, self.messages = [], []
