"""After a call: the organiser's list of calls and attendance sheet, the confirmation that
turns checked-in minutes into points (only what the organiser confirms earns them), the
message that attendance waits, and each month's summaries to members and secretaries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from domain.access import require_role
from domain.calls import require_organiser
from domain.clock import Clock
from domain.errors import DomainError, NotFound
from domain.members import community_unit
from domain.outbox import Outgoing, enqueue_many
from domain.roles import approving_roles, member_hearing_roles
from storage.attendance import (
    Service,
    calls_organised_page,
    calls_starting_between,
    chats_of_people,
    claim_calls_to_ask,
    claims_and_unmarked,
    claims_per_call,
    claims_to_confirm,
    confirmed_service,
    count_calls_organised,
    count_marked_claims,
    no_shows_between,
    served_between,
    serving_chats_in,
    sheet_claims,
)
from storage.enums import (
    CallStatus,
    Lane,
)
from storage.models import (
    CallClaim,
    DutyCall,
    JobRun,
    Member,
    Person,
)
from storage.once import claim_once


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
    claims = await claims_to_confirm(session, call.id, attended.keys())
    for claim in claims:
        claim.confirmed = bool(attended[claim.member_id])
        claim.points = round(claim.minutes / 60 * call.points_per_hour, 2) if claim.confirmed else 0
        claim.updated_at = now
        session.add(claim)
    await session.flush()
    return claims


async def service_between(
    session: AsyncSession, member: Member, start: datetime, end: datetime
) -> Service:
    """Confirmed hours, points and calls whose start falls in [start, end)."""
    return await confirmed_service(session, member.id, start, end)


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
    served = await served_between(session, start, end)
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
    for call in await calls_starting_between(session, start, end):
        entry = by_community.setdefault(
            call.community_id, {"served": [], "unfilled": 0, "no_shows": 0}
        )
        if call.status != CallStatus.CANCELLED and call.claimed < call.capacity:
            entry["unfilled"] += 1
    for community_id, count in await no_shows_between(session, start, end):
        entry = by_community.setdefault(community_id, {"served": [], "unfilled": 0, "no_shows": 0})
        entry["no_shows"] = count
    # Serving secretaries, each once.
    secretaries = await serving_chats_in(session, list(by_community), member_hearing_roles())
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
    await session.flush()
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


async def calls_organised(
    session: AsyncSession, *, person: Person, offset: int, limit: int
) -> tuple[list[OrganisedCall], int]:
    """A page of the person's calls (theirs, and their community's), latest start first; and
    how many there are in all."""
    # Theirs, and those of the communities where they are the secretary.
    roles = member_hearing_roles()
    total = await count_calls_organised(session, person.id, roles)
    calls = await calls_organised_page(session, person.id, roles, offset, limit)
    counts = await claims_and_unmarked(session, [c.id for c in calls]) if calls else {}
    page = [OrganisedCall(c, *counts.get(c.id, (0, 0))) for c in calls]
    return page, total


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
    lines = [
        SheetLine(claim.member_id, name, claim)
        for claim, name in await sheet_claims(session, call.id)
    ]
    confirmed = bool(lines) and all(line.claim.confirmed is not None for line in lines)
    summarised = await session.get(JobRun, _summary_key(call, tz)) is not None
    over = clock.now() >= call.ends_at
    return AttendanceSheet(call, lines, over, confirmed, confirmed and summarised)


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
    summarised = await session.get(JobRun, _summary_key(call, tz)) is not None
    if summarised and await count_marked_claims(session, call.id):
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
    # Another scheduler's calls are skipped, not waited for (and never announced twice).
    calls = await claim_calls_to_ask(session, now, ATTENDANCE_ASK_WINDOW)
    if not calls:
        return 0
    ids = [c.id for c in calls]
    claims = await claims_per_call(session, ids)
    chats = await chats_of_people(session, {c.organiser_id for c in calls})
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
    await session.flush()
    return sent
