"""The ticket lifecycle: one table of allowed moves, and the use cases that make them.

Every move checks who may make it (a holder role covering the ticket's holder unit, or the
reporter for the resident's answers), writes an event in the same transaction, and records
the notifications for everyone but the person acting in the outbox.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlmodel.ext.asyncio.session import AsyncSession

from domain import audit
from domain.access import covering_assignment, deny
from domain.changes import Changes
from domain.clock import Clock
from domain.deadlines import Policies, Timing, first_at, followup_alerts, phase_alerts
from domain.errors import DomainError, NotAllowed, NotFound
from domain.geo import distance_m
from domain.lookups import Lookups
from domain.reference import OrgSnapshot
from domain.roles import (
    held_levels,
    ladder_roles,
    level_roles,
    primary_role,
    returns_roles,
)
from domain.text import clean_text
from storage import tickets as stored
from storage.enums import (
    OPEN_STATUSES,
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
    Ticket,
    TicketEvent,
    TicketWatcher,
)
from storage.people import active_assignments_of

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
    EXPIRE = "expire"  # the follow-up visit went unanswered: closed, unrated
    WHISTLE = "whistle"  # the street summons departments
    RECALL = "recall"  # the street released every department: back in its own hands


S = TicketStatus
# The one table of allowed moves: (status now, action) -> status after.
MOVES: dict[tuple[TicketStatus, Action], TicketStatus] = {
    (S.NEW, Action.ACCEPT): S.ACCEPTED,
    (S.NEW, Action.RETURN): S.RETURNED,
    (S.NEW, Action.ESCALATE): S.NEW,
    (S.ACCEPTED, Action.ESCALATE): S.NEW,
    (S.REOPENED, Action.ESCALATE): S.NEW,
    (S.RETURNED, Action.ESCALATE): S.NEW,
    (S.SUMMONED, Action.ESCALATE): S.SUMMONED,
    (S.ACCEPTED, Action.RESOLVE): S.RESOLVED,
    (S.REOPENED, Action.RESOLVE): S.RESOLVED,
    (S.SUMMONED, Action.RESOLVE): S.RESOLVED,
    (S.RESOLVED, Action.CONFIRM): S.CLOSED,
    (S.RESOLVED, Action.REOPEN): S.REOPENED,
    (S.RESOLVED, Action.EXPIRE): S.CLOSED,
    (S.CLOSED, Action.RATE): S.CLOSED,
    (S.RETURNED, Action.REDISPATCH): S.NEW,
    (S.RETURNED, Action.CANCEL): S.CANCELLED,
    (S.NEW, Action.WHISTLE): S.SUMMONED,
    (S.ACCEPTED, Action.WHISTLE): S.SUMMONED,
    (S.REOPENED, Action.WHISTLE): S.SUMMONED,
    (S.SUMMONED, Action.WHISTLE): S.SUMMONED,
    (S.SUMMONED, Action.RECALL): S.ACCEPTED,
}
# Which clock runs in each state: accepting it, resolving it, or the follow-up visit.
PHASES: dict[TicketStatus, str] = {
    S.NEW: "accept",
    S.RETURNED: "accept",
    S.ACCEPTED: "resolve",
    S.REOPENED: "resolve",
    S.RESOLVED: "followup",
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


# -- reading -----------------------------------------------------------------------------


async def get_ticket(session: AsyncSession, ticket_id: int, *, for_update: bool = False) -> Ticket:
    ticket = await stored.ticket_by_id(session, ticket_id, for_update=for_update)
    if ticket is None:
        raise NotFound("ticket.unknown")
    return ticket


async def context_from(lk: Lookups, ticket: Ticket) -> TicketContext:
    return TicketContext(
        ticket,
        await lk.category(ticket.category_id),
        await lk.unit(ticket.grid_id),
        await lk.unit(ticket.community_id),
        await lk.unit(ticket.holder_unit_id) if ticket.holder_unit_id else None,
        await lk.person(ticket.reporter_id),
    )


async def context_of(session: AsyncSession, ticket: Ticket) -> TicketContext:
    """The ticket with its category, grid, community, holder unit and reporter."""
    return await context_from(Lookups(session), ticket)


@dataclass(frozen=True, slots=True)
class Nearby:
    """An open ticket near a point: what the "me too" offer shows."""

    id: int
    number: str
    status: TicketStatus
    affected: int
    distance_m: float


# A resolved ticket awaits its reporter's verdict: too late to join.
_OFFERED = tuple(status for status in OPEN_STATUSES if status != S.RESOLVED)


async def find_duplicates(
    session: AsyncSession,
    *,
    category_id: int,
    latitude: float,
    longitude: float,
    radius_m: float = DUPLICATE_RADIUS_M,
    limit: int = 5,
    exclude_person_id: int | None = None,
) -> list[Nearby]:
    """Open tickets of the category within `radius_m` of the point, nearest first.

    Tickets `exclude_person_id` already reported or joined are left out.
    """
    # The box around the circle (a degree of latitude is 111.32 km everywhere, one of
    # longitude less towards the poles); the distance then picks the circle out of it.
    dlat = radius_m / 111_320.0
    dlon = radius_m / (111_320.0 * max(0.01, math.cos(math.radians(latitude))))
    rows = await stored.open_tickets_in_box(
        session,
        category_id=category_id,
        statuses=_OFFERED,
        latitudes=(latitude - dlat, latitude + dlat),
        longitudes=(longitude - dlon, longitude + dlon),
        not_watched_by=exclude_person_id,
    )
    near = []
    for row in rows:
        distance = distance_m(latitude, longitude, row.latitude, row.longitude)
        if distance <= radius_m:
            near.append(Nearby(row.id, row.number, row.status, row.affected, distance))
    near.sort(key=lambda n: (n.distance_m, n.id))
    return near[:limit]


async def tickets_of(
    session: AsyncSession, *, person_id: int, offset: int = 0, limit: int = 5
) -> tuple[list[Ticket], int]:
    """Tickets the person reported or joined, newest first, one page and the total."""
    return await stored.tickets_watched_by(session, person_id, offset=offset, limit=limit)


async def queue_of(
    session: AsyncSession, *, person_id: int, offset: int = 0, limit: int = 5
) -> tuple[list[Ticket], int]:
    """Open tickets the person's roles hold now, most urgent deadline first."""
    scopes = [
        stored.HeldScope(held.unit.path, levels, held.assignment.role in returns_roles())
        for held in await active_assignments_of(session, person_id)
        if held.unit is not None and (levels := held_levels(held.assignment.role))
    ]
    return await stored.tickets_held(session, scopes, statuses=_OFFERED, offset=offset, limit=limit)


