"""The ticket card: the text and buttons a holder sees, for direct replies and for the outbox.

Both take `card_data(...)` (a JSON-safe snapshot, see domain.tickets.card_data), so a card
rendered from an outbox row hours later reads the same as one built in a handler now. Times
are shown in the city's time zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from domain.summons import WHISTLE_LEVELS
from domain.tickets import NEXT_LEVEL, Action, allowed
from storage.enums import Level, SummonsStatus, TicketStatus
from views.buttons import (
    SummonsAction,
    SummonsOp,
    TicketAction,
    TicketOp,
    TicketToCall,
    WhistleOp,
    WhistlePick,
)
from views.i18n import Translate

# The settings' default (GRIDBOT_TIMEZONE); callers pass settings.tz.
DEFAULT_TZ = ZoneInfo("Asia/Shanghai")

# A grid's ticket being worked on may be turned into a call for Party members (社区吹哨).
CALL_STATUSES = frozenset({TicketStatus.ACCEPTED, TicketStatus.REOPENED})

# The buttons a holder may get, in the order they are shown; each only when the table of
# moves allows the action in the ticket's status.
BUTTONS: tuple[tuple[Action, TicketOp, str], ...] = (
    (Action.ACCEPT, TicketOp.ACCEPT, "card.button.accept"),
    (Action.RESOLVE, TicketOp.RESOLVE, "card.button.resolve"),
    (Action.RETURN, TicketOp.RETURN, "card.button.return"),
    (Action.ESCALATE, TicketOp.ESCALATE, "card.button.escalate"),
    (Action.WHISTLE, TicketOp.WHISTLE, "card.button.whistle"),
    (Action.REDISPATCH, TicketOp.REDISPATCH, "card.button.redispatch"),
    (Action.CANCEL, TicketOp.CANCEL, "card.button.cancel"),
)


def localized_name(data: Mapping[str, Any], key: str, language: str) -> str:
    """data["<key>_zh"] or data["<key>_en"] by language, the other one if that is empty."""
    zh, en = data.get(f"{key}_zh") or "", data.get(f"{key}_en") or ""
    return (zh or en) if language == "zh-hans" else (en or zh)


def _moment(value: str | datetime) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:  # stored times are UTC
        moment = moment.replace(tzinfo=ZoneInfo("UTC"))
    return moment


def local_time(value: str | datetime, tz: tzinfo) -> str:
    """An ISO timestamp (or datetime) as "2026-11-25 10:00" in the city's time zone."""
    return f"{_moment(value).astimezone(tz):%Y-%m-%d %H:%M}"


