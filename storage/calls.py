"""What the community's calls ask for: the members a call reaches, a member's answer to one,
the places taken (counted in the database itself, so that concurrent answers never overfill a
call), the reminders and forgotten check-outs the scheduler claims, and where a person may
post a call.

The scheduler's claims lock what they read: on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so
that of several schedulers one handles each call or claim and none waits for another; SQLite
has one writer at a time and no such clause.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.enums import CallStatus, ClaimStatus, MemberStatus, UnitKind
from storage.models import CallClaim, DutyCall, Member, OrgUnit, Person

# -- posting a call ---------------------------------------------------------------------------


async def units_with_ids(session: AsyncSession, ids: Collection[int]) -> list[OrgUnit]:
    """The units with these ids (unknown ids left out), whole."""
    return list((await session.exec(select(OrgUnit).where(OrgUnit.id.in_(list(ids))))).all())


async def chats_of_approved_members(
    session: AsyncSession, community_id: int, grid_ids: Collection[int] = ()
) -> list[int]:
    """The Telegram chats of the community's approved members; only those of these grids if
    any are given."""
    scope = select(Person.telegram_id).join(Member, Member.person_id == Person.id)
    scope = scope.where(Member.community_id == community_id, Member.status == MemberStatus.APPROVED)
    if grid_ids:
        scope = scope.where(Member.grid_id.in_(list(grid_ids)))
    return list((await session.exec(scope)).all())


# -- a member's answer ------------------------------------------------------------------------


async def claim_of_member(session: AsyncSession, call_id: int, member_id: int) -> CallClaim | None:
    """The member's claim on the call, whatever its status (one withdrawn included), or None."""
    return (
        await session.exec(
            select(CallClaim).where(CallClaim.call_id == call_id, CallClaim.member_id == member_id)
        )
    ).first()


async def standing_claim_of_member(
    session: AsyncSession, call_id: int, member_id: int
) -> CallClaim | None:
    """The member's claim on the call if they still say "I'll come", or None."""
    return (
        await session.exec(
            select(CallClaim).where(
                CallClaim.call_id == call_id,
                CallClaim.member_id == member_id,
                CallClaim.status == ClaimStatus.CLAIMED,
            )
        )
    ).first()


class PlaceTaken(NamedTuple):
    """A place taken on a call, and when the call's reminder went (None: not yet)."""

    reminded_at: datetime | None


async def take_call_place(session: AsyncSession, call_id: int, now: datetime) -> PlaceTaken | None:
    """Count one more place taken on the call if it is open, not full and not started (one
    conditional UPDATE; the call turns full with its last place); None if it did not.

    The UPDATE waits for a scheduler reminding the call (claim_calls_to_remind), so the
    reminder it returns is that scheduler's: a member who took a place after the reminders
    were read is told so here."""
    c = DutyCall
    taken = await session.exec(
        sa.update(c)
        .where(
            c.id == call_id,
            c.status == CallStatus.OPEN,
            c.claimed < c.capacity,
            c.starts_at > now,
        )
        .values(
            claimed=c.claimed + 1,
            status=sa.case((c.claimed + 1 >= c.capacity, CallStatus.FULL.value), else_=c.status),
            updated_at=now,
        )
        .returning(c.reminded_at)
    )
    row = taken.first()
    return None if row is None else PlaceTaken(row.reminded_at)


async def free_call_place(session: AsyncSession, call_id: int, now: datetime) -> None:
    """Count one place fewer taken on the call, open again, unless it was cancelled."""
    await session.exec(
        sa.update(DutyCall)
        .where(DutyCall.id == call_id, DutyCall.status != CallStatus.CANCELLED)
        .values(claimed=DutyCall.claimed - 1, status=CallStatus.OPEN.value, updated_at=now)
    )


async def calls_ahead_of(
    session: AsyncSession, member_id: int, now: datetime, limit: int
) -> list[DutyCall]:
    """Calls the member still says "I'll come" to that have not ended by `now` nor been
    cancelled, soonest first."""
    return list(
        (
            await session.exec(
                select(DutyCall)
                .join(CallClaim, CallClaim.call_id == DutyCall.id)
                .where(
                    CallClaim.member_id == member_id,
                    CallClaim.status == ClaimStatus.CLAIMED,
                    DutyCall.ends_at > now,
                    DutyCall.status != CallStatus.CANCELLED,
                )
                .order_by(DutyCall.starts_at, DutyCall.id)
                .limit(limit)
            )
        ).all()
    )


