"""The street's whistle (吹哨) and the departments reporting in (报到).

A street officer (or the district above) summons one or more departments to a ticket. Each
department's liaisons get the card and must accept (签收) or return it (退单, with a reason
and a note) before their own deadline, then finish their part before another. A silent
department is reminded, then escalated to the district. A returned summons goes back to the
street, whose clock runs again until it re-assigns, insists (arbitrates) or releases it.
The ticket is resolved when every summoned department has finished; the resident then gets
the follow-up visit as for any resolved ticket.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from domain.access import deny, require_role
from domain.changes import Changes
from domain.clock import Clock
from domain.deadlines import Policies, Timing, due, first_at, phase_alerts
from domain.errors import DomainError, NotFound
from domain.lookups import Lookups
from domain.roles import department_roles, level_roles, primary_role
from domain.tickets import (
    Action,
    StaleAction,
    TicketContext,
    card_data,
    clean_note,
    context_from,
    get_ticket,
    load_for_action,
    move,
    plan,
    resolve,
    tell_watchers,
)
from storage.enums import (
    ACTIVE_SUMMONS,
    AlertKind,
    Lane,
    Level,
    SummonsReturnReason,
    SummonsStatus,
    TicketStatus,
    UnitKind,
)
from storage.models import Department, OrgUnit, Person, Ticket, TicketSummons
from storage.summons import (
    answers_for_department,
    departments_of_units,
    responsible_department_ids,
    summonses_of,
    tickets_by_id,
)

SS = SummonsStatus


WHISTLE_LEVELS = frozenset({Level.STREET, Level.DISTRICT})


async def proposed_departments(
    session: AsyncSession, ticket: Ticket
) -> tuple[list[Department], list[Department]]:
    """Departments the street may summon: the category's responsible ones first, then the rest.

    Only departments of the ticket's street or district (or the city) qualify.
    """
    grid = await session.get(OrgUnit, ticket.grid_id)
    assert grid is not None
    ancestors = [int(p) for p in grid.path.strip("/").split("/") if p]
    rows = await departments_of_units(session, ancestors)
    responsible = await responsible_department_ids(session, ticket.category_id)
    first = [d for d in rows if d.id in responsible]
    return first, [d for d in rows if d.id not in responsible]


def _department_data(department: Department) -> dict:
    return {
        "department_id": department.id,
        "department_code": department.code,
        "department_zh": department.name_zh,
        "department_en": department.name_en,
    }


def summons_data(
    ctx: TicketContext, summons: TicketSummons, department: Department, now: datetime
) -> dict:
    return (
        card_data(ctx, now)
        | _department_data(department)
        | {
            "summons_id": summons.id,
            "summons_status": summons.status.value,
            "summons_deadline": summons.next_deadline.isoformat()
            if summons.next_deadline
            else None,
            "return_reason": summons.return_reason.value if summons.return_reason else None,
            "return_note": summons.return_note,
            "finish_note": summons.finish_note,
        }
    )


def _plan_summons(
    summons: TicketSummons,
    timing: Timing,
    policies: Policies,
    ticket: Ticket,
    *,
    now: datetime,
) -> None:
    """The department's deadline now (to report in, then to finish) and its alerts."""
    policy = policies.find(ticket.urgency, ticket.category_id, Level.DEPARTMENT)
    deadline, alerts = None, []
    if policy is not None and summons.status in ACTIVE_SUMMONS:
        start = summons.summoned_at
        accepting = summons.status == SS.SUMMONED
        minutes = policy.accept_minutes if accepting else policy.resolve_minutes
        deadline, alerts = phase_alerts(
            timing, policy, start=start, minutes=minutes, now=now, top=False
        )
        if summons.status == SS.SUMMONED:
            summons.accept_deadline = deadline
            summons.finish_deadline = timing.calendar.add(
                start, policy.resolve_minutes, working_time=policy.working_time
            )
    summons.next_deadline, summons.alerts, summons.alert_at = deadline, alerts, first_at(alerts)


async def _liaisons(lk: Lookups, department_id: int) -> list[Person]:
    return [
        person
        for role in department_roles()
        for person in await lk.holders(role, department_id=department_id)
    ]


