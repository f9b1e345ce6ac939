"""The catch-all: anything no other router took gets help, never silence."""

from __future__ import annotations

from collections.abc import Callable

from aiogram import Router
from aiogram.types import CallbackQuery, Message


async def unknown_message(message: Message, t: Callable[..., str]) -> None:
    """Text, stickers or commands nobody handles: point to /help."""
    await message.answer(t("fallback.text"))


async def unknown_button(query: CallbackQuery, t: Callable[..., str]) -> None:
    """A button from an old message or a forged one: say so, change nothing."""
    await query.answer(t("fallback.button"), show_alert=True)


def router() -> Router:
    """A fresh catch-all router; it must be included after every other one."""
    r = Router(name="fallback")
    r.message.register(unknown_message)
    r.callback_query.register(unknown_button)
    return r
