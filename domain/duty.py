"""Party members report for duty (党员报到): registration, service posts, the community's calls
(社区吹哨), check-in and check-out on site, hours and points.

A secretary acts only in their own community (a community secretary, or an administrator
above it); a call may also be posted by a grid leader of the community. Places on a call or
a post are taken by one conditional UPDATE, so a full call never takes one more, however many
claims arrive at once. Hours are the checked-in time, capped at the call's length; only what
the organiser confirms earns points.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.access import deny, require_role
from domain.clock import Clock
from domain.errors import DomainError, NotFound
from domain.geo import distance_m
from domain.once import claim_once
from domain.outbox import Outgoing, enqueue, enqueue_many
from storage.enums import (
    AssignmentStatus,
    CallStatus,
    ClaimStatus,
    Lane,
    MemberStatus,
    Role,
    TicketStatus,
    UnitKind,
)
from storage.models import (
    CallClaim,
    Category,
    DutyCall,
    JobRun,
    Member,
    OrgUnit,
    Person,
    PostHolder,
    RoleAssignment,
    ServicePost,
    Ticket,
)

CHECK_IN_RADIUS_M = 300.0
CHECK_IN_EARLY = timedelta(minutes=30)  # check-in opens this long before the start
NAME_LIMIT = 100
BRANCH_LIMIT = 200
SECRETARY_ROLES = (Role.COMMUNITY_SECRETARY, Role.ADMIN)
ORGANISER_ROLES = (Role.COMMUNITY_SECRETARY, Role.GRID_LEADER, Role.ADMIN)
# A ticket may be turned into a call while it is being worked on.
CALLABLE_TICKET_STATUSES = frozenset(
    {TicketStatus.NEW, TicketStatus.ACCEPTED, TicketStatus.REOPENED, TicketStatus.RETURNED}
)


async def _community(session: AsyncSession, community_id: int) -> OrgUnit:
    community = await session.get(OrgUnit, community_id)
    if community is None or community.kind != UnitKind.COMMUNITY:
        raise NotFound("unit.unknown", code=str(community_id))
    return community


async def member_of(session: AsyncSession, person: Person) -> Member | None:
    return (await session.exec(select(Member).where(Member.person_id == person.id))).first()


# -- registration ------------------------------------------------------------------------------


async def register_member(
    *,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    full_name: str,
    branch: str,
    community_id: int,
    grid_id: int | None = None,
    skills: Sequence[str] = (),
    services: Sequence[str] = (),
    phone: str | None = None,
) -> Member:
    """Report for duty with the community where the person lives; the secretary decides.

    A rejected member may register again (the same row, pending once more).
    """
    full_name, branch = full_name.strip(), branch.strip()
    if not full_name or len(full_name) > NAME_LIMIT:
        raise DomainError("duty.name_invalid", limit=NAME_LIMIT)
    if not branch or len(branch) > BRANCH_LIMIT:
        raise DomainError("duty.branch_invalid", limit=BRANCH_LIMIT)
    community = await _community(session, community_id)
    if grid_id is not None:
        grid = await session.get(OrgUnit, grid_id)
        if grid is None or grid.parent_id != community.id:
            raise DomainError("duty.grid_not_in_community")
    now = clock.now()
    member = await member_of(session, person)
    if member is not None and member.status != MemberStatus.REJECTED:
        raise DomainError("duty.already_registered", status=member.status.value)
    member = member or Member(person_id=person.id, created_at=now)
    member.full_name, member.branch = full_name, branch
    member.community_id, member.grid_id = community.id, grid_id
    member.skills, member.services, member.phone = list(skills), list(services), phone
    member.status, member.reject_reason = MemberStatus.PENDING, None
    member.decided_by_id = member.decided_at = None
    member.updated_at = now
    session.add(member)
    await session.flush()
    secretaries = (
        await session.exec(
            select(Person.telegram_id)
            .join(RoleAssignment, RoleAssignment.person_id == Person.id)
            .where(
                RoleAssignment.unit_id == community.id,
                RoleAssignment.role == Role.COMMUNITY_SECRETARY,
            )
        )
    ).all()
    for chat_id in secretaries:
        enqueue(
            session,
            clock=clock,
            chat_id=chat_id,
            kind="member_registration",
            lane=Lane.INTERACTIVE,
            data={"member_id": member.id, "full_name": full_name, "branch": branch},
        )
    await session.commit()
    return member


async def _pending_member(
    session: AsyncSession, clock: Clock, actor: Person, member_id: int
) -> Member:
    """Lock the registration; the actor must be its community's secretary, and it pending."""
    member = await session.get(Member, member_id, with_for_update=True)
    if member is None:
        raise NotFound("duty.member_unknown")
    community = await _community(session, member.community_id)
    await require_role(
        session,
        clock=clock,
        person_id=actor.id,
        roles=SECRETARY_ROLES,
        unit=community,
        action=f"duty.decide:{member_id}",
    )
    if member.status != MemberStatus.PENDING:
        raise DomainError("duty.already_decided", status=member.status.value)
    return member


