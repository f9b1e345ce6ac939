"""What the holders' queues ask for (domain.queues): the note of a ticket's latest event of a
kind."""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import TicketEvent


async def latest_event_note(session: AsyncSession, ticket_id: int, kind: str) -> str | None:
    """The note of the ticket's latest event of this kind (None if it has none, or no note)."""
    return (
        await session.exec(
            select(TicketEvent.note)
            .where(TicketEvent.ticket_id == ticket_id, TicketEvent.kind == kind)
            .order_by(TicketEvent.id.desc())
            .limit(1)
        )
    ).first()