async def chats_coming_to(session: AsyncSession, call_id: int) -> list[int]:
    """The Telegram chats of the members who say "I'll come" to the call."""
    coming = (
        select(Person.telegram_id)
        .join(Member, Member.person_id == Person.id)
        .join(CallClaim, CallClaim.member_id == Member.id)
        .where(CallClaim.call_id == call_id, CallClaim.status == ClaimStatus.CLAIMED)
    )
    return list((await session.exec(coming)).all())


# -- the scheduler: reminders and forgotten check-outs ----------------------------------------


class CallToRemind(NamedTuple):
    """A call whose reminder this transaction claimed, with what the reminder says."""

    id: int
    title: str
    description: str
    starts_at: datetime
    ends_at: datetime
    latitude: float
    longitude: float


async def claim_calls_to_remind(
    session: AsyncSession, now: datetime, before: timedelta
) -> list[CallToRemind]:
    """Mark as reminded (at `now`) the calls that start within `before` of `now`, are not
    cancelled and were not reminded yet: one conditional UPDATE, so that of several schedulers
    one reminds each call."""
    c = DutyCall
    due = (
        select(c.id)
        .where(
            c.starts_at > now,
            c.starts_at <= now + before,
            c.reminded_at.is_(None),
            c.status != CallStatus.CANCELLED,
        )
        # PostgreSQL: a call another scheduler is reminding (or a member is taking a place in)
        # is skipped, not waited for; the next sweep has it. SQLite has one writer: no clause.
        .with_for_update(skip_locked=True)
    )
    claimed = await session.exec(
        sa.update(c)
        .where(c.id.in_(due), c.reminded_at.is_(None))
        .values(reminded_at=now)
        .returning(c.id, c.title, c.description, c.starts_at, c.ends_at, c.latitude, c.longitude)
        .execution_options(synchronize_session="fetch")
    )
    return [CallToRemind(*row) for row in claimed.all()]


async def chats_coming_to_calls(
    session: AsyncSession, call_ids: Sequence[int]
) -> list[tuple[int, int]]:
    """(call id, Telegram chat) of every member who says "I'll come" to these calls, by call,
    then in the order they answered."""
    rows = await session.exec(
        select(CallClaim.call_id, Person.telegram_id)
        .join(Member, Member.id == CallClaim.member_id)
        .join(Person, Person.id == Member.person_id)
        .where(
            CallClaim.call_id.in_(list(call_ids)),
            CallClaim.status == ClaimStatus.CLAIMED,
        )
        .order_by(CallClaim.call_id, CallClaim.id)
    )
    return [(call_id, chat_id) for call_id, chat_id in rows.all()]


async def claim_forgotten_check_outs(
    session: AsyncSession, now: datetime
) -> list[tuple[CallClaim, DutyCall]]:
    """(claim, its call) for every member checked in and never checked out of a call that has
    ended by `now`; the claims are held by this transaction until it ends."""
    rows = await session.exec(
        select(CallClaim, DutyCall)
        .join(DutyCall, DutyCall.id == CallClaim.call_id)
        .where(
            DutyCall.ends_at <= now,
            CallClaim.status == ClaimStatus.CLAIMED,
            CallClaim.checked_in_at.is_not(None),
            CallClaim.checked_out_at.is_(None),
        )
        # PostgreSQL: claims another scheduler is closing are skipped, not waited for; one
        # already closed is not read.
        .with_for_update(of=CallClaim, skip_locked=True)
        # The locked rows as they are now, not as this session last saw them.
        .execution_options(populate_existing=True)
    )
    return [(claim, call) for claim, call in rows.all()]


# -- where a person may post a call -----------------------------------------------------------


async def communities_with_ids(session: AsyncSession, ids: Collection[int]) -> list[OrgUnit]:
    """The communities among these unit ids, by code."""
    return await _units_by_code(session, UnitKind.COMMUNITY, OrgUnit.id.in_(list(ids)))


async def grids_of_communities(session: AsyncSession, ids: Collection[int]) -> list[OrgUnit]:
    """The grids of these communities, by code."""
    return await _units_by_code(session, UnitKind.GRID, OrgUnit.parent_id.in_(list(ids)))


async def _units_by_code(session: AsyncSession, kind: UnitKind, where: Any) -> list[OrgUnit]:
    statement = select(OrgUnit).where(where, OrgUnit.kind == kind).order_by(OrgUnit.code)
    return list((await session.exec(statement)).all())
