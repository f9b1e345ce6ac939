"""The few statements that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import TicketCounter


def insert_for(session: AsyncSession) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT (both engines support it)."""
    dialect = session.bind.dialect.name if session.bind else "sqlite"
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def next_in_sequence(session: AsyncSession, prefix: str) -> int:
    """1, 2, 3... per prefix, atomically, in the caller's transaction."""
    table = TicketCounter.__table__
    statement = (
        insert_for(session)(table)
        .values(prefix=prefix, last=1)
        .on_conflict_do_update(index_elements=[table.c.prefix], set_={"last": table.c.last + 1})
        .returning(table.c.last)
    )
    return (await session.exec(statement)).scalar_one()
