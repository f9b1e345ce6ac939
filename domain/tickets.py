"""The ticket lifecycle: one table of allowed moves, and the use cases that make them.

Every move checks who may make it (a holder role covering the ticket's holder unit, or the
reporter for the resident's answers), writes an event in the same transaction, and records
the notifications for everyone but the person acting in the outbox.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.access import covering_assignment, deny
from domain.calendar import WorkCalendar
from domain.clock import Clock
from domain.errors import DomainError, NotFound
from domain.outbox import enqueue
from storage.dialect import next_in_sequence
from storage.enums import (
    OPEN_STATUSES,
    AssignmentStatus,
    Lane,
    Level,
    ReturnReason,
    Role,
    TicketStatus,
    UnitKind,
    WatcherKind,
)
from storage.models import (
    Category,
    DeadlinePolicy,
    OrgUnit,
    Person,
    RoleAssignment,
    Ticket,
    TicketEvent,
    TicketWatcher,
)

logger = logging.getLogger(__name__)

DESCRIPTION_LIMIT = 1000
PHOTO_LIMIT = 3
DUPLICATE_RADIUS_M = 100.0


class Action(StrEnum):
    FILE = "file"
    ACCEPT = "accept"
    RETURN = "return"
    ESCALATE = "escalate"
    RESOLVE = "resolve"
    CONFIRM = "confirm"
    REOPEN = "reopen"
    RATE = "rate"
    REDISPATCH = "redispatch"
    CANCEL = "cancel"
    JOIN = "join"


S = TicketStatus
# The one table of allowed moves: (status now, action) -> status after.
MOVES: dict[tuple[TicketStatus, Action], TicketStatus] = {
    (S.NEW, Action.ACCEPT): S.ACCEPTED,
    (S.NEW, Action.RETURN): S.RETURNED,
    (S.NEW, Action.ESCALATE): S.NEW,
    (S.ACCEPTED, Action.ESCALATE): S.NEW,
    (S.REOPENED, Action.ESCALATE): S.NEW,
    (S.ACCEPTED, Action.RESOLVE): S.RESOLVED,
    (S.REOPENED, Action.RESOLVE): S.RESOLVED,
    (S.RESOLVED, Action.CONFIRM): S.CLOSED,
    (S.RESOLVED, Action.REOPEN): S.REOPENED,
    (S.CLOSED, Action.RATE): S.CLOSED,
    (S.RETURNED, Action.REDISPATCH): S.NEW,
    (S.RETURNED, Action.CANCEL): S.CANCELLED,
}

# Who holds a ticket at each level of the ladder (administrators of a covering unit may too).
LEVEL_ROLES: dict[Level, tuple[Role, ...]] = {
    Level.GRID: (Role.GRID_LEADER, Role.ADMIN),
    Level.COMMUNITY: (Role.COMMUNITY_SECRETARY, Role.ADMIN),
    Level.STREET: (Role.STREET_OFFICER, Role.ADMIN),
    Level.DISTRICT: (Role.ADMIN,),
}
NEXT_LEVEL: dict[Level, Level] = {
    Level.GRID: Level.COMMUNITY,
    Level.COMMUNITY: Level.STREET,
    Level.STREET: Level.DISTRICT,
}
LEVEL_KIND: dict[Level, UnitKind] = {
    Level.GRID: UnitKind.GRID,
    Level.COMMUNITY: UnitKind.COMMUNITY,
    Level.STREET: UnitKind.STREET,
    Level.DISTRICT: UnitKind.DISTRICT,
}
RESIDENT_ACTIONS = frozenset({Action.CONFIRM, Action.REOPEN, Action.RATE})
# Everyone who may hold a ticket somewhere on the way up from its grid.
LADDER_ROLES = (Role.GRID_LEADER, Role.COMMUNITY_SECRETARY, Role.STREET_OFFICER, Role.ADMIN)


class StaleAction(DomainError):
    """The ticket has moved on: the action no longer applies to its state."""


@dataclass(frozen=True)
class TicketContext:
    """Where a ticket stands, as a card shows it."""

    ticket: Ticket
    category: Category
    grid: OrgUnit
    community: OrgUnit
    holder: OrgUnit | None
    reporter: Person | None


def allowed(status: TicketStatus, action: Action) -> bool:
    return (status, action) in MOVES


def _distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    r = 6_371_000.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


# -- reading -----------------------------------------------------------------------------


async def get_ticket(session: AsyncSession, ticket_id: int, *, for_update: bool = False) -> Ticket:
    statement = select(Ticket).where(Ticket.id == ticket_id)
    if for_update:
        statement = statement.with_for_update()
    ticket = (await session.exec(statement)).first()
    if ticket is None:
        raise NotFound("ticket.unknown")
    return ticket


async def context_of(session: AsyncSession, ticket: Ticket) -> TicketContext:
    """The ticket with its category, grid, community, holder unit and reporter."""
    category = await session.get(Category, ticket.category_id)
    grid = await session.get(OrgUnit, ticket.grid_id)
    community = await session.get(OrgUnit, ticket.community_id)
    holder = await session.get(OrgUnit, ticket.holder_unit_id) if ticket.holder_unit_id else None
    reporter = await session.get(Person, ticket.reporter_id) if ticket.reporter_id else None
    assert category is not None and grid is not None and community is not None
    return TicketContext(ticket, category, grid, community, holder, reporter)


async def active_categories(session: AsyncSession) -> list[Category]:
    return list(
        (
            await session.exec(
                select(Category).where(Category.active).order_by(Category.position, Category.id)
            )
        ).all()
    )


async def find_duplicates(
    session: AsyncSession,
    *,
    category_id: int,
    latitude: float,
    longitude: float,
    radius_m: float = DUPLICATE_RADIUS_M,
    limit: int = 5,
    exclude_person_id: int | None = None,
) -> list[Ticket]:
    """Open tickets of the category within `radius_m` of the point, nearest first.

    Tickets `exclude_person_id` already reported or joined are left out.
    """
    dlat = radius_m / 111_320.0
    dlon = radius_m / (111_320.0 * max(0.01, math.cos(math.radians(latitude))))
    candidates = (
        await session.exec(
            select(Ticket).where(
                Ticket.category_id == category_id,
                Ticket.status.in_([s.value for s in OPEN_STATUSES if s != S.RESOLVED]),
                Ticket.latitude.between(latitude - dlat, latitude + dlat),
                Ticket.longitude.between(longitude - dlon, longitude + dlon),
                *(
                    [
                        Ticket.id.not_in(
                            select(TicketWatcher.ticket_id).where(
                                TicketWatcher.person_id == exclude_person_id
                            )
                        )
                    ]
                    if exclude_person_id is not None
                    else []
                ),
            )
        )
    ).all()
    near = [
        (_distance_m(latitude, longitude, t.latitude, t.longitude), t)
        for t in candidates
        if t.latitude is not None and t.longitude is not None
    ]
    near = [pair for pair in near if pair[0] <= radius_m]
    near.sort(key=lambda pair: (pair[0], pair[1].id))
    return [t for _, t in near[:limit]]


async def tickets_of(
    session: AsyncSession, *, person_id: int, offset: int = 0, limit: int = 5
) -> tuple[list[Ticket], int]:
    """Tickets the person reported or joined, newest first, one page and the total."""
    watched = select(TicketWatcher.ticket_id).where(TicketWatcher.person_id == person_id)
    total = (
        await session.exec(
            select(sa.func.count()).select_from(Ticket).where(Ticket.id.in_(watched))
        )
    ).one()
    page = (
        await session.exec(
            select(Ticket)
            .where(Ticket.id.in_(watched))
            .order_by(Ticket.created_at.desc(), Ticket.id.desc())
            .offset(offset)
            .limit(limit)
        )
    ).all()
    return list(page), total


async def queue_of(
    session: AsyncSession, *, person_id: int, offset: int = 0, limit: int = 5
) -> tuple[list[Ticket], int]:
    """Open tickets the person's roles hold now, most urgent deadline first."""
    assignments = (
        await session.exec(
            select(RoleAssignment, OrgUnit)
            .join(OrgUnit, RoleAssignment.unit_id == OrgUnit.id)
            .where(
                RoleAssignment.person_id == person_id,
                RoleAssignment.status == AssignmentStatus.ACTIVE,
            )
        )
    ).all()
    clauses = []
    holder = sa.orm.aliased(OrgUnit)
    for assignment, unit in assignments:
        levels = [level for level, roles in LEVEL_ROLES.items() if assignment.role in roles]
        if not levels:
            continue
        in_subtree = sa.func.substr(holder.path, 1, len(unit.path)) == unit.path
        level_match = Ticket.level.in_([lv.value for lv in levels])
        returned = sa.and_(
            Ticket.status == S.RETURNED,
            sa.literal(assignment.role in (Role.COMMUNITY_SECRETARY, Role.ADMIN)),
        )
        clauses.append(sa.and_(in_subtree, sa.or_(level_match, returned)))
    if not clauses:
        return [], 0
    base = (
        select(Ticket)
        .join(holder, Ticket.holder_unit_id == holder.id)
        .where(Ticket.status.in_([s.value for s in OPEN_STATUSES if s != S.RESOLVED]))
        .where(sa.or_(*clauses))
    )
    total = (await session.exec(select(sa.func.count()).select_from(base.subquery()))).one()
    page = (
        await session.exec(
            base.order_by(Ticket.next_deadline.is_(None), Ticket.next_deadline, Ticket.id)
            .offset(offset)
            .limit(limit)
        )
    ).all()
    return list(page), total


