"""The deadline sweep: reminders before a deadline, escalation after it, each exactly once.

A sweep reads only rows whose first alert is due (an index on `alert_at`), oldest first, in
batches; each batch is one transaction. On PostgreSQL the rows are claimed with
`FOR UPDATE SKIP LOCKED`, so two schedulers never take the same ticket; SQLite runs one
writer at a time anyway. After downtime the first sweep catches up: every alert that came
due meanwhile is handled once, in deadline order (not once per missed sweep), and an
escalation replaces what was left of the old holder's schedule.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.changes import Changes
from domain.clock import Clock
from domain.deadlines import Policies, Timing, due, first_at
from domain.lookups import Lookups
from domain.roles import ladder_roles
from domain.summons import sweep_summons
from domain.tickets import (
    NEXT_LEVEL,
    Action,
    allowed,
    close_unanswered,
    escalate,
    remind,
)
from storage.bulk import update_rows
from storage.enums import OPEN_STATUSES, AlertKind, TicketStatus
from storage.models import Ticket, TicketSummons

logger = logging.getLogger(__name__)

# Every ticket column a sweep may change (escalate, remind, close_unanswered, plan).
SWEPT_COLUMNS = (
    "id",
    "status",
    "level",
    "holder_unit_id",
    "holder_since",
    "accept_deadline",
    "resolve_deadline",
    "next_deadline",
    "alerts",
    "alert_at",
    "closed_at",
    "updated_at",
)


@dataclass
class SweepReport:
    """What one sweep did."""

    reminded: int = 0
    escalated: int = 0
    overdue_at_top: int = 0
    closed_unrated: int = 0
    departments_reminded: int = 0
    departments_escalated: int = 0

    def add(self, other: SweepReport) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    @property
    def total(self) -> int:
        return sum(getattr(self, f.name) for f in fields(self))


class TicketRow:
    """A ticket as plain attributes with the table's names: what the sweep works on.

    The use cases' steps (escalate, remind, plan...) only read and set attributes, so a row
    serves as well as the ORM object and costs a fraction of it per ticket; the sweep writes
    the changed columns back with one executemany.
    """

    __slots__ = tuple(Ticket.__table__.columns.keys())

    def __init__(self, mapping: Mapping[str, object]) -> None:
        for name in self.__slots__:
            setattr(self, name, mapping[name])


def _claim(model: type, now: datetime, limit: int, session: AsyncSession, *, core: bool = False):
    table = model.__table__
    statement = (
        (sa.select(table) if core else select(model))
        .where(table.c.alert_at <= now)
        .order_by(table.c.alert_at, table.c.id)
        .limit(limit)
    )
    if session.bind.dialect.name == "postgresql":
        # Another scheduler's batch is skipped, not waited for (and never taken twice); a row
        # it handled meanwhile is read again, and left out once no longer due.
        statement = statement.with_for_update(skip_locked=True)
    if not core:
        # The locked rows as they are now, not as this session's identity map last saw them.
        statement = statement.execution_options(populate_existing=True)
    return statement


async def _ticket_batch(
    session: AsyncSession, clock: Clock, timing: Timing, batch: int
) -> tuple[SweepReport, int]:
    report = SweepReport()
    now = clock.now()
    result = await session.exec(_claim(Ticket, now, batch, session, core=True))
    tickets = [TicketRow(row) for row in result.mappings()]
    if not tickets:
        await session.commit()
        return report, 0
    lk = Lookups(session)
    await lk.prefetch(tickets, roles=ladder_roles())
    policies = await Policies.load(session)
    out = Changes(clock)
    for ticket in tickets:
        await _ticket_alerts(lk, out, timing, policies, ticket, now, report)
    # The changed rows go out in one executemany, not through the ORM's unit of work.
    rows = [{c: getattr(t, c) for c in SWEPT_COLUMNS} for t in tickets]
    await update_rows(session, Ticket.__table__, rows)
    await out.commit(session)
    return report, len(tickets)


async def _ticket_alerts(
    lk: Lookups,
    out: Changes,
    timing: Timing,
    policies: Policies,
    ticket: Ticket,
    now: datetime,
    report: SweepReport,
) -> None:
    """Handle the ticket's due alerts in order; an escalation or a closing ends the list."""
    if ticket.status not in OPEN_STATUSES:
        ticket.alerts, ticket.alert_at = [], None
        return
    now_due, ahead = due(list(ticket.alerts or []), now)
    for alert in now_due:
        kind = AlertKind(alert["kind"])
        if kind == AlertKind.REMIND:
            await remind(lk, out, ticket, overdue=False, deadline=alert["deadline"])
            report.reminded += 1
        elif kind == AlertKind.OVERDUE:
            if ticket.level in NEXT_LEVEL and allowed(ticket.status, Action.ESCALATE):
                await escalate(lk, out, timing, policies, ticket, actor=None)
                report.escalated += 1
                return  # the new holder's schedule replaced the rest
            await remind(lk, out, ticket, overdue=True, deadline=alert["deadline"])
            report.overdue_at_top += 1
        elif kind == AlertKind.FOLLOWUP_TIMEOUT and ticket.status == TicketStatus.RESOLVED:
            await close_unanswered(lk, out, ticket)
            report.closed_unrated += 1
            return
    ticket.alerts, ticket.alert_at = ahead, first_at(ahead)


async def _summons_batch(
    session: AsyncSession, clock: Clock, timing: Timing, batch: int
) -> tuple[SweepReport, int]:
    report = SweepReport()
    now = clock.now()
    rows = list((await session.exec(_claim(TicketSummons, now, batch, session))).all())
    if not rows:
        await session.commit()
        return report, 0
    lk = Lookups(session)
    out = Changes(clock)
    reminded, escalated = await sweep_summons(lk, out, timing, rows, now)
    report.departments_reminded += reminded
    report.departments_escalated += escalated
    await out.commit(session)
    return report, len(rows)


async def sweep(
    *,
    session: AsyncSession,
    clock: Clock,
    timing: Timing,
    batch: int = 500,
    max_batches: int = 1000,
    also: Sequence[AsyncSession] = (),
) -> SweepReport:
    """Everything due by now, batch after batch (each its own transaction).

    On PostgreSQL the sessions in `also` work at the same time as `session`, each claiming
    its own batches (SKIP LOCKED), so one's Python overlaps another's database round trips;
    SQLite has one writer at a time, and they are not used there.
    """
    sessions = [session]
    if session.bind.dialect.name == "postgresql":
        sessions += list(also)
    report = SweepReport()
    for step in (_ticket_batch, _summons_batch):

        async def work(worker: AsyncSession, step=step) -> SweepReport:
            done = SweepReport()
            for _ in range(max_batches):
                part, taken = await step(worker, clock, timing, batch)
                done.add(part)
                if taken < batch:
                    break
            return done

        for part in await asyncio.gather(*(work(worker) for worker in sessions)):
            report.add(part)
    if report.total:
        logger.info("sweep: %s", report)
    return report