async def check_decide(
    *, session: AsyncSession, clock: Clock, actor: Person, member_id: int
) -> Member:
    """Whether the actor may decide the registration now, before a dialog asks for a reason.

    The same checks as decide_member (NotAllowed, audited; or already decided); nothing is
    changed, and the row lock the check took is released.
    """
    member = await _pending_member(session, clock, actor, member_id)
    await session.commit()
    return member


async def decide_member(
    *,
    session: AsyncSession,
    clock: Clock,
    actor: Person,
    member_id: int,
    approve: bool,
    reason: str | None = None,
) -> Member:
    """The community secretary approves or rejects (with a reason); the member is told."""
    member = await _pending_member(session, clock, actor, member_id)
    reason = (reason or "").strip()
    if not approve and not reason:
        raise DomainError("duty.reason_needed")
    now = clock.now()
    member.status = MemberStatus.APPROVED if approve else MemberStatus.REJECTED
    member.reject_reason = None if approve else reason
    member.decided_by_id, member.decided_at, member.updated_at = actor.id, now, now
    session.add(member)
    person = await session.get(Person, member.person_id)
    assert person is not None
    enqueue(
        session,
        clock=clock,
        chat_id=person.telegram_id,
        kind="member_decision",
        lane=Lane.INTERACTIVE,
        data={"status": member.status.value, "reason": member.reject_reason},
    )
    await session.commit()
    return member


async def _approved(session: AsyncSession, person: Person) -> Member:
    member = await member_of(session, person)
    if member is None or member.status != MemberStatus.APPROVED:
        raise DomainError("duty.not_approved")
    return member


# -- service posts -----------------------------------------------------------------------------


async def claim_post(
    *, session: AsyncSession, clock: Clock, person: Person, post_id: int
) -> ServicePost:
    """Take a place on a standing post of the member's own community (认岗)."""
    member = await _approved(session, person)
    post = await session.get(ServicePost, post_id)
    if post is None or post.community_id != member.community_id:
        raise NotFound("duty.post_unknown")
    if await session.get(PostHolder, (post.id, member.id)) is not None:
        raise DomainError("duty.post_held")
    taken = await session.exec(
        sa.update(ServicePost)
        .where(ServicePost.id == post.id, ServicePost.held < ServicePost.places)
        .values(held=ServicePost.held + 1)
    )
    if taken.rowcount == 0:
        raise DomainError("duty.post_full", places=post.places)
    session.add(PostHolder(post_id=post.id, member_id=member.id, since=clock.now()))
    await session.commit()
    await session.refresh(post)
    return post


async def leave_post(*, session: AsyncSession, person: Person, post_id: int) -> None:
    member = await _approved(session, person)
    holder = await session.get(PostHolder, (post_id, member.id))
    if holder is None:
        raise DomainError("duty.post_not_held")
    await session.delete(holder)
    await session.exec(
        sa.update(ServicePost).where(ServicePost.id == post_id).values(held=ServicePost.held - 1)
    )
    await session.commit()


