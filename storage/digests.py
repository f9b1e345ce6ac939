"""What the daily digest (domain.digests) is made of: who hears it, what each unit holds at each
level (open, overdue, due today) and the most urgent of those tickets.

The units are read 500 at a time, so that no statement carries more values than a database
takes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.enums import AssignmentStatus, Role
from storage.models import Category, OrgUnit, Person, RoleAssignment, Ticket

CHUNK = 500


class DigestHolder(NamedTuple):
    """Someone who hears a unit's digest: their role there, their chat and the unit."""

    role: Role
    chat_id: int
    unit: OrgUnit


async def digest_holders(session: AsyncSession, roles: Collection[Role]) -> list[DigestHolder]:
    """Every active assignment of one of `roles` to a unit, in the order they were made (one
    row per assignment, so the same person and role may come twice)."""
    rows = await session.exec(
        select(RoleAssignment.role, Person.telegram_id, OrgUnit)
        .join(Person, Person.id == RoleAssignment.person_id)
        .join(OrgUnit, OrgUnit.id == RoleAssignment.unit_id)
        .where(
            RoleAssignment.role.in_(roles),
            RoleAssignment.status == AssignmentStatus.ACTIVE,
        )
        .order_by(RoleAssignment.id)
    )
    return [DigestHolder(*row) for row in rows.all()]


class HeldCounts(NamedTuple):
    """How many tickets a unit holds at one level: all, past their deadline, due today."""

    open: int
    overdue: int
    due_today: int


async def held_counts(
    session: AsyncSession,
    unit_ids: Sequence[int],
    statuses: Collection[str],
    *,
    now: datetime,
    end_of_day: datetime,
) -> dict[tuple[int, str], HeldCounts]:
    """(unit id, level) -> the counts of the tickets in one of `statuses` that the unit holds
    at that level, for the units that hold any; a deadline before `now` is overdue, one from
    `now` until `end_of_day` is due today."""
    t = Ticket.__table__
    figures: dict[tuple[int, str], HeldCounts] = {}
    for start in range(0, len(unit_ids), CHUNK):
        chunk = unit_ids[start : start + CHUNK]
        rows = await session.exec(
            sa.select(
                t.c.holder_unit_id,
                t.c.level,
                sa.func.count(),
                sa.func.sum(sa.case((t.c.next_deadline < now, 1), else_=0)),
                sa.func.sum(
                    sa.case(
                        (sa.and_(t.c.next_deadline >= now, t.c.next_deadline < end_of_day), 1),
                        else_=0,
                    )
                ),
            )
            .where(t.c.holder_unit_id.in_(chunk), t.c.status.in_(statuses))
            .group_by(t.c.holder_unit_id, t.c.level)
        )
        for unit_id, level, count, overdue, due_today in rows:
            figures[(unit_id, level)] = HeldCounts(
                int(count), int(overdue or 0), int(due_today or 0)
            )
    return figures


class UrgentTicket(NamedTuple):
    """A ticket as a digest lists it."""

    id: int
    number: str
    holder_unit_id: int
    level: str
    next_deadline: datetime | None
    category_zh: str
    category_en: str


async def most_urgent(
    session: AsyncSession, keys: Sequence[tuple[int, str]], statuses: Collection[str], *, per: int
) -> list[UrgentTicket]:
    """Up to `per` tickets in one of `statuses` for each (unit id, level) of the units in
    `keys`, soonest deadline first (none last) and by id, in one windowed query per chunk;
    listed by rank, so each (unit, level)'s come in their order."""
    found: list[UrgentTicket] = []
    t = Ticket.__table__
    c = Category.__table__
    for start in range(0, len(keys), CHUNK):
        units = sorted({k[0] for k in keys[start : start + CHUNK]})
        rank = (
            sa.func.row_number()
            .over(
                partition_by=(t.c.holder_unit_id, t.c.level),
                order_by=(t.c.next_deadline.is_(None), t.c.next_deadline, t.c.id),
            )
            .label("rank")
        )
        inner = (
            sa.select(
                t.c.id,
                t.c.number,
                t.c.holder_unit_id,
                t.c.level,
                t.c.next_deadline,
                c.c.name_zh,
                c.c.name_en,
                rank,
            )
            .join(c, c.c.id == t.c.category_id)
            .where(t.c.holder_unit_id.in_(units), t.c.status.in_(statuses))
            .subquery()
        )
        rows = await session.exec(
            sa.select(inner).where(inner.c.rank <= per).order_by(inner.c.rank)
        )
        found.extend(
            UrgentTicket(
                row.id,
                row.number,
                row.holder_unit_id,
                row.level,
                row.next_deadline,
                row.name_zh,
                row.name_en,
            )
            for row in rows
        )
    return found
