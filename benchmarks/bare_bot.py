"""The baselines for benchmarks: a bare aiogram bot that answers every message, nothing else;
and, given a database URL, the same bot keeping each chat's dialog state durable (the least
any bot must do whose dialogs survive a restart): one state write per message, through the
FSM storage gridbot uses, before the answer.

Run as `python benchmarks/bare_bot.py API_BASE TOKEN [DATABASE_URL]`.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.fsm.context import FSMContext
from aiogram.types import Message

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


async def main(api_base: str, token: str, database_url: str | None) -> None:
    bot = Bot(token, session=AiohttpSession(api=TelegramAPIServer.from_base(api_base)))
    store = None
    if database_url is None:
        dp = Dispatcher()
    else:
        from bot.fsm import DatabaseStorage
        from domain.clock import SystemClock
        from storage.conversations import open_store
        from storage.db import upgrade

        await asyncio.to_thread(upgrade, database_url)
        store = open_store(database_url)
        dp = Dispatcher(storage=DatabaseStorage(store, SystemClock()))

    @dp.message()
    async def echo(message: Message, state: FSMContext) -> None:
        if database_url is not None:
            await state.set_data({"last": message.text})
        await message.answer(message.text or "?")

    try:
        await dp.start_polling(bot, handle_signals=True)
    finally:
        if store is not None:
            await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