async def holders_of(session: AsyncSession, unit: OrgUnit, level: Level) -> list[Person]:
    """People who hold tickets at `level` in `unit`: its role holders, not the admins above."""
    role = LEVEL_ROLES[level][0]
    rows = await session.exec(
        select(Person)
        .join(RoleAssignment, RoleAssignment.person_id == Person.id)
        .where(
            RoleAssignment.unit_id == unit.id,
            RoleAssignment.role == role,
            RoleAssignment.status == AssignmentStatus.ACTIVE,
        )
        .order_by(Person.id)
    )
    return list(rows.all())


async def watchers_of(session: AsyncSession, ticket_id: int) -> list[Person]:
    rows = await session.exec(
        select(Person)
        .join(TicketWatcher, TicketWatcher.person_id == Person.id)
        .where(TicketWatcher.ticket_id == ticket_id)
        .order_by(TicketWatcher.created_at, Person.id)
    )
    return list(rows.all())


async def can_act(session: AsyncSession, *, person_id: int, ticket: Ticket) -> bool:
    """Whether the person holds the ticket now (may accept, resolve, escalate...)."""
    if ticket.holder_unit_id is None:
        return False
    unit = await session.get(OrgUnit, ticket.holder_unit_id)
    assert unit is not None
    roles = LEVEL_ROLES[ticket.level]
    if ticket.status == S.RETURNED:
        roles = (Role.COMMUNITY_SECRETARY, Role.ADMIN)
    found = await covering_assignment(session, person_id=person_id, roles=roles, unit=unit)
    return found is not None