def holder_roles(ticket: Ticket) -> tuple[Role, ...]:
    """Who may act on the ticket where it is held now (administrators of a covering unit too)."""
    if ticket.status == S.RETURNED:
        return returns_roles()
    return level_roles(ticket.level)


async def _holders(lk: Lookups, unit: OrgUnit, level: Level) -> list[Person]:
    """People who hold tickets at `level` in `unit`: its role holders, not the admins above."""
    return await lk.holders(primary_role(level), unit_id=unit.id)


async def can_act(session: AsyncSession, *, person_id: int, ticket: Ticket) -> bool:
    """Whether the person holds the ticket now (may accept, resolve, escalate...)."""
    if ticket.holder_unit_id is None:
        return False
    unit = await session.get(OrgUnit, ticket.holder_unit_id)
    assert unit is not None
    roles = holder_roles(ticket)
    found = await covering_assignment(session, person_id=person_id, roles=roles, unit=unit)
    return found is not None


# -- deadlines -----------------------------------------------------------------------------


def plan(
    ticket: Ticket,
    timing: Timing,
    policy: DeadlinePolicy | None,
    *,
    now: datetime,
    start: datetime,
    phase: str | None = None,
) -> None:
    """The deadline the holder works against now, and the sweep's alerts leading to it.

    The phase follows the status (a new or returned ticket must be accepted, an accepted or
    reopened one resolved, a resolved one waits for the follow-up) unless given: a summoned
    ticket has no clock of its own while its departments work, only when one returns it.
    """
    if phase is None:
        phase = PHASES.get(ticket.status)
    deadline, alerts = None, []
    if phase == "followup":
        deadline, alerts = followup_alerts(timing, ticket.resolved_at or now)
    elif phase is not None and policy is not None:
        minutes = policy.accept_minutes if phase == "accept" else policy.resolve_minutes
        top = ticket.level not in NEXT_LEVEL
        deadline, alerts = phase_alerts(
            timing, policy, start=start, minutes=minutes, now=now, top=top
        )
        if phase == "accept":
            ticket.accept_deadline = deadline
        else:
            ticket.resolve_deadline = deadline
    ticket.next_deadline, ticket.alerts, ticket.alert_at = deadline, alerts, first_at(alerts)


