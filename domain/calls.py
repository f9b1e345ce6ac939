"""The community's calls (社区吹哨): who may post one and where, the fan-out to members in
scope, answers and withdrawals, check-in within a radius of the call's place and inside its
window, check-out, the reminder before the start and the check-outs members forgot.

A call for the whole community is the secretary's; a grid leader calls the members of their
own grids, and may turn a ticket of theirs into a call. Places are taken by one conditional
UPDATE, so a full call never takes one more. Hours are the checked-in time, capped at the
call's length.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from domain.access import deny, require_role
from domain.clock import Clock
from domain.errors import DomainError, NotFound
from domain.geo import distance_m, require_point, valid_point
from domain.members import (
    approved_member,
    community_unit,
)
from domain.outbox import Outgoing, enqueue_many
from domain.roles import approving_roles, calling_roles, organising_roles, powers
from domain.text import clean_text
from storage.calls import (
    CallToRemind,
    calls_ahead_of,
    chats_coming_to,
    chats_coming_to_calls,
    chats_of_approved_members,
    claim_calls_to_remind,
    claim_forgotten_check_outs,
    claim_of_member,
    communities_with_ids,
    free_call_place,
    grids_of_communities,
    standing_claim_of_member,
    take_call_place,
    units_with_ids,
)
from storage.enums import (
    CallStatus,
    ClaimStatus,
    Lane,
    TicketStatus,
    UnitKind,
)
from storage.models import (
    CallClaim,
    Category,
    DutyCall,
    Member,
    OrgUnit,
    Person,
    Ticket,
)
from storage.people import active_assignments_of

# A call's place row carries these of the call's data (views.calls titles the venue with them).
PLACE_KEYS = ("call_id", "title", "starts_at", "ends_at", "latitude", "longitude")
CHECK_IN_RADIUS_M = 300.0
POINTS_PER_HOUR_LIMIT = 10.0
CHECK_IN_EARLY = timedelta(minutes=30)  # check-in opens this long before the start
# A ticket may be turned into a call while it is being worked on.
CALLABLE_TICKET_STATUSES = frozenset(
    {TicketStatus.NEW, TicketStatus.ACCEPTED, TicketStatus.REOPENED, TicketStatus.RETURNED}
)


async def create_call(
    *,
    session: AsyncSession,
    clock: Clock,
    actor: Person,
    community_id: int,
    title: str,
    description: str,
    latitude: float,
    longitude: float,
    starts_at: datetime,
    ends_at: datetime,
    capacity: int,
    grid_ids: Sequence[int] = (),
    ticket_id: int | None = None,
    points_per_hour: float = 1.0,
) -> tuple[DutyCall, int]:
    """Post a call; every approved member in scope gets it (bulk lane). The call, and how many.

    A call for the whole community is the secretary's (or an administrator's above); a grid
    leader may call the members of their own grids, and so turn a ticket of theirs into a call.
    """
    community = await community_unit(session, community_id)
    title, description = clean_text(title).strip(), clean_text(description).strip()
    if not title or len(title) > 200:
        raise DomainError("duty.title_invalid")
    require_point(latitude, longitude)
    now = clock.now()
    if not now < starts_at < ends_at:
        raise DomainError("duty.times_invalid")
    if capacity < 1:
        raise DomainError("duty.capacity_invalid")
    if not 0 <= points_per_hour <= POINTS_PER_HOUR_LIMIT:
        raise DomainError("duty.points_invalid", limit=POINTS_PER_HOUR_LIMIT)
    grids = []
    if grid_ids:
        grids = await units_with_ids(session, grid_ids)
        if len(grids) != len(set(grid_ids)) or any(g.parent_id != community.id for g in grids):
            raise DomainError("duty.grid_not_in_community")
        for grid in grids:
            await require_role(
                session,
                clock=clock,
                person_id=actor.id,
                roles=organising_roles(),
                unit=grid,
                action="duty.call",
            )
    else:
        await require_role(
            session,
            clock=clock,
            person_id=actor.id,
            roles=approving_roles(),
            unit=community,
            action="duty.call",
        )
    if ticket_id is not None:
        ticket = await session.get(Ticket, ticket_id)
        if ticket is None or ticket.community_id != community.id:
            raise DomainError("duty.ticket_not_in_community")
    call = DutyCall(
        community_id=community.id,
        organiser_id=actor.id,
        title=title,
        description=description,
        latitude=latitude,
        longitude=longitude,
        starts_at=starts_at,
        ends_at=ends_at,
        capacity=capacity,
        grid_ids=sorted(set(grid_ids)),
        ticket_id=ticket_id,
        points_per_hour=points_per_hour,
        created_at=now,
        updated_at=now,
    )
    session.add(call)
    await session.flush()
    chats = await chats_of_approved_members(session, community.id, grid_ids)
    await enqueue_many(
        session, _with_place(call_data(call), "duty_call", chats, Lane.BULK), clock=clock
    )
    await session.flush()
    return call, len(chats)


def call_data(call: DutyCall | CallToRemind) -> dict[str, Any]:
    """What a member is told of a call (the outbox rows' data): what, from when to when, where."""
    return {
        "call_id": call.id,
        "title": call.title,
        "description": call.description,
        "starts_at": call.starts_at.isoformat(),
        "ends_at": call.ends_at.isoformat(),
        "latitude": call.latitude,
        "longitude": call.longitude,
    }


def _with_place(
    data: dict[str, Any], kind: str, chats: Iterable[int], lane: Lane
) -> Iterator[Outgoing]:
    """For each chat, the call's place (a venue) and then the message of `kind` that points
    to it (its buttons last, under the reader's thumb)."""
    place = {key: data[key] for key in PLACE_KEYS}
    for chat_id in chats:
        yield Outgoing(chat_id, "duty_call_place", place, lane)
        yield Outgoing(chat_id, kind, data, lane)


async def _call_for_member(
    session: AsyncSession, person: Person, call_id: int
) -> tuple[Member, DutyCall]:
    member = await approved_member(session, person)
    # Fresh: a place taken by the conditional UPDATE may have left this row stale.
    call = await session.get(DutyCall, call_id, populate_existing=True)
    if call is None:
        raise NotFound("duty.call_unknown")
    in_scope = call.community_id == member.community_id and (
        not call.grid_ids or member.grid_id in call.grid_ids
    )
    if not in_scope:
        raise DomainError("duty.call_not_yours")
    return member, call


async def answer_call(
    *, session: AsyncSession, clock: Clock, person: Person, call_id: int
) -> CallClaim:
    """ "I'll come": a place, if one is left and the call has not started.

    A member who comes after the call's reminder went gets the reminder now (through the
    outbox, as the others did), so everyone coming has a Check in button.
    """
    member, call = await _call_for_member(session, person, call_id)
    now = clock.now()
    claim = await claim_of_member(session, call.id, member.id)
    if claim is not None and claim.status == ClaimStatus.CLAIMED:
        raise DomainError("duty.already_claimed")
    taken = await take_call_place(session, call.id, now)
    if taken is None:
        # Nothing was changed; say why (the caller's transaction ends as for any refusal).
        await session.refresh(call)
        if call.status == CallStatus.CANCELLED:
            raise DomainError("duty.call_cancelled")
        if call.starts_at <= now:
            raise DomainError("duty.call_started")
        raise DomainError("duty.call_full", capacity=call.capacity)
    claim = claim or CallClaim(call_id=call.id, member_id=member.id)
    claim.status, claim.claimed_at, claim.updated_at = ClaimStatus.CLAIMED, now, now
    session.add(claim)
    if taken.reminded_at is not None:
        reminder = _with_place(
            call_data(call), "duty_call_reminder", [person.telegram_id], Lane.INTERACTIVE
        )
        await enqueue_many(session, reminder, clock=clock)
    await session.flush()
    return claim


async def withdraw(*, session: AsyncSession, clock: Clock, person: Person, call_id: int) -> None:
    """Withdraw before the start; the place is free again."""
    member, call = await _call_for_member(session, person, call_id)
    now = clock.now()
    claim = await standing_claim_of_member(session, call.id, member.id)
    if claim is None:
        raise DomainError("duty.no_claim")
    if call.starts_at <= now:
        raise DomainError("duty.call_started")
    claim.status, claim.updated_at = ClaimStatus.WITHDRAWN, now
    session.add(claim)
    await free_call_place(session, call.id, now)
    await session.flush()


async def _claim_of(
    session: AsyncSession, person: Person, call_id: int
) -> tuple[DutyCall, CallClaim]:
    member, call = await _call_for_member(session, person, call_id)
    claim = await standing_claim_of_member(session, call.id, member.id)
    if claim is None:
        raise DomainError("duty.no_claim")
    return call, claim


def _minutes(call: DutyCall, start: datetime, end: datetime) -> int:
    """Checked-in time inside the call's hours, in whole minutes."""
    span = min(end, call.ends_at) - max(start, call.starts_at)
    return max(0, int(span.total_seconds() // 60))


def _check_in_refusal(
    call: DutyCall, claim: CallClaim, now: datetime, early: timedelta
) -> DomainError | None:
    """Why this claim cannot check in now, whatever the place (None: it can); check_in and
    check_in_allowed both ask this, so a Check in button never promises what check_in refuses."""
    if call.status == CallStatus.CANCELLED:
        return DomainError("duty.call_cancelled")
    if claim.checked_out_at is not None:
        return DomainError("duty.already_checked_out")
    if claim.checked_in_at is not None:
        return DomainError("duty.already_checked_in")
    if now >= call.ends_at:
        return DomainError("duty.call_over", ended=call.ends_at)
    if now < call.starts_at - early:
        return DomainError("duty.outside_window", opens=call.starts_at - early, closes=call.ends_at)
    return None


async def check_in_allowed(
    *,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    call_id: int,
    early: timedelta = CHECK_IN_EARLY,
) -> DutyCall:
    """Whether the person may check in to the call now, before their location is asked for.

    The same refusals as check_in (no claim, window not open yet, call over, already checked
    in); nothing is changed.
    """
    call, claim = await _claim_of(session, person, call_id)
    refusal = _check_in_refusal(call, claim, clock.now(), early)
    if refusal is not None:
        raise refusal
    return call


async def check_in(
    *,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    call_id: int,
    latitude: float,
    longitude: float,
    radius_m: float = CHECK_IN_RADIUS_M,
    early: timedelta = CHECK_IN_EARLY,
) -> CallClaim:
    """On site: within `radius_m` of the call's place, from `early` before its start to its
    end."""
    if not valid_point(latitude, longitude):
        raise DomainError("duty.bad_location")
    call, claim = await _claim_of(session, person, call_id)
    now = clock.now()
    refusal = _check_in_refusal(call, claim, now, early)
    if refusal is not None:
        raise refusal
    away = distance_m(latitude, longitude, call.latitude, call.longitude)
    if away > radius_m:
        raise DomainError("duty.too_far", distance=round(away), radius=round(radius_m))
    claim.checked_in_at, claim.updated_at = now, now
    session.add(claim)
    await session.flush()
    return claim


async def check_out(
    *, session: AsyncSession, clock: Clock, person: Person, call_id: int
) -> CallClaim:
    """Leaving: the hours are the time checked in, capped at the call's length."""
    call, claim = await _claim_of(session, person, call_id)
    now = clock.now()
    if claim.checked_in_at is None:
        raise DomainError("duty.not_checked_in")
    if claim.checked_out_at is not None:
        raise DomainError("duty.already_checked_out")
    claim.checked_out_at = min(now, call.ends_at)
    claim.minutes = _minutes(call, claim.checked_in_at, claim.checked_out_at)
    claim.updated_at = now
    session.add(claim)
    await session.flush()
    return claim


async def remind_calls(*, session: AsyncSession, clock: Clock, before: timedelta) -> int:
    """Remind those who said "I'll come", once, `before` the start (or at once if later).

    Each call is claimed by one conditional UPDATE (its reminder not sent yet), in the
    transaction that queues its reminders: of several schedulers, one reminds it.
    """
    now = clock.now()
    claimed = await claim_calls_to_remind(session, now, before)
    if not claimed:
        return 0
    chats = await chats_coming_to_calls(session, [call.id for call in claimed])
    data = {call.id: call_data(call) for call in claimed}
    rows = (
        row
        for call_id, chat_id in chats
        for row in _with_place(data[call_id], "duty_call_reminder", [chat_id], Lane.INTERACTIVE)
    )
    await enqueue_many(session, rows, clock=clock)
    await session.flush()
    return len(chats)


async def close_forgotten(*, session: AsyncSession, clock: Clock) -> int:
    """Members who never checked out are closed at the call's end and marked for the organiser.

    The claims are held by this transaction as they are read, so another scheduler neither
    closes them again nor waits for them; one already closed is not read.
    """
    now = clock.now()
    rows = await claim_forgotten_check_outs(session, now)
    for claim, call in rows:
        claim.checked_out_at, claim.auto_closed, claim.updated_at = call.ends_at, True, now
        claim.minutes = _minutes(call, claim.checked_in_at, call.ends_at)
        session.add(claim)
    await session.flush()
    return len(rows)


# -- who may post a call, and from which ticket (the /call dialog) ---------------------------


@dataclass(frozen=True)
class CallScope:
    """Where a person may post a call: one community, as a whole or in some of its grids."""

    community: OrgUnit
    whole: bool  # the community's secretary: may call the whole community (or any grids)
    grids: list[OrgUnit]  # the grids they may pick, by code: all the community's, or their own


async def call_scopes(session: AsyncSession, person: Person) -> list[CallScope]:
    """The communities where the person may post a call (secretary, grid leader), by code."""
    calling = calling_roles()
    rows = [
        (held.assignment.role, held.unit)
        for held in await active_assignments_of(session, person.id)
        if held.unit is not None and held.assignment.role in calling
    ]
    whole = {
        unit.id
        for role, unit in rows
        if powers(role).call_scope is UnitKind.COMMUNITY and unit.kind == UnitKind.COMMUNITY
    }
    own = {
        unit.id: unit
        for role, unit in rows
        if powers(role).call_scope is UnitKind.GRID
        and unit.kind == UnitKind.GRID
        and unit.parent_id is not None
    }
    community_ids = whole | {grid.parent_id for grid in own.values()}
    if not community_ids:
        return []
    communities = await communities_with_ids(session, community_ids)
    grids = await grids_of_communities(session, community_ids)
    return [
        CallScope(
            community=community,
            whole=community.id in whole,
            grids=[
                g
                for g in grids
                if g.parent_id == community.id and (community.id in whole or g.id in own)
            ],
        )
        for community in communities
    ]


async def call_scope(
    *, session: AsyncSession, clock: Clock, person: Person, community_id: int
) -> CallScope:
    """The person's scope in one community; NotAllowed (audited) where they have none."""
    for scope in await call_scopes(session, person):
        if scope.community.id == community_id:
            return scope
    community = await community_unit(session, community_id)
    await deny(
        session,
        clock=clock,
        person_id=person.id,
        unit=community,
        action="duty.call",
        roles=organising_roles(),
    )


@dataclass(frozen=True)
class TicketForCall:
    """An open ticket turned into a call, with what the dialog proposes from it."""

    ticket: Ticket
    category: Category
    scope: CallScope


async def ticket_for_call(
    *, session: AsyncSession, clock: Clock, person: Person, ticket_id: int
) -> TicketForCall:
    """A ticket its grid's leader (or the community's secretary) turns into a call.

    Only for a ticket in the person's grids (else NotAllowed, audited) that is still being
    worked on (else a refusal naming its state now).
    """
    ticket = await session.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFound("ticket.unknown")
    grid = await session.get(OrgUnit, ticket.grid_id)
    assert grid is not None
    await require_role(
        session,
        clock=clock,
        person_id=person.id,
        roles=calling_roles(),
        unit=grid,
        action=f"duty.call_ticket:{ticket.number}",
    )
    if ticket.status not in CALLABLE_TICKET_STATUSES:
        raise DomainError("duty.ticket_not_open", number=ticket.number, status=ticket.status.value)
    scope = await call_scope(
        session=session, clock=clock, person=person, community_id=ticket.community_id
    )
    if not scope.whole and grid.id not in {g.id for g in scope.grids}:
        # A grid leader of another grid covering it through an odd assignment: refused.
        await deny(session, clock=clock, person_id=person.id, unit=grid, action="duty.call")
    category = await session.get(Category, ticket.category_id)
    assert category is not None
    return TicketForCall(ticket=ticket, category=category, scope=scope)


@dataclass(frozen=True)
class ComingCall:
    """A call the person said "I'll come" to, and what they may do about it now."""

    call: DutyCall
    check_in_open: bool  # Check in (or, once in, Check out) may be pressed now
    may_withdraw: bool  # before the start


async def coming_call(
    *,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    call_id: int,
    early: timedelta = CHECK_IN_EARLY,
) -> ComingCall:
    """A call the person is coming to (else the refusal saying why not), as /me shows it."""
    call, claim = await _claim_of(session, person, call_id)
    now = clock.now()
    on_site = claim.checked_in_at is not None and claim.checked_out_at is None
    can_check_in = _check_in_refusal(call, claim, now, early) is None
    return ComingCall(
        call=call,
        check_in_open=can_check_in or (on_site and now < call.ends_at),
        may_withdraw=claim.checked_in_at is None and now < call.starts_at,
    )


async def calls_ahead(
    session: AsyncSession, clock: Clock, member: Member, limit: int = 10
) -> list[DutyCall]:
    """Calls the member said "I'll come" to that have not ended, soonest first."""
    return await calls_ahead_of(session, member.id, clock.now(), limit)


# -- the organiser: cancelling a call ---------------------------------------------------------


async def require_organiser(
    session: AsyncSession, clock: Clock, actor: Person, call: DutyCall, action: str
) -> None:
    """The call's organiser, or its community's secretary (or an administrator above)."""
    if actor.id == call.organiser_id:
        return
    community = await community_unit(session, call.community_id)
    await require_role(
        session,
        clock=clock,
        person_id=actor.id,
        roles=approving_roles(),
        unit=community,
        action=action,
    )


async def cancel_call(
    *, session: AsyncSession, clock: Clock, actor: Person, call_id: int
) -> tuple[DutyCall, int]:
    """Call off a call before it starts; those who said "I'll come" are told. The call, and
    how many were told."""
    call = await session.get(DutyCall, call_id, populate_existing=True, with_for_update=True)
    if call is None:
        raise NotFound("duty.call_unknown")
    await require_organiser(session, clock, actor, call, f"duty.cancel:{call_id}")
    now = clock.now()
    if call.status == CallStatus.CANCELLED:
        raise DomainError("duty.call_cancelled")
    if now >= call.starts_at:
        raise DomainError("duty.too_late_to_cancel", started=call.starts_at)
    call.status, call.updated_at = CallStatus.CANCELLED, now
    session.add(call)
    coming = await chats_coming_to(session, call.id)
    data = {"call_id": call.id, "title": call.title, "starts_at": call.starts_at.isoformat()}
    told = await enqueue_many(
        session,
        (Outgoing(chat_id, "duty_call_cancelled", data, Lane.INTERACTIVE) for chat_id in coming),
        clock=clock,
    )
    await session.flush()
    return call, told