# -- deadlines and numbers -----------------------------------------------------------------


async def _policy(session: AsyncSession, ticket: Ticket) -> DeadlinePolicy | None:
    candidates = (
        await session.exec(
            select(DeadlinePolicy).where(
                DeadlinePolicy.urgency == ticket.urgency,
                DeadlinePolicy.level == ticket.level,
                sa.or_(
                    DeadlinePolicy.category_id == ticket.category_id,
                    DeadlinePolicy.category_id.is_(None),
                ),
            )
        )
    ).all()
    # A category's own policy wins over the urgency-wide one.
    candidates = sorted(candidates, key=lambda p: p.category_id is None)
    return candidates[0] if candidates else None


async def _set_deadlines(
    session: AsyncSession, ticket: Ticket, now: datetime, calendar: WorkCalendar
) -> None:
    """Deadlines for the holder who just got the ticket (accept, then resolve)."""
    policy = await _policy(session, ticket)
    if policy is None:
        ticket.accept_deadline = ticket.resolve_deadline = ticket.next_deadline = None
        return
    ticket.accept_deadline = calendar.add(
        now, policy.accept_minutes, working_time=policy.working_time
    )
    ticket.resolve_deadline = calendar.add(
        now, policy.resolve_minutes, working_time=policy.working_time
    )
    _refresh_next_deadline(ticket)


async def _hand_to(
    session: AsyncSession,
    ticket: Ticket,
    unit: OrgUnit,
    level: Level,
    now: datetime,
    calendar: WorkCalendar,
) -> None:
    """The ticket is held by `unit` at `level` from now on, with that level's deadlines."""
    ticket.level = level
    ticket.holder_unit_id = unit.id
    ticket.holder_since = now
    await _set_deadlines(session, ticket, now, calendar)


def _refresh_next_deadline(ticket: Ticket) -> None:
    if ticket.status == S.NEW:
        ticket.next_deadline = ticket.accept_deadline
    elif ticket.status in (S.ACCEPTED, S.REOPENED):
        ticket.next_deadline = ticket.resolve_deadline
    else:
        ticket.next_deadline = None


