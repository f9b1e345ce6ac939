"""An aiogram FSM storage in the database, so a dialog survives a restart of the bot, and the
database locks that keep one chat's updates in order across processes.

Several processes may serve one bot, and the steps of one dialog may land on different ones,
so nothing is kept in memory between updates: each update reads its conversation from the
database. Inside an update the read is kept for the update's length, and the write is
deferred: a step's set_state and set_data become one row written in the update's transaction
as it ends, which is before the bot's next call to Telegram, so the person never sees the
next question before the step is stored, and the step commits with the update's claim and
changes or not at all. Reads (and writes outside updates) go through the conversation
store's own connection (storage.conversations).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import (
    BaseEventIsolation,
    BaseStorage,
    DefaultKeyBuilder,
    StateType,
    StorageKey,
)
from aiogram.fsm.storage.memory import SimpleEventIsolation
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.middlewares import CONVERSATIONS, current_session, defer_write, early_reads
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
    """FSM state and data in the `conversation_state` table."""

    def __init__(self, store: ConversationStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock
        self._keys = DefaultKeyBuilder(with_destiny=True, with_bot_id=True)

    async def _get(self, key: str) -> Conversation:
        shared = current_session.get()
        if shared is None:
            found = await self._store.load(key)
            early = early_reads.get()
            if early is not None:  # in an update, before its session: the session keeps it
                early[key] = found
            return found
        # Within one update, what it read or wrote (its handlers and filters ask often).
        known = shared.info.setdefault(CONVERSATIONS, {})
        found = known.get(key)
        if found is None:
            found = known[key] = await self._store.load(key)
        return found

    async def _put(self, key: str, state: str | None, data: dict[str, Any]) -> None:
        shared = current_session.get()
        if shared is None:
            await self._store.save(key, self._clock.now(), state, data)
            return
        known = shared.info.setdefault(CONVERSATIONS, {})
        before = known.get(key)
        known[key] = (state, data)
        now = self._clock.now()

        async def write(session: AsyncSession, open_transaction: bool) -> None:
            if open_transaction:
                await self._store.save_in(session, key, now, state, data)
            else:
                await self._store.save_after(session, key, now, state, data)

        def undo() -> None:
            # Not stored: the update reads again what the database holds.
            if before is None:
                known.pop(key, None)
            else:
                known[key] = before

        defer_write(shared, f"conversation:{key}", write, undo)

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


class DatabaseEventIsolation(BaseEventIsolation):
    """One update at a time per chat across processes: a database lock per chat, taken after
    the process's own lock (so updates of one chat in one process queue in memory)."""

    def __init__(self, store: ConversationStore, *, most_wait: float = 0.2) -> None:
        self._store = store
        self._local = SimpleEventIsolation()
        self._keys = DefaultKeyBuilder(with_destiny=True, with_bot_id=True)
        self._most_wait = most_wait

    @asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncIterator[None]:
        name = self._keys.build(key, "lock")
        async with self._local.lock(key):
            wait = 0.005
            # Another process handles this chat now: rare, and short, so ask again shortly.
            while not await self._store.try_lock(name):
                await asyncio.sleep(wait)
                wait = min(wait * 2, self._most_wait)
            try:
                yield
            finally:
                await self._store.unlock(name)

    async def close(self) -> None:
        """The store belongs to the application, which closes it; nothing to do here."""
