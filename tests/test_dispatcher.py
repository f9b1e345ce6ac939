"""The dispatcher as the bot builds it: every filter is checked on the event loop."""

from __future__ import annotations

from aiogram.dispatcher.event.handler import FilterObject

from bot.app import build_dispatcher
from bot.settings import Settings
from domain.clock import FrozenClock
from tests.factories import PHOTO, tg_message


def _filters(dp) -> list[FilterObject]:
    found = []
    for router in dp.chain_tail:
        for observer in router.observers.values():
            for handler in [observer._handler, *observer.handlers]:
                found.extend(handler.filters or [])
    return found


async def test_no_filter_is_handed_to_a_thread(clock: FrozenClock) -> None:
    settings = Settings(_env_file=None, bot_token="1:x")
    dp = build_dispatcher(settings=settings, sessionmaker=None, clock=clock)
    filters = _filters(dp)
    # The routers use magic filters (F.text, F.photo...), which aiogram would run in a thread.
    assert any(f.magic is not None for f in filters)
    assert all(f.awaitable for f in filters)
    # And they still filter: each magic filter answers what the filter itself says.
    for message in (tg_message("hello"), tg_message(photo=PHOTO)):
        for f in filters:
            if f.magic is not None:
                assert await f.call(message) == f.magic.resolve(message)