async def _district_admins(lk: Lookups, ticket: Ticket) -> list[Person]:
    district = await lk.ancestor(await lk.unit(ticket.grid_id), UnitKind.DISTRICT)
    return await lk.holders(primary_role(Level.DISTRICT), unit_id=district.id)


async def _holders_now(lk: Lookups, ticket: Ticket) -> list[Person]:
    holder = await lk.unit(ticket.holder_unit_id)
    return await lk.holders(primary_role(ticket.level), unit_id=holder.id)


def _ticket_clock(
    ticket: Ticket,
    summonses: Sequence[TicketSummons],
    timing: Timing,
    policies: Policies,
    now: datetime,
) -> None:
    """A summoned ticket's own clock runs only while a returned summons waits for the street."""
    waiting = any(s.status == SS.RETURNED for s in summonses)
    if waiting and not ticket.alerts:
        policy = policies.find(ticket.urgency, ticket.category_id, ticket.level)
        plan(ticket, timing, policy, now=now, start=now, phase="accept")
    elif not waiting:
        ticket.next_deadline, ticket.alerts, ticket.alert_at = None, [], None


async def whistle(
    *,
    session: AsyncSession,
    clock: Clock,
    timing: Timing,
    actor: Person,
    ticket_id: int,
    department_ids: Sequence[int],
) -> tuple[TicketContext, list[TicketSummons]]:
    """Summon departments to the ticket; each one's liaisons get the card and a deadline.

    A department already working on it is left as it is; one named again after it returned
    it or was released is summoned again (the street insists); one that returned it and is
    not named again is released (the street re-assigned the work).
    """
    if not department_ids:
        raise DomainError("whistle.no_departments")
    ticket = await load_for_action(session, clock, actor, ticket_id, Action.WHISTLE)
    if ticket.level not in WHISTLE_LEVELS:
        raise StaleAction("ticket.stale", status=ticket.status.value, number=ticket.number)
    first, rest = await proposed_departments(session, ticket)
    allowed_ids = {d.id: d for d in first + rest}
    unknown = [i for i in department_ids if i not in allowed_ids]
    if unknown:
        raise DomainError("whistle.unknown_department")
    lk = Lookups(session)
    out = Changes(clock)
    now = out.now
    policies = await Policies.load(session)
    existing = {s.department_id: s for s in await summonses_of(session, ticket.id)}
    summoned: list[TicketSummons] = []
    for department_id in dict.fromkeys(department_ids):
        summons = existing.get(department_id)
        if summons is not None and summons.status in (ACTIVE_SUMMONS | {SS.FINISHED}):
            continue
        if summons is None:
            summons = TicketSummons(ticket_id=ticket.id, department_id=department_id)
            existing[department_id] = summons
        summons.status = SS.SUMMONED
        summons.summoned_at, summons.summoned_by_id, summons.updated_at = now, actor.id, now
        summons.escalated = False
        summons.return_reason = summons.return_note = None
        _plan_summons(summons, timing, policies, ticket, now=now)
        session.add(summons)
        summoned.append(summons)
    if not summoned:
        raise DomainError("whistle.already_summoned")
    await session.flush()
    move(
        out,
        ticket,
        Action.WHISTLE,
        actor_id=actor.id,
        departments=[allowed_ids[s.department_id].code for s in summoned],
    )
    # Re-assigning relieves the departments that returned it and were not summoned again.
    for summons in existing.values():
        if summons.status == SS.RETURNED:
            summons.status, summons.updated_at = SS.WITHDRAWN, now
            session.add(summons)
            out.event(
                ticket,
                actor_id=actor.id,
                kind="department_released",
                from_status=ticket.status,
                department=allowed_ids[summons.department_id].code,
            )
    _ticket_clock(ticket, list(existing.values()), timing, policies, now)
    session.add(ticket)
    ctx = await context_from(lk, ticket)
    for summons in summoned:
        department = allowed_ids[summons.department_id]
        data = summons_data(ctx, summons, department, now) | {"reason": "summoned"}
        for person in await _liaisons(lk, department.id):
            out.message(person.telegram_id, "summons_card", data, Lane.ESCALATION)
    names = [allowed_ids[s.department_id] for s in summoned]
    status = {
        "departments_zh": "、".join(d.name_zh for d in names),
        "departments_en": ", ".join(d.name_en for d in names),
    }
    await tell_watchers(lk, out, ctx, "whistled", skip=[actor.id], **status)
    await out.write(session)
    return ctx, summoned


