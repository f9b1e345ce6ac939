"""The reads and writes of tickets that their use cases (domain.tickets) ask for: one ticket,
a new ticket with its number, the open tickets near a point, a person's tickets and the queue
their roles hold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.enums import Level, TicketStatus, WatcherKind
from storage.models import OrgUnit, Ticket, TicketEvent, TicketWatcher


async def ticket_by_id(
    session: AsyncSession, ticket_id: int, *, for_update: bool = False
) -> Ticket | None:
    """The ticket, or None; `for_update` locks its row until the transaction ends (PostgreSQL;
    SQLite's transactions hold the whole database's write lock already)."""
    statement = select(Ticket).where(Ticket.id == ticket_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.exec(statement)).first()


# Atomic on both databases: the first report of a prefix inserts 1, every later one adds 1 to
# the row, which stays locked until the transaction ends, so no two reports draw one number.
_NEXT_NUMBER = sa.text(
    "INSERT INTO ticket_counter (prefix, last) VALUES (:prefix, 1) "
    "ON CONFLICT (prefix) DO UPDATE SET last = ticket_counter.last + 1 RETURNING last"
)


async def next_number(session: AsyncSession, prefix: str) -> int:
    """1, 2, 3... per prefix (a city and a day), in the caller's transaction."""
    return int((await session.exec(_NEXT_NUMBER, params={"prefix": prefix})).scalar_one())


async def add_filed_ticket(session: AsyncSession, ticket: Ticket, *, reporter_id: int) -> None:
    """A new ticket into the session, with its reporter as its first watcher; the ticket has
    its id when this returns."""
    session.add(ticket)
    await session.flush()
    session.add(
        TicketWatcher(
            ticket_id=ticket.id,
            person_id=reporter_id,
            kind=WatcherKind.REPORTER,
            created_at=ticket.created_at,
        )
    )


@dataclass(frozen=True, slots=True)
class NearRow:
    id: int
    number: str
    status: TicketStatus
    affected: int
    latitude: float
    longitude: float


async def open_tickets_in_box(
    session: AsyncSession,
    *,
    category_id: int,
    statuses: Sequence[TicketStatus],
    latitudes: tuple[float, float],
    longitudes: tuple[float, float],
    not_watched_by: int | None = None,
) -> list[NearRow]:
    """Tickets of the category in the statuses, located inside the box (lowest, highest);
    without those `not_watched_by` reported or joined."""
    statement = select(
        Ticket.id, Ticket.number, Ticket.status, Ticket.affected, Ticket.latitude, Ticket.longitude
    ).where(
        Ticket.category_id == category_id,
        col(Ticket.status).in_(statuses),
        col(Ticket.latitude).between(*latitudes),
        col(Ticket.longitude).between(*longitudes),
    )
    if not_watched_by is not None:
        watched = select(TicketWatcher.ticket_id).where(TicketWatcher.person_id == not_watched_by)
        statement = statement.where(col(Ticket.id).not_in(watched))
    return [NearRow(*row) for row in (await session.exec(statement)).all()]


async def tickets_watched_by(
    session: AsyncSession, person_id: int, *, offset: int, limit: int
) -> tuple[list[Ticket], int]:
    """Tickets the person reported or joined, newest first: one page, and how many in all."""
    watched = select(TicketWatcher.ticket_id).where(TicketWatcher.person_id == person_id)
    total = (
        await session.exec(
            select(sa.func.count()).select_from(Ticket).where(col(Ticket.id).in_(watched))
        )
    ).one()
    page = (
        await session.exec(
            select(Ticket)
            .where(col(Ticket.id).in_(watched))
            .order_by(col(Ticket.created_at).desc(), col(Ticket.id).desc())
            .offset(offset)
            .limit(limit)
        )
    ).all()
    return list(page), total


@dataclass(frozen=True, slots=True)
class HeldScope:
    """Tickets a role holds: those whose holder unit lies under `unit_path`, at one of
    `levels`, and (when `returned_too`) those returned there whatever their level."""

    unit_path: str
    levels: tuple[Level, ...]
    returned_too: bool


async def tickets_held(
    session: AsyncSession,
    scopes: Sequence[HeldScope],
    *,
    statuses: Sequence[TicketStatus],
    offset: int,
    limit: int,
) -> tuple[list[Ticket], int]:
    """Tickets in the statuses within any of the scopes, the nearest deadline first (those
    without one last): one page, and how many in all."""
    if not scopes:
        return [], 0
    holder = sa.orm.aliased(OrgUnit)
    clauses = []
    for scope in scopes:
        in_subtree = sa.func.substr(holder.path, 1, len(scope.unit_path)) == scope.unit_path
        level_match = col(Ticket.level).in_([level.value for level in scope.levels])
        returned = sa.and_(Ticket.status == TicketStatus.RETURNED, sa.literal(scope.returned_too))
        clauses.append(sa.and_(in_subtree, sa.or_(level_match, returned)))
    base = (
        select(Ticket)
        .join(holder, col(Ticket.holder_unit_id) == holder.id)
        .where(col(Ticket.status).in_([status.value for status in statuses]))
        .where(sa.or_(*clauses))
    )
    total = (await session.exec(select(sa.func.count()).select_from(base.subquery()))).one()
    page = (
        await session.exec(
            base.order_by(
                col(Ticket.next_deadline).is_(None), col(Ticket.next_deadline), col(Ticket.id)
            )
            .offset(offset)
            .limit(limit)
        )
    ).all()
    return list(page), total


async def events_of(session: AsyncSession, ticket_id: int) -> list[TicketEvent]:
    """The ticket's history, oldest first."""
    statement = (
        select(TicketEvent).where(TicketEvent.ticket_id == ticket_id).order_by(col(TicketEvent.id))
    )
    return list((await session.exec(statement)).all())