async def _replan(
    session: AsyncSession,
    timing: Timing,
    ticket: Ticket,
    *,
    now: datetime,
    start: datetime,
    phase: str | None = None,
) -> None:
    policies = await Policies.load(session)
    policy = policies.find(ticket.urgency, ticket.category_id, ticket.level)
    plan(ticket, timing, policy, now=now, start=start, phase=phase)


def _hand_to(ticket: Ticket, unit: OrgUnit, level: Level, now: datetime) -> None:
    """The ticket is held by `unit` at `level` from now on (the caller plans its deadlines)."""
    ticket.level = level
    ticket.holder_unit_id = unit.id
    ticket.holder_since = now


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
        "next_deadline": t.next_deadline.isoformat() if t.next_deadline else None,
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


def send_card(
    out: Changes,
    ctx: TicketContext,
    people: Sequence[Person],
    *,
    lane: Lane,
    reason: str,
    media: bool = True,
    **extra: object,
) -> None:
    """The ticket's card (photos and place first when `media`, then text with buttons)."""
    data = card_data(ctx, out.now) | {"reason": reason, **extra}
    for person in people:
        if media and data["photos"]:
            out.message(
                person.telegram_id,
                "ticket_photos",
                {"photos": data["photos"], "number": data["number"]},
                lane,
            )
        if media and data["latitude"] is not None:
            out.message(
                person.telegram_id,
                "ticket_place",
                {
                    "latitude": data["latitude"],
                    "longitude": data["longitude"],
                    "number": data["number"],
                    "grid_zh": data["grid_zh"],
                    "grid_en": data["grid_en"],
                },
                lane,
            )
        out.message(person.telegram_id, "ticket_card", data, lane)


def _tell(
    out: Changes,
    ctx: TicketContext,
    people: Sequence[Person],
    event: str,
    *,
    skip: Sequence[int | None] = (),
    kind: str = "ticket_status",
    lane: Lane = Lane.INTERACTIVE,
    **extra: object,
) -> None:
    """A status line about the ticket to each person not in `skip`."""
    data = _status_data(ctx, event, **extra)
    for person in people:
        if person.id not in skip:
            out.message(person.telegram_id, kind, data, lane)


async def tell_watchers(
    lk: Lookups,
    out: Changes,
    ctx: TicketContext,
    event: str,
    *,
    skip: Sequence[int | None] = (),
    **extra: object,
) -> None:
    """Every status change reaches the reporter and everyone who said "me too"."""
    _tell(out, ctx, await lk.watchers(ctx.ticket.id), event, skip=skip, **extra)


async def _tell_resolver(
    lk: Lookups, out: Changes, ctx: TicketContext, event: str, **extra: object
) -> None:
    resolver = await lk.person(ctx.ticket.resolved_by_id)
    if resolver is not None:
        _tell(out, ctx, [resolver], event, **extra)


def move(
    out: Changes,
    ticket: Ticket,
    action: Action,
    *,
    actor_id: int | None,
    note: str | None = None,
    **data: object,
) -> None:
    """Make the table's move for `action`: the new status, its time, and the event.

    A ticket that is no longer open has no deadline and nothing left for the sweep.
    """
    before = ticket.status
    ticket.status = MOVES[(before, action)]
    ticket.updated_at = out.now
    if ticket.status not in OPEN_STATUSES:
        ticket.next_deadline, ticket.alerts, ticket.alert_at = None, [], None
        if ticket.closed_at is None:
            ticket.closed_at = out.now
    out.event(ticket, actor_id=actor_id, kind=action, from_status=before, note=note, **data)


