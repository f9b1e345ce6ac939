"""Conversation state lives in the database: a new storage (a restarted bot) sees it."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from unittest.mock import patch

import pytest
import sqlalchemy as sa
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import StorageKey
from aiogram.types import Update
from sqlalchemy.engine import make_url
from sqlmodel import select

from bot.app import build_dispatcher
from bot.fsm import DatabaseStorage
from bot.middlewares import current_session, end_transaction, feed_update
from bot.runtime import seed_sample_city
from storage.conversations import SQLiteConversations, open_store
from storage.models import ConversationState
from tests.botkit import TOKEN, bot_settings
from tests.fake_telegram import FakeTelegram


class Report(StatesGroup):
    description = State()


KEY = StorageKey(bot_id=42, chat_id=1001, user_id=1001)


@pytest.fixture
async def store(db_url):
    opened = open_store(db_url)
    yield opened
    await opened.close()


class Counting:
    """A store that counts the reads and writes it is asked for."""

    def __init__(self, store) -> None:
        self.store = store
        self.saves = 0
        self.loads = 0

    async def load(self, key):
        self.loads += 1
        return await self.store.load(key)

    async def save(self, *args):
        self.saves += 1
        await self.store.save(*args)

    async def save_in(self, *args):
        self.saves += 1
        await self.store.save_in(*args)

    async def save_after(self, *args):
        self.saves += 1
        await self.store.save_after(*args)


async def _rows(sessionmaker) -> list[tuple[str | None, dict]]:
    async with sessionmaker() as session:
        found = (await session.exec(select(ConversationState))).all()
        return [(row.state, row.data) for row in found]


async def test_state_and_data_survive_a_new_storage(db_url, store, clock) -> None:
    storage = DatabaseStorage(store, clock)
    await storage.set_state(KEY, Report.description)
    await storage.set_data(KEY, {"category": "garbage", "photos": ["a", "b"]})
    await storage.update_data(KEY, {"text": "垃圾没人清"})

    # A different store and storage: what a restarted process would build.
    again = open_store(db_url)
    try:
        restarted = DatabaseStorage(again, clock)
        assert await restarted.get_state(KEY) == "Report:description"
        assert await restarted.get_data(KEY) == {
            "category": "garbage",
            "photos": ["a", "b"],
            "text": "垃圾没人清",
        }
        other = StorageKey(bot_id=42, chat_id=1002, user_id=1002)
        assert await restarted.get_state(other) is None
        assert await restarted.get_data(other) == {}
    finally:
        await again.close()


async def test_rows_are_written_as_the_orm_reads_them(store, sessionmaker, clock) -> None:
    when = datetime(2026, 11, 25, 10, 30, 15, 123456, tzinfo=UTC)
    await store.save("k1", when, "Report:photos", {"photos": ["x"], "n": 3, "none": None})
    await store.save("k2", when, None, {"only": "data"})
    async with sessionmaker() as session:
        rows = {r.key: r for r in (await session.exec(select(ConversationState))).all()}
    assert rows["k1"].state == "Report:photos"
    assert rows["k1"].data == {"photos": ["x"], "n": 3, "none": None}
    assert rows["k1"].updated_at == when
    assert rows["k2"].state is None and rows["k2"].data == {"only": "data"}
    # An upsert replaces the row; an empty conversation deletes it.
    await store.save("k1", when, "Report:location", {"photos": []})
    assert await store.load("k1") == ("Report:location", {"photos": []})
    await store.save("k2", when, None, {})
    assert await store.load("k2") == (None, {})
    assert await _keys(sessionmaker) == ["k1"]
    with pytest.raises(ValueError):
        await store.save("k3", datetime(2026, 1, 1), "S", {"a": 1})  # noqa: DTZ001


async def _keys(sessionmaker) -> list[tuple[str]]:
    async with sessionmaker() as session:
        return list((await session.exec(select(ConversationState.key))).all())


async def test_clearing_a_conversation_deletes_its_row(store, sessionmaker, clock) -> None:
    storage = DatabaseStorage(store, clock)
    await storage.set_state(KEY, Report.description)
    await storage.set_data(KEY, {"x": 1})
    await storage.set_state(KEY, None)
    await storage.set_data(KEY, {})
    assert await _rows(sessionmaker) == []
    assert await storage.get_state(KEY) is None


async def test_two_processes_see_each_others_steps_and_get_copies(db_url, store, clock) -> None:
    """The steps of one dialog may land on different processes: nothing is kept stale."""
    other_store = open_store(db_url)
    try:
        here, there = DatabaseStorage(store, clock), DatabaseStorage(other_store, clock)
        await here.set_data(KEY, {"photos": ["a"]})
        assert await there.get_data(KEY) == {"photos": ["a"]}
        await there.set_state(KEY, Report.description)
        await there.update_data(KEY, {"photos": ["a", "b"]})
        assert await here.get_state(KEY) == "Report:description"
        data = await here.get_data(KEY)
        assert data == {"photos": ["a", "b"]}
        data["photos"].append("changed by the caller")
        assert await here.get_data(KEY) == {"photos": ["a", "b"]}
        await here.set_state(KEY, None)
        await here.set_data(KEY, {})
        assert await there.get_state(KEY) is None
    finally:
        await other_store.close()


async def test_inside_an_update_a_step_is_one_write_made_before_telegram(
    store, sessionmaker, clock
) -> None:
    counting = Counting(store)
    storage = DatabaseStorage(counting, clock)
    async with sessionmaker() as session:
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
    assert counting.saves == 1
    assert await _rows(sessionmaker) == [("Report:description", {"category": "garbage"})]


async def test_a_step_commits_with_its_update_or_not_at_all(store, sessionmaker, clock) -> None:
    """The step's row is written in the update's transaction: if that does not commit, the
    row is not there and the update's memory of it is undone."""
    storage = DatabaseStorage(store, clock)
    async with sessionmaker() as session:
        token = current_session.set(session)
        try:
            await session.exec(sa.select(ConversationState.key))  # a transaction is open
            await storage.set_state(KEY, Report.description)

            async def refuse() -> None:
                # The step was written in this transaction: it sees its own row.
                assert (await session.exec(sa.select(ConversationState.state))).all() == [
                    ("Report:description",)
                ]
                raise ConnectionResetError("the database went away at commit")

            with patch.object(session, "commit", refuse), pytest.raises(ConnectionResetError):
                await end_transaction(session)
            await session.rollback()
            assert await storage.get_state(KEY) is None
        finally:
            current_session.reset(token)
    assert await _rows(sessionmaker) == []


