"""What attendance asks for after a call: the claims an organiser confirms, a member's
confirmed service, the month's figures for the summaries, an organiser's calls and sheet, and
the calls whose organiser the scheduler tells that attendance waits.

The scheduler's claim locks what it reads: on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so
that of several schedulers one announces each call and none waits for another; SQLite has one
writer at a time and no such clause.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

import sqlalchemy as sa
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.enums import AssignmentStatus, CallStatus, ClaimStatus, Role
from storage.models import CallClaim, DutyCall, Member, Person, RoleAssignment

# -- confirming, and what it earned ----------------------------------------------------------


async def claims_to_confirm(
    session: AsyncSession, call_id: int, member_ids: Collection[int]
) -> list[CallClaim]:
    """The claims on the call of these members who still say "I'll come"."""
    return list(
        (
            await session.exec(
                select(CallClaim).where(
                    CallClaim.call_id == call_id,
                    CallClaim.status == ClaimStatus.CLAIMED,
                    CallClaim.member_id.in_(list(member_ids)),
                )
            )
        ).all()
    )


async def count_marked_claims(session: AsyncSession, call_id: int) -> int:
    """How many claims on the call the organiser has marked (came or not)."""
    return (
        await session.exec(
            select(sa.func.count())
            .select_from(CallClaim)
            .where(CallClaim.call_id == call_id, CallClaim.confirmed.is_not(None))
        )
    ).one()


@dataclass(frozen=True)
class Service:
    """A member's confirmed service over a period."""

    minutes: int
    points: float
    calls: int


async def confirmed_service(
    session: AsyncSession, member_id: int, start: datetime, end: datetime
) -> Service:
    """The member's confirmed minutes, points and calls whose start falls in [start, end)."""
    minutes, points, calls = (
        await session.exec(
            select(
                sa.func.coalesce(sa.func.sum(CallClaim.minutes), 0),
                sa.func.coalesce(sa.func.sum(CallClaim.points), 0.0),
                sa.func.count(),
            )
            .join(DutyCall, DutyCall.id == CallClaim.call_id)
            .where(
                CallClaim.member_id == member_id,
                CallClaim.confirmed.is_(True),
                DutyCall.starts_at >= start,
                DutyCall.starts_at < end,
            )
        )
    ).one()
    return Service(int(minutes), float(points), int(calls))


# -- the month's summaries ---------------------------------------------------------------------


class Served(NamedTuple):
    """A member's confirmed service in calls that started in a period."""

    community_id: int
    chat_id: int
    name: str
    minutes: int
    points: float
    calls: int


