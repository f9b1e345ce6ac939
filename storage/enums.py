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
    NEW = "new"  # dispatched to the holder, waiting to be accepted
    ACCEPTED = "accepted"  # being worked on
    RETURNED = "returned"  # sent back to the community secretary to re-dispatch or close
    RESOLVED = "resolved"  # answered; waiting for the resident's "is it solved?"
    REOPENED = "reopened"  # the resident said it is not solved; back with whoever resolved it
    SUMMONED = "summoned"  # the street blew the whistle: departments are working on it
    CLOSED = "closed"  # the resident confirmed (or, later, nobody answered the follow-up)
    CANCELLED = "cancelled"  # closed by the community: duplicate, not real, not ours


OPEN_STATUSES = frozenset(
    {
        TicketStatus.NEW,
        TicketStatus.ACCEPTED,
        TicketStatus.RETURNED,
        TicketStatus.RESOLVED,
        TicketStatus.REOPENED,
        TicketStatus.SUMMONED,
    }
)


class ReturnReason(StrEnum):
    NOT_MY_GRID = "not_my_grid"
    NOT_OUR_REMIT = "not_our_remit"
    DUPLICATE = "duplicate"
    NOT_REAL = "not_real"


class SummonsStatus(StrEnum):
    """A department's part in a whistled ticket."""

    SUMMONED = "summoned"  # waiting for the department to report in (签收)
    ACCEPTED = "accepted"  # the department is working on it
    RETURNED = "returned"  # the department sent it back (退单); the street decides
    FINISHED = "finished"  # the department's part is done
    WITHDRAWN = "withdrawn"  # the street released the department


ACTIVE_SUMMONS = frozenset({SummonsStatus.SUMMONED, SummonsStatus.ACCEPTED})


class SummonsReturnReason(StrEnum):
    NOT_OUR_REMIT = "not_our_remit"
    NOT_OUR_AREA = "not_our_area"


class AlertKind(StrEnum):
    """What the sweep does when a ticket's (or a summons') next deadline comes."""

    REMIND = "remind"  # remind the holder before the deadline
    OVERDUE = "overdue"  # the deadline passed: escalate (or, at the top, remind again)
    FOLLOWUP_TIMEOUT = "followup_timeout"  # nobody answered "is it solved?": close, unrated


class WatcherKind(StrEnum):
    REPORTER = "reporter"
    ME_TOO = "me_too"


class Lane(IntEnum):
    """Outbox lanes; a lower number is served first."""

    INTERACTIVE = 0
    ESCALATION = 1
    BULK = 2


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class MemberStatus(StrEnum):
    """A Party member's registration with the community where they live."""

    PENDING = "pending"  # waiting for the community secretary
    APPROVED = "approved"
    REJECTED = "rejected"


class CallStatus(StrEnum):
    """A community's call (社区吹哨) for Party members."""

    OPEN = "open"  # taking claims
    FULL = "full"  # every place taken (a withdrawal opens it again)
    CANCELLED = "cancelled"


class ClaimStatus(StrEnum):
    CLAIMED = "claimed"  # "I'll come"
    WITHDRAWN = "withdrawn"  # withdrew before the start