# -- calls -------------------------------------------------------------------------------------


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
    community = await _community(session, community_id)
    title = title.strip()
    if not title or len(title) > 200:
        raise DomainError("duty.title_invalid")
    now = clock.now()
    if not now < starts_at < ends_at:
        raise DomainError("duty.times_invalid")
    if capacity < 1:
        raise DomainError("duty.capacity_invalid")
    grids = []
    if grid_ids:
        grids = list(
            (await session.exec(select(OrgUnit).where(OrgUnit.id.in_(list(grid_ids))))).all()
        )
        if len(grids) != len(set(grid_ids)) or any(g.parent_id != community.id for g in grids):
            raise DomainError("duty.grid_not_in_community")
        for grid in grids:
            await require_role(
                session,
                clock=clock,
                person_id=actor.id,
                roles=ORGANISER_ROLES,
                unit=grid,
                action="duty.call",
            )
    else:
        await require_role(
            session,
            clock=clock,
            person_id=actor.id,
            roles=SECRETARY_ROLES,
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
        description=description.strip(),
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
    scope = select(Person.telegram_id).join(Member, Member.person_id == Person.id)
    scope = scope.where(Member.community_id == community.id, Member.status == MemberStatus.APPROVED)
    if grid_ids:
        scope = scope.where(Member.grid_id.in_(list(grid_ids)))
    data = {"call_id": call.id, "title": title, "starts_at": starts_at.isoformat()}
    sent = await enqueue_many(
        session,
        (Outgoing(chat_id, "duty_call", data, Lane.BULK) for chat_id in await session.exec(scope)),
        clock=clock,
    )
    await session.commit()
    return call, sent


async def _call_for_member(
    session: AsyncSession, person: Person, call_id: int
) -> tuple[Member, DutyCall]:
    member = await _approved(session, person)
    call = await session.get(DutyCall, call_id)
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
    """ "I'll come": a place, if one is left and the call has not started."""
    member, call = await _call_for_member(session, person, call_id)
    now = clock.now()
    claim = (
        await session.exec(
            select(CallClaim).where(CallClaim.call_id == call.id, CallClaim.member_id == member.id)
        )
    ).first()
    if claim is not None and claim.status == ClaimStatus.CLAIMED:
        raise DomainError("duty.already_claimed")
    c = DutyCall
    taken = await session.exec(
        sa.update(c)
        .where(
            c.id == call.id,
            c.status == CallStatus.OPEN,
            c.claimed < c.capacity,
            c.starts_at > now,
        )
        .values(
            claimed=c.claimed + 1,
            status=sa.case((c.claimed + 1 >= c.capacity, CallStatus.FULL.value), else_=c.status),
            updated_at=now,
        )
    )
    if taken.rowcount == 0:
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
    await session.commit()
    return claim


async def withdraw(*, session: AsyncSession, clock: Clock, person: Person, call_id: int) -> None:
    """Withdraw before the start; the place is free again."""
    member, call = await _call_for_member(session, person, call_id)
    now = clock.now()
    claim = (
        await session.exec(
            select(CallClaim).where(
                CallClaim.call_id == call.id,
                CallClaim.member_id == member.id,
                CallClaim.status == ClaimStatus.CLAIMED,
            )
        )
    ).first()
    if claim is None:
        raise DomainError("duty.no_claim")
    if call.starts_at <= now:
        raise DomainError("duty.call_started")
    claim.status, claim.updated_at = ClaimStatus.WITHDRAWN, now
    session.add(claim)
    await session.exec(
        sa.update(DutyCall)
        .where(DutyCall.id == call.id, DutyCall.status != CallStatus.CANCELLED)
        .values(claimed=DutyCall.claimed - 1, status=CallStatus.OPEN.value, updated_at=now)
    )
    await session.commit()


async def _claim_of(
    session: AsyncSession, person: Person, call_id: int
) -> tuple[DutyCall, CallClaim]:
    member, call = await _call_for_member(session, person, call_id)
    claim = (
        await session.exec(
            select(CallClaim).where(
                CallClaim.call_id == call.id,
                CallClaim.member_id == member.id,
                CallClaim.status == ClaimStatus.CLAIMED,
            )
        )
    ).first()
    if claim is None:
        raise DomainError("duty.no_claim")
    return call, claim


def _minutes(call: DutyCall, start: datetime, end: datetime) -> int:
    """Checked-in time inside the call's hours, in whole minutes."""
    span = min(end, call.ends_at) - max(start, call.starts_at)
    return max(0, int(span.total_seconds() // 60))


def _check_in_refusal(call: DutyCall, claim: CallClaim, now: datetime) -> DomainError | None:
    """Why this claim cannot check in now, whatever the place (None: it can); check_in and
    check_in_allowed both ask this, so a Check in button never promises what check_in refuses."""
    if claim.checked_out_at is not None:
        return DomainError("duty.already_checked_out")
    if claim.checked_in_at is not None:
        return DomainError("duty.already_checked_in")
    if now >= call.ends_at:
        return DomainError("duty.call_over", ended=call.ends_at)
    if now < call.starts_at - CHECK_IN_EARLY:
        return DomainError(
            "duty.outside_window", opens=call.starts_at - CHECK_IN_EARLY, closes=call.ends_at
        )
    return None


async def check_in_allowed(
    *, session: AsyncSession, clock: Clock, person: Person, call_id: int
) -> DutyCall:
    """Whether the person may check in to the call now, before their location is asked for.

    The same refusals as check_in (no claim, window not open yet, call over, already checked
    in); nothing is changed.
    """
    call, claim = await _claim_of(session, person, call_id)
    refusal = _check_in_refusal(call, claim, clock.now())
    if refusal is not None:
        raise refusal
    await session.commit()
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
) -> CallClaim:
    """On site: within `radius_m` of the call's place, from shortly before its start to its end."""
    call, claim = await _claim_of(session, person, call_id)
    now = clock.now()
    refusal = _check_in_refusal(call, claim, now)
    if refusal is not None:
        raise refusal
    away = distance_m(latitude, longitude, call.latitude, call.longitude)
    if away > radius_m:
        raise DomainError("duty.too_far", distance=round(away), radius=round(radius_m))
    claim.checked_in_at, claim.updated_at = now, now
    session.add(claim)
    await session.commit()
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
    await session.commit()
    return claim


async def remind_calls(*, session: AsyncSession, clock: Clock, before: timedelta) -> int:
    """Remind those who said "I'll come", once, `before` the start (or at once if later)."""
    now = clock.now()
    calls = (
        await session.exec(
            select(DutyCall).where(
                DutyCall.starts_at > now,
                DutyCall.starts_at <= now + before,
                DutyCall.reminded_at.is_(None),
                DutyCall.status != CallStatus.CANCELLED,
            )
        )
    ).all()
    messages = []
    for call in calls:
        chats = (
            await session.exec(
                select(Person.telegram_id)
                .join(Member, Member.person_id == Person.id)
                .join(CallClaim, CallClaim.member_id == Member.id)
                .where(CallClaim.call_id == call.id, CallClaim.status == ClaimStatus.CLAIMED)
            )
        ).all()
        data = {
            "call_id": call.id,
            "title": call.title,
            "starts_at": call.starts_at.isoformat(),
            "latitude": call.latitude,
            "longitude": call.longitude,
        }
        messages += [
            Outgoing(chat_id, "duty_call_reminder", data, Lane.INTERACTIVE) for chat_id in chats
        ]
        call.reminded_at = now
        session.add(call)
    sent = await enqueue_many(session, messages, clock=clock)
    await session.commit()
    return sent


async def close_forgotten(*, session: AsyncSession, clock: Clock) -> int:
    """Members who never checked out are closed at the call's end and marked for the organiser."""
    now = clock.now()
    rows = (
        await session.exec(
            select(CallClaim, DutyCall)
            .join(DutyCall, DutyCall.id == CallClaim.call_id)
            .where(
                DutyCall.ends_at <= now,
                CallClaim.status == ClaimStatus.CLAIMED,
                CallClaim.checked_in_at.is_not(None),
                CallClaim.checked_out_at.is_(None),
            )
        )
    ).all()
    for claim, call in rows:
        claim.checked_out_at, claim.auto_closed, claim.updated_at = call.ends_at, True, now
        claim.minutes = _minutes(call, claim.checked_in_at, call.ends_at)
        session.add(claim)
    await session.commit()
    return len(rows)


async def confirm_attendance(
    *,
    session: AsyncSession,
    clock: Clock,
    actor: Person,
    call_id: int,
    attended: Mapping[int, bool],
) -> list[CallClaim]:
    """After the end, the organiser confirms who came (member id -> yes/no); yes earns points."""
    call = await session.get(DutyCall, call_id)
    if call is None:
        raise NotFound("duty.call_unknown")
    if actor.id != call.organiser_id:
        community = await _community(session, call.community_id)
        await require_role(
            session,
            clock=clock,
            person_id=actor.id,
            roles=SECRETARY_ROLES,
            unit=community,
            action=f"duty.confirm:{call_id}",
        )
    now = clock.now()
    if now < call.ends_at:
        raise DomainError("duty.call_not_over")
    claims = (
        await session.exec(
            select(CallClaim).where(
                CallClaim.call_id == call.id,
                CallClaim.status == ClaimStatus.CLAIMED,
                CallClaim.member_id.in_(list(attended)),
            )
        )
    ).all()
    for claim in claims:
        claim.confirmed = bool(attended[claim.member_id])
        claim.points = round(claim.minutes / 60 * call.points_per_hour, 2) if claim.confirmed else 0
        claim.updated_at = now
        session.add(claim)
    await session.commit()
    return list(claims)


@dataclass(frozen=True)
class Service:
    """A member's confirmed service over a period."""

    minutes: int
    points: float
    calls: int


async def service_between(
    session: AsyncSession, member: Member, start: datetime, end: datetime
) -> Service:
    """Confirmed hours, points and calls whose start falls in [start, end)."""
    minutes, points, calls = (
        await session.exec(
            select(
                sa.func.coalesce(sa.func.sum(CallClaim.minutes), 0),
                sa.func.coalesce(sa.func.sum(CallClaim.points), 0.0),
                sa.func.count(),
            )
            .join(DutyCall, DutyCall.id == CallClaim.call_id)
            .where(
                CallClaim.member_id == member.id,
                CallClaim.confirmed.is_(True),
                DutyCall.starts_at >= start,
                DutyCall.starts_at < end,
            )
        )
    ).one()
    return Service(int(minutes), float(points), int(calls))


def _month_bounds(day: date, tz) -> tuple[datetime, datetime]:
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return (
        datetime.combine(first, time(), tz).astimezone(UTC),
        datetime.combine(following, time(), tz).astimezone(UTC),
    )


async def send_monthly_summaries(*, session: AsyncSession, clock: Clock, tz) -> int | None:
    """On the first day of a month, last month's service: to every approved member (hours,
    points, calls) and to every community secretary (who served, unfilled calls, no-shows).

    Once per month, also after downtime (the month is claimed with a JobRun row). Returns how
    many messages were queued, or None when there was nothing to do.
    """
    now = clock.now()
    today = now.astimezone(tz).date()
    last_month = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
    if not await claim_once(session, f"duty-month:{last_month:%Y-%m}", now):
        return None
    start, end = _month_bounds(last_month, tz)
    month = f"{last_month:%Y-%m}"
    served = (
        await session.exec(
            select(
                Member.community_id,
                Person.telegram_id,
                Member.full_name,
                sa.func.sum(CallClaim.minutes),
                sa.func.sum(CallClaim.points),
                sa.func.count(),
            )
            .join(Member, Member.id == CallClaim.member_id)
            .join(Person, Person.id == Member.person_id)
            .join(DutyCall, DutyCall.id == CallClaim.call_id)
            .where(
                CallClaim.confirmed.is_(True),
                DutyCall.starts_at >= start,
                DutyCall.starts_at < end,
            )
            .group_by(Member.community_id, Person.telegram_id, Member.full_name)
        )
    ).all()
    messages = [
        Outgoing(
            chat_id,
            "duty_month_member",
            {"month": month, "minutes": int(minutes), "points": float(points), "calls": calls},
            Lane.BULK,
        )
        for _, chat_id, _, minutes, points, calls in served
    ]
    by_community: dict[int, dict] = {}
    for community_id, _, name, minutes, _, _ in served:
        entry = by_community.setdefault(community_id, {"served": [], "unfilled": 0, "no_shows": 0})
        entry["served"].append({"name": name, "minutes": int(minutes)})
    calls = (
        await session.exec(
            select(DutyCall).where(DutyCall.starts_at >= start, DutyCall.starts_at < end)
        )
    ).all()
    for call in calls:
        entry = by_community.setdefault(
            call.community_id, {"served": [], "unfilled": 0, "no_shows": 0}
        )
        if call.status != CallStatus.CANCELLED and call.claimed < call.capacity:
            entry["unfilled"] += 1
    no_shows = (
        await session.exec(
            select(DutyCall.community_id, sa.func.count())
            .join(CallClaim, CallClaim.call_id == DutyCall.id)
            .where(
                DutyCall.starts_at >= start,
                DutyCall.starts_at < end,
                CallClaim.status == ClaimStatus.CLAIMED,
                sa.or_(CallClaim.checked_in_at.is_(None), CallClaim.confirmed.is_(False)),
            )
            .group_by(DutyCall.community_id)
        )
    ).all()
    for community_id, count in no_shows:
        entry = by_community.setdefault(community_id, {"served": [], "unfilled": 0, "no_shows": 0})
        entry["no_shows"] = count
    secretaries = (
        await session.exec(
            select(RoleAssignment.unit_id, Person.telegram_id)
            .join(Person, Person.id == RoleAssignment.person_id)
            .where(
                RoleAssignment.role == Role.COMMUNITY_SECRETARY,
                RoleAssignment.unit_id.in_(list(by_community)),
            )
        )
    ).all()
    for community_id, chat_id in secretaries:
        messages.append(
            Outgoing(
                chat_id,
                "duty_month_secretary",
                {"month": month, **by_community[community_id]},
                Lane.BULK,
            )
        )
    sent = await enqueue_many(session, messages, clock=clock)
    await session.commit()
    return sent


# -- who may post a call, and from which ticket (the /call dialog) ---------------------------


@dataclass(frozen=True)
class CallScope:
    """Where a person may post a call: one community, as a whole or in some of its grids."""

    community: OrgUnit
    whole: bool  # the community's secretary: may call the whole community (or any grids)
    grids: list[OrgUnit]  # the grids they may pick, by code: all the community's, or their own


async def call_scopes(session: AsyncSession, person: Person) -> list[CallScope]:
    """The communities where the person may post a call (secretary, grid leader), by code."""
    rows = (
        await session.exec(
            select(RoleAssignment.role, OrgUnit)
            .join(OrgUnit, OrgUnit.id == RoleAssignment.unit_id)
            .where(
                RoleAssignment.person_id == person.id,
                RoleAssignment.status == AssignmentStatus.ACTIVE,
                RoleAssignment.role.in_([Role.COMMUNITY_SECRETARY, Role.GRID_LEADER]),
            )
        )
    ).all()
    whole = {
        unit.id
        for role, unit in rows
        if role == Role.COMMUNITY_SECRETARY and unit.kind == UnitKind.COMMUNITY
    }
    own = {
        unit.id: unit
        for role, unit in rows
        if role == Role.GRID_LEADER and unit.kind == UnitKind.GRID and unit.parent_id is not None
    }
    community_ids = whole | {grid.parent_id for grid in own.values()}
    if not community_ids:
        return []
    communities = (
        await session.exec(
            select(OrgUnit)
            .where(OrgUnit.id.in_(list(community_ids)), OrgUnit.kind == UnitKind.COMMUNITY)
            .order_by(OrgUnit.code)
        )
    ).all()
    grids = (
        await session.exec(
            select(OrgUnit)
            .where(OrgUnit.parent_id.in_(list(community_ids)), OrgUnit.kind == UnitKind.GRID)
            .order_by(OrgUnit.code)
        )
    ).all()
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
    community = await _community(session, community_id)
    await deny(
        session,
        clock=clock,
        person_id=person.id,
        unit=community,
        action="duty.call",
        roles=ORGANISER_ROLES,
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
        roles=(Role.COMMUNITY_SECRETARY, Role.GRID_LEADER),
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
    await session.commit()
    return TicketForCall(ticket=ticket, category=category, scope=scope)


# -- the organiser after the call: /calls, the attendance sheet, "attendance waits" --------------

# Calls that ended longer ago than this are not announced to their organiser (after a long
# downtime, or when the column was added to a database with old calls).
ATTENDANCE_ASK_WINDOW = timedelta(days=2)
SHEET_LIMIT = 40  # lines of a sheet the organiser can mark one by one in chat


@dataclass(frozen=True)
class OrganisedCall:
    """A call in an organiser's /calls list, with its claims and how many wait for a mark."""

    call: DutyCall
    claims: int
    unconfirmed: int


def _organised_by(person: Person) -> sa.ColumnElement[bool]:
    """Calls the person organised, or of a community where they are the secretary."""
    communities = select(RoleAssignment.unit_id).where(
        RoleAssignment.person_id == person.id,
        RoleAssignment.role == Role.COMMUNITY_SECRETARY,
        RoleAssignment.status == AssignmentStatus.ACTIVE,
    )
    return sa.or_(DutyCall.organiser_id == person.id, DutyCall.community_id.in_(communities))


async def calls_organised(
    session: AsyncSession, *, person: Person, offset: int, limit: int
) -> tuple[list[OrganisedCall], int]:
    """A page of the person's calls (theirs, and their community's), latest start first; and
    how many there are in all."""
    mine = _organised_by(person)
    total = (await session.exec(select(sa.func.count()).select_from(DutyCall).where(mine))).one()
    calls = (
        await session.exec(
            select(DutyCall)
            .where(mine)
            .order_by(DutyCall.starts_at.desc(), DutyCall.id.desc())
            .offset(offset)
            .limit(limit)
        )
    ).all()
    counts: dict[int, tuple[int, int]] = {}
    if calls:
        rows = await session.exec(
            select(
                CallClaim.call_id,
                sa.func.count(),
                sa.func.sum(sa.case((CallClaim.confirmed.is_(None), 1), else_=0)),
            )
            .where(
                CallClaim.call_id.in_([c.id for c in calls]),
                CallClaim.status == ClaimStatus.CLAIMED,
            )
            .group_by(CallClaim.call_id)
        )
        counts = {call_id: (int(n), int(open_ or 0)) for call_id, n, open_ in rows}
    page = [OrganisedCall(c, *counts.get(c.id, (0, 0))) for c in calls]
    return page, int(total)


@dataclass(frozen=True)
class SheetLine:
    """One member who said "I'll come", and what happened on the day."""

    member_id: int
    name: str
    claim: CallClaim

    @property
    def came_by_default(self) -> bool:
        """The organiser's last word, else: came if they checked in."""
        if self.claim.confirmed is not None:
            return self.claim.confirmed
        return self.claim.checked_in_at is not None


@dataclass(frozen=True)
class AttendanceSheet:
    """A call, for its organiser: the members coming (claim order) and what may be done now."""

    call: DutyCall
    lines: list[SheetLine]
    over: bool  # the call has ended: attendance may be confirmed
    confirmed: bool  # every line has been confirmed at least once
    final: bool  # confirmed and the month's summary is out: the marks no longer change


def _summary_key(call: DutyCall, tz) -> str:
    """The JobRun key send_monthly_summaries claims for the month the call started in."""
    return f"duty-month:{call.starts_at.astimezone(tz):%Y-%m}"


async def _organiser_or_secretary(
    session: AsyncSession, clock: Clock, actor: Person, call: DutyCall, action: str
) -> None:
    """The call's organiser, or its community's secretary (or an administrator above)."""
    if actor.id == call.organiser_id:
        return
    community = await _community(session, call.community_id)
    await require_role(
        session,
        clock=clock,
        person_id=actor.id,
        roles=SECRETARY_ROLES,
        unit=community,
        action=action,
    )


async def attendance_sheet(
    *, session: AsyncSession, clock: Clock, actor: Person, call_id: int, tz
) -> AttendanceSheet:
    """A call's details and its sheet, for its organiser or the community's secretary only
    (anyone else: NotAllowed, audited)."""
    call = await session.get(DutyCall, call_id)
    if call is None:
        raise NotFound("duty.call_unknown")
    await _organiser_or_secretary(session, clock, actor, call, f"duty.sheet:{call_id}")
    rows = (
        await session.exec(
            select(CallClaim, Member.full_name)
            .join(Member, Member.id == CallClaim.member_id)
            .where(CallClaim.call_id == call.id, CallClaim.status == ClaimStatus.CLAIMED)
            .order_by(CallClaim.id)
        )
    ).all()
    lines = [SheetLine(claim.member_id, name, claim) for claim, name in rows]
    confirmed = bool(lines) and all(line.claim.confirmed is not None for line in lines)
    summarised = await session.get(JobRun, _summary_key(call, tz)) is not None
    over = clock.now() >= call.ends_at
    sheet = AttendanceSheet(call, lines, over, confirmed, confirmed and summarised)
    await session.commit()
    return sheet


async def confirm_sheet(
    *,
    session: AsyncSession,
    clock: Clock,
    actor: Person,
    call_id: int,
    attended: Mapping[int, bool],
    tz,
) -> list[CallClaim]:
    """Confirm attendance from the organiser's sheet (through confirm_attendance).

    Refused before the end, naming when it ends. Confirming again replaces the marks and points
    of the last confirmation, until the monthly summary of the month the call started in has
    gone out (the 1st of the next month): from then on a sheet confirmed before is final, so
    the figures members and secretaries were sent stay true. A sheet never confirmed may still
    be confirmed after that (late points show in /me, not in a summary already sent).
    """
    call = await session.get(DutyCall, call_id)
    if call is None:
        raise NotFound("duty.call_unknown")
    await _organiser_or_secretary(session, clock, actor, call, f"duty.confirm:{call_id}")
    if clock.now() < call.ends_at:
        raise DomainError("attendance.not_over", ends=call.ends_at)
    if await session.get(JobRun, _summary_key(call, tz)) is not None:
        marked = (
            await session.exec(
                select(sa.func.count())
                .select_from(CallClaim)
                .where(CallClaim.call_id == call.id, CallClaim.confirmed.is_not(None))
            )
        ).one()
        if marked:
            raise DomainError("attendance.final")
    return await confirm_attendance(
        session=session, clock=clock, actor=actor, call_id=call_id, attended=attended
    )


async def ask_attendance(*, session: AsyncSession, clock: Clock) -> int:
    """Once per call, at its end: its organiser is told that attendance waits for them.

    Calls nobody said they would come to are marked without a message. Run after
    close_forgotten, so the sheet the message opens is complete. Returns the messages queued.
    """
    now = clock.now()
    statement = (
        select(DutyCall)
        .where(
            DutyCall.ends_at <= now,
            DutyCall.ends_at > now - ATTENDANCE_ASK_WINDOW,
            DutyCall.attendance_asked_at.is_(None),
            DutyCall.status != CallStatus.CANCELLED,
        )
        .order_by(DutyCall.ends_at, DutyCall.id)
    )
    if session.bind.dialect.name == "postgresql":
        # Another scheduler's calls are skipped, not waited for (and never announced twice).
        statement = statement.with_for_update(skip_locked=True)
    calls = (await session.exec(statement)).all()
    if not calls:
        await session.commit()
        return 0
    ids = [c.id for c in calls]
    claims = dict(
        (
            await session.exec(
                select(CallClaim.call_id, sa.func.count())
                .where(CallClaim.call_id.in_(ids), CallClaim.status == ClaimStatus.CLAIMED)
                .group_by(CallClaim.call_id)
            )
        ).all()
    )
    chats = dict(
        (
            await session.exec(
                select(Person.id, Person.telegram_id).where(
                    Person.id.in_({c.organiser_id for c in calls})
                )
            )
        ).all()
    )
    messages = []
    for call in calls:
        call.attendance_asked_at = now
        session.add(call)
        if claims.get(call.id):
            data = {
                "call_id": call.id,
                "title": call.title,
                "ends_at": call.ends_at.isoformat(),
                "claims": int(claims[call.id]),
            }
            messages.append(
                Outgoing(chats[call.organiser_id], "duty_attendance_due", data, Lane.INTERACTIVE)
            )
    sent = await enqueue_many(session, messages, clock=clock)
    await session.commit()
    return sent


# -- what a member sees: posts, calls ahead; communities to choose from ----------------------


@dataclass(frozen=True)
class PostView:
    """A post of the member's community as /posts shows it."""

    post: ServicePost
    mine: bool


async def posts_of_member(*, session: AsyncSession, person: Person) -> list[PostView]:
    """The approved member's community's posts, in the order they were set up, with those held.

    Refused (duty.not_approved) for anyone not approved.
    """
    member = await _approved(session, person)
    posts = (
        await session.exec(
            select(ServicePost)
            .where(ServicePost.community_id == member.community_id)
            .order_by(ServicePost.id)
        )
    ).all()
    held = set(
        (
            await session.exec(select(PostHolder.post_id).where(PostHolder.member_id == member.id))
        ).all()
    )
    return [PostView(post, post.id in held) for post in posts]


async def posts_held(session: AsyncSession, member: Member) -> list[ServicePost]:
    """The posts the member holds, in the order they were set up."""
    return list(
        (
            await session.exec(
                select(ServicePost)
                .join(PostHolder, PostHolder.post_id == ServicePost.id)
                .where(PostHolder.member_id == member.id)
                .order_by(ServicePost.id)
            )
        ).all()
    )


async def calls_ahead(
    session: AsyncSession, clock: Clock, member: Member, limit: int = 10
) -> list[DutyCall]:
    """Calls the member said "I'll come" to that have not ended, soonest first."""
    return list(
        (
            await session.exec(
                select(DutyCall)
                .join(CallClaim, CallClaim.call_id == DutyCall.id)
                .where(
                    CallClaim.member_id == member.id,
                    CallClaim.status == ClaimStatus.CLAIMED,
                    DutyCall.ends_at > clock.now(),
                    DutyCall.status != CallStatus.CANCELLED,
                )
                .order_by(DutyCall.starts_at, DutyCall.id)
                .limit(limit)
            )
        ).all()
    )


async def streets_with_communities(session: AsyncSession) -> list[OrgUnit]:
    """Streets that have communities, by code (the first step of choosing one by hand)."""
    community = sa.orm.aliased(OrgUnit)
    return list(
        (
            await session.exec(
                select(OrgUnit)
                .where(
                    OrgUnit.kind == UnitKind.STREET,
                    sa.exists().where(
                        community.parent_id == OrgUnit.id,
                        community.kind == UnitKind.COMMUNITY,
                    ),
                )
                .order_by(OrgUnit.code)
            )
        ).all()
    )


async def communities_of_street(
    session: AsyncSession, street_id: int
) -> tuple[OrgUnit, list[OrgUnit]]:
    """A street and its communities, by code; NotFound if it is not a street."""
    street = await session.get(OrgUnit, street_id)
    if street is None or street.kind != UnitKind.STREET:
        raise NotFound("unit.unknown", code=str(street_id))
    communities = (
        await session.exec(
            select(OrgUnit)
            .where(OrgUnit.parent_id == street.id, OrgUnit.kind == UnitKind.COMMUNITY)
            .order_by(OrgUnit.code)
        )
    ).all()
    return street, list(communities)
