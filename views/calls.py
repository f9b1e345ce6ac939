"""A call (社区吹哨) and its reminder as a member receives them: the text and the I'll come /
Can't buttons, rendered for the outbox and for the member's own screens alike."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import tzinfo
from typing import Any

from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from views.buttons import CallAction, CallOp
from views.cards import local_time
from views.i18n import Translate


def call_text(data: Mapping[str, Any], t: Translate, tz: tzinfo) -> str:
    return t("calls.call", title=data["title"], starts_at=local_time(data["starts_at"], tz))


def call_keyboard(call_id: int, t: Translate) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=t("calls.btn.come"), callback_data=CallAction(op=CallOp.COME, id=call_id))
    builder.button(text=t("calls.btn.cant"), callback_data=CallAction(op=CallOp.CANT, id=call_id))
    return builder.as_markup()


def reminder_text(data: Mapping[str, Any], t: Translate, tz: tzinfo) -> str:
    return t("calls.reminder", title=data["title"], starts_at=local_time(data["starts_at"], tz))


def reminder_keyboard(call_id: int, t: Translate) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(
        text=t("calls.btn.check_in"), callback_data=CallAction(op=CallOp.CHECK_IN, id=call_id)
    )
    builder.button(
        text=t("calls.btn.check_out"), callback_data=CallAction(op=CallOp.CHECK_OUT, id=call_id)
    )
    return builder.as_markup()
