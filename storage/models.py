"""The tables. Timestamps are UTC-aware; enums are stored as plain strings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from storage.enums import (
    AssignmentStatus,
    CallStatus,
    ClaimStatus,
    Level,
    MemberStatus,
    OutboxStatus,
    ReturnReason,
    Role,
    SummonsReturnReason,
    SummonsStatus,
    TicketStatus,
    UnitKind,
    Urgency,
    WatcherKind,
)
from storage.types import BigIntKey, JSONType, UTCDateTime, utc_now


def _enum(enum_cls: type) -> sa.Enum:
    return sa.Enum(
        enum_cls,
        native_enum=False,
        create_constraint=False,
        length=32,
        values_callable=lambda e: [m.value for m in e],
    )


def _created() -> Any:
    return Field(default_factory=utc_now, sa_type=UTCDateTime, nullable=False)


class OrgUnit(SQLModel, table=True):
    """A city, district, street, community or grid; grids carry a boundary polygon."""

    __tablename__ = "org_unit"

    id: int | None = Field(default=None, primary_key=True)
    kind: UnitKind = Field(sa_type=_enum(UnitKind), index=True)
    code: str = Field(max_length=64, unique=True)
    name_zh: str = Field(max_length=200)
    name_en: str = Field(max_length=200)
    parent_id: int | None = Field(default=None, foreign_key="org_unit.id", index=True)
    # Materialised ancestry ("/1/4/17/"), so "inside this unit's subtree" is one prefix test.
    path: str = Field(default="", max_length=400, index=True)
    boundary: dict | None = Field(default=None, sa_type=JSONType)
    created_at: datetime = _created()
    updated_at: datetime = _created()


class Department(SQLModel, table=True):
    """A functional department (urban management, housing, police...) at a district or street."""

    __tablename__ = "department"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True)
    name_zh: str = Field(max_length=200)
    name_en: str = Field(max_length=200)
    unit_id: int = Field(foreign_key="org_unit.id", index=True)
    created_at: datetime = _created()
    updated_at: datetime = _created()


class Category(SQLModel, table=True):
    """A kind of problem a resident can report."""

    __tablename__ = "category"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, unique=True)
    name_zh: str = Field(max_length=200)
    name_en: str = Field(max_length=200)
    urgency: Urgency = Field(default=Urgency.NORMAL, sa_type=_enum(Urgency))
    position: int = Field(default=0)
    active: bool = Field(default=True)
    created_at: datetime = _created()
    updated_at: datetime = _created()


class CategoryDepartment(SQLModel, table=True):
    """Which departments are responsible for a category."""

    __tablename__ = "category_department"

    category_id: int = Field(foreign_key="category.id", primary_key=True)
    department_id: int = Field(foreign_key="department.id", primary_key=True)


class DeadlinePolicy(SQLModel, table=True):
    """Time to accept and to resolve at one level, per urgency and optionally per category."""

    __tablename__ = "deadline_policy"
    __table_args__ = (sa.UniqueConstraint("urgency", "category_id", "level"),)

    id: int | None = Field(default=None, primary_key=True)
    urgency: Urgency = Field(sa_type=_enum(Urgency))
    category_id: int | None = Field(default=None, foreign_key="category.id", index=True)
    level: Level = Field(sa_type=_enum(Level))
    accept_minutes: int
    resolve_minutes: int
    working_time: bool = Field(default=False)
    # Fractions of the allowed time at which the holder is reminded, e.g. [0.5, 0.8].
    reminders: list = Field(default_factory=list, sa_type=JSONType)


class OrgSetting(SQLModel, table=True):
    """Organisation-wide policy from the organisation file: the calendar, the ladder's top."""

    __tablename__ = "org_setting"

    key: str = Field(max_length=64, primary_key=True)
    value: dict = Field(default_factory=dict, sa_type=JSONType)
    updated_at: datetime = _created()


class Person(SQLModel, table=True):
    """Anyone who has talked to the bot."""

    __tablename__ = "person"

    id: int | None = Field(default=None, primary_key=True)
    telegram_id: int = Field(sa_type=sa.BigInteger, unique=True)
    full_name: str = Field(default="", max_length=300)
    username: str | None = Field(default=None, max_length=64)
    language: str = Field(max_length=16)
    created_at: datetime = _created()
    updated_at: datetime = _created()


