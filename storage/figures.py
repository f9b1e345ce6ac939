"""The three rates' storage: the ticket events read by time, and each unit's monthly figures
rolled up from them (domain.figures decides what counts)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.attendance import NO_SHOW
from storage.dialect import insert
from storage.enums import CallStatus, ClaimStatus, MemberStatus, TicketStatus
from storage.models import (
    CallClaim,
    Department,
    DepartmentMonthFigures,
    DutyCall,
    FiguresMark,
    Member,
    Ticket,
    TicketEvent,
    UnitMonthFigures,
)

# The counts of a unit's month, in the table's order.
COUNTS = (
    "dispatched",
    "responded",
    "returned",
    "followups",
    "solved",
    "unanswered",
    "ratings",
    "satisfied",
    "rating_sum",
)


class EventFacts(NamedTuple):
    """What the figures read of a ticket event."""

    kind: str
    at: datetime
    from_status: TicketStatus | None
    data: dict[str, Any]


async def events_between(
    session: AsyncSession, start: datetime | None, end: datetime | None
) -> list[EventFacts]:
    """The ticket events with `start` <= at < `end` (None: unbounded), oldest first."""
    e = TicketEvent
    statement = select(e.kind, e.at, e.from_status, e.data).order_by(e.at, e.id)
    if start is not None:
        statement = statement.where(e.at >= start)
    if end is not None:
        statement = statement.where(e.at < end)
    return [EventFacts(*row) for row in (await session.exec(statement)).all()]


async def slice_end(
    session: AsyncSession, start: datetime | None, end: datetime, size: int
) -> datetime:
    """Where a slice of at most `size` events from `start` (None: the first) ends, at most at
    `end`: the time of the event after the first `size`, so the slice never splits the events
    of one moment. Should more than `size` share the first moment, the slice takes them all
    and ends at the next moment."""
    e = TicketEvent
    after = select(e.at).where(e.at < end).order_by(e.at, e.id)
    if start is not None:
        after = after.where(e.at >= start)
    cut = (await session.exec(after.offset(size).limit(1))).first()
    if cut is None:
        return end
    if start is None:  # the first roll-up starts at the first event
        start = (await session.exec(select(sa.func.min(e.at)).where(e.at < end))).one()
    if cut > start:
        return cut
    later = select(sa.func.min(e.at)).where(e.at > cut, e.at < end)
    return (await session.exec(later)).one() or end


async def mark_for_update(session: AsyncSession) -> datetime | None:
    """How far the events are rolled up (None: not yet), the mark's row held by this
    transaction until it ends: another roll-up waits, then starts where this one stopped.

    The row is made first if missing (ON CONFLICT DO NOTHING: of two first roll-ups, the
    second waits for the first's row), so there is always a row to hold."""
    table = FiguresMark.__table__
    await session.exec(insert(session)(table).values(id=1, upto=None).on_conflict_do_nothing())
    statement = select(FiguresMark.upto).where(FiguresMark.id == 1).with_for_update()
    return (await session.exec(statement)).one()


async def current_mark(session: AsyncSession) -> datetime | None:
    """How far the events are rolled up (None: not yet)."""
    return (await session.exec(select(FiguresMark.upto).where(FiguresMark.id == 1))).first()


async def set_mark(session: AsyncSession, upto: datetime) -> None:
    """Move the mark (held by mark_for_update) to `upto`."""
    await session.exec(sa.update(FiguresMark).where(FiguresMark.id == 1).values(upto=upto))


# The counts of a department's month, in the table's order.
DEPARTMENT_COUNTS = (
    "reported_in",
    "reported_in_time",
    "finished",
    "finished_in_time",
    "returned",
    "silent",
)
# Each kind of monthly figures: its table, the column that names whose they are, its counts.
_TABLES = {
    "unit": (UnitMonthFigures.__table__, "unit_id", COUNTS),
    "department": (DepartmentMonthFigures.__table__, "department_id", DEPARTMENT_COUNTS),
}


async def add_figures(
    session: AsyncSession, whose: str, figures: Mapping[tuple[int, int], Mapping[str, int]]
) -> None:
    """Add counts to the (month, unit or department) rows of `whose` ("unit", "department"),
    making those that are missing: one INSERT ... ON CONFLICT DO UPDATE for all of them."""
    if not figures:
        return
    table, key, names = _TABLES[whose]
    rows = [
        {"month": month, key: owner, **{name: counts.get(name, 0) for name in names}}
        for (month, owner), counts in figures.items()
    ]
    statement = insert(session)(table)
    statement = statement.on_conflict_do_update(
        index_elements=[table.c.month, table.c[key]],
        set_={name: table.c[name] + statement.excluded[name] for name in names},
    )
    await session.exec(statement, params=rows)


async def figures_of_month(
    session: AsyncSession, whose: str, month: int
) -> dict[int, dict[str, int]]:
    """Each unit's (or department's) own rolled-up counts for the month, by its id."""
    table, key, names = _TABLES[whose]
    rows = await session.exec(
        sa.select(table.c[key], *(table.c[name] for name in names)).where(table.c.month == month)
    )
    return {row[0]: dict(zip(names, row[1:], strict=True)) for row in rows.all()}


async def overdue_by_holder(
    session: AsyncSession, now: datetime, statuses: Collection[TicketStatus]
) -> dict[int, int]:
    """Tickets in `statuses` past their next deadline now, by the unit holding them.

    Read in the order of the next deadline, so through its index: the cost follows what is
    overdue (the sweep keeps that short), not the tickets there are. Grouped by the holder in
    SQL, SQLite walked the holder index instead, every ticket: 108 ms at 300,000 tickets
    against 2.3 ms (benchmarks/stats.py's city)."""
    t = Ticket
    rows = await session.exec(
        select(t.holder_unit_id)
        .where(t.next_deadline < now, t.status.in_(list(statuses)))
        .order_by(t.next_deadline)
    )
    return dict(Counter(unit for unit in rows.all() if unit is not None))


class OverdueTicket(NamedTuple):
    """A ticket past its deadline: which, where, since when."""

    id: int
    number: str
    status: TicketStatus
    holder_unit_id: int | None
    next_deadline: datetime


async def overdue_tickets(
    session: AsyncSession,
    now: datetime,
    unit_ids: Collection[int] | None,
    statuses: Collection[TicketStatus],
    limit: int,
) -> list[OverdueTicket]:
    """Tickets in `statuses` held in one of the units (None: anywhere), past their next
    deadline now, the most overdue first."""
    t = Ticket
    statement = (
        select(t.id, t.number, t.status, t.holder_unit_id, t.next_deadline)
        .where(t.next_deadline < now, t.status.in_(list(statuses)))
        .order_by(t.next_deadline, t.id)
        .limit(limit)
    )
    if unit_ids is not None:
        statement = statement.where(t.holder_unit_id.in_(list(unit_ids)))
    rows = await session.exec(statement)
    return [OverdueTicket(*row) for row in rows.all()]


class DutyCounts(NamedTuple):
    """A community's Party members on duty: registrations now, and a month's calls."""

    registered: int = 0  # pending or approved now
    approved: int = 0
    calls: int = 0  # calls starting in the month, not cancelled
    filled: int = 0  # of those, every place taken
    minutes: int = 0  # confirmed service in them
    no_shows: int = 0  # places taken in calls over that never checked in or were marked absent


async def duty_by_community(
    session: AsyncSession, start: datetime, end: datetime, now: datetime
) -> dict[int, DutyCounts]:
    """Each community's DutyCounts for the calls starting in [start, end); no-shows only of
    calls over by `now`."""
    counts: dict[int, dict[str, int]] = {}

    def add(community_id: int, **values: int) -> None:
        entry = counts.setdefault(community_id, {})
        for name, value in values.items():
            entry[name] = entry.get(name, 0) + int(value or 0)

    approved = sa.func.sum(sa.case((Member.status == MemberStatus.APPROVED, 1), else_=0))
    for community_id, registered, yes in (
        await session.exec(
            select(Member.community_id, sa.func.count(), approved)
            .where(Member.status != MemberStatus.REJECTED)
            .group_by(Member.community_id)
        )
    ).all():
        add(community_id, registered=registered, approved=yes)
    in_month = (
        DutyCall.starts_at >= start,
        DutyCall.starts_at < end,
        DutyCall.status != CallStatus.CANCELLED,
    )
    filled = sa.func.sum(sa.case((DutyCall.claimed >= DutyCall.capacity, 1), else_=0))
    for community_id, calls, full in (
        await session.exec(
            select(DutyCall.community_id, sa.func.count(), filled)
            .where(*in_month)
            .group_by(DutyCall.community_id)
        )
    ).all():
        add(community_id, calls=calls, filled=full)
    served = sa.func.sum(sa.case((CallClaim.confirmed.is_(True), CallClaim.minutes), else_=0))
    missed = sa.func.sum(sa.case((sa.and_(DutyCall.ends_at <= now, NO_SHOW), 1), else_=0))
    for community_id, minutes, no_shows in (
        await session.exec(
            select(DutyCall.community_id, served, missed)
            .join(CallClaim, CallClaim.call_id == DutyCall.id)
            .where(*in_month, CallClaim.status == ClaimStatus.CLAIMED)
            .group_by(DutyCall.community_id)
        )
    ).all():
        add(community_id, minutes=minutes, no_shows=no_shows)
    return {community_id: DutyCounts(**entry) for community_id, entry in counts.items()}


async def all_departments(session: AsyncSession) -> list[Department]:
    """Every department, by code."""
    return list((await session.exec(select(Department).order_by(Department.code))).all())