async def _ancestor(session: AsyncSession, unit: OrgUnit, kind: UnitKind) -> OrgUnit:
    ids = [int(part) for part in unit.path.strip("/").split("/") if part]
    found = (
        await session.exec(select(OrgUnit).where(OrgUnit.id.in_(ids), OrgUnit.kind == kind))
    ).first()
    if found is None:
        raise NotFound("unit.no_ancestor", code=unit.code, kind=kind.value)
    return found


# -- notifications -------------------------------------------------------------------------


def _status_data(ctx: TicketContext, event: str, **extra: object) -> dict:
    t = ctx.ticket
    holder = ctx.holder
    return {
        "ticket_id": t.id,
        "number": t.number,
        "event": event,
        "status": t.status.value,
        "level": t.level.value,
        "holder_zh": holder.name_zh if holder else None,
        "holder_en": holder.name_en if holder else None,
        "category_zh": ctx.category.name_zh,
        "category_en": ctx.category.name_en,
        **extra,
    }


def card_data(ctx: TicketContext, now: datetime) -> dict:
    """A snapshot of the ticket for its card, rendered later in the recipient's language."""
    t = ctx.ticket
    reporter = None
    if ctx.reporter is not None and not t.anonymous:
        reporter = ctx.reporter.full_name
    return {
        "ticket_id": t.id,
        "number": t.number,
        "status": t.status.value,
        "level": t.level.value,
        "category_zh": ctx.category.name_zh,
        "category_en": ctx.category.name_en,
        "description": t.description,
        "photos": list(t.photos or []),
        "latitude": t.latitude,
        "longitude": t.longitude,
        "grid_zh": ctx.grid.name_zh,
        "grid_en": ctx.grid.name_en,
        "community_zh": ctx.community.name_zh,
        "community_en": ctx.community.name_en,
        "holder_zh": ctx.holder.name_zh if ctx.holder else None,
        "holder_en": ctx.holder.name_en if ctx.holder else None,
        "holder_since": t.holder_since.isoformat(),
        "reporter": reporter,
        "anonymous": t.anonymous,
        "affected": t.affected,
        "urgency": t.urgency.value,
        "created_at": t.created_at.isoformat(),
        "next_deadline": t.next_deadline.isoformat() if t.next_deadline else None,
        "resolution_note": t.resolution_note,
        "resolution_photo": t.resolution_photo,
        "return_reason": t.return_reason.value if t.return_reason else None,
        "reopen_count": t.reopen_count,
        "as_of": now.isoformat(),
    }


def _send_card(
    session: AsyncSession,
    clock: Clock,
    ctx: TicketContext,
    people: Sequence[Person],
    *,
    lane: Lane,
    reason: str,
    **extra: object,
) -> None:
    """The ticket's card (photos, place, then text with buttons) to each person."""
    data = card_data(ctx, clock.now()) | {"reason": reason, **extra}
    for person in people:
        if data["photos"]:
            enqueue(
                session,
                clock=clock,
                chat_id=person.telegram_id,
                kind="ticket_photos",
                lane=lane,
                data={"photos": data["photos"], "number": data["number"]},
            )
        if data["latitude"] is not None:
            enqueue(
                session,
                clock=clock,
                chat_id=person.telegram_id,
                kind="ticket_place",
                lane=lane,
                data={
                    "latitude": data["latitude"],
                    "longitude": data["longitude"],
                    "number": data["number"],
                    "grid_zh": data["grid_zh"],
                    "grid_en": data["grid_en"],
                },
            )
        enqueue(
            session,
            clock=clock,
            chat_id=person.telegram_id,
            kind="ticket_card",
            lane=lane,
            data=data,
        )


async def _tell_watchers(
    session: AsyncSession,
    clock: Clock,
    ctx: TicketContext,
    event: str,
    *,
    skip: Sequence[int] = (),
    kind: str = "ticket_status",
    **extra: object,
) -> None:
    """Every status change reaches the reporter and everyone who said "me too"."""
    data = _status_data(ctx, event, **extra)
    for person in await watchers_of(session, ctx.ticket.id):
        if person.id in skip:
            continue
        enqueue(
            session,
            clock=clock,
            chat_id=person.telegram_id,
            kind=kind,
            lane=Lane.INTERACTIVE,
            data=data,
        )


def _event(
    session: AsyncSession,
    clock: Clock,
    ticket: Ticket,
    *,
    actor_id: int | None,
    kind: str,
    from_status: TicketStatus | None,
    note: str | None = None,
    **data: object,
) -> None:
    session.add(
        TicketEvent(
            ticket_id=ticket.id,
            at=clock.now(),
            actor_id=actor_id,
            kind=kind,
            from_status=from_status,
            to_status=ticket.status,
            note=note,
            data=dict(data),
        )
    )


