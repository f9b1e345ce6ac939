"""What the deadline sweep claims and writes back: the tickets and department summonses whose
first alert is due, oldest first, as the session's own ORM objects.

Several scheduler processes may sweep one PostgreSQL database: there a batch is claimed with
`FOR UPDATE SKIP LOCKED`, so another scheduler's batch is skipped, not waited for, and never
taken twice. SQLite has one writer at a time, and a batch's transaction (BEGIN IMMEDIATE)
holds the whole database until it commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.bulk import update_rows
from storage.models import Ticket, TicketSummons

_Due = TypeVar("_Due", Ticket, TicketSummons)

_TICKETS = sa.inspect(Ticket)
# Every mapped column of a ticket: attribute name -> column name; and the primary key's.
_TICKET_COLUMNS = {attr.key: attr.columns[0].name for attr in _TICKETS.column_attrs}
(_KEY_COLUMN,) = _TICKETS.primary_key
_TICKET_KEY = _TICKETS.get_property_by_column(_KEY_COLUMN).key


def claims_skip_locked(session: AsyncSession) -> bool:
    """Whether a batch claimed through this session skips rows that another transaction holds,
    so that several sessions (or processes) can sweep side by side: PostgreSQL."""
    return session.bind.dialect.name == "postgresql"


async def _claim(session: AsyncSession, model: type[_Due], now: datetime, limit: int) -> list[_Due]:
    statement = (
        select(model)
        .where(col(model.alert_at) <= now)
        .order_by(col(model.alert_at), col(model.id))
        .limit(limit)
        # The rows as they are now, not as this session's identity map last saw them.
        .execution_options(populate_existing=True)
    )
    if claims_skip_locked(session):
        # Another scheduler's batch is skipped, not waited for (and never taken twice); a row
        # it handled meanwhile is read again, and left out once no longer due.
        statement = statement.with_for_update(skip_locked=True)
    return list((await session.exec(statement)).all())


async def claim_due_tickets(session: AsyncSession, now: datetime, limit: int) -> list[Ticket]:
    """Up to `limit` tickets whose first alert is due by `now`, earliest first, held by this
    transaction until it ends."""
    return await _claim(session, Ticket, now, limit)


async def claim_due_summonses(
    session: AsyncSession, now: datetime, limit: int
) -> list[TicketSummons]:
    """Up to `limit` department summonses whose first alert is due by `now`, earliest first,
    held by this transaction until it ends."""
    return await _claim(session, TicketSummons, now, limit)


async def save_swept_tickets(session: AsyncSession, tickets: Sequence[Ticket]) -> None:
    """Write every column the sweep's steps set in these tickets (the session's own objects)
    into the session's transaction.

    The columns are those the ORM saw set, whichever step set them: a column that a step
    starts setting is written with the others, on either path.
    """
    if not claims_skip_locked(session):
        # SQLite: the unit of work writes them, as every other change. The bulk path below is
        # no faster here: benchmarks/sweep.py's 10,000 escalations at 1,000,000 open took
        # 2.33-2.53 s of the process's CPU this way, 2.43-2.51 s through it.
        await session.flush()
        return
    # PostgreSQL: one COPY and one UPDATE per batch (storage.bulk) rather than an UPDATE per
    # ticket. benchmarks/sweep.py's 10,000 escalations at 1,000,000 open (target: under 3 s)
    # took 3.04-3.12 s this way against 3.19-3.28 s through the unit of work and 3.11-3.27 s
    # through the ORM's bulk UPDATE by primary key (the process's CPU: 2.10-2.14 s against
    # 2.21-2.35 s and 2.28-2.36 s).
    states = [sa.inspect(ticket) for ticket in tickets]
    changed: set[str] = set()
    for state in states:
        changed |= _TICKET_COLUMNS.keys() - state.unmodified
    if not changed:
        return
    keys = [_TICKET_KEY, *sorted(changed - {_TICKET_KEY})]
    # Every row with the same columns, as one statement takes them: a column one ticket's
    # steps left alone is written as it was read (the row is held by this transaction).
    rows: list[dict[str, Any]] = [
        {_TICKET_COLUMNS[key]: state.dict[key] for key in keys} for state in states
    ]
    # Written here, so the session must not write them again when it flushes.
    for ticket in tickets:
        session.expunge(ticket)
    await update_rows(session, Ticket.__table__, rows, key=_KEY_COLUMN.name)
