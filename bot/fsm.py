"""An aiogram FSM storage in the database, so a dialog survives a restart of the bot."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, DefaultKeyBuilder, StateType, StorageKey
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.middlewares import current_session, end_transaction
from domain.clock import Clock
from storage import conversations


class DatabaseStorage(BaseStorage):
    """FSM state and data in the `conversation_state` table (SQLite or PostgreSQL)."""

    def __init__(self, sessionmaker: async_sessionmaker, clock: Clock) -> None:
        self._sessionmaker = sessionmaker
        self._clock = clock
        self._keys = DefaultKeyBuilder(with_destiny=True, with_bot_id=True)

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[AsyncSession]:
        """The update's own session when there is one, so one update never waits on itself
        for the SQLite write lock; each operation is committed at once either way."""
        shared = current_session.get()
        if shared is not None:
            await end_transaction(shared)
            yield shared
            await shared.commit()
            return
        async with self._sessionmaker() as session:
            yield session
            await session.commit()

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        async with self._session() as session:
            await conversations.save(session, self._keys.build(key), self._clock.now(), state=value)

    async def get_state(self, key: StorageKey) -> str | None:
        async with self._session() as session:
            state, _ = await conversations.load(session, self._keys.build(key))
        return state

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        async with self._session() as session:
            await conversations.save(
                session, self._keys.build(key), self._clock.now(), data=dict(data)
            )

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        async with self._session() as session:
            _, data = await conversations.load(session, self._keys.build(key))
        return data

    async def close(self) -> None:
        """The engine belongs to the application; nothing to close here."""
