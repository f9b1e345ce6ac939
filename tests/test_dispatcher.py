"""The dispatcher as the bot builds it: every filter is checked on the event loop."""

from __future__ import annotations

from aiogram.dispatcher.event.handler import FilterObject
from aiogram.types import CallbackQuery, Message

from bot.app import CallbackPrefix, MessageScope, build_dispatcher
from bot.settings import Settings
from domain.clock import FrozenClock
from handlers.callbacks import MemberDecision, TicketAction, TicketOp


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


def _query(data: str) -> CallbackQuery:
    return CallbackQuery.model_validate(
        {
            "id": "q",
            "from": {"id": 5, "is_bot": False, "first_name": "A"},
            "chat_instance": "c",
            "data": data,
        }
    )


async def test_routers_look_only_at_updates_they_could_take(clock: FrozenClock) -> None:
    settings = Settings(_env_file=None, bot_token="1:x")
    dp = build_dispatcher(settings=settings, sessionmaker=None, clock=clock)
    routers = {router.name: router for router in dp.chain_tail if router is not dp}

    def root(router, observer: str):
        found = [f.callback for f in routers[router].observers[observer]._handler.filters or []]
        return found[0] if found else None

    # The /duty dialog's router: its commands and its own states, not a report's description.
    member = root("member", "message")
    assert isinstance(member, MessageScope)
    assert await member(_message(text="/duty"), raw_state=None)
    assert await member(_message(text="Li Ming"), raw_state="Register:name")
    assert not await member(_message(text="Li Ming"), raw_state="Report:description")
    assert not await member(_message(text="hello"), raw_state=None)
    # Its buttons: their callback data's prefixes only.
    buttons = root("member", "callback_query")
    assert isinstance(buttons, CallbackPrefix)
    assert await buttons(_query(MemberDecision(id=1, ok=True).pack()))
    assert not await buttons(_query(TicketAction(op=TicketOp.ACCEPT, id=1).pack()))
    # The fallback answers anything: left as it is.
    assert root("fallback", "message") is None
    assert root("fallback", "callback_query") is None
