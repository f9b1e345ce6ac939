"""Who may do what: one row per role, read by every check and every query that names roles.

A role's powers are its row and nothing else: adding a role is one row here plus its texts
(the locale key role.<value> in every language). No other module of the domain or of storage
names a role.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from storage.enums import Level, Role, UnitKind


@dataclass(frozen=True)
class Powers:
    """One role's row. A power a row does not name is not held."""

    role: Role
    # The kind of org unit the role is held in (an invitation binds it to a unit of this
    # kind); None for one held in any unit, the whole city when none is named, or, with
    # `department`, for one held in a department instead.
    unit_kind: UnitKind | None
    department: bool = False
    # The rung of the escalation ladder where the role holds tickets in its own unit.
    level: Level | None = None
    # The role a ticket at `level` is sent to: its unit's holders get the card, the reminders
    # and the escalations. One per rung.
    primary: bool = False
    # Also holds tickets at every rung, in the units its own unit covers.
    every_level: bool = False
    # Re-dispatches or cancels a ticket a grid returned (it waits in the community).
    takes_returns: bool = False
    # May open any ticket of a grid its unit covers, not only those it holds.
    sees_tickets: bool = False
    # The daily digest: what its unit holds at this rung (None: no digest).
    digest: Level | None = None
    # Decides Party members' registrations, calls the whole community, and cancels or
    # confirms attendance of any call of a community its unit covers.
    approves_members: bool = False
    # Told of its community's Party members: each registration to decide, the month's duty
    # summary, and the community's calls in its list of calls.
    hears_members: bool = False
    # Posts calls to the Party members of grids its unit covers.
    organises_calls: bool = False
    # Where the call dialog offers it to post from the unit it is held in: its whole
    # community (COMMUNITY) or its own grids (GRID); None: not offered.
    call_scope: UnitKind | None = None
    # Issues invitations in chat, for units its unit covers.
    invites: bool = False
    # Sees the three rates (/stats) of its unit and the units below, and gets the monthly
    # ranking of the units below it; held in a department, that department's figures.
    sees_figures: bool = False


# The table, in the order of storage.enums.Role.
ROLES: tuple[Powers, ...] = (
    Powers(
        Role.GRID_LEADER,
        unit_kind=UnitKind.GRID,
        level=Level.GRID,
        primary=True,
        sees_tickets=True,
        digest=Level.GRID,
        organises_calls=True,
        call_scope=UnitKind.GRID,
    ),
    Powers(
        Role.COMMUNITY_SECRETARY,
        unit_kind=UnitKind.COMMUNITY,
        level=Level.COMMUNITY,
        primary=True,
        takes_returns=True,
        sees_tickets=True,
        digest=Level.COMMUNITY,
        approves_members=True,
        hears_members=True,
        organises_calls=True,
        call_scope=UnitKind.COMMUNITY,
        sees_figures=True,
    ),
    Powers(
        Role.STREET_OFFICER,
        unit_kind=UnitKind.STREET,
        level=Level.STREET,
        primary=True,
        sees_tickets=True,
        digest=Level.STREET,
        sees_figures=True,
    ),
    Powers(Role.DEPARTMENT_LIAISON, unit_kind=None, department=True, sees_figures=True),
    Powers(
        Role.ADMIN,
        unit_kind=None,
        level=Level.DISTRICT,
        primary=True,
        every_level=True,
        takes_returns=True,
        sees_tickets=True,
        approves_members=True,
        organises_calls=True,
        invites=True,
        sees_figures=True,
    ),
)


def powers(role: Role) -> Powers:
    """The role's row."""
    for row in ROLES:
        if row.role == role:
            return row
    raise KeyError(role)


def _roles(test: Callable[[Powers], bool]) -> tuple[Role, ...]:
    return tuple(row.role for row in ROLES if test(row))


# -- the ladder --------------------------------------------------------------------------------


def ladder_levels() -> tuple[Level, ...]:
    """The rungs some role holds tickets at, bottom up."""
    held = {row.level for row in ROLES}
    return tuple(level for level in Level if level in held)


def primary_role(level: Level) -> Role:
    """The role a ticket at `level` is sent to (its unit's holders get the card)."""
    found = _roles(lambda row: row.level is level and row.primary)
    if len(found) != 1:
        # No role holds tickets there (the departments stand beside the ladder).
        raise KeyError(level)
    return found[0]


def level_roles(level: Level) -> tuple[Role, ...]:
    """Who holds a ticket at `level`: the primary role first, then the others at that rung,
    then the roles that hold every rung (administrators of a covering unit)."""
    first = primary_role(level)
    others = _roles(lambda row: row.level is level and row.role is not first)
    everywhere = _roles(lambda row: row.every_level and row.level is not level)
    return (first, *others, *everywhere)


def held_levels(role: Role) -> tuple[Level, ...]:
    """The rungs at which the role holds tickets, bottom up."""
    return tuple(level for level in ladder_levels() if role in level_roles(level))


def ladder_roles() -> tuple[Role, ...]:
    """Everyone who may hold a ticket somewhere on the way up from its grid."""
    return _roles(lambda row: row.level is not None)


def returns_roles() -> tuple[Role, ...]:
    """Who re-dispatches or cancels a returned ticket (it waits in the community)."""
    return _roles(lambda row: row.takes_returns)


def viewing_roles() -> tuple[Role, ...]:
    """Who may open any ticket of a grid they cover, not only the ones they hold."""
    return _roles(lambda row: row.sees_tickets)


def digest_roles() -> tuple[Role, ...]:
    """Who gets the daily digest (each at its row's `digest` rung)."""
    return _roles(lambda row: row.digest is not None)


# -- departments -------------------------------------------------------------------------------


def department_roles() -> tuple[Role, ...]:
    """Who answers for a department: gets its summonses, accepts or returns them."""
    return _roles(lambda row: row.department)


# -- Party members and calls -------------------------------------------------------------------


def approving_roles() -> tuple[Role, ...]:
    """Who decides registrations and calls the whole community (its secretary, or above)."""
    return _roles(lambda row: row.approves_members)


def member_hearing_roles() -> tuple[Role, ...]:
    """Who is told of a community's Party members (held in that community)."""
    return _roles(lambda row: row.hears_members)


def organising_roles() -> tuple[Role, ...]:
    """Who may post a call to the members of grids they cover."""
    return _roles(lambda row: row.organises_calls)


def calling_roles() -> tuple[Role, ...]:
    """Who the call dialog offers to post from the unit they are held in."""
    return _roles(lambda row: row.call_scope is not None)


# -- figures -----------------------------------------------------------------------------------


def figure_roles() -> tuple[Role, ...]:
    """Who sees the three rates of the units their own unit covers."""
    return _roles(lambda row: row.sees_figures)


# -- invitations -------------------------------------------------------------------------------


def inviting_roles() -> tuple[Role, ...]:
    """Who issues invitations in chat."""
    return _roles(lambda row: row.invites)