def _move(
    session: AsyncSession,
    clock: Clock,
    ticket: Ticket,
    action: Action,
    *,
    actor_id: int | None,
    note: str | None = None,
    **data: object,
) -> None:
    """Make the table's move for `action`: the new status, its time, and the event."""
    before = ticket.status
    ticket.status = MOVES[(before, action)]
    ticket.updated_at = clock.now()
    if ticket.status in (S.CLOSED, S.CANCELLED) and ticket.closed_at is None:
        ticket.closed_at = ticket.updated_at
    _refresh_next_deadline(ticket)
    session.add(ticket)
    _event(
        session,
        clock,
        ticket,
        actor_id=actor_id,
        kind=action,
        from_status=before,
        note=note,
        **data,
    )


# -- use cases -----------------------------------------------------------------------------


async def file_ticket(
    *,
    session: AsyncSession,
    clock: Clock,
    calendar: WorkCalendar,
    reporter: Person,
    category_id: int,
    description: str,
    photos: Sequence[str] = (),
    grid_id: int,
    latitude: float | None = None,
    longitude: float | None = None,
    anonymous: bool = False,
) -> TicketContext:
    """File a resident's report: numbered, dispatched to its grid, the grid leaders told."""
    description = description.strip()
    if not description:
        raise DomainError("report.description_empty")
    if len(description) > DESCRIPTION_LIMIT:
        raise DomainError("report.description_too_long", limit=DESCRIPTION_LIMIT)
    if len(photos) > PHOTO_LIMIT:
        raise DomainError("report.too_many_photos", limit=PHOTO_LIMIT)
    category = await session.get(Category, category_id)
    if category is None or not category.active:
        raise NotFound("category.unknown")
    grid = await session.get(OrgUnit, grid_id)
    if grid is None or grid.kind != UnitKind.GRID:
        raise NotFound("unit.unknown", code=str(grid_id))
    community = await _ancestor(session, grid, UnitKind.COMMUNITY)
    city = await _ancestor(session, grid, UnitKind.CITY)
    now = clock.now()
    local_day = now.astimezone(calendar.tz).strftime("%Y%m%d")
    prefix = f"{city.code}-{local_day}"
    sequence = await next_in_sequence(session, prefix)
    ticket = Ticket(
        number=f"{prefix}-{sequence:04d}",
        category_id=category.id,
        grid_id=grid.id,
        community_id=community.id,
        reporter_id=reporter.id,
        description=description,
        photos=list(photos),
        latitude=latitude,
        longitude=longitude,
        anonymous=anonymous,
        urgency=category.urgency,
        status=S.NEW,
        level=Level.GRID,
        holder_unit_id=grid.id,
        holder_since=now,
        created_at=now,
        updated_at=now,
    )
    session.add(ticket)
    await session.flush()
    await _set_deadlines(session, ticket, now, calendar)
    session.add(
        TicketWatcher(
            ticket_id=ticket.id, person_id=reporter.id, kind=WatcherKind.REPORTER, created_at=now
        )
    )
    _event(
        session,
        clock,
        ticket,
        actor_id=reporter.id,
        kind=Action.FILE,
        from_status=None,
        grid=grid.code,
        anonymous=anonymous,
    )
    ctx = TicketContext(ticket, category, grid, community, grid, reporter)
    _send_card(
        session,
        clock,
        ctx,
        await holders_of(session, grid, Level.GRID),
        lane=Lane.INTERACTIVE,
        reason="new",
    )
    await session.commit()
    logger.info("ticket %s filed in %s", ticket.number, grid.code)
    return ctx


async def join_ticket(
    *, session: AsyncSession, clock: Clock, person: Person, ticket_id: int
) -> TicketContext:
    """ "Me too": the person follows an open ticket and counts among those affected."""
    ticket = await get_ticket(session, ticket_id, for_update=True)
    if ticket.status not in OPEN_STATUSES:
        raise StaleAction("ticket.stale", status=ticket.status.value, number=ticket.number)
    existing = await session.get(TicketWatcher, (ticket.id, person.id))
    if existing is None:
        session.add(
            TicketWatcher(
                ticket_id=ticket.id,
                person_id=person.id,
                kind=WatcherKind.ME_TOO,
                created_at=clock.now(),
            )
        )
        ticket.affected += 1
        ticket.updated_at = clock.now()
        session.add(ticket)
        _event(
            session,
            clock,
            ticket,
            actor_id=person.id,
            kind=Action.JOIN,
            from_status=ticket.status,
            affected=ticket.affected,
        )
    ctx = await context_of(session, ticket)
    await session.commit()
    return ctx


