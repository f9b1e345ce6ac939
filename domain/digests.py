"""The daily digest: each grid leader, community secretary and street officer hears what their
unit holds (open, overdue, due today) with the most urgent tickets to open.

Sent once per working day, at a set local time or at the first sweep after it (so a bot that
was down at that hour still sends it); the day is claimed by inserting a JobRun row in the
transaction that queues the digests, so two schedulers never send it twice (the second waits
for the first's commit, then finds the day taken; if the first rolls back, the second sends).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, time, timedelta

import sqlalchemy as sa
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import Clock
from domain.deadlines import Timing
from domain.once import claim_once
from domain.outbox import Outgoing, enqueue_many
from domain.roles import digest_roles, powers
from storage.enums import OPEN_STATUSES, AssignmentStatus, Lane, Role, TicketStatus
from storage.models import Category, OrgUnit, Person, RoleAssignment, Ticket

logger = logging.getLogger(__name__)

LISTED = 10
# Waiting on the holder (a resolved ticket waits on the resident).
HELD = [s.value for s in OPEN_STATUSES if s != TicketStatus.RESOLVED]


async def _unit_figures(
    session: AsyncSession, unit_ids: list[int], now: datetime, end_of_day: datetime
) -> dict[int, dict]:
    t = Ticket.__table__
    figures: dict[int, dict] = {}
    for start in range(0, len(unit_ids), 500):
        chunk = unit_ids[start : start + 500]
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
            .where(t.c.holder_unit_id.in_(chunk), t.c.status.in_(HELD))
            .group_by(t.c.holder_unit_id, t.c.level)
        )
        for unit_id, level, count, overdue, due_today in rows:
            figures[(unit_id, level)] = {
                "open": int(count),
                "overdue": int(overdue or 0),
                "due_today": int(due_today or 0),
            }
    return figures


async def _most_urgent(
    session: AsyncSession, keys: list[tuple[int, str]], now: datetime
) -> dict[tuple[int, str], list[dict]]:
    """Up to LISTED tickets per (unit, level), soonest deadline first (one windowed query)."""
    listed: dict[tuple[int, str], list[dict]] = defaultdict(list)
    t = Ticket.__table__
    c = Category.__table__
    for start in range(0, len(keys), 500):
        units = sorted({k[0] for k in keys[start : start + 500]})
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
            .where(t.c.holder_unit_id.in_(units), t.c.status.in_(HELD))
            .subquery()
        )
        rows = await session.exec(
            sa.select(inner).where(inner.c.rank <= LISTED).order_by(inner.c.rank)
        )
        for row in rows:
            deadline = row.next_deadline
            if deadline is not None and deadline.tzinfo is None:
                deadline = deadline.replace(tzinfo=now.tzinfo)
            listed[(row.holder_unit_id, row.level)].append(
                {
                    "ticket_id": row.id,
                    "number": row.number,
                    "category_zh": row.name_zh,
                    "category_en": row.name_en,
                    "next_deadline": deadline.isoformat() if deadline else None,
                    "overdue": bool(deadline and deadline < now),
                }
            )
    return listed


async def send_digests(
    *, session: AsyncSession, clock: Clock, timing: Timing, at: time
) -> int | None:
    """Queue today's digests if it is a working day, `at` has passed and nobody sent them yet.

    Returns how many were queued, or None when it was not the time (or already done).
    """
    now = clock.now()
    local = now.astimezone(timing.calendar.tz)
    today = local.date()
    if local.time() < at or not timing.calendar.is_working_day(today):
        return None
    if not await claim_once(session, f"digest:{today.isoformat()}", now):
        return None
    holders = (
        await session.exec(
            select(RoleAssignment.role, Person.telegram_id, OrgUnit)
            .join(Person, Person.id == RoleAssignment.person_id)
            .join(OrgUnit, OrgUnit.id == RoleAssignment.unit_id)
            .where(
                RoleAssignment.role.in_(digest_roles()),
                RoleAssignment.status == AssignmentStatus.ACTIVE,
            )
            .order_by(RoleAssignment.id)
        )
    ).all()
    end_of_day = (
        datetime.combine(today + timedelta(days=1), time(), timing.calendar.tz)
    ).astimezone(now.tzinfo)
    unit_ids = sorted({unit.id for _, _, unit in holders})
    figures = await _unit_figures(session, unit_ids, now, end_of_day)
    wanted = [k for k, v in figures.items() if v["open"]]
    listed = await _most_urgent(session, wanted, now)
    messages = []
    seen = set()
    for role, chat_id, unit in holders:
        if (role, chat_id, unit.id) in seen:
            continue  # the same role twice in one unit (two active rows): one digest
        seen.add((role, chat_id, unit.id))
        # The rung at which the unit holds the tickets this role hears about.
        level = powers(Role(role)).digest.value
        counts = figures.get((unit.id, level))
        if counts is None:
            continue  # nothing open: no message (a quiet day is not news)
        messages.append(
            Outgoing(
                chat_id,
                "digest",
                {
                    "date": today.isoformat(),
                    "unit_zh": unit.name_zh,
                    "unit_en": unit.name_en,
                    "role": Role(role).value,
                    **counts,
                    "tickets": listed.get((unit.id, level), []),
                },
                Lane.BULK,
            )
        )
    sent = await enqueue_many(session, messages, clock=clock)
    await session.commit()
    logger.info("digest for %s: %d messages", today, sent)
    return sent
