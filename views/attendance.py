"""Attendance as the organiser and the members receive it through the outbox: the "attendance
waits" message and the monthly summaries."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import tzinfo
from typing import Any

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from views.buttons import Sheet, SheetOp
from views.cards import local_time
from views.common import amount, hours
from views.i18n import Translate

MONTH_SERVED_LIMIT = 50  # members named in a secretary's monthly summary


def due_text(data: Mapping[str, Any], t: Translate, tz: tzinfo) -> str:
    return t(
        "attendance.due",
        title=data["title"],
        ends_at=local_time(data["ends_at"], tz),
        claims=data["claims"],
    )


def due_keyboard(call_id: int, t: Translate) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=t("attendance.btn.sheet"), callback_data=Sheet(op=SheetOp.OPEN, id=call_id))
    return builder.as_markup()


def month_member_text(data: Mapping[str, Any], t: Translate) -> str:
    return t(
        "attendance.month_member",
        month=data["month"],
        calls=data["calls"],
        hours=hours(int(data["minutes"])),
        points=amount(float(data["points"])),
    )


def month_secretary_text(data: Mapping[str, Any], t: Translate) -> str:
    served = sorted(data.get("served") or (), key=lambda s: (-int(s["minutes"]), s["name"]))
    lines = [t("attendance.month_secretary", month=data["month"])]
    if served:
        lines.append(t("attendance.month_served", count=len(served)))
        lines += [
            t("attendance.month_served_line", name=s["name"], hours=hours(int(s["minutes"])))
            for s in served[:MONTH_SERVED_LIMIT]
        ]
        if len(served) > MONTH_SERVED_LIMIT:
            lines.append(t("attendance.month_more", count=len(served) - MONTH_SERVED_LIMIT))
    else:
        lines.append(t("attendance.month_served_none"))
    lines.append(
        t(
            "attendance.month_counts",
            unfilled=data.get("unfilled", 0),
            no_shows=data.get("no_shows", 0),
        )
    )
    return "\n".join(lines)