async def load_for_action(
    session: AsyncSession, clock: Clock, actor: Person, ticket_id: int, action: Action
) -> Ticket:
    """Lock the ticket, check the actor may act on it, then that the move is allowed now."""
    ticket = await get_ticket(session, ticket_id, for_update=True)
    if action in RESIDENT_ACTIONS:
        if ticket.reporter_id != actor.id:
            grid = await session.get(OrgUnit, ticket.grid_id)
            assert grid is not None
            await deny(
                session,
                clock=clock,
                person_id=actor.id,
                unit=grid,
                action=f"ticket.{action.value}:{ticket.number}",
            )
    else:
        holder = await session.get(OrgUnit, ticket.holder_unit_id)
        assert holder is not None
        roles = LEVEL_ROLES[ticket.level]
        if ticket.status == S.RETURNED:
            roles = (Role.COMMUNITY_SECRETARY, Role.ADMIN)
        if await covering_assignment(session, person_id=actor.id, roles=roles, unit=holder) is None:
            grid = await session.get(OrgUnit, ticket.grid_id)
            assert grid is not None
            if await covering_assignment(
                session, person_id=actor.id, roles=LADDER_ROLES, unit=grid
            ):
                # Someone on this ticket's ladder pressing an old button: it moved on.
                raise StaleAction(
                    "ticket.moved",
                    number=ticket.number,
                    status=ticket.status.value,
                    level=ticket.level.value,
                )
            await deny(
                session,
                clock=clock,
                person_id=actor.id,
                unit=holder,
                action=f"ticket.{action.value}:{ticket.number}",
                roles=roles,
            )
    if not allowed(ticket.status, action):
        raise StaleAction("ticket.stale", status=ticket.status.value, number=ticket.number)
    return ticket


async def check_move(
    *, session: AsyncSession, clock: Clock, actor: Person, ticket_id: int, action: Action
) -> Ticket:
    """Whether the actor may make `action` on the ticket now, before a dialog asks for more.

    The same checks as the use case itself (NotAllowed, audited; or StaleAction); nothing is
    changed. The use case checks again when the dialog ends.
    """
    ticket = await load_for_action(session, clock, actor, ticket_id, action)
    await session.commit()  # releases the row lock the check took
    return ticket


async def accept_ticket(
    *, session: AsyncSession, clock: Clock, actor: Person, ticket_id: int
) -> TicketContext:
    """The holder accepts (簽收): recorded who and when; the resident is told."""
    ticket = await load_for_action(session, clock, actor, ticket_id, Action.ACCEPT)
    ticket.accepted_at, ticket.accepted_by_id = clock.now(), actor.id
    _move(session, clock, ticket, Action.ACCEPT, actor_id=actor.id)
    ctx = await context_of(session, ticket)
    await _tell_watchers(session, clock, ctx, "accepted", skip=[actor.id])
    await session.commit()
    return ctx


async def return_ticket(
    *,
    session: AsyncSession,
    clock: Clock,
    calendar: WorkCalendar,
    actor: Person,
    ticket_id: int,
    reason: ReturnReason,
) -> TicketContext:
    """The grid returns it (退單) with a reason; the community secretary re-dispatches or closes."""
    ticket = await load_for_action(session, clock, actor, ticket_id, Action.RETURN)
    community = await session.get(OrgUnit, ticket.community_id)
    assert community is not None
    _move(session, clock, ticket, Action.RETURN, actor_id=actor.id, reason=reason.value)
    ticket.return_reason = reason
    await _hand_to(session, ticket, community, Level.COMMUNITY, clock.now(), calendar)
    # The community's clock runs on deciding what to do with it.
    ticket.next_deadline = ticket.accept_deadline
    ctx = await context_of(session, ticket)
    _send_card(
        session,
        clock,
        ctx,
        await holders_of(session, community, Level.COMMUNITY),
        lane=Lane.ESCALATION,
        reason="returned",
    )
    await _tell_watchers(session, clock, ctx, "returned", skip=[actor.id])
    await session.commit()
    return ctx


