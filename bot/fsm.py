"""An aiogram FSM storage in the database, so a dialog survives a restart of the bot.

The bot is the only writer of conversations, so it keeps what it wrote in memory and reads
the database only for a conversation it has not seen since it started. Inside an update the
write is deferred: a step's set_state and set_data become one row written when the update's
transaction ends, which is before the bot's next call to Telegram, so the person never sees
the next question before the step is stored. Rows go through the conversation store's own
connection (storage.conversations), not the update's session.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, DefaultKeyBuilder, StateType, StorageKey
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.middlewares import current_session, defer_write
from domain.clock import Clock
from storage.conversations import ConversationStore

Conversation = tuple[str | None, dict[str, Any]]


def _copy(value: Any) -> Any:
    """A deep copy of JSON-like data (dicts, lists, scalars), several times cheaper than
    copy.deepcopy; anything else is kept as it is."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_copy(v) for v in value)
    return value


class DatabaseStorage(BaseStorage):
    """FSM state and data in the `conversation_state` table, written through a memory cache."""

    def __init__(
        self, store: ConversationStore, clock: Clock, *, cache_size: int = 100_000
    ) -> None:
        self._store = store
        self._clock = clock
        self._keys = DefaultKeyBuilder(with_destiny=True, with_bot_id=True)
        self._cache: OrderedDict[str, Conversation] = OrderedDict()
        self._cache_size = cache_size

    async def _get(self, key: str) -> Conversation:
        found = self._cache.get(key)
        if found is None:
            found = await self._store.load(key)
            self._remember(key, found)
        else:
            self._cache.move_to_end(key)
        return found

    async def _put(self, key: str, state: str | None, data: dict[str, Any]) -> None:
        shared = current_session.get()
        if shared is None:
            await self._store.save(key, self._clock.now(), state, data)
            # Only once it is stored: a failed write leaves the cache as the database is.
            self._remember(key, (state, data))
            return
        self._remember(key, (state, data))
        now = self._clock.now()

        async def write(_: AsyncSession) -> None:
            await self._store.save(key, now, state, data)

        def undo() -> None:
            # Not stored: forget it, so the next update reads what the database holds.
            self._cache.pop(key, None)

        defer_write(shared, f"conversation:{key}", write, undo)

    def _remember(self, key: str, conversation: Conversation) -> None:
        self._cache[key] = conversation
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        name = self._keys.build(key)
        _, data = await self._get(name)
        await self._put(name, value, data)

    async def get_state(self, key: StorageKey) -> str | None:
        state, _ = await self._get(self._keys.build(key))
        return state

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        name = self._keys.build(key)
        state, _ = await self._get(name)
        await self._put(name, state, _copy(dict(data)))

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        _, data = await self._get(self._keys.build(key))
        # A copy: the caller may change it without changing what is stored.
        return _copy(data)

    async def close(self) -> None:
        """The store belongs to the application, which closes it; nothing to do here."""
