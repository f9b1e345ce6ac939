"""The throttle: global spacing without bursts, priorities, per-chat spacing, 429 pauses."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.exceptions import TelegramRetryAfter

from bot.throttle import (
    PRIORITY_REPLY,
    Throttle,
    ThrottleMiddleware,
    is_send_method,
    lane_priority,
    send_priority,
    slot_held,
)
from storage.enums import Lane
from tests.fake_telegram import FakeTelegram

EPS = 0.002  # timer granularity and scheduling noise


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _acquire_all(throttle: Throttle, priorities: list[int]) -> list[tuple[float, int]]:
    """Queue one acquisition per priority (in this order); (release time, index) by release."""
    released: list[tuple[float, int]] = []

    async def one(index: int, priority: int) -> None:
        await throttle.acquire(priority)
        released.append((time.monotonic(), index))

    await asyncio.gather(*(one(i, p) for i, p in enumerate(priorities)))
    return released


async def test_releases_are_spaced_by_the_rate() -> None:
    throttle = Throttle(100, 0)  # 10 ms
    released = await _acquire_all(throttle, [3] * 20)
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


async def test_idle_throttle_releases_at_once_then_spaces() -> None:
    throttle = Throttle(20, 0)  # 50 ms
    started = time.monotonic()
    await throttle.acquire()
    first = time.monotonic()
    await throttle.acquire()
    second = time.monotonic()
    assert first - started < 0.01
    assert second - first >= 0.050 - EPS


async def test_a_stalled_loop_causes_no_burst() -> None:
    throttle = Throttle(50, 0)  # 20 ms
    released: list[float] = []

    async def one() -> None:
        await throttle.acquire(2)
        released.append(time.monotonic())

    tasks = [asyncio.create_task(one()) for _ in range(8)]
    await asyncio.sleep(0.005)
    time.sleep(0.2)  # the event loop is blocked for ten intervals
    await asyncio.gather(*tasks)
    gaps = [b - a for a, b in zip(released, released[1:], strict=False)]
    # Ten missed slots are not made up: every gap stays at least (1 - catch_up) intervals.
    assert min(gaps) >= 0.020 * 0.5 - EPS
    assert sum(1 for g in gaps if g < 0.020 - EPS) <= 1


async def test_lower_priority_number_goes_first() -> None:
    throttle = Throttle(100, 0)
    await throttle.acquire()  # takes the free slot, so the rest must queue
    order = [i for _, i in await _acquire_all(throttle, [3, 3, 2, 3, 1, PRIORITY_REPLY, 2])]
    assert order == [5, 4, 2, 6, 0, 1, 3]


async def test_a_reply_overtakes_a_long_queue() -> None:
    throttle = Throttle(100, 0)
    bulk = [asyncio.create_task(throttle.acquire(lane_priority(Lane.BULK))) for _ in range(30)]
    await asyncio.sleep(0.035)  # a few bulk sends went out
    done_before = sum(t.done() for t in bulk)
    asked = time.monotonic()
    await throttle.acquire(PRIORITY_REPLY)
    waited = time.monotonic() - asked
    done_after = sum(t.done() for t in bulk)
    assert waited <= 0.010 + 0.005  # at most one slot
    assert done_after - done_before <= 1
    await asyncio.gather(*bulk)


async def test_pause_until_holds_everything() -> None:
    throttle = Throttle(1000, 0)
    await throttle.acquire()
    paused_at = time.monotonic()
    throttle.pause_for(0.15)
    await throttle.acquire(PRIORITY_REPLY)
    assert time.monotonic() - paused_at >= 0.15 - EPS
    assert throttle.paused_until == pytest.approx(paused_at + 0.15, abs=0.01)


async def test_a_cancelled_waiter_does_not_use_a_slot() -> None:
    throttle = Throttle(20, 0)  # 50 ms
    await throttle.acquire()
    first = asyncio.create_task(throttle.acquire(1))
    second = asyncio.create_task(throttle.acquire(2))
    await asyncio.sleep(0)
    first.cancel()
    await second
    # The cancelled waiter gave its slot up: only two were released.
    assert throttle.released == 2
    assert throttle.waiting() == 0


async def test_chat_spacing_counts_from_the_end_of_the_send() -> None:
    throttle = Throttle(1000, 0.1)
    async with throttle.slot(PRIORITY_REPLY, 7):
        await asyncio.sleep(0.05)  # the request takes a while
    ended = time.monotonic()
    async with throttle.slot(PRIORITY_REPLY, 8):
        other_chat = time.monotonic()
    async with throttle.slot(PRIORITY_REPLY, 7):
        same_chat = time.monotonic()
    assert other_chat - ended < 0.02
    assert same_chat - ended >= 0.1 - EPS


async def test_one_send_at_a_time_per_chat() -> None:
    throttle = Throttle(1000, 0.02)
    inside: list[int] = []
    overlaps = 0

    async def send(n: int) -> None:
        nonlocal overlaps
        async with throttle.slot(PRIORITY_REPLY, 9):
            overlaps += bool(inside)
            inside.append(n)
            await asyncio.sleep(0.01)
            inside.remove(n)

    started = time.monotonic()
    await asyncio.gather(*(send(n) for n in range(5)))
    assert overlaps == 0
    # 5 sends of 10 ms with 20 ms between the end of one and the start of the next.
    assert time.monotonic() - started >= 5 * 0.01 + 4 * 0.02 - EPS


async def test_chat_state_with_an_injected_clock() -> None:
    clock = ManualClock()
    throttle = Throttle(10, 1.0, monotonic=clock)
    assert throttle.chat_ready_at(5) == -math.inf
    await throttle.reserve_chat(5)  # free: no waiting, so the manual clock is enough
    assert throttle.chat_ready_at(5) == math.inf
    assert throttle.busy_chats() == {5}
    clock.now += 0.3
    throttle.release_chat(5)
    assert throttle.chat_ready_at(5) == pytest.approx(1001.3)
    assert throttle.next_chat_ready() == pytest.approx(1001.3)
    assert throttle.busy_chats() == {5}
    clock.now += 1.0
    assert throttle.busy_chats() == set()
    assert throttle.next_chat_ready() is None

    await throttle.reserve_chat(6)
    throttle.release_chat(6, sent=False)  # nothing went out: no spacing
    assert throttle.chat_ready_at(6) == -math.inf

    throttle.pause_until(1005.0)
    assert throttle.next_slot == 1005.0
    throttle.pause_until(1002.0)  # a shorter pause doesn't shorten the longer one
    assert throttle.paused_until == 1005.0


def test_send_methods() -> None:
    for name in ("sendMessage", "sendPhoto", "sendMediaGroup", "copyMessage", "forwardMessage"):
        assert is_send_method(name)
    for name in ("sendChatAction", "editMessageText", "getUpdates", "answerCallbackQuery"):
        assert not is_send_method(name)
    assert [lane_priority(lane) for lane in Lane] == [1, 2, 3]


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


async def _bot(fake: FakeTelegram, throttle: Throttle) -> Bot:
    bot = fake.make_bot()
    bot.session.middleware(ThrottleMiddleware(throttle))
    return bot


async def test_middleware_puts_replies_ahead_of_queued_sends(fake: FakeTelegram) -> None:
    throttle = Throttle(40, 0)  # 25 ms
    bot = await _bot(fake, throttle)
    try:

        async def queued(n: int) -> None:
            with send_priority(lane_priority(Lane.BULK)):
                await bot.send_message(1000 + n, f"bulk {n}")

        bulk = [asyncio.create_task(queued(n)) for n in range(20)]
        await asyncio.sleep(0.1)
        await bot.send_message(7, "reply")
        await asyncio.gather(*bulk)
        order = [m["text"] for m in fake.sent()]
        assert order.index("reply") <= order.index("bulk 19") - 10
        assert order.index("reply") <= 7
        await bot.get_me()  # not a send: not counted
        assert throttle.released == 21
    finally:
        await bot.session.close()


async def test_middleware_retries_a_reply_once_after_429(fake: FakeTelegram) -> None:
    throttle = Throttle(1000, 0)  # doesn't know about the fake's per-chat limit
    bot = await _bot(fake, throttle)
    fake.limits(global_per_s=None, chat_interval_s=0.5)
    try:
        await bot.send_message(5, "first")
        started = time.monotonic()
        await bot.send_message(5, "second")
        assert time.monotonic() - started >= 1.0 - EPS  # retry_after=1 was honoured
        assert fake.rejected_429 == 1
        assert [m["text"] for m in fake.sent(5)] == ["first", "second"]
    finally:
        await bot.session.close()


async def test_middleware_leaves_held_slots_alone(fake: FakeTelegram) -> None:
    throttle = Throttle(1, 0)  # one a second: a second acquisition would be noticed
    bot = await _bot(fake, throttle)
    fake.limits(global_per_s=None, chat_interval_s=10)
    try:
        async with throttle.slot(lane_priority(Lane.BULK), 3):
            with slot_held():
                await bot.send_message(3, "one")
        assert throttle.released == 1
        started = time.monotonic()
        with slot_held(), pytest.raises(TelegramRetryAfter, match="retry after 10"):
            await bot.send_message(3, "two")  # the caller handles the 429 ...
        assert time.monotonic() - started < 0.5
        assert throttle.paused_until >= started + 9  # ... but everyone pauses
    finally:
        await bot.session.close()