class RoleAssignment(SQLModel, table=True):
    """A person's role in a unit (or department); valid only inside that unit's subtree."""

    __tablename__ = "role_assignment"

    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    role: Role = Field(sa_type=_enum(Role))
    unit_id: int | None = Field(default=None, foreign_key="org_unit.id", index=True)
    department_id: int | None = Field(default=None, foreign_key="department.id", index=True)
    status: AssignmentStatus = Field(
        default=AssignmentStatus.ACTIVE, sa_type=_enum(AssignmentStatus)
    )
    invitation_id: int | None = Field(default=None, foreign_key="invitation.id")
    created_at: datetime = _created()


class Invitation(SQLModel, table=True):
    """A one-time code that binds a Telegram account to a role; only its hash is kept."""

    __tablename__ = "invitation"

    id: int | None = Field(default=None, primary_key=True)
    code_hash: str = Field(max_length=64, unique=True)
    role: Role = Field(sa_type=_enum(Role))
    unit_id: int | None = Field(default=None, foreign_key="org_unit.id")
    department_id: int | None = Field(default=None, foreign_key="department.id")
    created_by_id: int | None = Field(default=None, foreign_key="person.id")
    created_at: datetime = _created()
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    used_by_id: int | None = Field(default=None, foreign_key="person.id")


class Ticket(SQLModel, table=True):
    """A resident's report, from intake to closing."""

    __tablename__ = "ticket"
    __table_args__ = (
        # Duplicate search: open tickets of a category near a point.
        sa.Index("ix_ticket_category_status_lat", "category_id", "status", "latitude"),
    )

    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(max_length=32, unique=True)
    # No index of its own: ix_ticket_category_status_lat leads with it.
    category_id: int = Field(foreign_key="category.id")
    grid_id: int = Field(foreign_key="org_unit.id", index=True)
    community_id: int = Field(foreign_key="org_unit.id", index=True)
    reporter_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    description: str = Field(default="", sa_type=sa.Text)
    photos: list = Field(default_factory=list, sa_type=JSONType)
    latitude: float | None = None
    longitude: float | None = None
    anonymous: bool = Field(default=False)
    affected: int = Field(default=1)
    urgency: Urgency = Field(default=Urgency.NORMAL, sa_type=_enum(Urgency))
    status: TicketStatus = Field(default=TicketStatus.NEW, sa_type=_enum(TicketStatus))
    level: Level = Field(default=Level.GRID, sa_type=_enum(Level))
    holder_unit_id: int | None = Field(default=None, foreign_key="org_unit.id", index=True)
    holder_since: datetime = _created()
    accept_deadline: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolve_deadline: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # The deadline the holder works against now (accept, resolve, or the follow-up's end).
    next_deadline: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    # The sweep's work for this ticket, earliest first: [{"at", "kind", "deadline"}...];
    # alert_at is the first one's "at" (indexed: a sweep reads only what is due).
    alerts: list = Field(default_factory=list, sa_type=JSONType)
    alert_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    accepted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    accepted_by_id: int | None = Field(default=None, foreign_key="person.id")
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    resolved_by_id: int | None = Field(default=None, foreign_key="person.id")
    resolution_note: str | None = Field(default=None, sa_type=sa.Text)
    resolution_photo: str | None = Field(default=None, max_length=255)
    return_reason: ReturnReason | None = Field(default=None, sa_type=_enum(ReturnReason))
    reopen_count: int = Field(default=0)
    rating: int | None = None
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = _created()
    updated_at: datetime = _created()


class TicketWatcher(SQLModel, table=True):
    """Who hears of every change to a ticket: its reporter and everyone who said "me too"."""

    __tablename__ = "ticket_watcher"

    ticket_id: int = Field(foreign_key="ticket.id", primary_key=True)
    person_id: int = Field(foreign_key="person.id", primary_key=True, index=True)
    kind: WatcherKind = Field(sa_type=_enum(WatcherKind))
    created_at: datetime = _created()