async def test_a_deferred_write_that_fails_is_forgotten(store, sessionmaker, clock) -> None:
    storage = DatabaseStorage(store, clock)
    await storage.set_state(KEY, Report.description)  # stored: no update around it
    async with sessionmaker() as session:
        token = current_session.set(session)
        try:
            await storage.update_data(KEY, {"bad": object()})  # cannot be stored as JSON
            with pytest.raises(TypeError):
                await end_transaction(session)
        finally:
            current_session.reset(token)
    # The memory no longer claims what the database never got.
    assert await storage.get_data(KEY) == {}
    assert await _rows(sessionmaker) == [("Report:description", {})]


async def test_an_update_reads_its_dialog_state_once(db_url, store, sessionmaker, clock) -> None:
    """aiogram's FSM middleware reads the state before the update's session exists; the
    session takes that read over, so the handler's own reads cost nothing more."""
    counting = Counting(store)
    await seed_sample_city(sessionmaker, clock)
    async with FakeTelegram(tokens=[TOKEN]) as fake:
        bot = fake.make_bot()
        try:
            dp = build_dispatcher(
                settings=bot_settings(fake.base_url, db_url),
                sessionmaker=sessionmaker,
                clock=clock,
                conversations=counting,
            )

            async def step(raw: dict) -> dict:
                loads = counting.loads
                await feed_update(dp, bot, Update.model_validate(raw, context={"bot": bot}))
                assert counting.loads == loads + 1
                return fake.sent(7001)[-1]

            menu = await step(fake.push_message(7001, "/report", language_code="en"))
            first = menu["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
            menu = await step(
                fake.push_callback(7001, first, menu["message_id"], language_code="en")
            )
            # The second step saw the first one's state: it asks for the description.
            assert menu["text"].startswith("Category:")
        finally:
            await bot.session.close()


@pytest.fixture
def sqlite_path(tmp_path, sqlite_template):
    import shutil

    target = tmp_path / "locks.db"
    shutil.copyfile(sqlite_template, target)
    return str(target)


async def test_a_lock_held_elsewhere_is_waited_for_while_the_loop_runs(sqlite_path) -> None:
    store = SQLiteConversations(sqlite_path)
    other = sqlite3.connect(sqlite_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    ticker = asyncio.create_task(tick())
    try:
        saving = asyncio.create_task(store.save("k", datetime.now(UTC), "S", {"a": 1}))
        await asyncio.sleep(0.1)
        assert not saving.done()  # waiting for the lock...
        assert ticks >= 5  # ...without freezing the loop
        other.execute("COMMIT")
        await asyncio.wait_for(saving, 2)
    finally:
        ticker.cancel()
        other.close()
    assert await store.load("k") == ("S", {"a": 1})
    await store.close()


async def test_a_lock_held_too_long_times_out(sqlite_path) -> None:
    store = SQLiteConversations(sqlite_path, timeout=0.1)
    other = sqlite3.connect(sqlite_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await store.save("k", datetime.now(UTC), "S", {"a": 1})
    finally:
        other.execute("ROLLBACK")
        other.close()
    await store.close()


@pytest.mark.postgres
async def test_postgres_reconnects_after_losing_its_connection(postgres_db_url) -> None:
    store = open_store(postgres_db_url)
    try:
        await store.save("k", datetime.now(UTC), "S", {"a": 1})
        admin = sa.create_engine(
            make_url(postgres_db_url).set(drivername="postgresql+psycopg"),
            poolclass=sa.NullPool,
        )
        with admin.begin() as conn:
            killed = conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).all()
        admin.dispose()
        assert killed
        await store.save("k", datetime.now(UTC), "T", {"a": 2})
        assert await store.load("k") == ("T", {"a": 2})
    finally:
        await store.close()


def test_an_in_memory_database_is_refused() -> None:
    with pytest.raises(ValueError):
        open_store("sqlite://")
    with pytest.raises(ValueError):
        open_store("mysql://x@y/z")


async def test_a_step_stored_after_its_update_committed_queues_on_sqlites_one_connection(
    db_url, store, sessionmaker, clock
) -> None:
    """SQLite: in a transaction of the session, which waits its turn for the engine's one
    connection (a write from the store's own connection raced it for the lock and, at
    capacity, timed out). PostgreSQL: one autocommit statement on the store's connection."""
    async with sessionmaker() as session:
        await store.save_after(session, "k", clock.now(), "S", {"a": 1})
        assert session.in_transaction() is db_url.startswith("sqlite")
        await session.commit()
    assert await store.load("k") == ("S", {"a": 1})
