"""Running the real bot in-process against the fake Bot API, for end-to-end tests."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.runtime import serve
from bot.settings import Settings
from domain.clock import Clock
from tests.fake_telegram import FakeTelegram

TOKEN = "123456:TEST-TOKEN"


@dataclass
class RunningBot:
    fake: FakeTelegram
    settings: Settings
    task: asyncio.Task


_RUNS = itertools.count(1)


def bot_settings(api_base: str, database_url: str, **overrides: object) -> Settings:
    values = {
        "bot_token": TOKEN,
        "database_url": database_url,
        "telegram_api_base": api_base,
        # Test pace: fast enough not to slow the tests, still throttled.
        "outbox_rate": 500.0,
        "chat_interval": 0.01,
        # Tests type faster than people; the per-person limit has tests of its own.
        "flood_rate": 1000.0,
        "flood_burst": 1000,
        # The deadline sweep runs only where a test asks for it (scheduler=True).
        "scheduler": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@asynccontextmanager
async def running_bot(
    database_url: str,
    *,
    clock: Clock | None = None,
    wait_for: str = "deleteWebhook",
    **overrides: object,
) -> AsyncIterator[RunningBot]:
    """Start the fake Bot API and `serve()` on it; stop both (cleanly) at the end.

    Yields once the bot made its `wait_for` call (polling started, or the webhook was set).
    """
    async with FakeTelegram(tokens=[TOKEN]) as fake:
        # Each run's updates are numbered after the last run's, as Telegram numbers them.
        fake.start_update_ids_at(next(_RUNS) * 1_000_000)
        settings = bot_settings(fake.base_url, database_url, **overrides)
        stop = asyncio.Event()
        task = asyncio.create_task(serve(settings, clock=clock, stop=stop))
        try:
            await fake.wait_for_call(wait_for, timeout=30)
            yield RunningBot(fake, settings, task)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