async def escalate_ticket(
    *,
    session: AsyncSession,
    clock: Clock,
    calendar: WorkCalendar,
    actor: Person | None,
    ticket_id: int,
    note: str | None = None,
) -> TicketContext:
    """One level up the ladder now; the new holder gets the card, the level below is told.

    `actor` None is the scheduler escalating a missed deadline (no role check).
    """
    if actor is None:
        ticket = await get_ticket(session, ticket_id, for_update=True)
        if not allowed(ticket.status, Action.ESCALATE):
            raise StaleAction("ticket.stale", status=ticket.status.value, number=ticket.number)
    else:
        ticket = await load_for_action(session, clock, actor, ticket_id, Action.ESCALATE)
    if ticket.level not in NEXT_LEVEL:
        raise DomainError("ticket.top_level", number=ticket.number)
    from_level = ticket.level
    previous_holder = await session.get(OrgUnit, ticket.holder_unit_id)
    grid = await session.get(OrgUnit, ticket.grid_id)
    assert previous_holder is not None and grid is not None
    to_level = NEXT_LEVEL[from_level]
    new_holder = await _ancestor(session, grid, LEVEL_KIND[to_level])
    _move(
        session,
        clock,
        ticket,
        Action.ESCALATE,
        actor_id=actor.id if actor else None,
        note=note,
        from_level=from_level.value,
        to_level=to_level.value,
    )
    await _hand_to(session, ticket, new_holder, to_level, clock.now(), calendar)
    ctx = await context_of(session, ticket)
    _send_card(
        session,
        clock,
        ctx,
        await holders_of(session, new_holder, ticket.level),
        lane=Lane.ESCALATION,
        reason="escalated",
    )
    below = [
        p
        for p in await holders_of(session, previous_holder, from_level)
        if actor is None or p.id != actor.id
    ]
    for person in below:
        enqueue(
            session,
            clock=clock,
            chat_id=person.telegram_id,
            kind="ticket_moved",
            lane=Lane.ESCALATION,
            data=_status_data(ctx, "escalated"),
        )
    await _tell_watchers(session, clock, ctx, "escalated", skip=[actor.id] if actor else [])
    await session.commit()
    return ctx


async def resolve_ticket(
    *,
    session: AsyncSession,
    clock: Clock,
    actor: Person,
    ticket_id: int,
    note: str,
    photo: str | None = None,
) -> TicketContext:
    """Answered (答覆) with a note and maybe a photo; the reporter is asked whether it is solved."""
    note = note.strip()
    if not note:
        raise DomainError("resolve.note_empty")
    if len(note) > DESCRIPTION_LIMIT:
        raise DomainError("report.description_too_long", limit=DESCRIPTION_LIMIT)
    ticket = await load_for_action(session, clock, actor, ticket_id, Action.RESOLVE)
    ticket.resolved_at, ticket.resolved_by_id = clock.now(), actor.id
    ticket.resolution_note, ticket.resolution_photo = note, photo
    _move(session, clock, ticket, Action.RESOLVE, actor_id=actor.id, note=note, photo=photo)
    ctx = await context_of(session, ticket)
    # The reporter gets the follow-up question; everyone else who watches, the news.
    if ctx.reporter is not None:
        enqueue(
            session,
            clock=clock,
            chat_id=ctx.reporter.telegram_id,
            kind="ticket_followup",
            lane=Lane.INTERACTIVE,
            data=_status_data(ctx, "resolved", note=note, photo=photo),
        )
    await _tell_watchers(
        session, clock, ctx, "resolved", skip=[actor.id, ticket.reporter_id or 0], note=note
    )
    await session.commit()
    return ctx


async def confirm_ticket(
    *, session: AsyncSession, clock: Clock, actor: Person, ticket_id: int
) -> TicketContext:
    """The resident says it is solved: the ticket closes; the resolver hears of it."""
    ticket = await load_for_action(session, clock, actor, ticket_id, Action.CONFIRM)
    _move(session, clock, ticket, Action.CONFIRM, actor_id=actor.id)
    ctx = await context_of(session, ticket)
    await _tell_watchers(session, clock, ctx, "closed", skip=[actor.id])
    await _tell_resolver(session, clock, ctx, "closed")
    await session.commit()
    return ctx


