"""Reads and checks for the people who hold tickets: who may see a ticket, whether a move
still applies before a dialog starts, and which grids a returned ticket may go to.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from domain.access import require_role
from domain.clock import Clock
from domain.roles import viewing_roles
from domain.tickets import Action, can_act, get_ticket
from storage.models import OrgUnit, Person, Ticket
from storage.places import grids_in
from storage.queues import latest_event_note


async def open_ticket(
    *, session: AsyncSession, clock: Clock, person: Person, ticket_id: int
) -> tuple[Ticket, bool]:
    """The ticket, for someone who may see it, and whether they may act on it now.

    Anyone who holds it may, and so may a holder role covering its grid (the grid leader after
    an escalation, the community, the street, an administrator). Anyone else is refused
    (NotAllowed) and the refusal is audited.
    """
    ticket = await get_ticket(session, ticket_id)
    if await can_act(session, person_id=person.id, ticket=ticket):
        return ticket, True
    grid = await session.get(OrgUnit, ticket.grid_id)
    assert grid is not None
    await require_role(
        session,
        clock=clock,
        person_id=person.id,
        roles=viewing_roles(),
        unit=grid,
        action=f"ticket.view:{ticket.number}",
    )
    return ticket, False


async def grids_for_redispatch(session: AsyncSession, ticket: Ticket) -> list[OrgUnit]:
    """The grids of the ticket's community, in code order (a returned ticket may go to any)."""
    return await grids_in(session, ticket.community_id)


async def last_reopen_reason(session: AsyncSession, ticket_id: int) -> str | None:
    """What the resident said when they last reopened the ticket, if they did."""
    return await latest_event_note(session, ticket_id, Action.REOPEN.value)
