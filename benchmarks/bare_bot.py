"""The baseline for benchmarks: a bare aiogram bot that answers every message, nothing else.

Run as `python benchmarks/bare_bot.py API_BASE TOKEN`.
"""

from __future__ import annotations

import asyncio
import sys

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.types import Message


async def main(api_base: str, token: str) -> None:
    bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(api_base)))
    dp = Dispatcher()

    @dp.message()
    async def echo(message: Message) -> None:
        await message.answer(message.text or "?")

    await dp.start_polling(bot, handle_signals=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
