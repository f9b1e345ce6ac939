"""The dispatcher as the bot builds it: every filter is checked on the event loop."""

from __future__ import annotations

from aiogram.dispatcher.event.handler import FilterObject
from aiogram.types import Message

from bot.app import build_dispatcher
from bot.settings import Settings
from domain.clock import FrozenClock


def _message(*, text: str | None = None, photo: bool = False) -> Message:
    extra = {"photo": [{"file_id": "p", "file_unique_id": "u", "width": 1, "height": 1}]}
    return Message.model_validate(
        {
            "message_id": 1,
            "date": 0,
            "chat": {"id": 5, "type": "private"},
            "from": {"id": 5, "is_bot": False, "first_name": "A"},
            "text": text,
            **(extra if photo else {}),
        }
    )


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
    for message in (_message(text="hello"), _message(photo=True)):
        for f in filters:
            if f.magic is not None:
                assert await f.call(message) == f.magic.resolve(message)