async def rate_ticket(
    *, session: AsyncSession, clock: Clock, actor: Person, ticket_id: int, rating: int
) -> TicketContext:
    """The reporter's 1-5 satisfaction with a closed ticket, given once."""
    if rating not in range(1, 6):
        raise DomainError("rate.out_of_range")
    ticket = await load_for_action(session, clock, actor, ticket_id, Action.RATE)
    if ticket.rating is not None:
        raise StaleAction("ticket.already_rated", number=ticket.number, rating=ticket.rating)
    ticket.rating = rating
    _move(session, clock, ticket, Action.RATE, actor_id=actor.id, rating=rating)
    ctx = await context_of(session, ticket)
    await _tell_resolver(session, clock, ctx, "rated", rating=rating)
    await session.commit()
    return ctx


async def reopen_ticket(
    *, session: AsyncSession, clock: Clock, actor: Person, ticket_id: int, reason: str
) -> TicketContext:
    """The resident says it is not solved: back to whoever resolved it, with the reason."""
    reason = reason.strip()
    if not reason:
        raise DomainError("reopen.reason_empty")
    if len(reason) > DESCRIPTION_LIMIT:
        raise DomainError("report.description_too_long", limit=DESCRIPTION_LIMIT)
    ticket = await load_for_action(session, clock, actor, ticket_id, Action.REOPEN)
    ticket.reopen_count += 1
    _move(session, clock, ticket, Action.REOPEN, actor_id=actor.id, note=reason)
    ctx = await context_of(session, ticket)
    resolver = await session.get(Person, ticket.resolved_by_id) if ticket.resolved_by_id else None
    people = [resolver] if resolver else []
    if ctx.holder is not None:
        people += [
            p
            for p in await holders_of(session, ctx.holder, ticket.level)
            if resolver is None or p.id != resolver.id
        ]
    _send_card(
        session,
        clock,
        ctx,
        people,
        lane=Lane.INTERACTIVE,
        reason="reopened",
        reopen_reason=reason,
    )
    await _tell_watchers(session, clock, ctx, "reopened", skip=[actor.id], note=reason)
    await session.commit()
    return ctx


async def redispatch_ticket(
    *,
    session: AsyncSession,
    clock: Clock,
    calendar: WorkCalendar,
    actor: Person,
    ticket_id: int,
    grid_id: int,
) -> TicketContext:
    """The community sends a returned ticket to a grid of its own."""
    ticket = await load_for_action(session, clock, actor, ticket_id, Action.REDISPATCH)
    grid = await session.get(OrgUnit, grid_id)
    if grid is None or grid.kind != UnitKind.GRID or grid.parent_id != ticket.community_id:
        raise DomainError("ticket.grid_not_in_community")
    _move(session, clock, ticket, Action.REDISPATCH, actor_id=actor.id, grid=grid.code)
    ticket.grid_id = grid.id
    ticket.return_reason = None
    await _hand_to(session, ticket, grid, Level.GRID, clock.now(), calendar)
    ctx = await context_of(session, ticket)
    _send_card(
        session,
        clock,
        ctx,
        await holders_of(session, grid, Level.GRID),
        lane=Lane.INTERACTIVE,
        reason="redispatched",
    )
    await _tell_watchers(session, clock, ctx, "redispatched", skip=[actor.id])
    await session.commit()
    return ctx


async def cancel_ticket(
    *, session: AsyncSession, clock: Clock, actor: Person, ticket_id: int, note: str
) -> TicketContext:
    """The community closes a returned ticket (duplicate, not real, not ours), saying why."""
    note = note.strip()
    if not note:
        raise DomainError("cancel.note_empty")
    ticket = await load_for_action(session, clock, actor, ticket_id, Action.CANCEL)
    _move(session, clock, ticket, Action.CANCEL, actor_id=actor.id, note=note)
    ctx = await context_of(session, ticket)
    await _tell_watchers(session, clock, ctx, "cancelled", skip=[actor.id], note=note)
    await session.commit()
    return ctx


async def _tell_resolver(
    session: AsyncSession, clock: Clock, ctx: TicketContext, event: str, **extra: object
) -> None:
    if ctx.ticket.resolved_by_id is None:
        return
    resolver = await session.get(Person, ctx.ticket.resolved_by_id)
    if resolver is not None:
        enqueue(
            session,
            clock=clock,
            chat_id=resolver.telegram_id,
            kind="ticket_status",
            lane=Lane.INTERACTIVE,
            data=_status_data(ctx, event, **extra),
        )


async def events_of(session: AsyncSession, ticket_id: int) -> list[TicketEvent]:
    return list(
        (
            await session.exec(
                select(TicketEvent)
                .where(TicketEvent.ticket_id == ticket_id)
                .order_by(TicketEvent.id)
            )
        ).all()
    )
