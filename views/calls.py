"""A call (社区吹哨) and its reminder as a member receives them: what, from when to when and
where (a venue on the map), with the I'll come / Can't or Check in / Check out buttons,
rendered for the outbox and for the member's own screens alike.

The data is the outbox row's (ISO times); a row queued before the call's end and description
were carried says what it has.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import tzinfo
from typing import Any

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from views.buttons import CallAction, CallOp
from views.cards import local_time
from views.common import Place
from views.i18n import Translate


def call_when(data: Mapping[str, Any], tz: tzinfo) -> str:
    """ "2026-12-07 09:00–11:00", or both dates when the call ends on another day."""
    start = local_time(data["starts_at"], tz)
    if not data.get("ends_at"):
        return start
    end = local_time(data["ends_at"], tz)
    return f"{start}–{end[11:]}" if end[:10] == start[:10] else f"{start} – {end}"


def _details(data: Mapping[str, Any], t: Translate, tz: tzinfo) -> list[str]:
    """What (the description), when, and where (the venue sent just before)."""
    lines = []
    if data.get("description"):
        lines.append(data["description"])
    lines.append(t("calls.when", when=call_when(data, tz)))
    if data.get("latitude") is not None:
        lines.append(t("calls.where_above"))
    return lines


def call_text(data: Mapping[str, Any], t: Translate, tz: tzinfo) -> str:
    return "\n".join([t("calls.call", title=data["title"]), *_details(data, t, tz)])


def call_place(data: Mapping[str, Any], tz: tzinfo) -> Place:
    """The call's venue: its place, titled with the call, its times as the address."""
    return Place(
        float(data["latitude"]),
        float(data["longitude"]),
        title=str(data["title"]),
        address=call_when(data, tz),
    )


def call_keyboard(call_id: int, t: Translate) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=t("calls.btn.come"), callback_data=CallAction(op=CallOp.COME, id=call_id))
    builder.button(text=t("calls.btn.cant"), callback_data=CallAction(op=CallOp.CANT, id=call_id))
    return builder.as_markup()


def reminder_text(data: Mapping[str, Any], t: Translate, tz: tzinfo) -> str:
    return "\n".join(
        [t("calls.reminder", title=data["title"]), *_details(data, t, tz), t("calls.on_site")]
    )


def _check_in_and_out(builder: InlineKeyboardBuilder, call_id: int, t: Translate) -> None:
    builder.button(
        text=t("calls.btn.check_in"), callback_data=CallAction(op=CallOp.CHECK_IN, id=call_id)
    )
    builder.button(
        text=t("calls.btn.check_out"), callback_data=CallAction(op=CallOp.CHECK_OUT, id=call_id)
    )


def reminder_keyboard(call_id: int, t: Translate) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    _check_in_and_out(builder, call_id, t)
    return builder.as_markup()


def coming_text(data: Mapping[str, Any], t: Translate, tz: tzinfo) -> str:
    """A call the member is coming to, as /me's button shows it."""
    return "\n".join([t("calls.coming", title=data["title"]), *_details(data, t, tz)])


def coming_keyboard(
    call_id: int, t: Translate, *, check_in: bool, withdraw: bool
) -> InlineKeyboardMarkup | None:
    """Check in / Check out while check-in is open; Withdraw before the start."""
    builder = InlineKeyboardBuilder()
    if check_in:
        _check_in_and_out(builder, call_id, t)
    if withdraw:
        builder.button(
            text=t("calls.btn.withdraw"), callback_data=CallAction(op=CallOp.WITHDRAW, id=call_id)
        )
    builder.adjust(2)
    return builder.as_markup() if check_in or withdraw else None


def ahead_keyboard(calls: list[Any], t: Translate) -> InlineKeyboardMarkup | None:
    """/me: a button per call ahead, showing its place, times and what may be done now."""
    if not calls:
        return None
    builder = InlineKeyboardBuilder()
    for call in calls:
        builder.button(
            text=t("calls.btn.show", title=call.title),
            callback_data=CallAction(op=CallOp.SHOW, id=call.id),
        )
    builder.adjust(1)
    return builder.as_markup()