async def load_summons(
    session: AsyncSession,
    clock: Clock,
    actor: Person,
    summons_id: int,
    *,
    liaison: bool,
    statuses: frozenset[SummonsStatus],
) -> tuple[Ticket, TicketSummons, Department]:
    """Lock the ticket, check the actor (the department's liaison, or the ticket's holder),
    then that the summons is in one of `statuses` and the ticket still summoned."""
    summons = await session.get(TicketSummons, summons_id)
    if summons is None:
        raise NotFound("summons.unknown")
    ticket = await get_ticket(session, summons.ticket_id, for_update=True)
    await session.refresh(summons)
    department = await session.get(Department, summons.department_id)
    assert department is not None
    if liaison:
        if not await answers_for_department(
            session, person_id=actor.id, roles=department_roles(), department_id=department.id
        ):
            unit = await session.get(OrgUnit, department.unit_id)
            assert unit is not None
            await deny(
                session,
                clock=clock,
                person_id=actor.id,
                unit=unit,
                action=f"summons.{department.code}:{ticket.number}",
                roles=department_roles(),
            )
    else:
        holder = await session.get(OrgUnit, ticket.holder_unit_id)
        assert holder is not None
        await require_role(
            session,
            clock=clock,
            person_id=actor.id,
            roles=level_roles(ticket.level),
            unit=holder,
            action=f"summons.arbitrate:{ticket.number}",
        )
    if summons.status not in statuses or ticket.status != TicketStatus.SUMMONED:
        raise _stale_summons(summons, ticket, department)
    return ticket, summons, department


async def check_summons(
    *,
    session: AsyncSession,
    clock: Clock,
    actor: Person,
    summons_id: int,
    statuses: frozenset[SummonsStatus],
) -> tuple[Ticket, TicketSummons, Department]:
    """Whether the liaison may act on the summons now, before a dialog asks for a note.

    The same checks as the step itself (NotAllowed, audited; or StaleAction); nothing is
    changed (the row lock the check took goes when the update's transaction ends, before
    the dialog asks).
    """
    return await load_summons(session, clock, actor, summons_id, liaison=True, statuses=statuses)


def _stale_summons(summons: TicketSummons, ticket: Ticket, department: Department) -> StaleAction:
    return StaleAction(
        "summons.stale",
        number=ticket.number,
        status=summons.status.value,
        department_zh=department.name_zh,
        department_en=department.name_en,
    )


# What a department's step says for its figures (domain.figures): which department, and the
# deadline the step had (to report in, or to finish).
_STEP_DEADLINE = {
    "department_accepted": "accept_deadline",
    "department_finished": "finish_deadline",
}


def _step_facts(summons: TicketSummons, department: Department, kind: str) -> dict[str, object]:
    facts: dict[str, object] = {"department_id": department.id}
    deadline = getattr(summons, _STEP_DEADLINE.get(kind, ""), None)
    if deadline is not None:
        facts["due"] = deadline.isoformat()
    if kind == "department_escalated":
        facts["phase"] = "report_in" if summons.status == SS.SUMMONED else "finish"
    return facts


async def _tell_street(
    lk: Lookups,
    out: Changes,
    ticket: Ticket,
    summons: TicketSummons,
    department: Department,
    *,
    actor: Person,
    kind: str,
    note: str | None = None,
    **data: object,
) -> TicketContext:
    """The department's step in the ticket's history, and the card or notice to the street."""
    out.event(
        ticket,
        actor_id=actor.id,
        kind=kind,
        from_status=ticket.status,
        note=note,
        department=department.code,
        **_step_facts(summons, department, kind),
        **data,
    )
    ctx = await context_from(lk, ticket)
    if ticket.status == TicketStatus.SUMMONED:
        message = summons_data(ctx, summons, department, out.now)
        if kind == "department_returned":
            outbox_kind, message = "summons_card", message | {"reason": kind}
        else:
            outbox_kind, message = "summons_status", message | {"event": kind}
        for person in await _holders_now(lk, ticket):
            out.message(person.telegram_id, outbox_kind, message, Lane.ESCALATION)
    return ctx


