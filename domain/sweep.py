"""The deadline sweep: reminders before a deadline, escalation after it, each exactly once.

A sweep reads only rows whose first alert is due (an index on `alert_at`), oldest first, in
batches; each batch is one transaction. A batch is claimed (storage.sweep) so that two
schedulers never take the same ticket. After downtime the first sweep catches up: every
alert that came due meanwhile is handled once, in deadline order (not once per missed
sweep), and an escalation replaces what was left of the old holder's schedule.

The steps (escalate, remind, close_unanswered) change the claimed tickets, the session's
own objects; every column they set is written back with the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime

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
from storage.enums import OPEN_STATUSES, AlertKind, TicketStatus
from storage.models import Ticket
from storage.sweep import (
    claim_due_summonses,
    claim_due_tickets,
    claims_skip_locked,
    save_swept_tickets,
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


async def ticket_batch(
    session: AsyncSession, clock: Clock, timing: Timing, batch: int
) -> tuple[SweepReport, int]:
    report = SweepReport()
    now = clock.now()
    tickets = await claim_due_tickets(session, now, batch)
    if not tickets:
        return report, 0
    lk = Lookups(session)
    await lk.prefetch(tickets, roles=ladder_roles())
    policies = await Policies.load(session)
    out = Changes(clock)
    for ticket in tickets:
        await _ticket_alerts(lk, out, timing, policies, ticket, now, report)
    await save_swept_tickets(session, tickets)
    await out.write(session)
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


async def summons_batch(
    session: AsyncSession, clock: Clock, timing: Timing, batch: int
) -> tuple[SweepReport, int]:
    report = SweepReport()
    now = clock.now()
    rows = await claim_due_summonses(session, now, batch)
    if not rows:
        return report, 0
    lk = Lookups(session)
    out = Changes(clock)
    reminded, escalated = await sweep_summons(lk, out, timing, rows, now)
    report.departments_reminded += reminded
    report.departments_escalated += escalated
    await out.write(session)
    return report, len(rows)


def workers(session: AsyncSession, also: Sequence[AsyncSession]) -> list[AsyncSession]:
    """The sessions a sweep works in at the same time: `also` too where claims skip each
    other's rows (storage.sweep.claims_skip_locked), so one's Python overlaps another's
    database round trips; where the database has one writer at a time, `session` alone."""
    return [session, *also] if claims_skip_locked(session) else [session]