async def served_between(session: AsyncSession, start: datetime, end: datetime) -> list[Served]:
    """Every member with confirmed service in calls whose start falls in [start, end)."""
    rows = await session.exec(
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
    return [Served(*row) for row in rows.all()]


async def calls_starting_between(
    session: AsyncSession, start: datetime, end: datetime
) -> list[DutyCall]:
    """Every call whose start falls in [start, end), cancelled ones included."""
    return list(
        (
            await session.exec(
                select(DutyCall).where(DutyCall.starts_at >= start, DutyCall.starts_at < end)
            )
        ).all()
    )


# A place taken on a call that was not used: never checked in, or marked absent.
NO_SHOW = sa.or_(CallClaim.checked_in_at.is_(None), CallClaim.confirmed.is_(False))


async def no_shows_between(
    session: AsyncSession, start: datetime, end: datetime
) -> list[tuple[int, int]]:
    """(community id, how many) of the claims on calls whose start falls in [start, end) that
    never checked in or were marked absent."""
    rows = await session.exec(
        select(DutyCall.community_id, sa.func.count())
        .join(CallClaim, CallClaim.call_id == DutyCall.id)
        .where(
            DutyCall.starts_at >= start,
            DutyCall.starts_at < end,
            CallClaim.status == ClaimStatus.CLAIMED,
            NO_SHOW,
        )
        .group_by(DutyCall.community_id)
    )
    return [(community_id, count) for community_id, count in rows.all()]


async def serving_chats_in(
    session: AsyncSession, unit_ids: Collection[int], roles: Collection[Role]
) -> list[tuple[int, int]]:
    """(unit id, Telegram chat) of everyone serving in one of `roles` in these units, each
    once, by unit then chat."""
    rows = await session.exec(
        # Each once: one reappointed keeps a revoked row too.
        select(RoleAssignment.unit_id, Person.telegram_id)
        .join(Person, Person.id == RoleAssignment.person_id)
        .where(
            RoleAssignment.role.in_(roles),
            RoleAssignment.status == AssignmentStatus.ACTIVE,
            RoleAssignment.unit_id.in_(list(unit_ids)),
        )
        .distinct()
        .order_by(RoleAssignment.unit_id, Person.telegram_id)
    )
    return [(unit_id, chat_id) for unit_id, chat_id in rows.all()]


# -- the organiser's calls and sheet -----------------------------------------------------------


def _organised_by(person_id: int, roles: Collection[Role]) -> sa.ColumnElement[bool]:
    """Calls the person organised, or of a community where they serve in one of `roles`."""
    communities = select(RoleAssignment.unit_id).where(
        RoleAssignment.person_id == person_id,
        RoleAssignment.role.in_(roles),
        RoleAssignment.status == AssignmentStatus.ACTIVE,
    )
    return sa.or_(DutyCall.organiser_id == person_id, DutyCall.community_id.in_(communities))


async def count_calls_organised(
    session: AsyncSession, person_id: int, roles: Collection[Role]
) -> int:
    """How many calls the person organised, or are of a community where they serve in one of
    `roles`."""
    mine = _organised_by(person_id, roles)
    return int(
        (await session.exec(select(sa.func.count()).select_from(DutyCall).where(mine))).one()
    )


async def calls_organised_page(
    session: AsyncSession, person_id: int, roles: Collection[Role], offset: int, limit: int
) -> list[DutyCall]:
    """A page of the calls count_calls_organised counts, latest start first."""
    return list(
        (
            await session.exec(
                select(DutyCall)
                .where(_organised_by(person_id, roles))
                .order_by(DutyCall.starts_at.desc(), DutyCall.id.desc())
                .offset(offset)
                .limit(limit)
            )
        ).all()
    )


async def claims_and_unmarked(
    session: AsyncSession, call_ids: Sequence[int]
) -> dict[int, tuple[int, int]]:
    """Call id -> (claims of members who still say "I'll come", how many of them the organiser
    has not marked), for those of these calls that have any."""
    rows = await session.exec(
        select(
            CallClaim.call_id,
            sa.func.count(),
            sa.func.sum(sa.case((CallClaim.confirmed.is_(None), 1), else_=0)),
        )
        .where(
            CallClaim.call_id.in_(list(call_ids)),
            CallClaim.status == ClaimStatus.CLAIMED,
        )
        .group_by(CallClaim.call_id)
    )
    return {call_id: (int(n), int(open_ or 0)) for call_id, n, open_ in rows}


async def sheet_claims(session: AsyncSession, call_id: int) -> list[tuple[CallClaim, str]]:
    """(claim, member's name) of everyone who still says "I'll come" to the call, in the order
    they answered."""
    rows = await session.exec(
        select(CallClaim, Member.full_name)
        .join(Member, Member.id == CallClaim.member_id)
        .where(CallClaim.call_id == call_id, CallClaim.status == ClaimStatus.CLAIMED)
        .order_by(CallClaim.id)
    )
    return [(claim, name) for claim, name in rows.all()]


# -- "attendance waits" --------------------------------------------------------------------------


async def claim_calls_to_ask(
    session: AsyncSession, now: datetime, window: timedelta
) -> list[DutyCall]:
    """Calls that ended by `now` (within `window`), are not cancelled, were not announced to
    their organiser yet and have no check-out still open; earliest end first, held by this
    transaction until it ends."""
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
            DutyCall.ends_at > now - window,
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
    return list((await session.exec(statement)).all())


async def claims_per_call(session: AsyncSession, call_ids: Sequence[int]) -> dict[int, int]:
    """Call id -> how many members still say "I'll come", for those of these calls that have
    any."""
    return dict(
        (
            await session.exec(
                select(CallClaim.call_id, sa.func.count())
                .where(CallClaim.call_id.in_(call_ids), CallClaim.status == ClaimStatus.CLAIMED)
                .group_by(CallClaim.call_id)
            )
        ).all()
    )


async def chats_of_people(session: AsyncSession, person_ids: Collection[int]) -> dict[int, int]:
    """Person id -> Telegram chat, for these people."""
    return dict(
        (
            await session.exec(
                select(Person.id, Person.telegram_id).where(Person.id.in_(person_ids))
            )
        ).all()
    )
