"""The throttle: per-chat buckets for every send, the outbox's budget with priorities, 429s.

Bucket state is checked on an injected clock; waiting is checked by order, not by time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import SendMessage
from aiogram.types import ErrorEvent, Update

from bot.app import build_throttle, on_error
from bot.settings import Settings
from bot.throttle import (
    GLOBAL_429_WINDOW,
    Pacer,
    Throttle,
    ThrottleMiddleware,
    is_send_method,
    lane_priority,
    slot_held,
)
from storage.enums import Lane
from tests.factories import tg_message
from tests.fake_telegram import FakeTelegram

EPS = 0.002  # timer granularity and scheduling noise
BULK = lane_priority(Lane.BULK)


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the outbox's budget ---------------------------------------------------------------------


async def _acquire_all(pacer: Pacer, priorities: list[int]) -> list[tuple[float, int]]:
    """Queue one acquisition per priority (in this order); (release time, index) by release."""
    released: list[tuple[float, int]] = []

    async def one(index: int, priority: int) -> None:
        await pacer.acquire(priority)
        released.append((time.monotonic(), index))

    await asyncio.gather(*(one(i, p) for i, p in enumerate(priorities)))
    return released


async def test_releases_are_spaced_by_the_rate() -> None:
    pacer = Pacer(100)  # 10 ms
    released = await _acquire_all(pacer, [2] * 20)
    times = [t for t, _ in released]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.010 * 0.5 - EPS  # a late wake-up may shorten a gap by catch_up only
    # Any n+1 releases span at least n intervals minus the catch-up allowance.
    for n in (5, 10, 19):
        spans = [times[i + n] - times[i] for i in range(len(times) - n)]
        assert min(spans) >= n * 0.010 - 0.005 - EPS
    # And the rate is used: 20 releases take about 19 intervals (twice that on a busy machine).
    assert times[-1] - times[0] < 2 * 19 * 0.010
    assert [i for _, i in released] == list(range(20))  # same priority: first come first


async def test_idle_budget_releases_at_once_then_spaces() -> None:
    pacer = Pacer(20)  # 50 ms
    started = time.monotonic()
    await pacer.acquire()
    first = time.monotonic()
    await pacer.acquire()
    second = time.monotonic()
    assert first - started < 0.01
    assert second - first >= 0.050 - EPS


async def test_a_stalled_loop_causes_no_burst() -> None:
    pacer = Pacer(50)  # 20 ms
    released: list[float] = []

    async def one() -> None:
        await pacer.acquire(2)
        released.append(time.monotonic())

    tasks = [asyncio.create_task(one()) for _ in range(8)]
    await asyncio.sleep(0.005)
    time.sleep(0.2)  # the event loop is blocked for ten intervals
    await asyncio.gather(*tasks)
    gaps = [b - a for a, b in zip(released, released[1:], strict=False)]
    # Ten missed slots are not made up: every gap stays at least (1 - catch_up) intervals,
    # and the releases after the stall span their intervals less one catch-up at most (a
    # loaded machine's late timers may shorten more than one gap, never the span).
    assert min(gaps) >= 0.020 * 0.5 - EPS
    assert released[-1] - released[0] >= 7 * 0.020 - 0.010 - EPS


async def test_lanes_are_served_by_priority() -> None:
    pacer = Pacer(100)
    await pacer.acquire()  # takes the free slot, so the rest must queue
    interactive, escalation, bulk = (lane_priority(lane) for lane in Lane)
    order = [
        i
        for _, i in await _acquire_all(
            pacer, [bulk, bulk, escalation, bulk, interactive, escalation]
        )
    ]
    assert order == [4, 2, 5, 0, 1, 3]


async def test_an_interactive_row_overtakes_a_long_bulk_queue() -> None:
    pacer = Pacer(100)
    bulk = [asyncio.create_task(pacer.acquire(BULK)) for _ in range(30)]
    await asyncio.sleep(0.035)  # a few bulk sends went out
    done_before = sum(t.done() for t in bulk)
    await pacer.acquire(lane_priority(Lane.INTERACTIVE))
    done_after = sum(t.done() for t in bulk)
    assert done_after - done_before <= 1  # at most the slot already due
    await asyncio.gather(*bulk)


async def test_pause_until_holds_the_budget() -> None:
    pacer = Pacer(1000)
    await pacer.acquire()
    paused_at = time.monotonic()
    pacer.pause_for(0.15)
    await pacer.acquire()
    assert time.monotonic() - paused_at >= 0.15 - EPS
    assert pacer.paused_until == pytest.approx(paused_at + 0.15, abs=0.01)


async def test_a_cancelled_waiter_does_not_use_a_slot() -> None:
    pacer = Pacer(20)  # 50 ms
    await pacer.acquire()
    first = asyncio.create_task(pacer.acquire(1))
    second = asyncio.create_task(pacer.acquire(2))
    await asyncio.sleep(0)
    first.cancel()
    await second
    # The cancelled waiter gave its slot up: only two were released.
    assert pacer.released == 2
    assert pacer.waiting() == 0


# -- per-chat buckets ------------------------------------------------------------------------


def test_a_chat_gets_its_burst_then_a_token_per_interval_from_each_answer() -> None:
    clock = ManualClock()
    throttle = Throttle(10, 1.0, 3, monotonic=clock)
    assert throttle.chat_ready_at(5) == -math.inf
    assert [throttle.try_take_chat(5) for _ in range(4)] == [True, True, True, False]
    # Three sends on the wire: no token comes back before one of them is answered.
    assert throttle.chat_ready_at(5) == math.inf
    assert throttle.busy_chats() == {5}
    assert throttle.next_chat_ready() is None
    assert throttle.try_take_chat(6)  # another chat has its own bucket

    clock.now += 0.4  # the answers come; refills start now, one token at a time
    for _ in range(3):
        throttle.done_chat(5)
    assert throttle.chat_tokens(5) == 0
    assert throttle.chat_ready_at(5) == pytest.approx(1001.4)
    assert throttle.next_chat_ready() == pytest.approx(1001.4)
    clock.now = 1001.4
    assert throttle.chat_tokens(5) == 1
    assert throttle.try_take_chat(5)
    assert not throttle.try_take_chat(5)  # the next is due at 1002.4, not now
    assert throttle.chat_ready_at(5) == pytest.approx(1002.4)
    clock.now = 1002.9
    throttle.done_chat(5)  # its refill queues behind the two still coming (2.4, 3.4)
    clock.now = 1010.0
    assert throttle.chat_tokens(5) == 3  # a quiet chat refills to its burst, no more
    assert throttle.chat_tokens(6) == 2  # one of 6's sends is still on the wire
    assert throttle.busy_chats() == set()  # ... but it has tokens left

    throttle.done_chat(6, sent=False)  # nothing went out: the token is back at once
    assert throttle.chat_tokens(6) == 3


def test_the_sustained_rate_is_one_per_interval() -> None:
    clock = ManualClock()
    throttle = Throttle(10, 1.0, 3, monotonic=clock)
    started = clock.now
    sent = 0
    while clock.now < started + 60:
        if throttle.try_take_chat(1):
            sent += 1
            clock.now += 0.05  # the request's round trip
            throttle.done_chat(1)
        else:
            clock.now = max(clock.now + 0.001, throttle.chat_ready_at(1))
    # A minute: the burst, then one a second (each refill counted from an answer).
    assert 3 + 55 <= sent <= 3 + 60


def test_a_429_block_holds_its_chat_only() -> None:
    clock = ManualClock()
    throttle = Throttle(10, 1.0, 3, monotonic=clock)
    throttle.chat_retry_after(5, 120)
    assert throttle.chat_blocked_for(5) == pytest.approx(120)
    assert throttle.chat_ready_at(5) == pytest.approx(1120)
    assert not throttle.try_take_chat(5)
    assert throttle.try_take_chat(6)
    assert throttle.busy_chats() == {5}
    assert throttle.outbox.paused_until == -math.inf  # the outbox goes on
    assert throttle.rate_limited == {"chat": 1, "global": 0}
    clock.now += 120
    assert throttle.chat_blocked_for(5) == 0
    assert throttle.try_take_chat(5)


def test_429s_for_two_chats_within_a_second_pause_the_outbox_budget() -> None:
    clock = ManualClock()
    throttle = Throttle(10, 1.0, 3, paid_rate=100, monotonic=clock)
    assert not throttle.outbox_retry_after(1, 5)
    assert not throttle.outbox_retry_after(1, 5)  # the same chat again: still about it
    assert throttle.outbox.paused_until == -math.inf
    clock.now += GLOBAL_429_WINDOW / 2
    assert throttle.outbox_retry_after(2, 7)  # another chat: a global limit
    assert throttle.outbox.paused_until == pytest.approx(clock.now + 7)
    assert throttle.paid is not None and throttle.paid.paused_until == -math.inf
    # The chats named keep their blocks; every other chat (replies to it) goes on.
    assert throttle.chat_blocked_for(1) > 0 and throttle.chat_blocked_for(2) > 0
    assert throttle.try_take_chat(3)
    assert throttle.rate_limited == {"chat": 2, "global": 1}

    clock.now += 10 * GLOBAL_429_WINDOW
    assert not throttle.outbox_retry_after(4, 1, paid=True)
    clock.now += 2 * GLOBAL_429_WINDOW  # too far apart: two chats' own limits
    assert not throttle.outbox_retry_after(5, 1, paid=True)
    assert throttle.paid.paused_until == -math.inf

    throttle.global_retry_after(30)  # a 429 on a call without a chat
    assert throttle.outbox.paused_until == pytest.approx(clock.now + 30)


async def test_waiting_sends_to_a_chat_go_in_order() -> None:
    throttle = Throttle(10, 0.01, 2)
    order: list[int] = []

    async def send(n: int) -> None:
        async with throttle.reply(9):
            order.append(n)
            await asyncio.sleep(0.005)

    waiting = [asyncio.create_task(send(n)) for n in range(8)]
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(send(99))  # queued, then given up
    await asyncio.sleep(0)
    cancelled.cancel()
    waiting.append(asyncio.create_task(send(8)))
    await asyncio.gather(*waiting)
    assert order == list(range(9))
    assert throttle.chat_tokens(9) <= 2


async def test_a_reply_is_not_held_by_a_saturated_outbox() -> None:
    throttle = Throttle(5, 1.0, 3)  # 200 ms per outbox slot
    ended: list[int] = []

    async def outbox(chat: int) -> None:
        async with throttle.outbox_slot(BULK, chat):
            ended.append(chat)

    backlog = [asyncio.create_task(outbox(1000 + n)) for n in range(50)]
    await asyncio.sleep(0.01)
    before = len(ended)
    async with throttle.reply(7):
        during = len(ended)
    assert during - before <= 1  # the reply took no outbox slot and waited for none
    assert throttle.outbox.waiting() >= 45
    for task in backlog:
        task.cancel()
    await asyncio.gather(*backlog, return_exceptions=True)


def test_build_throttle_reads_the_settings() -> None:
    settings = Settings(
        _env_file=None,
        outbox_rate=20,
        chat_interval=2.0,
        chat_burst=4,
        retry_after_cap=5,
        paid_broadcast_rate=300,
    )
    throttle = build_throttle(settings)
    assert (throttle.rate_per_s, throttle.paid_rate) == (20, 300)
    assert (throttle.chat_interval, throttle.chat_burst, throttle.retry_after_cap) == (2.0, 4, 5)
    assert build_throttle(Settings(_env_file=None)).paid is None  # paid broadcasting is off


def test_send_methods() -> None:
    for name in ("sendMessage", "sendPhoto", "sendMediaGroup", "copyMessage", "forwardMessage"):
        assert is_send_method(name)
    for name in ("sendChatAction", "editMessageText", "getUpdates", "answerCallbackQuery"):
        assert not is_send_method(name)
    assert [lane_priority(lane) for lane in Lane] == [0, 1, 2]


# -- the middleware against the fake Bot API ------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        server.limits()  # Telegram's limits
        yield server


async def _bot(fake: FakeTelegram, throttle: Throttle) -> Bot:
    bot = fake.make_bot()
    bot.session.middleware(ThrottleMiddleware(throttle))
    return bot


async def test_replies_use_the_chats_burst_and_no_outbox_slot(fake: FakeTelegram) -> None:
    throttle = Throttle(1, 1.0, 3)  # one outbox slot a second: a reply taking one would show
    bot = await _bot(fake, throttle)
    try:
        await throttle.outbox.acquire()  # the budget's slot is used for the next second
        fake.push_message(5, "hi")
        for n in range(3):
            await asyncio.wait_for(bot.send_message(5, f"answer {n}"), 0.5)
        await bot.get_me()  # not a send: not counted
        assert throttle.outbox.released == 1
        assert throttle.chat_tokens(5) == 0
        assert fake.rejected_429 == 0
    finally:
        await bot.session.close()


async def test_a_reply_is_retried_once_after_a_short_429(fake: FakeTelegram) -> None:
    throttle = Throttle(30, 1.0, 3, retry_after_cap=10)
    bot = await _bot(fake, throttle)
    fake.force_429(5, 1)
    try:
        await bot.send_message(5, "after the wait")
        assert [c.status for c in fake.calls_to("sendMessage", 5)] == [429, 200]
        assert [m["text"] for m in fake.sent(5)] == ["after the wait"]
        assert throttle.rate_limited == {"chat": 1, "global": 0}
        assert throttle.outbox.paused_until == -math.inf
    finally:
        await bot.session.close()


async def test_a_long_429_gives_the_reply_up_and_holds_only_its_chat(
    fake: FakeTelegram,
) -> None:
    throttle = Throttle(30, 1.0, 3, retry_after_cap=10)
    bot = await _bot(fake, throttle)
    fake.force_429(5, 120)
    try:
        with pytest.raises(TelegramRetryAfter) as caught:
            await asyncio.wait_for(bot.send_message(5, "one"), 5)
        assert caught.value.retry_after == 120
        # The chat stays blocked: the next reply is given up without asking Telegram again.
        with pytest.raises(TelegramRetryAfter) as again:
            await asyncio.wait_for(bot.send_message(5, "two"), 5)
        assert 110 <= again.value.retry_after <= 120
        assert len(fake.calls_to("sendMessage", 5)) == 1
        # Everybody else is answered at once; the outbox is not paused.
        await asyncio.wait_for(bot.send_message(6, "unaffected"), 5)
        assert throttle.outbox.paused_until == -math.inf
        assert fake.sent(5) == [] and len(fake.sent(6)) == 1
    finally:
        await bot.session.close()


async def test_a_429_without_a_chat_pauses_the_outbox_not_the_replies(
    fake: FakeTelegram,
) -> None:
    throttle = Throttle(30, 1.0, 3)
    bot = await _bot(fake, throttle)
    fake.fail_next(1, status=429, methods=["answerCallbackQuery"], retry_after=30)
    try:
        asked = time.monotonic()
        with pytest.raises(TelegramRetryAfter):
            await bot.answer_callback_query("cb1")  # left to the caller, not retried
        assert throttle.outbox.paused_until >= asked + 29
        await asyncio.wait_for(bot.send_message(7, "a reply goes on"), 5)
        assert len(fake.sent(7)) == 1
        assert throttle.rate_limited == {"chat": 0, "global": 1}
    finally:
        await bot.session.close()


async def test_the_outbox_senders_calls_pass_untouched(fake: FakeTelegram) -> None:
    throttle = Throttle(1, 1.0, 1)  # one a second: a second acquisition would be noticed
    bot = await _bot(fake, throttle)
    fake.force_429(3, 10)
    try:
        async with throttle.outbox_slot(BULK, 4):
            with slot_held():
                await bot.send_message(4, "one")
        assert throttle.outbox.released == 1
        with slot_held(), pytest.raises(TelegramRetryAfter, match="retry after 10"):
            await asyncio.wait_for(bot.send_message(3, "two"), 5)  # the caller handles it
        assert throttle.chat_blocked_for(3) == 0  # ... and records it (the sender does)
        assert len(fake.calls_to("sendMessage", 3)) == 1
    finally:
        await bot.session.close()


async def test_the_error_handler_does_not_answer_into_a_blocked_chat(
    fake: FakeTelegram,
) -> None:
    bot = fake.make_bot()
    settings = Settings(_env_file=None)
    try:
        update = Update(update_id=1, message=tg_message("/start").as_(bot))
        flood = TelegramRetryAfter(
            method=SendMessage(chat_id=5, text="x"), message="Too Many Requests", retry_after=120
        )
        assert await on_error(ErrorEvent(update=update, exception=flood), settings=settings)
        assert fake.calls == []
        # Anything else still gets the apology.
        await on_error(ErrorEvent(update=update, exception=RuntimeError("boom")), settings=settings)
        assert len(fake.sent(5)) == 1
    finally:
        await bot.session.close()
