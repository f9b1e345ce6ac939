"""Conversation state lives in the database: a new storage (a restarted bot) sees it."""

from __future__ import annotations

import pytest
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey
from sqlalchemy import event as sa_event
from sqlalchemy.exc import StatementError
from sqlmodel import select

from bot.fsm import DatabaseStorage
from bot.middlewares import current_session, end_transaction
from storage.db import make_engine, make_sessionmaker
from storage.models import ConversationState


class Report(StatesGroup):
    description = State()


KEY = StorageKey(bot_id=42, chat_id=1001, user_id=1001)


async def test_state_and_data_survive_a_new_storage(db_url, clock) -> None:
    engine = make_engine(db_url)
    storage = DatabaseStorage(make_sessionmaker(engine), clock)
    await storage.set_state(KEY, Report.description)
    await storage.set_data(KEY, {"category": "garbage", "photos": ["a", "b"]})
    await storage.update_data(KEY, {"text": "垃圾没人清"})
    await engine.dispose()

    # A different engine and storage: what a restarted process would build.
    engine = make_engine(db_url)
    restarted = DatabaseStorage(make_sessionmaker(engine), clock)
    assert await restarted.get_state(KEY) == "Report:description"
    assert await restarted.get_data(KEY) == {
        "category": "garbage",
        "photos": ["a", "b"],
        "text": "垃圾没人清",
    }
    other = StorageKey(bot_id=42, chat_id=1002, user_id=1002)
    assert await restarted.get_state(other) is None
    assert await restarted.get_data(other) == {}
    await engine.dispose()


async def test_clearing_a_conversation_deletes_its_row(db_url, sessionmaker, clock) -> None:
    storage = DatabaseStorage(sessionmaker, clock)
    await storage.set_state(KEY, Report.description)
    await storage.set_data(KEY, {"x": 1})
    await storage.set_state(KEY, None)
    await storage.set_data(KEY, {})
    async with sessionmaker() as session:
        assert (await session.exec(select(ConversationState))).all() == []
    assert await storage.get_state(KEY) is None


async def test_the_memory_cache_is_bounded_and_hands_out_copies(sessionmaker, clock) -> None:
    storage = DatabaseStorage(sessionmaker, clock, cache_size=1)
    other = StorageKey(bot_id=42, chat_id=1002, user_id=1002)
    await storage.set_data(KEY, {"photos": ["a"]})
    await storage.set_data(other, {"photos": ["b"]})  # evicts KEY from memory
    data = await storage.get_data(KEY)  # read back from the database
    assert data == {"photos": ["a"]}
    data["photos"].append("changed by the caller")
    assert await storage.get_data(KEY) == {"photos": ["a"]}
    assert await storage.get_data(other) == {"photos": ["b"]}


async def _rows(sessionmaker) -> list[tuple[str | None, dict]]:
    async with sessionmaker() as session:
        found = (await session.exec(select(ConversationState))).all()
        return [(row.state, row.data) for row in found]


async def test_inside_an_update_a_step_is_one_write_made_before_telegram(
    sessionmaker, clock
) -> None:
    storage = DatabaseStorage(sessionmaker, clock)
    statements: list[str] = []
    async with sessionmaker() as session:
        sa_event.listen(
            session.bind.sync_engine,
            "before_cursor_execute",
            lambda *args: statements.append(args[2]),
        )
        token = current_session.set(session)
        try:
            await storage.set_state(KEY, Report.description)
            await storage.update_data(KEY, {"category": "garbage"})
            # Seen by the update at once, not yet in the database.
            assert await storage.get_state(KEY) == "Report:description"
            assert await _rows(sessionmaker) == []
            # What EndTransactionMiddleware does before a call to Telegram.
            await end_transaction(session)
        finally:
            current_session.reset(token)
    writes = [s for s in statements if s.startswith(("INSERT", "DELETE", "UPDATE"))]
    assert len(writes) == 1
    assert await _rows(sessionmaker) == [("Report:description", {"category": "garbage"})]


async def test_a_deferred_write_that_fails_is_forgotten(sessionmaker, clock) -> None:
    storage = DatabaseStorage(sessionmaker, clock)
    await storage.set_state(KEY, Report.description)  # stored: no update around it
    async with sessionmaker() as session:
        token = current_session.set(session)
        try:
            await storage.update_data(KEY, {"bad": object()})  # cannot be stored as JSON
            with pytest.raises((TypeError, StatementError)):
                await end_transaction(session)
        finally:
            current_session.reset(token)
    # The memory no longer claims what the database never got.
    assert await storage.get_data(KEY) == {}
    assert await _rows(sessionmaker) == [("Report:description", {})]
