"""Several `gridbot run` processes on one database: a dialog whose steps land on different
processes, one chat's updates kept in order across them, Redis for dialog state, and a
dropped database connection survived without the person sending anything again."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import uuid
from contextlib import AsyncExitStack

import aiohttp
import pytest
import sqlalchemy as sa
from aiogram.fsm.storage.base import StorageKey
from sqlalchemy.engine import make_url

from bot.app import build_dispatcher
from bot.fsm import DatabaseEventIsolation
from bot.inbound import SECRET_HEADER, webhook_secret
from bot.runtime import serve
from storage.conversations import open_store
from storage.db import sync_url
from tests.botkit import TOKEN, bot_settings, running_bot
from tests.fake_telegram import FakeTelegram
from tests.test_resident import (
    INSIDE,
    Resident,
    _tickets,
    confirm,
    start_report,
    to_location_step,
)

REDIS_URL = os.environ.get("GRIDBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_MODE = os.environ.get("GRIDBOT_TEST_REDIS", "auto")


class BalancedResident(Resident):
    """A resident whose updates a load balancer spreads over several webhook processes."""

    def __init__(self, fake: FakeTelegram, user_id: int, endpoints: list[str]) -> None:
        super().__init__(fake, user_id)
        self._endpoints = itertools.cycle(endpoints)
        self._posts: list[asyncio.Task] = []
        self.statuses: list[int] = []

    def _post(self, update: dict) -> None:
        # Pushed into the fake only to build the update (nobody polls it in webhook mode).
        self._posts.append(asyncio.create_task(self._send(next(self._endpoints), update)))

    async def _send(self, endpoint: str, update: dict) -> None:
        headers = {SECRET_HEADER: webhook_secret(TOKEN)}
        async with (
            aiohttp.ClientSession() as http,
            http.post(endpoint, json=update, headers=headers) as answer,
        ):
            self.statuses.append(answer.status)

    def say(self, text: str | None = None, **extra: object) -> None:
        self._post(self.fake.push_message(self.id, text, language_code=self.language, **extra))

    def press_data(self, data: str, message_id: int = 1) -> None:
        self._post(self.fake.push_callback(self.id, data, message_id, language_code=self.language))

    async def settle(self) -> None:
        await asyncio.gather(*self._posts)


@pytest.mark.postgres
async def test_a_dialogs_steps_on_different_processes(
    postgres_db_url: str, unused_tcp_port_factory
) -> None:
    ports = [unused_tcp_port_factory() for _ in range(2)]
    async with FakeTelegram(tokens=[TOKEN]) as fake, AsyncExitStack() as stack:
        stops = []
        for port in ports:
            settings = bot_settings(
                fake.base_url,
                postgres_db_url,
                webhook_url=f"https://bot.example.org/hook{port}",
                webhook_listen_host="127.0.0.1",
                webhook_listen_port=port,
            )
            stop = asyncio.Event()
            task = asyncio.create_task(serve(settings, stop=stop))
            stops.append((stop, task))
            calls = len(fake.calls_to("setWebhook"))
            await fake.wait_for_call("setWebhook", timeout=30, after=0)
            while len(fake.calls_to("setWebhook")) <= calls:
                await asyncio.sleep(0.05)

        async def stop_all() -> None:
            for stop, _ in stops:
                stop.set()
            await asyncio.gather(*(asyncio.wait_for(t, 30) for _, t in stops))

        stack.push_async_callback(stop_all)
        endpoints = [f"http://127.0.0.1:{p}/hook{p}" for p in ports]
        r = BalancedResident(fake, 7001, endpoints)
        await start_report(r, "Damaged road")
        where = await to_location_step(r, "Pothole by the school gate")
        assert where
        r.say(None, location=INSIDE)
        assert (await r.text()).startswith("📍 Qingtong Grid 1")
        summary = await r.reply()
        assert summary["text"].startswith("Please check your report")
        filed = await confirm(r, summary)
        assert filed.startswith("Thank you! Your report is ticket")
        await r.settle()
        assert set(r.statuses) == {200}
    tickets = await _tickets(postgres_db_url)
    assert [(grid, category) for _, grid, category in tickets] == [("EQ-JZJ-01-G1", "ROAD")]


@pytest.mark.postgres
async def test_one_chat_is_handled_by_one_process_at_a_time(postgres_db_url: str) -> None:
    stores = [open_store(postgres_db_url) for _ in range(2)]
    first, second = (DatabaseEventIsolation(store) for store in stores)
    key = StorageKey(bot_id=1, chat_id=8001, user_id=8001)
    order: list[str] = []
    try:
        async with first.lock(key):
            order.append("first in")

            async def other_process() -> None:
                async with second.lock(key):
                    order.append("second in")

            waiting = asyncio.create_task(other_process())
            await asyncio.sleep(0.1)
            assert not waiting.done()  # held off while the first handles the chat
            order.append("first out")
        await asyncio.wait_for(waiting, 5)
        assert order == ["first in", "first out", "second in"]
        # Another chat is not held up.
        async with first.lock(key), second.lock(StorageKey(bot_id=1, chat_id=8002, user_id=1)):
            pass
    finally:
        for store in stores:
            await store.close()


def _redis_unavailable() -> str | None:
    if REDIS_MODE == "off":
        return "Redis tests switched off (GRIDBOT_TEST_REDIS=off)"
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:
        reason = f"no Redis at {REDIS_URL}: {exc.__class__.__name__}"
        if REDIS_MODE == "require":
            pytest.fail(f"GRIDBOT_TEST_REDIS=require but {reason}", pytrace=False)
        return reason
    return None


async def test_with_redis_dialog_state_and_order_live_in_redis(db_url: str, clock) -> None:
    reason = _redis_unavailable()
    if reason:
        pytest.skip(reason)
    from aiogram.fsm.storage.redis import RedisEventIsolation, RedisStorage

    settings = bot_settings("http://127.0.0.1:1", db_url, redis_url=REDIS_URL)
    dp = build_dispatcher(settings=settings, sessionmaker=None, clock=clock)
    assert isinstance(dp.storage, RedisStorage)
    assert isinstance(dp.fsm.events_isolation, RedisEventIsolation)
    await dp.storage.close()
    # A dialog through it: a step's state is in Redis, and the dialog goes on.
    user = 9_000_000 + random.randrange(1_000_000)
    async with running_bot(db_url, redis_url=REDIS_URL) as running:
        r = Resident(running.fake, user)
        await start_report(r, "Damaged road")
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            keys = [k.decode() async for k in client.scan_iter(f"fsm:*:{user}:{user}:*state")]
            assert keys, "no dialog state in Redis"
            await to_location_step(r, "Pothole")
        finally:
            async for key in client.scan_iter(f"fsm:*:{user}:{user}:*"):
                await client.delete(key)
            await client.aclose()


@pytest.mark.postgres
async def test_a_dropped_database_connection_is_survived(postgres_db_url: str) -> None:
    async with running_bot(postgres_db_url) as running:
        r = Resident(running.fake, 7101)
        await start_report(r, "Damaged road")
        # The server drops every connection the bot has (a restart, a failover).
        engine = sa.create_engine(sync_url(postgres_db_url), poolclass=sa.NullPool)
        with engine.connect() as conn:
            dropped = conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        engine.dispose()
        assert dropped >= 1
        # Every step is answered as if nothing happened: nobody sends anything twice.
        where = await to_location_step(r, "Pothole by the school gate")
        r.say(None, location=INSIDE)
        assert (await r.text()).startswith("📍 Qingtong Grid 1")
        summary = await r.reply()
        assert summary["text"].startswith("Please check your report")
        assert (await confirm(r, summary)).startswith("Thank you! Your report is ticket")
        assert where
        texts = [m.get("text") or "" for m in running.fake.sent(7101)]
        assert not [t for t in texts if t.startswith("Sorry, something went wrong")]


@pytest.mark.postgres
async def test_processes_starting_together_migrate_and_seed_once(postgres_url: str) -> None:
    """A new database, two processes started at once (a first deploy of two replicas)."""
    admin = sa.create_engine(
        sync_url(postgres_url), poolclass=sa.NullPool, isolation_level="AUTOCOMMIT"
    )
    name = f"gridbot_two_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    try:
        async with FakeTelegram(tokens=[TOKEN]) as fake:
            stops = [asyncio.Event(), asyncio.Event()]
            tasks = [
                asyncio.create_task(serve(bot_settings(fake.base_url, url), stop=stop))
                for stop in stops
            ]
            try:
                # Each process sets the command menu (two languages) once it is serving.
                for _ in range(600):
                    if len(fake.calls_to("setMyCommands")) >= 4 or any(t.done() for t in tasks):
                        break
                    await asyncio.sleep(0.05)
                assert not [t for t in tasks if t.done()], [t.exception() for t in tasks]
                assert len(fake.calls_to("setMyCommands")) == 4
            finally:
                for stop in stops:
                    stop.set()
                await asyncio.gather(*(asyncio.wait_for(t, 30) for t in tasks))
        engine = sa.create_engine(sync_url(url), poolclass=sa.NullPool)
        with engine.connect() as conn:
            units = conn.execute(sa.text("SELECT count(*) FROM org_unit")).scalar_one()
            revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
        engine.dispose()
        assert units == 47  # the sample city, loaded once
        assert revision == current_head()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def current_head() -> str:
    from alembic.script import ScriptDirectory

    from storage.db import alembic_config

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