async def report_in(
    *, session: AsyncSession, clock: Clock, timing: Timing, actor: Person, summons_id: int
) -> tuple[TicketContext, TicketSummons]:
    """The department accepts (报到/签收); its clock now runs on finishing its part."""
    ticket, summons, department = await load_summons(
        session, clock, actor, summons_id, liaison=True, statuses=frozenset({SS.SUMMONED})
    )
    out = Changes(clock)
    summons.status, summons.updated_at = SS.ACCEPTED, out.now
    summons.accepted_at, summons.accepted_by_id = out.now, actor.id
    _plan_summons(summons, timing, await Policies.load(session), ticket, now=out.now)
    session.add(summons)
    ctx = await _tell_street(
        Lookups(session), out, ticket, summons, department, actor=actor, kind="department_accepted"
    )
    await out.write(session)
    return ctx, summons


async def return_summons(
    *,
    session: AsyncSession,
    clock: Clock,
    timing: Timing,
    actor: Person,
    summons_id: int,
    reason: SummonsReturnReason,
    note: str,
) -> tuple[TicketContext, TicketSummons]:
    """The department returns it (退单) with a reason and a note; the street decides."""
    note = clean_note(note, "summons.note_empty")
    ticket, summons, department = await load_summons(
        session, clock, actor, summons_id, liaison=True, statuses=ACTIVE_SUMMONS
    )
    out = Changes(clock)
    summons.status, summons.updated_at = SS.RETURNED, out.now
    summons.returned_at, summons.return_reason, summons.return_note = out.now, reason, note
    summons.next_deadline, summons.alerts, summons.alert_at = None, [], None
    session.add(summons)
    policies = await Policies.load(session)
    _ticket_clock(ticket, await summonses_of(session, ticket.id), timing, policies, out.now)
    session.add(ticket)
    ctx = await _tell_street(
        Lookups(session),
        out,
        ticket,
        summons,
        department,
        actor=actor,
        kind="department_returned",
        note=note,
        reason=reason.value,
    )
    await out.write(session)
    return ctx, summons


async def finish_summons(
    *,
    session: AsyncSession,
    clock: Clock,
    timing: Timing,
    actor: Person,
    summons_id: int,
    note: str,
) -> tuple[TicketContext, TicketSummons]:
    """The department's part is done; the last one to finish resolves the ticket."""
    note = clean_note(note, "resolve.note_empty")
    ticket, summons, department = await load_summons(
        session, clock, actor, summons_id, liaison=True, statuses=frozenset({SS.ACCEPTED})
    )
    out = Changes(clock)
    summons.status, summons.updated_at = SS.FINISHED, out.now
    summons.finished_at, summons.finished_by_id, summons.finish_note = out.now, actor.id, note
    summons.next_deadline, summons.alerts, summons.alert_at = None, [], None
    session.add(summons)
    lk = Lookups(session)
    await _tell_street(
        lk, out, ticket, summons, department, actor=actor, kind="department_finished", note=note
    )
    ctx = await _finish_if_done(session, lk, out, timing, ticket, actor)
    await out.write(session)
    return ctx, summons


async def _finish_if_done(
    session: AsyncSession,
    lk: Lookups,
    out: Changes,
    timing: Timing,
    ticket: Ticket,
    actor: Person,
) -> TicketContext:
    """Resolve the ticket once no department is still summoned, working or returned."""
    summonses = await summonses_of(session, ticket.id)
    if any(s.status in ACTIVE_SUMMONS | {SS.RETURNED} for s in summonses):
        return await context_from(lk, ticket)
    finished = [s for s in summonses if s.status == SS.FINISHED]
    if not finished:
        # Every department released: the street holds it again, with its clock on resolving.
        move(out, ticket, Action.RECALL, actor_id=actor.id)
        policies = await Policies.load(session)
        policy = policies.find(ticket.urgency, ticket.category_id, ticket.level)
        plan(ticket, timing, policy, now=out.now, start=out.now)
        return await context_from(lk, ticket)
    notes = []
    for s in finished:
        department = await lk.department(s.department_id)
        notes.append(f"{department.name_zh} / {department.name_en}: {s.finish_note}")
    return await resolve(lk, out, timing, ticket, actor=actor, note="\n".join(notes))