class TicketSummons(SQLModel, table=True):
    """A department summoned to a ticket by the street's whistle (吹哨), and its answer (报到)."""

    __tablename__ = "ticket_summons"
    __table_args__ = (sa.UniqueConstraint("ticket_id", "department_id"),)

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    department_id: int = Field(foreign_key="department.id", index=True)
    status: SummonsStatus = Field(default=SummonsStatus.SUMMONED, sa_type=_enum(SummonsStatus))
    summoned_at: datetime = _created()
    summoned_by_id: int | None = Field(default=None, foreign_key="person.id")
    accept_deadline: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finish_deadline: datetime | None = Field(default=None, sa_type=UTCDateTime)
    next_deadline: datetime | None = Field(default=None, sa_type=UTCDateTime)
    alerts: list = Field(default_factory=list, sa_type=JSONType)
    alert_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    # Escalated to the district for silence (missed a deadline).
    escalated: bool = Field(default=False)
    accepted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    accepted_by_id: int | None = Field(default=None, foreign_key="person.id")
    returned_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    return_reason: SummonsReturnReason | None = Field(
        default=None, sa_type=_enum(SummonsReturnReason)
    )
    return_note: str | None = Field(default=None, sa_type=sa.Text)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_by_id: int | None = Field(default=None, foreign_key="person.id")
    finish_note: str | None = Field(default=None, sa_type=sa.Text)
    updated_at: datetime = _created()


class TicketCounter(SQLModel, table=True):
    """The last ticket number given out per prefix and day ("ZZ-20261125")."""

    __tablename__ = "ticket_counter"

    prefix: str = Field(max_length=64, primary_key=True)
    last: int = Field(default=0)


