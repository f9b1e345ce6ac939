"""The dispatcher as the bot builds it: every filter is checked on the event loop."""

from __future__ import annotations

from aiogram import Router

from bot.app import build_dispatcher
from bot.settings import Settings
from domain.clock import FrozenClock
from handlers.filters import Has
from tests.factories import PHOTO, tg_message


def _routers(router: Router) -> list[Router]:
    return [router, *(r for nested in router.sub_routers for r in _routers(nested))]


async def test_no_filter_is_handed_to_a_thread(clock: FrozenClock) -> None:
    """aiogram runs a filter that is a plain callable (a bare F.text) in a worker thread, a
    round trip per update: the handlers wrap magic filters in handlers.filters.Has."""
    settings = Settings(_env_file=None, bot_token="1:x")
    dp = build_dispatcher(settings=settings, sessionmaker=None, clock=clock)
    filters = [
        f
        for router in _routers(dp)
        for observer in router.observers.values()
        for handler in observer.handlers
        for f in handler.filters or []
    ]
    assert [repr(f.callback) for f in filters if not f.awaitable] == []
    wrapped = [f.callback for f in filters if isinstance(f.callback, Has)]
    # The routers do use magic filters (F.text, F.photo...), and they still filter: each
    # answers what the magic filter itself says.
    assert wrapped
    for message in (tg_message("hello"), tg_message(photo=PHOTO), tg_message("/report")):
        for has in wrapped:
            assert await has(message) == has.magic.resolve(message)
