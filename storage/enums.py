"""Enumerations stored in the tables; the domain gives them their meaning."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class UnitKind(StrEnum):
    CITY = "city"
    DISTRICT = "district"
    STREET = "street"
    COMMUNITY = "community"
    GRID = "grid"


# Each kind's parent kind: the org tree is strictly city > district > street > community > grid.
PARENT_KIND: dict[UnitKind, UnitKind | None] = {
    UnitKind.CITY: None,
    UnitKind.DISTRICT: UnitKind.CITY,
    UnitKind.STREET: UnitKind.DISTRICT,
    UnitKind.COMMUNITY: UnitKind.STREET,
    UnitKind.GRID: UnitKind.COMMUNITY,
}


class Urgency(StrEnum):
    URGENT = "urgent"
    NORMAL = "normal"
    CONSULTATION = "consultation"


class Level(StrEnum):
    """Rungs of the escalation ladder, plus the departments beside it."""

    GRID = "grid"
    COMMUNITY = "community"
    STREET = "street"
    DISTRICT = "district"
    DEPARTMENT = "department"


class Role(StrEnum):
    GRID_LEADER = "grid_leader"
    COMMUNITY_SECRETARY = "community_secretary"
    STREET_OFFICER = "street_officer"
    DEPARTMENT_LIAISON = "department_liaison"
    ADMIN = "admin"


class AssignmentStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


class TicketStatus(StrEnum):
    NEW = "new"
    ACCEPTED = "accepted"
    RETURNED = "returned"
    RESOLVED = "resolved"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class Lane(IntEnum):
    """Outbox lanes; a lower number is served first."""

    INTERACTIVE = 0
    ESCALATION = 1
    BULK = 2


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