# -- use cases -----------------------------------------------------------------------------


def clean_note(note: str, empty_key: str) -> str:
    """A note, reason or description cleaned (domain.text) and trimmed; refused when empty or
    over the limit."""
    note = clean_text(note).strip()
    if not note:
        raise DomainError(empty_key)
    if len(note) > DESCRIPTION_LIMIT:
        raise DomainError("report.description_too_long", limit=DESCRIPTION_LIMIT)
    return note


async def file_ticket(
    *,
    session: AsyncSession,
    org: OrgSnapshot,
    clock: Clock,
    timing: Timing,
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
    description = clean_note(description, "report.description_empty")
    if len(photos) > PHOTO_LIMIT:
        raise DomainError("report.too_many_photos", limit=PHOTO_LIMIT)
    category = org.category(category_id)
    grid = org.units.get(grid_id)
    if grid is None or grid.kind != UnitKind.GRID:
        raise NotFound("unit.unknown", code=str(grid_id))
    community = org.ancestor(grid, UnitKind.COMMUNITY)
    city = org.ancestor(grid, UnitKind.CITY)
    out = Changes(clock)
    now = out.now
    local_day = now.astimezone(timing.calendar.tz).strftime("%Y%m%d")
    prefix = f"{city.code}-{local_day}"
    sequence = await stored.next_number(session, prefix)
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
        # Given, not left to the default factory: pydantic inspects a factory's signature
        # every time it calls one, which costs more than the rest of the constructor.
        alerts=[],
    )
    policy = org.policies.find(ticket.urgency, ticket.category_id, ticket.level)
    plan(ticket, timing, policy, now=now, start=now)
    await stored.add_filed_ticket(session, ticket, reporter_id=reporter.id)
    out.event(
        ticket,
        actor_id=reporter.id,
        kind=Action.FILE,
        from_status=None,
        grid=grid.code,
        anonymous=anonymous,
    )
    ctx = TicketContext(ticket, category, grid, community, grid, reporter)
    send_card(
        out,
        ctx,
        await _holders(Lookups(session), grid, Level.GRID),
        lane=Lane.INTERACTIVE,
        reason="new",
    )
    await out.write(session)
    logger.info("ticket %s filed in %s", ticket.number, grid.code)
    return ctx


async def join_ticket(
    *, session: AsyncSession, clock: Clock, person: Person, ticket_id: int
) -> TicketContext:
    """ "Me too": the person follows an open ticket and counts among those affected.

    The move itself; a press in chat goes through join_offered_ticket, which checks the
    ticket was offered to the person first.
    """
    ticket = await get_ticket(session, ticket_id, for_update=True)
    if ticket.status not in OPEN_STATUSES:
        raise StaleAction("ticket.stale", status=ticket.status.value, number=ticket.number)
    out = Changes(clock)
    existing = await session.get(TicketWatcher, (ticket.id, person.id))
    if existing is None:
        session.add(
            TicketWatcher(
                ticket_id=ticket.id,
                person_id=person.id,
                kind=WatcherKind.ME_TOO,
                created_at=out.now,
            )
        )
        ticket.affected += 1
        ticket.updated_at = out.now
        session.add(ticket)
        out.event(
            ticket,
            actor_id=person.id,
            kind=Action.JOIN,
            from_status=ticket.status,
            affected=ticket.affected,
        )
    ctx = await context_of(session, ticket)
    await out.write(session)
    return ctx