class TicketEvent(SQLModel, table=True):
    """Append-only history of a ticket: who moved it, when, from what to what, and why."""

    __tablename__ = "ticket_event"

    id: int | None = Field(default=None, sa_type=BigIntKey, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    at: datetime = _created()
    actor_id: int | None = Field(default=None, foreign_key="person.id")
    kind: str = Field(max_length=32)
    from_status: TicketStatus | None = Field(default=None, sa_type=_enum(TicketStatus))
    to_status: TicketStatus | None = Field(default=None, sa_type=_enum(TicketStatus))
    note: str | None = Field(default=None, sa_type=sa.Text)
    data: dict = Field(default_factory=dict, sa_type=JSONType)
    # The ticket events are the record of truth for the three rates: the roll-up reads them
    # by time (storage.figures), the figures add what happened since its mark.
    __table_args__ = (sa.Index("ix_ticket_event_at", "at"),)


class UnitMonthFigures(SQLModel, table=True):
    """A unit's own figures for a month (its subtree's are summed when read), tallied from the
    ticket events by domain.figures. Rolled up by the scheduler up to `FiguresMark.upto`; what
    happened after the mark is tallied from the events when read, so the figures are exact."""

    __tablename__ = "unit_month_figures"

    month: int = Field(primary_key=True)  # 202611: a month in the city's time
    unit_id: int = Field(foreign_key="org_unit.id", primary_key=True)
    dispatched: int = 0  # steps that came to the unit and ended (returns apart)
    responded: int = 0  # of those, accepted in time
    returned: int = 0
    followups: int = 0  # answers whose follow-up ended (solved, unanswered or reopened)
    solved: int = 0  # the resident confirmed it solved
    unanswered: int = 0  # closed as solved after an unanswered follow-up
    ratings: int = 0
    satisfied: int = 0  # ratings of 4 or 5
    rating_sum: int = 0


class DepartmentMonthFigures(SQLModel, table=True):
    """A department's figures for a month as a whistle summoned it, tallied from the ticket
    events with UnitMonthFigures (the same roll-up, the same mark)."""

    __tablename__ = "department_month_figures"

    month: int = Field(primary_key=True)  # 202611: a month in the city's time
    department_id: int = Field(foreign_key="department.id", primary_key=True)
    reported_in: int = 0
    reported_in_time: int = 0  # by the deadline to report in
    finished: int = 0
    finished_in_time: int = 0  # by the deadline to finish
    returned: int = 0
    silent: int = 0  # past a deadline, reported to the district


class FiguresMark(SQLModel, table=True):
    """How far the ticket events are rolled up into UnitMonthFigures (one row)."""

    __tablename__ = "figures_mark"

    id: int = Field(default=1, primary_key=True)
    upto: datetime | None = Field(default=None, sa_type=UTCDateTime)  # None: not rolled yet


class OutboxMessage(SQLModel, table=True):
    """A message for someone other than the person chatting, written with the change behind it.

    It stores what happened (kind and data), not text: it is rendered when sent, in the
    recipient's language.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        # The sender's only query: pending rows, by lane, oldest first.
        sa.Index(
            "ix_outbox_pending",
            "lane",
            "id",
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        ),
    )

    id: int | None = Field(default=None, sa_type=BigIntKey, primary_key=True)
    chat_id: int = Field(sa_type=sa.BigInteger)
    lane: int = Field(default=0, sa_type=sa.SmallInteger)
    kind: str = Field(max_length=64)
    data: dict = Field(default_factory=dict, sa_type=JSONType)
    status: OutboxStatus = Field(default=OutboxStatus.PENDING, sa_type=_enum(OutboxStatus))
    attempts: int = Field(default=0)
    not_before: datetime = _created()
    created_at: datetime = _created()
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    telegram_message_id: int | None = Field(default=None, sa_type=sa.BigInteger)
    error: str | None = Field(default=None, sa_type=sa.Text)


class JobRun(SQLModel, table=True):
    """A once-only job that ran (e.g. "digest:2026-11-25"): the key is claimed by inserting it."""

    __tablename__ = "job_run"

    key: str = Field(max_length=128, primary_key=True)
    at: datetime = _created()


class ConversationState(SQLModel, table=True):
    """aiogram FSM state and data, kept in the database so dialogs survive a restart."""

    __tablename__ = "conversation_state"

    key: str = Field(max_length=255, primary_key=True)
    state: str | None = Field(default=None, max_length=255)
    data: dict = Field(default_factory=dict, sa_type=JSONType)
    updated_at: datetime = _created()


class AuditEntry(SQLModel, table=True):
    """Security-relevant facts: refused actions, invitations issued and used."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, sa_type=BigIntKey, primary_key=True)
    at: datetime = _created()
    actor_id: int | None = Field(default=None, foreign_key="person.id")
    action: str = Field(max_length=64)
    data: dict = Field(default_factory=dict, sa_type=JSONType)


class Member(SQLModel, table=True):
    """A Party member registered (报到) with the community where they live."""

    __tablename__ = "member"

    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", unique=True)
    full_name: str = Field(max_length=100)
    branch: str = Field(max_length=200)  # Party branch or work unit
    community_id: int = Field(foreign_key="org_unit.id", index=True)
    grid_id: int | None = Field(default=None, foreign_key="org_unit.id", index=True)
    skills: list = Field(default_factory=list, sa_type=JSONType)
    services: list = Field(default_factory=list, sa_type=JSONType)
    phone: str | None = Field(default=None, max_length=32)  # only if shared as a contact
    status: MemberStatus = Field(default=MemberStatus.PENDING, sa_type=_enum(MemberStatus))
    decided_by_id: int | None = Field(default=None, foreign_key="person.id")
    decided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    reject_reason: str | None = Field(default=None, sa_type=sa.Text)
    created_at: datetime = _created()
    updated_at: datetime = _created()


class ServicePost(SQLModel, table=True):
    """A standing post in a community (认岗): building helper, safety patrol... with places."""

    __tablename__ = "service_post"
    __table_args__ = (sa.UniqueConstraint("community_id", "code"),)

    id: int | None = Field(default=None, primary_key=True)
    community_id: int = Field(foreign_key="org_unit.id", index=True)
    code: str = Field(max_length=64)
    name_zh: str = Field(max_length=200)
    name_en: str = Field(max_length=200)
    places: int
    held: int = Field(default=0)  # changed only by one conditional UPDATE, like a call's
    created_at: datetime = _created()


class PostHolder(SQLModel, table=True):
    """A member holding a service post."""

    __tablename__ = "post_holder"

    post_id: int = Field(foreign_key="service_post.id", primary_key=True)
    member_id: int = Field(foreign_key="member.id", primary_key=True, index=True)
    since: datetime = _created()


class DutyCall(SQLModel, table=True):
    """A community's call for Party members (社区吹哨): where, when, how many."""

    __tablename__ = "duty_call"

    id: int | None = Field(default=None, primary_key=True)
    community_id: int = Field(foreign_key="org_unit.id", index=True)
    organiser_id: int = Field(foreign_key="person.id")
    title: str = Field(max_length=200)
    description: str = Field(default="", sa_type=sa.Text)
    latitude: float
    longitude: float
    starts_at: datetime = Field(sa_type=UTCDateTime, index=True)
    ends_at: datetime = Field(sa_type=UTCDateTime, index=True)
    capacity: int
    # Places taken: changed only by one conditional UPDATE, so a full call never takes more.
    claimed: int = Field(default=0)
    grid_ids: list = Field(default_factory=list, sa_type=JSONType)  # empty: the whole community
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    points_per_hour: float = Field(default=1.0)
    status: CallStatus = Field(default=CallStatus.OPEN, sa_type=_enum(CallStatus))
    # When those who said "I'll come" were reminded (once, a set time before the start).
    reminded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # When the organiser was told, after the end, that attendance waits for them (once).
    attendance_asked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = _created()
    updated_at: datetime = _created()


class CallClaim(SQLModel, table=True):
    """A member's "I'll come" to a call, and what happened on the day."""

    __tablename__ = "call_claim"
    __table_args__ = (sa.UniqueConstraint("call_id", "member_id"),)

    id: int | None = Field(default=None, primary_key=True)
    call_id: int = Field(foreign_key="duty_call.id", index=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    status: ClaimStatus = Field(default=ClaimStatus.CLAIMED, sa_type=_enum(ClaimStatus))
    claimed_at: datetime = _created()
    checked_in_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    checked_out_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Never checked out: closed at the call's end and marked for the organiser.
    auto_closed: bool = Field(default=False)
    minutes: int = Field(default=0)  # checked-in time, capped at the call's length
    confirmed: bool | None = None  # the organiser's word after the end
    points: float = Field(default=0.0)  # earned only when confirmed
    updated_at: datetime = _created()


class InboundUpdate(SQLModel, table=True):
    """An update from Telegram, kept so that each is handled once and none is lost.

    Long polling records each update here before confirming it to Telegram, then handles it;
    a process that dies in between leaves the row unhandled and the next poller handles it.
    Handling claims the row (sets handled_at) in the update's own transaction, so a
    redelivered update_id (a webhook retried, a poll repeated) is recognised and skipped.
    """

    __tablename__ = "inbound_update"
    __table_args__ = (
        # What a poller must still handle, oldest first; handled rows are not in this index.
        sa.Index(
            "ix_inbound_update_unhandled",
            "bot_id",
            "update_id",
            postgresql_where=sa.text("handled_at IS NULL"),
            sqlite_where=sa.text("handled_at IS NULL"),
        ),
    )

    bot_id: int = Field(
        sa_type=sa.BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    update_id: int = Field(
        sa_type=sa.BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False}
    )
    # The update's JSON as Telegram sent it (text: an update may hold what JSONB refuses, such
    # as \u0000); None once handled (only the key is kept, for redelivery).
    payload: str | None = Field(default=None, sa_type=sa.Text)
    received_at: datetime = Field(
        default_factory=utc_now, sa_type=UTCDateTime, nullable=False, index=True
    )
    handled_at: datetime | None = Field(default=None, sa_type=UTCDateTime, nullable=True)
    # Why handling ended without the handler's own commit (an error, a refusal), if it did.
    error: str | None = Field(default=None, max_length=500)


class Lease(SQLModel, table=True):
    """Who does a one-process job (send the outbox, run the scheduler, poll) until when.

    The holder renews it every few seconds; when it stops renewing (the process died), another
    process takes it over once it expires.
    """

    __tablename__ = "lease"

    name: str = Field(max_length=128, primary_key=True)
    holder: str = Field(max_length=200)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    acquired_at: datetime = _created()
