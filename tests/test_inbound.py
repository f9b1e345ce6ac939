"""Updates in: the per-person limit, fair handling per chat, polling that loses nothing and
skips what it cannot read, updates handled once, and the webhook's door."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiogram import Bot, Dispatcher
from aiogram.types import Message, Update

from bot.inbound import (
    SECRET_HEADER,
    FloodLimit,
    Intake,
    Poller,
    UpdateQueue,
    webhook_secret,
)
from bot.middlewares import ContextMiddleware
from domain.clock import FrozenClock
from storage.db import make_engine, make_sessionmaker
from storage.inbox import claim_update, record_received
from storage.models import InboundUpdate
from tests.botkit import TOKEN, running_bot
from tests.fake_telegram import FakeTelegram


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _update(update_id: int, user_id: int, text: str = "hi", **extra: Any) -> Update:
    message = {
        "message_id": update_id,
        "date": 0,
        "chat": {"id": user_id, "type": "private", "first_name": "P"},
        "from": {"id": user_id, "is_bot": False, "first_name": "P", "language_code": "en"},
        "text": text,
        **extra,
    }
    return Update.model_validate({"update_id": update_id, "message": message})


# -- the per-person limit ------------------------------------------------------------------------


def test_a_burst_is_taken_then_the_excess_dropped_with_one_notice() -> None:
    ticks = Ticks()
    limit = FloodLimit(2.0, 10, ticks, notice_every=30)
    outcomes = [limit.check(7) for _ in range(300)]
    assert [accepted for accepted, _ in outcomes].count(True) == 10
    assert [notify for _, notify in outcomes].count(True) == 1  # one "slow down"
    assert outcomes[10] == (False, True)
    # Another person is not touched by it.
    assert limit.check(8) == (True, False)
    # The rate comes back with time: one more every half second.
    ticks.now += 0.5
    assert limit.check(7) == (True, False)
    assert limit.check(7) == (False, False)  # still flooding: no second notice yet
    ticks.now += 31
    assert limit.check(7) == (True, False)


# -- fair handling ---------------------------------------------------------------------------------


async def test_one_chats_queue_holds_one_slot_and_keeps_its_order() -> None:
    handled: list[tuple[int, int]] = []
    gate = asyncio.Event()

    async def handle(update: Update) -> None:
        chat = update.message.chat.id
        if chat == 1:
            await gate.wait()
        handled.append((chat, update.update_id))

    queue = UpdateQueue(handle, limit=2)
    flood = [queue.submit(_update(i, 1)) for i in range(1, 301)]
    other = queue.submit(_update(1000, 2))
    # The flooding chat's first update is stuck; the other chat is still handled at once.
    assert await asyncio.wait_for(other, 1) is True
    assert handled == [(2, 1000)]
    gate.set()
    assert all(await asyncio.wait_for(asyncio.gather(*flood), 5))
    assert [u for c, u in handled if c == 1] == list(range(1, 301))
    assert await queue.drained(1)
    assert queue.pending == 0


async def test_a_failing_update_does_not_stop_the_chats_queue() -> None:
    seen: list[int] = []

    async def handle(update: Update) -> None:
        seen.append(update.update_id)
        if update.update_id == 1:
            raise RuntimeError("boom")

    queue = UpdateQueue(handle, limit=4)
    first, second = queue.submit(_update(1, 5)), queue.submit(_update(2, 5))
    assert await first is False
    assert await second is True
    assert seen == [1, 2]


# -- handled once ------------------------------------------------------------------------------


async def test_a_claim_is_taken_once(db_url: str, clock: FrozenClock) -> None:
    engine = make_engine(db_url)
    sessionmaker = make_sessionmaker(engine)
    try:
        async with sessionmaker() as session:
            received = [(10, '{"update_id": 10, "text": "NUL \\u0000 kept"}')]
            assert await record_received(session, 1, received, clock.now()) == {10}
            # Received again (a repeated poll): not new.
            assert await record_received(session, 1, received, clock.now()) == set()
            await session.commit()
        async with sessionmaker() as session:
            assert await claim_update(session, 1, 10, clock.now()) is True
            await session.commit()
        async with sessionmaker() as session:
            assert await claim_update(session, 1, 10, clock.now()) is False
            # Never recorded (webhook mode): the claim records it.
            assert await claim_update(session, 1, 11, clock.now()) is True
            await session.rollback()
        async with sessionmaker() as session:
            # Rolled back with the transaction: still free.
            assert await claim_update(session, 1, 11, clock.now()) is True
            await session.commit()
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_two_processes_claiming_one_update_one_wins(
    postgres_db_url: str, clock: FrozenClock
) -> None:
    engines = [make_engine(postgres_db_url) for _ in range(2)]
    makers = [make_sessionmaker(e) for e in engines]
    try:
        async with makers[0]() as first, makers[1]() as second:
            assert await claim_update(first, 1, 42, clock.now()) is True
            # The second waits for the first's transaction, then finds the update handled.
            waiting = asyncio.create_task(claim_update(second, 1, 42, clock.now()))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            await first.commit()
            assert await asyncio.wait_for(waiting, 5) is False
    finally:
        for engine in engines:
            await engine.dispose()


def _dispatcher(db_url: str, clock: FrozenClock, engine) -> tuple[Dispatcher, list[int]]:
    dp = Dispatcher()
    dp.update.outer_middleware(ContextMiddleware(make_sessionmaker(engine), clock, "en"))
    seen: list[int] = []

    @dp.message()
    async def record(message: Message) -> None:
        seen.append(message.message_id)

    return dp, seen


async def test_an_update_delivered_twice_is_handled_once(db_url: str, clock: FrozenClock) -> None:
    engine = make_engine(db_url)
    dp, seen = _dispatcher(db_url, clock, engine)
    bot = Bot(TOKEN)
    try:
        update = _update(77, 3001)
        await dp.feed_update(bot, update)
        await dp.feed_update(bot, update)
        assert seen == [77]
    finally:
        await bot.session.close()
        await engine.dispose()


async def test_a_failed_update_is_marked_handled_not_run_again(
    db_url: str, clock: FrozenClock
) -> None:
    engine = make_engine(db_url)
    dp = Dispatcher()
    dp.update.outer_middleware(ContextMiddleware(make_sessionmaker(engine), clock, "en"))
    runs: list[int] = []

    @dp.message()
    async def boom(message: Message) -> None:
        runs.append(message.message_id)
        raise RuntimeError("a bug")

    bot = Bot(TOKEN)
    try:
        update = _update(78, 3002)
        for _ in range(2):
            with pytest.raises(RuntimeError):
                await dp.feed_update(bot, update)
            if runs == [78]:
                break
        assert runs == [78]
        async with make_sessionmaker(engine)() as session:
            row = await session.get(InboundUpdate, (bot.id, 78))
            assert row is not None and row.handled_at is not None
            assert row.error == "RuntimeError: a bug"
    finally:
        await bot.session.close()
        await engine.dispose()


# -- polling -------------------------------------------------------------------------------------


async def test_polling_skips_an_update_it_cannot_read_and_goes_on(
    db_url: str, clock: FrozenClock
) -> None:
    engine = make_engine(db_url)
    handled: list[int] = []

    async def handle(update: Update) -> None:
        handled.append(update.update_id)

    async with FakeTelegram(tokens=[TOKEN]) as fake:
        bot = fake.make_bot(TOKEN)
        intake = Intake(bot, UpdateQueue(handle, 8), FloodLimit(100, 100), default_language="en")
        poller = Poller(intake, make_sessionmaker(engine), clock, allowed_updates=[], timeout=0)
        fake.push_message(4001, "before")
        # A photo without file_id: aiogram's models refuse it, and with it the whole batch.
        fake.push_message(4001, None, photo=[{"width": 1, "height": 1}])
        fake.push_message(4002, "after")
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        try:
            for _ in range(100):
                if len(handled) == 2 and fake.pending_updates == 0:
                    break
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)
            await bot.session.close()
        assert sorted(handled) == [1, 3]
        assert intake.malformed == 1
        assert fake.pending_updates == 0  # confirmed: the bot is not wedged
    async with make_sessionmaker(engine)() as session:
        rows = (await session.exec(sa.select(InboundUpdate.update_id))).all()
        assert sorted(r[0] for r in rows) == [1, 3]
    await engine.dispose()


async def test_an_update_recorded_but_never_handled_is_handled_by_the_next_poller(
    db_url: str, clock: FrozenClock
) -> None:
    engine = make_engine(db_url)
    sessionmaker = make_sessionmaker(engine)
    payload = _update(90, 4100, "lost?").model_dump_json(exclude_none=True)
    bot = Bot(TOKEN)
    async with sessionmaker() as session:
        # What a process that died after recording (and confirming) the update left behind.
        await record_received(session, bot.id, [(90, payload)], clock.now())
        await session.commit()
    handled: list[str] = []

    async def handle(update: Update) -> None:
        handled.append(update.message.text)

    intake = Intake(bot, UpdateQueue(handle, 8), FloodLimit(100, 100), default_language="en")
    poller = Poller(intake, sessionmaker, clock, allowed_updates=[])
    assert await poller.recover(abandoned_after=timedelta(0)) == 1
    assert await intake.queue.drained(2)
    assert handled == ["lost?"]
    await bot.session.close()
    await engine.dispose()


async def test_a_flooding_person_does_not_slow_the_others(db_url: str) -> None:
    async with running_bot(db_url, flood_rate=1.0, flood_burst=5) as running:
        fake = running.fake
        for i in range(60):
            fake.push_message(5001, f"spam {i}", language_code="en")
        fake.push_message(5002, "/help", language_code="en")
        await fake.wait_for_message(5002, timeout=5)
        notice = await fake.wait_for_message(
            5001, lambda m: m["text"].startswith("You are sending messages faster"), timeout=5
        )
        assert notice
        await asyncio.sleep(0.3)
        notices = [m for m in fake.sent(5001) if m["text"].startswith("You are sending")]
        assert len(notices) == 1
        # The five of the burst were answered, the rest dropped.
        assert len(fake.sent(5001)) == 5 + 1


# -- webhook --------------------------------------------------------------------------------------


async def test_webhook_checks_the_secret_and_the_body_and_answers_once_handled(
    db_url: str, unused_tcp_port: int
) -> None:
    url = f"https://bot.example.org/tg/{unused_tcp_port}"
    async with running_bot(
        db_url,
        wait_for="setWebhook",
        webhook_url=url,
        webhook_listen_host="127.0.0.1",
        webhook_listen_port=unused_tcp_port,
    ) as running:
        fake = running.fake
        set_webhook = fake.calls_to("setWebhook")[-1]
        secret = webhook_secret(TOKEN)
        # No secret configured: one is derived from the token and registered with Telegram.
        assert set_webhook.params["secret_token"] == secret
        endpoint = f"http://127.0.0.1:{unused_tcp_port}/tg/{unused_tcp_port}"
        update = json.loads(_update(500, 6001, "/help").model_dump_json(exclude_none=True))
        async with aiohttp.ClientSession() as http:
            forged = await http.post(endpoint, json=update)
            assert forged.status == 401
            headers = {SECRET_HEADER: secret}
            bad = await http.post(endpoint, data=b"{not json", headers=headers)
            assert bad.status == 400
            not_update = await http.post(endpoint, json={"hello": 1}, headers=headers)
            assert not_update.status == 400
            unreadable = {"update_id": 501, "message": {"photo": [{"width": 1}]}}
            skipped = await http.post(endpoint, json=unreadable, headers=headers)
            assert skipped.status == 200
            assert fake.sent(6001) == []  # the forged one did nothing
            good = await http.post(endpoint, json=update, headers=headers)
            assert good.status == 200
            # Answered once handled: the reply is already out.
            assert len(fake.sent(6001)) == 1
            again = await http.post(endpoint, json=update, headers=headers)
            assert again.status == 200
            assert len(fake.sent(6001)) == 1  # a redelivery is not handled twice


async def test_handled_updates_are_forgotten_after_two_days(
    db_url: str, clock: FrozenClock
) -> None:
    from domain.updates import forget_old_updates

    engine = make_engine(db_url)
    sessionmaker = make_sessionmaker(engine)
    try:
        async with sessionmaker() as session:
            await record_received(session, 1, [(1, "{}"), (2, "{}")], clock.now())
            await claim_update(session, 1, 1, clock.now())
            await session.commit()
        clock.advance(timedelta(days=1))
        async with sessionmaker() as session:
            await claim_update(session, 1, 3, clock.now())
            await session.commit()
        clock.advance(timedelta(days=1, minutes=1))
        async with sessionmaker() as session:
            assert await forget_old_updates(session=session, clock=clock) == 1
            await session.commit()
        async with sessionmaker() as session:
            kept = (await session.exec(sa.select(InboundUpdate.update_id))).all()
        # 2 was never handled: kept for a poller; 3 is a day old: kept to recognise it.
        assert sorted(r[0] for r in kept) == [2, 3]
    finally:
        await engine.dispose()