def duration(delta: timedelta, t: Translate) -> str:
    """A span as people say it, its two largest parts and no zero part: "12 minutes",
    "3 hours 5 minutes", "2 days", "2 days 4 hours" (never negative)."""
    minutes = max(0, int(delta.total_seconds() // 60))
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        parts = [t("card.duration.days", days=days)]
        if hours:
            parts.append(t("card.duration.hours", hours=hours))
    elif hours:
        parts = [t("card.duration.hours", hours=hours)]
        if mins:
            parts.append(t("card.duration.minutes", minutes=mins))
    else:
        parts = [t("card.duration.minutes", minutes=mins)]
    if len(parts) == 2:
        return t("card.duration.two", first=parts[0], second=parts[1])
    return parts[0]


def card_text(
    data: Mapping[str, Any],
    t: Translate,
    language: str,
    *,
    tz: tzinfo | None = None,
    now: datetime | None = None,
) -> str:
    """The card's text in `language`.

    Ages and the deadline are measured at `now`, else at the snapshot's "as_of" (when the card
    was made); times are shown in `tz` (the city's time zone; Asia/Shanghai by default).
    """
    tz = tz or DEFAULT_TZ
    as_of = _moment(now or data.get("as_of") or datetime.now(tz))
    status = data["status"]
    lines = [
        t("card.title", number=data["number"]),
        t(
            "card.category",
            category=localized_name(data, "category", language),
            urgency=t(f"urgency.{data['urgency']}"),
        ),
        t("card.status", status=t(f"card.status.{status}")),
    ]
    holder = localized_name(data, "holder", language)
    if holder:
        lines.append(
            t(
                "card.holder",
                holder=holder,
                level=t(f"level.{data['level']}"),
                since=local_time(data["holder_since"], tz),
            )
        )
    if data.get("anonymous") or not data.get("reporter"):
        lines.append(t("card.reporter_anonymous"))
    else:
        lines.append(t("card.reporter", name=data["reporter"]))
    if (data.get("affected") or 1) > 1:
        lines.append(t("card.affected", count=data["affected"]))
    created = _moment(data["created_at"])
    lines.append(t("card.filed", when=local_time(created, tz), age=duration(as_of - created, t)))
    if data.get("next_deadline"):
        deadline = _moment(data["next_deadline"])
        when = local_time(deadline, tz)
        if deadline < as_of:
            lines.append(t("card.deadline_overdue", when=when, late=duration(as_of - deadline, t)))
        else:
            lines.append(t("card.deadline", when=when, left=duration(deadline - as_of, t)))
    lines.append(
        t(
            "card.place",
            grid=localized_name(data, "grid", language),
            community=localized_name(data, "community", language),
        )
    )
    lines.append("")
    lines.append(t("card.description", text=data.get("description") or ""))
    extra = []
    if data.get("resolution_note") and status in (
        TicketStatus.RESOLVED,
        TicketStatus.CLOSED,
        TicketStatus.REOPENED,
    ):
        extra.append(t("card.resolution", note=data["resolution_note"]))
    if data.get("return_reason") and status == TicketStatus.RETURNED:
        extra.append(t("card.return_reason", reason=t(f"return_reason.{data['return_reason']}")))
    if data.get("reopen_count"):
        extra.append(t("card.reopened", count=data["reopen_count"]))
        if data.get("reopen_reason") and status == TicketStatus.REOPENED:
            extra.append(t("card.reopen_reason", reason=data["reopen_reason"]))
    if extra:
        lines.append("")
        lines.extend(extra)
    return "\n".join(lines)


def card_keyboard(data: Mapping[str, Any], t: Translate) -> InlineKeyboardMarkup | None:
    """The holder's buttons for the ticket's status now; None when there is nothing to do.

    new: Accept / Return / Escalate; accepted or reopened: Resolve / Escalate (and, at the
    grid, Turn into call); returned (at the community): Escalate / Re-dispatch / Close; no
    Escalate at the top of the ladder; Whistle (summon departments) only where the street or
    the district holds it.
    """
    status = TicketStatus(data["status"])
    level = Level(data["level"])
    builder = InlineKeyboardBuilder()
    count = 0
    for action, op, key in BUTTONS:
        if not allowed(status, action):
            continue
        if action is Action.ESCALATE and level not in NEXT_LEVEL:
            continue
        if action is Action.WHISTLE and level not in WHISTLE_LEVELS:
            continue
        builder.button(text=t(key), callback_data=TicketAction(op=op, id=data["ticket_id"]))
        count += 1
    if level is Level.GRID and status in CALL_STATUSES:
        # The grid leader may call the grid's Party members to help (handlers/call_create).
        builder.button(
            text=t("card.button.to_call"), callback_data=TicketToCall(id=data["ticket_id"])
        )
        count += 1
    if not count:
        return None
    builder.adjust(3)
    return builder.as_markup()


# -- a department's summons card (the street's whistle) ---------------------------------------

LIAISON, STREET, DISTRICT = "liaison", "street", "district"
# Who a summons card is for, by why it was sent: the department's liaisons, the street
# holding the ticket (a department returned it), the district (a department is silent).
AUDIENCES: dict[str, str] = {
    "summoned": LIAISON,
    "reminder": LIAISON,
    "overdue": LIAISON,
    "department_returned": STREET,
    "department_silent": DISTRICT,
}


def _deadline_line(
    value: str | datetime, as_of: datetime, t: Translate, tz: tzinfo, key: str
) -> str:
    """`key` ("...deadline") with when and time left, or `key`_overdue with how late."""
    deadline = _moment(value)
    when = local_time(deadline, tz)
    if deadline < as_of:
        return t(f"{key}_overdue", when=when, late=duration(as_of - deadline, t))
    return t(key, when=when, left=duration(deadline - as_of, t))


def summons_text(
    data: Mapping[str, Any],
    t: Translate,
    language: str,
    *,
    audience: str,
    tz: tzinfo | None = None,
    now: datetime | None = None,
) -> str:
    """The ticket's card, then the department's part: its state, deadline, return or answer.

    The liaisons work against the department's deadline, so the ticket's own (the street's,
    while a return waits for it) is left off their copy.
    """
    tz = tz or DEFAULT_TZ
    as_of = _moment(now or data.get("as_of") or datetime.now(tz))
    ticket = dict(data)
    if audience == LIAISON:
        ticket["next_deadline"] = None
    status = data["summons_status"]
    lines = [card_text(ticket, t, language, tz=tz, now=now), ""]
    lines.append(
        t(
            "summons.department",
            department=localized_name(data, "department", language),
            state=t(f"summons.status.{status}"),
        )
    )
    if data.get("summons_deadline") and status in (SummonsStatus.SUMMONED, SummonsStatus.ACCEPTED):
        lines.append(_deadline_line(data["summons_deadline"], as_of, t, tz, "summons.deadline"))
    if data.get("return_reason") and status in (SummonsStatus.RETURNED, SummonsStatus.WITHDRAWN):
        lines.append(
            t(
                "summons.return_reason",
                reason=t(f"summons.return_reason.{data['return_reason']}"),
                note=data.get("return_note") or "",
            )
        )
    if data.get("finish_note") and status == SummonsStatus.FINISHED:
        lines.append(t("summons.finish_note", note=data["finish_note"]))
    return "\n".join(lines)


def summons_keyboard(
    data: Mapping[str, Any], t: Translate, audience: str
) -> InlineKeyboardMarkup | None:
    """The buttons for the summons' state now, for whom the card is; None if nothing to do.

    Liaisons: summoned -> Report in / Return; accepted -> Finish / Return. The street, on a
    returned one: Insist / Release / Summon other departments. The district: Open the ticket.
    """
    status = SummonsStatus(data["summons_status"])
    summons_id, ticket_id = data["summons_id"], data["ticket_id"]
    builder = InlineKeyboardBuilder()
    if audience == LIAISON:
        first = {
            SummonsStatus.SUMMONED: (SummonsOp.REPORT_IN, "summons.button.report_in"),
            SummonsStatus.ACCEPTED: (SummonsOp.FINISH, "summons.button.finish"),
        }.get(status)
        if first is None:
            return None
        for op, key in (first, (SummonsOp.RETURN, "summons.button.return")):
            builder.button(text=t(key), callback_data=SummonsAction(op=op, id=summons_id))
        builder.adjust(2)
    elif audience == STREET:
        if status != SummonsStatus.RETURNED:
            return None
        builder.button(
            text=t("summons.button.insist"),
            callback_data=SummonsAction(op=SummonsOp.INSIST, id=summons_id),
        )
        builder.button(
            text=t("summons.button.release"),
            callback_data=SummonsAction(op=SummonsOp.RELEASE, id=summons_id),
        )
        builder.button(
            text=t("summons.button.summon_others"),
            callback_data=WhistlePick(op=WhistleOp.START, id=ticket_id, src=summons_id),
        )
        builder.adjust(1)
    elif audience == DISTRICT:
        builder.button(
            text=t("summons.button.open"),
            callback_data=TicketAction(op=TicketOp.OPEN, id=ticket_id),
        )
    else:
        return None
    return builder.as_markup()