async def insist(
    *, session: AsyncSession, clock: Clock, timing: Timing, actor: Person, summons_id: int
) -> tuple[TicketContext, list[TicketSummons]]:
    """The street arbitrates a return: the department must take it after all."""
    ticket, summons, department = await load_summons(
        session, clock, actor, summons_id, liaison=False, statuses=frozenset({SS.RETURNED})
    )
    await session.flush()
    return await whistle(
        session=session,
        clock=clock,
        timing=timing,
        actor=actor,
        ticket_id=ticket.id,
        department_ids=[department.id],
    )


async def release(
    *, session: AsyncSession, clock: Clock, timing: Timing, actor: Person, summons_id: int
) -> tuple[TicketContext, TicketSummons]:
    """The street accepts a department's return and releases it."""
    ticket, summons, department = await load_summons(
        session, clock, actor, summons_id, liaison=False, statuses=frozenset({SS.RETURNED})
    )
    out = Changes(clock)
    summons.status, summons.updated_at = SS.WITHDRAWN, out.now
    session.add(summons)
    out.event(
        ticket,
        actor_id=actor.id,
        kind="department_released",
        from_status=ticket.status,
        department=department.code,
    )
    await session.flush()
    policies = await Policies.load(session)
    _ticket_clock(ticket, await summonses_of(session, ticket.id), timing, policies, out.now)
    lk = Lookups(session)
    ctx = await _finish_if_done(session, lk, out, timing, ticket, actor)
    session.add(ticket)
    await out.write(session)
    return ctx, summons


async def sweep_summons(
    lk: Lookups,
    out: Changes,
    timing: Timing,
    rows: Sequence[TicketSummons],
    now: datetime,
) -> tuple[int, int]:
    """Due department alerts: remind the liaisons; past a deadline, bring in the district."""
    reminded = escalated = 0
    tickets = {t.id: t for t in await tickets_by_id(lk.session, {s.ticket_id for s in rows})}
    # The district's holders are brought in when a department stays silent.
    await lk.prefetch(list(tickets.values()), roles=[primary_role(Level.DISTRICT)])
    for summons in rows:
        ticket = tickets[summons.ticket_id]
        if summons.status not in ACTIVE_SUMMONS or ticket.status != TicketStatus.SUMMONED:
            summons.alerts, summons.alert_at = [], None
            continue
        now_due, ahead = due(list(summons.alerts or []), now)
        department = await lk.department(summons.department_id)
        ctx = await context_from(lk, ticket)
        for alert in now_due:
            kind = AlertKind(alert["kind"])
            overdue = kind == AlertKind.OVERDUE
            data = summons_data(ctx, summons, department, now) | {
                "reason": "overdue" if overdue else "reminder",
                "deadline": alert["deadline"],
            }
            for person in await _liaisons(lk, department.id):
                out.message(person.telegram_id, "summons_card", data, Lane.ESCALATION)
            if overdue:
                data = data | {"reason": "department_silent"}
                for person in await _district_admins(lk, ticket):
                    out.message(person.telegram_id, "summons_card", data, Lane.ESCALATION)
                if not summons.escalated:
                    summons.escalated = True
                    out.event(
                        ticket,
                        actor_id=None,
                        kind="department_escalated",
                        from_status=ticket.status,
                        department=department.code,
                        **_step_facts(summons, department, "department_escalated"),
                    )
                    escalated += 1
                    # Past its deadline the department is chased at the ladder's top interval.
                    every = timedelta(minutes=timing.ladder.top_repeat_minutes)
                    ahead = [
                        {
                            "at": (now + k * every).isoformat(),
                            "kind": AlertKind.OVERDUE.value,
                            "deadline": alert["deadline"],
                        }
                        for k in range(1, timing.ladder.top_repeat_times + 1)
                    ] + [a for a in ahead if a["kind"] != AlertKind.OVERDUE.value]
                    ahead.sort(key=lambda a: a["at"])
                else:
                    reminded += 1  # chased again
            else:
                reminded += 1
        summons.alerts, summons.alert_at = ahead, first_at(ahead)
        summons.updated_at = now
        lk.session.add(summons)
    return reminded, escalated
