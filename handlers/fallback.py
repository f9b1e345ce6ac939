"""The catch-all: anything no other router took gets help, never silence."""

from __future__ import annotations

from collections.abc import Callable

from aiogram import Router
from aiogram.types import CallbackQuery, Message

router = Router(name="fallback")


@router.message()
async def unknown_message(message: Message, t: Callable[..., str]) -> None:
    """Text, stickers or commands nobody handles: point to /help."""
    await message.answer(t("fallback.text"))


@router.callback_query()
async def unknown_button(query: CallbackQuery, t: Callable[..., str]) -> None:
    """A button from an old message or a forged one: say so, change nothing."""
    await query.answer(t("fallback.button"), show_alert=True)
