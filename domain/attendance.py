"""After a call: the organiser's list of calls and attendance sheet, the confirmation that
turns checked-in minutes into points (only what the organiser confirms earns them), the
message that attendance waits, and each month's summaries to members and secretaries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.access import require_role
from domain.calls import require_organiser
from domain.clock import Clock
from domain.errors import DomainError, NotFound
from domain.members import community_unit
from domain.once import claim_once
from domain.outbox import Outgoing, enqueue_many
from domain.roles import approving_roles, member_hearing_roles
from storage.enums import (
    AssignmentStatus,
    CallStatus,
    ClaimStatus,
    Lane,
)
from storage.models import (
    CallClaim,
    DutyCall,
    JobRun,
    Member,
    Person,
    RoleAssignment,
)


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
        community = await community_unit(session, call.community_id)
        await require_role(
            session,
            clock=clock,
            person_id=actor.id,
            roles=approving_roles(),
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

    Once per month, also after downtime: the month is claimed with a JobRun row inserted in
    the transaction that queues the messages, so of several schedulers one sends them (the
    others wait for its commit, then find the month taken). Returns how many messages were
    queued, or None when there was nothing to do.
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
            # Serving secretaries, each once (one reappointed keeps a revoked row too).
            select(RoleAssignment.unit_id, Person.telegram_id)
            .join(Person, Person.id == RoleAssignment.person_id)
            .where(
                RoleAssignment.role.in_(member_hearing_roles()),
                RoleAssignment.status == AssignmentStatus.ACTIVE,
                RoleAssignment.unit_id.in_(list(by_community)),
            )
            .distinct()
            .order_by(RoleAssignment.unit_id, Person.telegram_id)
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
        RoleAssignment.role.in_(member_hearing_roles()),
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


async def attendance_sheet(
    *, session: AsyncSession, clock: Clock, actor: Person, call_id: int, tz
) -> AttendanceSheet:
    """A call's details and its sheet, for its organiser or the community's secretary only
    (anyone else: NotAllowed, audited)."""
    call = await session.get(DutyCall, call_id)
    if call is None:
        raise NotFound("duty.call_unknown")
    await require_organiser(session, clock, actor, call, f"duty.sheet:{call_id}")
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
    await require_organiser(session, clock, actor, call, f"duty.confirm:{call_id}")
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
    close_forgotten, so the sheet the message opens is complete; a call with a check-out
    still open (another scheduler closing it right now) waits for the next sweep. Returns the
    messages queued.
    """
    now = clock.now()
    open_check_out = select(CallClaim.id).where(
        CallClaim.call_id == DutyCall.id,
        CallClaim.status == ClaimStatus.CLAIMED,
        CallClaim.checked_in_at.is_not(None),
        CallClaim.checked_out_at.is_(None),
    )
    statement = (
        select(DutyCall)
        .where(
            DutyCall.ends_at <= now,
            DutyCall.ends_at > now - ATTENDANCE_ASK_WINDOW,
            DutyCall.attendance_asked_at.is_(None),
            DutyCall.status != CallStatus.CANCELLED,
            ~sa.exists(open_check_out),
        )
        .order_by(DutyCall.ends_at, DutyCall.id)
        # PostgreSQL: another scheduler's calls are skipped, not waited for (and never
        # announced twice); a call it announced meanwhile is not read. SQLite: no clause.
        .with_for_update(of=DutyCall, skip_locked=True)
        # The locked rows as they are now, not as this session last saw them.
        .execution_options(populate_existing=True)
    )
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