async def join_offered_ticket(
    *,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    ticket_id: int,
    offered: Collection[int],
) -> TicketContext:
    """ "Me too" pressed in a report dialog: join the ticket, if it is one the dialog offered.

    `offered` are the ids of the tickets the person was shown (find_duplicates, for their
    report). Any other id comes from a forged button (another community's ticket, an
    anonymous one): refused with NotAllowed, audited, nothing joined.
    """
    if ticket_id not in offered:
        ticket = await session.get(Ticket, ticket_id)
        grid = await session.get(OrgUnit, ticket.grid_id) if ticket is not None else None
        audit.record(
            session,
            clock=clock,
            actor_id=person.id,
            action="access.denied",
            attempted=f"ticket.join:{ticket.number if ticket is not None else ticket_id}",
            unit=grid.code if grid is not None else None,
            roles=[],
        )
        await session.flush()
        logger.warning("person %s refused joining ticket %s: not offered", person.id, ticket_id)
        raise NotAllowed("ticket.join_not_offered")
    return await join_ticket(session=session, clock=clock, person=person, ticket_id=ticket_id)


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
        roles = holder_roles(ticket)
        if await covering_assignment(session, person_id=actor.id, roles=roles, unit=holder) is None:
            grid = await session.get(OrgUnit, ticket.grid_id)
            assert grid is not None
            if await covering_assignment(
                session, person_id=actor.id, roles=ladder_roles(), unit=grid
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
    return await load_for_action(session, clock, actor, ticket_id, action)


async def accept_ticket(
    *, session: AsyncSession, clock: Clock, timing: Timing, actor: Person, ticket_id: int
) -> TicketContext:
    """The holder accepts (簽收): recorded who and when; its clock now runs on resolving."""
    ticket = await load_for_action(session, clock, actor, ticket_id, Action.ACCEPT)
    out = Changes(clock)
    ticket.accepted_at, ticket.accepted_by_id = out.now, actor.id
    move(out, ticket, Action.ACCEPT, actor_id=actor.id)
    await _replan(session, timing, ticket, now=out.now, start=ticket.holder_since)
    lk = Lookups(session)
    ctx = await context_from(lk, ticket)
    await tell_watchers(lk, out, ctx, "accepted", skip=[actor.id])
    await out.write(session)
    return ctx


async def return_ticket(
    *,
    session: AsyncSession,
    clock: Clock,
    timing: Timing,
    actor: Person,
    ticket_id: int,
    reason: ReturnReason,
) -> TicketContext:
    """The grid returns it (退單) with a reason; the community secretary re-dispatches or closes."""
    ticket = await load_for_action(session, clock, actor, ticket_id, Action.RETURN)
    lk = Lookups(session)
    out = Changes(clock)
    community = await lk.unit(ticket.community_id)
    move(out, ticket, Action.RETURN, actor_id=actor.id, reason=reason.value)
    ticket.return_reason = reason
    _hand_to(ticket, community, Level.COMMUNITY, out.now)
    # The community's clock runs on deciding what to do with it.
    await _replan(session, timing, ticket, now=out.now, start=out.now)
    ctx = await context_from(lk, ticket)
    send_card(
        out,
        ctx,
        await _holders(lk, community, Level.COMMUNITY),
        lane=Lane.ESCALATION,
        reason="returned",
    )
    await tell_watchers(lk, out, ctx, "returned", skip=[actor.id])
    await out.write(session)
    return ctx


async def escalate_ticket(
    *,
    session: AsyncSession,
    clock: Clock,
    timing: Timing,
    actor: Person,
    ticket_id: int,
    note: str | None = None,
) -> TicketContext:
    """One level up the ladder now, by the holder; the same step the sweep takes on a deadline."""
    ticket = await load_for_action(session, clock, actor, ticket_id, Action.ESCALATE)
    if ticket.level not in NEXT_LEVEL:
        raise DomainError("ticket.top_level", number=ticket.number)
    lk = Lookups(session)
    out = Changes(clock)
    ctx = await escalate(
        lk, out, timing, await Policies.load(session), ticket, actor=actor, note=note
    )
    await out.write(session)
    return ctx


async def escalate(
    lk: Lookups,
    out: Changes,
    timing: Timing,
    policies: Policies,
    ticket: Ticket,
    *,
    actor: Person | None,
    note: str | None = None,
) -> TicketContext:
    """Move the ticket one level up: the new holder gets the card, the level below is told.

    `actor` None is the sweep escalating a missed deadline. The caller checked the move.
    """
    from_level = ticket.level
    previous_holder = await lk.unit(ticket.holder_unit_id) if ticket.holder_unit_id else None
    grid = await lk.unit(ticket.grid_id)
    to_level = NEXT_LEVEL[from_level]
    new_holder = await lk.ancestor(grid, LEVEL_KIND[to_level])
    actor_id = actor.id if actor else None
    move(
        out,
        ticket,
        Action.ESCALATE,
        actor_id=actor_id,
        note=note,
        from_level=from_level.value,
        to_level=to_level.value,
    )
    _hand_to(ticket, new_holder, to_level, out.now)
    # A summoned ticket only has a clock of its own while a returned summons waits on it.
    phase = "accept" if ticket.status == S.SUMMONED else None
    policy = policies.find(ticket.urgency, ticket.category_id, ticket.level)
    plan(ticket, timing, policy, now=out.now, start=out.now, phase=phase)
    ctx = await context_from(lk, ticket)
    send_card(
        out,
        ctx,
        await _holders(lk, new_holder, ticket.level),
        lane=Lane.ESCALATION,
        reason="escalated",
    )
    if previous_holder is not None:
        below = await _holders(lk, previous_holder, from_level)
        _tell(
            out, ctx, below, "escalated", skip=[actor_id], kind="ticket_moved", lane=Lane.ESCALATION
        )
    await tell_watchers(lk, out, ctx, "escalated", skip=[actor_id])
    return ctx


async def remind(
    lk: Lookups, out: Changes, ticket: Ticket, *, overdue: bool, deadline: str
) -> None:
    """Remind whoever holds the ticket now that its deadline is near (or has passed)."""
    if ticket.holder_unit_id is None:
        return
    ctx = await context_from(lk, ticket)
    holder = await lk.unit(ticket.holder_unit_id)
    send_card(
        out,
        ctx,
        await _holders(lk, holder, ticket.level),
        lane=Lane.ESCALATION,
        reason="overdue" if overdue else "reminder",
        media=False,
        deadline=deadline,
    )


async def close_unanswered(lk: Lookups, out: Changes, ticket: Ticket) -> None:
    """Nobody answered the follow-up visit in time: closed as solved, unrated."""
    move(out, ticket, Action.EXPIRE, actor_id=None)
    ctx = await context_from(lk, ticket)
    await tell_watchers(lk, out, ctx, "closed_unrated")
    await _tell_resolver(lk, out, ctx, "closed_unrated")


async def resolve_ticket(
    *,
    session: AsyncSession,
    clock: Clock,
    timing: Timing,
    actor: Person,
    ticket_id: int,
    note: str,
    photo: str | None = None,
) -> TicketContext:
    """Answered (答覆) with a note and maybe a photo; the reporter is asked whether it is solved."""
    note = clean_note(note, "resolve.note_empty")
    ticket = await load_for_action(session, clock, actor, ticket_id, Action.RESOLVE)
    lk = Lookups(session)
    out = Changes(clock)
    ctx = await resolve(lk, out, timing, ticket, actor=actor, note=note, photo=photo)
    await out.write(session)
    return ctx


async def resolve(
    lk: Lookups,
    out: Changes,
    timing: Timing,
    ticket: Ticket,
    *,
    actor: Person,
    note: str,
    photo: str | None = None,
) -> TicketContext:
    """Record the answer and start the follow-up visit (also when the last department finishes)."""
    ticket.resolved_at, ticket.resolved_by_id = out.now, actor.id
    ticket.resolution_note, ticket.resolution_photo = note, photo
    move(out, ticket, Action.RESOLVE, actor_id=actor.id, note=note, photo=photo)
    plan(ticket, timing, None, now=out.now, start=out.now)
    ctx = await context_from(lk, ticket)
    # The reporter gets the follow-up question; everyone else who watches, the news.
    if ctx.reporter is not None:
        _tell(out, ctx, [ctx.reporter], "resolved", kind="ticket_followup", note=note, photo=photo)
    await tell_watchers(lk, out, ctx, "resolved", skip=[actor.id, ticket.reporter_id], note=note)
    return ctx


async def confirm_ticket(
    *, session: AsyncSession, clock: Clock, actor: Person, ticket_id: int
) -> TicketContext:
    """The resident says it is solved: the ticket closes; the resolver hears of it."""
    ticket = await load_for_action(session, clock, actor, ticket_id, Action.CONFIRM)
    lk = Lookups(session)
    out = Changes(clock)
    move(out, ticket, Action.CONFIRM, actor_id=actor.id)
    ctx = await context_from(lk, ticket)
    await tell_watchers(lk, out, ctx, "closed", skip=[actor.id])
    await _tell_resolver(lk, out, ctx, "closed")
    await out.write(session)
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
    lk = Lookups(session)
    out = Changes(clock)
    ticket.rating = rating
    move(out, ticket, Action.RATE, actor_id=actor.id, rating=rating)
    ctx = await context_from(lk, ticket)
    await _tell_resolver(lk, out, ctx, "rated", rating=rating)
    await out.write(session)
    return ctx


async def reopen_ticket(
    *,
    session: AsyncSession,
    clock: Clock,
    timing: Timing,
    actor: Person,
    ticket_id: int,
    reason: str,
) -> TicketContext:
    """The resident says it is not solved: back to whoever resolved it, with the reason."""
    reason = clean_note(reason, "reopen.reason_empty")
    ticket = await load_for_action(session, clock, actor, ticket_id, Action.REOPEN)
    lk = Lookups(session)
    out = Changes(clock)
    ticket.reopen_count += 1
    move(out, ticket, Action.REOPEN, actor_id=actor.id, note=reason)
    # The holder gets a fresh period to resolve it again.
    await _replan(session, timing, ticket, now=out.now, start=out.now)
    ctx = await context_from(lk, ticket)
    resolver = await lk.person(ticket.resolved_by_id)
    people = [resolver] if resolver else []
    if ctx.holder is not None:
        people += [
            p
            for p in await _holders(lk, ctx.holder, ticket.level)
            if resolver is None or p.id != resolver.id
        ]
    send_card(out, ctx, people, lane=Lane.INTERACTIVE, reason="reopened", reopen_reason=reason)
    await tell_watchers(lk, out, ctx, "reopened", skip=[actor.id], note=reason)
    await out.write(session)
    return ctx


async def redispatch_ticket(
    *,
    session: AsyncSession,
    clock: Clock,
    timing: Timing,
    actor: Person,
    ticket_id: int,
    grid_id: int,
) -> TicketContext:
    """The community sends a returned ticket to a grid of its own."""
    ticket = await load_for_action(session, clock, actor, ticket_id, Action.REDISPATCH)
    grid = await session.get(OrgUnit, grid_id)
    if grid is None or grid.kind != UnitKind.GRID or grid.parent_id != ticket.community_id:
        raise DomainError("ticket.grid_not_in_community")
    lk = Lookups(session)
    out = Changes(clock)
    move(out, ticket, Action.REDISPATCH, actor_id=actor.id, grid=grid.code)
    ticket.grid_id = grid.id
    ticket.return_reason = None
    _hand_to(ticket, grid, Level.GRID, out.now)
    await _replan(session, timing, ticket, now=out.now, start=out.now)
    ctx = await context_from(lk, ticket)
    send_card(
        out,
        ctx,
        await _holders(lk, grid, Level.GRID),
        lane=Lane.INTERACTIVE,
        reason="redispatched",
    )
    await tell_watchers(lk, out, ctx, "redispatched", skip=[actor.id])
    await out.write(session)
    return ctx


async def cancel_ticket(
    *, session: AsyncSession, clock: Clock, actor: Person, ticket_id: int, note: str
) -> TicketContext:
    """The community closes a returned ticket (duplicate, not real, not ours), saying why."""
    note = clean_note(note, "cancel.note_empty")
    ticket = await load_for_action(session, clock, actor, ticket_id, Action.CANCEL)
    lk = Lookups(session)
    out = Changes(clock)
    move(out, ticket, Action.CANCEL, actor_id=actor.id, note=note)
    ctx = await context_from(lk, ticket)
    await tell_watchers(lk, out, ctx, "cancelled", skip=[actor.id], note=note)
    await out.write(session)
    return ctx


async def events_of(session: AsyncSession, ticket_id: int) -> list[TicketEvent]:
    return await stored.events_of(session, ticket_id)
