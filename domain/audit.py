"""The audit log: security-relevant facts, written with the change (or refusal) they record."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import Clock
from storage.models import AuditEntry


def record(
    session: AsyncSession, *, clock: Clock, actor_id: int | None, action: str, **data: object
) -> AuditEntry:
    """Add an audit entry to the caller's transaction (the caller commits)."""
    entry = AuditEntry(at=clock.now(), actor_id=actor_id, action=action, data=dict(data))
    session.add(entry)
    return entry
