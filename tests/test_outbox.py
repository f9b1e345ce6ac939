"""The outbox end to end: enqueue in a transaction, send through the fake Bot API over loopback.

Every test that touches storage runs on SQLite and on PostgreSQL (the db_url fixtures).
Rates are scaled up (200/s, 50 ms per chat, bursts of 3) so the file runs in seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from aiogram import Bot
from aiogram.exceptions import TelegramRetryAfter
from sqlmodel import select

from bot.outbox import OutboxSender
from bot.throttle import Throttle, ThrottleMiddleware
from domain.clock import FrozenClock, SystemClock
from domain.outbox import Outgoing, broadcast, enqueue, enqueue_many
from storage.db import sync_url, upgrade
from storage.enums import Lane, OutboxStatus
from storage.models import OutboxMessage, Person
from storage.outbox import count_by_status, pending_query
from tests.fake_telegram import FakeTelegram
from views.outbox import Place, Rendered, Renderer, RenderError, UnknownKind, default_renderer

RATE = 200.0
CHAT_INTERVAL = 0.05
BURST = 3
clock = SystemClock()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
def throttle() -> Throttle:
    return Throttle(RATE, CHAT_INTERVAL, BURST)


@pytest.fixture
async def bot(fake: FakeTelegram, throttle: Throttle) -> AsyncIterator[Bot]:
    bot = fake.make_bot()
    bot.session.middleware(ThrottleMiddleware(throttle))
    yield bot
    await bot.session.close()


def make_sender(bot: Bot, sessionmaker, throttle: Throttle, **kwargs) -> OutboxSender:
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("poll_interval", 0.1)
    return OutboxSender(bot, sessionmaker, throttle, default_renderer(), clock, **kwargs)


def notice(n: int) -> dict:
    return {"text": {"zh-hans": f"通知 {n}", "en": f"notice {n}"}}


async def add(sessionmaker, *items: Outgoing) -> list[int]:
    """Commit outbox rows; their ids in the given order."""
    async with sessionmaker() as session:
        rows = [
            enqueue(session, chat_id=i.chat_id, kind=i.kind, data=i.data, lane=i.lane, clock=clock)
            for i in items
        ]
        await session.commit()
        return [row.id for row in rows]


async def all_rows(sessionmaker) -> list[OutboxMessage]:
    async with sessionmaker() as session:
        return list((await session.exec(select(OutboxMessage).order_by(OutboxMessage.id))).all())


async def run_until(
    sender: OutboxSender, done: Callable[[], bool], timeout: float = 10.0
) -> asyncio.Event:
    """Run the sender until done() holds, then stop it gracefully."""
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    deadline = time.monotonic() + timeout
    try:
        while not done():
            if task.done():
                task.result()
                raise AssertionError("the sender stopped by itself")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; sender counts {sender.counts}")
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    return stop


# -- enqueue -------------------------------------------------------------------------------


async def test_enqueue_is_part_of_the_callers_transaction(sessionmaker) -> None:
    frozen = FrozenClock(clock.now())
    async with sessionmaker() as session:
        enqueue(session, chat_id=1, kind="notice", data={"text": "x"}, clock=frozen)
        await enqueue_many(session, broadcast([2, 3], "notice", {"text": "y"}), clock=frozen)
        await session.rollback()
    assert await all_rows(sessionmaker) == []

    async with sessionmaker() as session:
        enqueue(
            session,
            chat_id=1,
            kind="notice",
            data={"text": "x"},
            lane=Lane.ESCALATION,
            clock=frozen,
        )
        count = await enqueue_many(
            session,
            [Outgoing(chat_id=100 + n, kind="notice", data=notice(n)) for n in range(2500)],
            clock=frozen,
        )
        await session.commit()
    assert count == 2500
    rows = await all_rows(sessionmaker)
    assert len(rows) == 2501
    first, last = rows[0], rows[-1]
    assert (first.chat_id, first.lane, first.status, first.attempts) == (
        1,
        Lane.ESCALATION,
        OutboxStatus.PENDING,
        0,
    )
    assert first.not_before == frozen.now() and first.created_at == frozen.now()
    assert (last.chat_id, last.lane, last.data) == (2599, Lane.BULK, notice(2499))
    async with sessionmaker() as session:
        assert (await count_by_status(session))[OutboxStatus.PENDING] == 2501


# -- sending -------------------------------------------------------------------------------


async def test_delivers_every_row_once_in_lane_order_and_language(
    sessionmaker, fake: FakeTelegram, bot: Bot, throttle: Throttle
) -> None:
    async with sessionmaker() as session:
        session.add(Person(telegram_id=11, language="en"))
        session.add(Person(telegram_id=12, language="zh-hans"))
        await session.commit()
    lanes = [Lane.BULK, Lane.ESCALATION, Lane.INTERACTIVE] * 4
    ids = await add(
        sessionmaker, *(Outgoing(11 + n, "notice", notice(n), lane) for n, lane in enumerate(lanes))
    )
    sender = make_sender(bot, sessionmaker, throttle, max_in_flight=1)
    await run_until(sender, lambda: len(fake.sent()) >= 12)

    expected = sorted(range(12), key=lambda n: (lanes[n], ids[n]))
    texts = [m["text"] for m in fake.sent()]
    assert texts[0] == "通知 2"  # chat 13 is nobody we know: the default language
    assert texts.index("notice 0") > texts.index("通知 1")  # chat 11 reads English
    assert [int(t.split()[-1]) for t in texts] == expected
    assert fake.stats()["duplicates"] == 0
    rows = await all_rows(sessionmaker)
    assert all(r.status == OutboxStatus.SENT and r.attempts == 1 for r in rows)
    by_chat = {m["chat"]["id"]: m["message_id"] for m in fake.sent()}
    assert all(r.telegram_message_id == by_chat[r.chat_id] for r in rows)
    assert all(r.sent_at is not None and r.error is None for r in rows)
    assert sender.counts["sent"] == 12


async def test_new_escalation_overtakes_bulk_not_yet_started(
    sessionmaker, fake: FakeTelegram, bot: Bot
) -> None:
    throttle = Throttle(100, CHAT_INTERVAL)
    await add(sessionmaker, *(Outgoing(1000 + n, "notice", notice(n)) for n in range(100)))
    sender = make_sender(bot, sessionmaker, throttle)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        while len(fake.sent()) < 15:
            await asyncio.sleep(0.005)
        delivered_before = len(fake.sent())
        await add(sessionmaker, Outgoing(7, "notice", {"text": "ESCALATE"}, Lane.ESCALATION))
        sender.wake()
        message = await fake.wait_for_message(7)
        position = fake.sent().index(message)
        # Everything queued at the throttle or buffered (up to 80 rows) is overtaken.
        assert position <= delivered_before + 8, (position, delivered_before)
    finally:
        stop.set()
        await task


async def test_flood_control_is_honoured_and_nothing_lost(
    sessionmaker, fake: FakeTelegram, bot: Bot, throttle: Throttle
) -> None:
    fake.limits(global_per_s=60, chat_interval_s=None)  # tighter than the sender's 200/s
    await add(sessionmaker, *(Outgoing(2000 + n, "notice", notice(n)) for n in range(100)))
    sender = make_sender(bot, sessionmaker, throttle)
    started = time.monotonic()
    await run_until(sender, lambda: len(fake.sent()) >= 100)

    assert fake.rejected_429 >= 1
    assert sender.counts["rate_limited"] == fake.rejected_429
    assert time.monotonic() - started >= 1.0  # retry_after=1 paused the sender
    assert fake.stats()["duplicates"] == 0
    assert sorted(fake.stats()["per_chat"].values()) == [1] * 100
    rows = await all_rows(sessionmaker)
    assert {r.status for r in rows} == {OutboxStatus.SENT}
    assert {r.attempts for r in rows} == {1}  # a 429 is not a failed attempt


async def test_server_errors_and_dropped_connections_are_retried(
    sessionmaker, fake: FakeTelegram, bot: Bot, throttle: Throttle
) -> None:
    fake.fail_next(2, status=500)
    fake.fail_next(1, status=502)
    fake.drop_next(2)
    await add(sessionmaker, *(Outgoing(3000 + n, "notice", notice(n)) for n in range(10)))
    sender = make_sender(bot, sessionmaker, throttle)
    await run_until(sender, lambda: len(fake.sent()) >= 10)

    statuses = [c.status for c in fake.calls_to("sendMessage")]
    assert sorted(statuses) == [
        0,
        0,
        200,
        200,
        200,
        200,
        200,
        200,
        200,
        200,
        200,
        200,
        500,
        500,
        502,
    ]
    assert sorted(fake.stats()["per_chat"].values()) == [1] * 10
    rows = await all_rows(sessionmaker)
    assert {r.status for r in rows} == {OutboxStatus.SENT}
    assert sum(r.attempts for r in rows) == 15
    assert all(r.error is None for r in rows)
    assert sender.counts["retried"] == 5


async def test_gives_up_after_max_attempts(
    sessionmaker, fake: FakeTelegram, bot: Bot, throttle: Throttle
) -> None:
    fake.fail_next(100, status=500)
    (row_id,) = await add(sessionmaker, Outgoing(4000, "notice", notice(1)))
    sender = make_sender(bot, sessionmaker, throttle, max_attempts=3)
    await run_until(sender, lambda: sender.counts["failed"] == 1)

    (row,) = await all_rows(sessionmaker)
    assert (row.id, row.status, row.attempts) == (row_id, OutboxStatus.FAILED, 3)
    assert "Internal Server Error" in row.error
    assert len(fake.calls_to("sendMessage")) == 3


async def test_blocked_and_unknown_chats_fail_at_once(
    sessionmaker, fake: FakeTelegram, bot: Bot, throttle: Throttle
) -> None:
    fake.forbid(7)
    fake.chat_not_found(8)
    await add(
        sessionmaker,
        Outgoing(7, "notice", notice(1)),
        Outgoing(8, "notice", notice(2)),
        Outgoing(9, "notice", notice(3)),
    )
    sender = make_sender(bot, sessionmaker, throttle)
    await run_until(sender, lambda: sender.counts["sent"] + sender.counts["failed"] == 3)
    await asyncio.sleep(0.2)  # would it try again? it must not

    blocked, unknown, fine = await all_rows(sessionmaker)
    assert (blocked.status, blocked.attempts) == (OutboxStatus.FAILED, 1)
    assert "Forbidden: bot was blocked by the user" in blocked.error
    assert (unknown.status, unknown.attempts) == (OutboxStatus.FAILED, 1)
    assert "chat not found" in unknown.error
    assert fine.status == OutboxStatus.SENT
    assert len(fake.calls_to("sendMessage", 7)) == 1
    assert len(fake.calls_to("sendMessage", 8)) == 1


async def test_a_rejected_token_holds_the_sender_without_spending_attempts(
    sessionmaker, fake: FakeTelegram, throttle: Throttle
) -> None:
    await add(sessionmaker, Outgoing(1, "notice", notice(1)), Outgoing(2, "notice", notice(2)))
    bot = fake.make_bot("999:REVOKED")
    try:
        sender = make_sender(bot, sessionmaker, throttle, max_in_flight=1)
        await run_until(sender, lambda: len(fake.calls) >= 1)
        await asyncio.sleep(0.2)  # held: no second try, no next row
    finally:
        await bot.session.close()
    assert [c.status for c in fake.calls] == [401]
    rows = await all_rows(sessionmaker)
    assert [(r.status, r.attempts, r.error) for r in rows] == [(OutboxStatus.PENDING, 0, None)] * 2


async def test_a_row_that_cannot_be_rendered_fails_with_the_reason(
    sessionmaker, fake: FakeTelegram, bot: Bot, throttle: Throttle
) -> None:
    await add(
        sessionmaker,
        Outgoing(1, "no_such_kind", {}),
        Outgoing(2, "notice", {"key": "outbox.ping"}),  # the template needs {ref}
        Outgoing(3, "notice", {"key": "outbox.ping", "params": {"ref": "#5"}}),
    )
    sender = make_sender(bot, sessionmaker, throttle)
    await run_until(sender, lambda: sender.counts["sent"] + sender.counts["failed"] == 3)

    unknown, missing, fine = await all_rows(sessionmaker)
    assert unknown.status == OutboxStatus.FAILED and "no_such_kind" in unknown.error
    assert unknown.attempts == 0
    assert missing.status == OutboxStatus.FAILED and "ref" in missing.error
    assert fine.status == OutboxStatus.SENT
    assert [m["text"] for m in fake.sent()] == ["🔔 通知 #5"]


async def test_a_row_cut_off_mid_send_stays_pending_and_goes_once_on_restart(
    sessionmaker, fake: FakeTelegram, bot: Bot, throttle: Throttle
) -> None:
    fake.set_latency(0.3, methods=["sendMessage"])  # Telegram is slow to answer
    await add(sessionmaker, Outgoing(5, "notice", notice(1)))
    sender = make_sender(bot, sessionmaker, throttle)
    task = asyncio.create_task(sender.run(asyncio.Event()))
    while fake.requests_received == 0:
        await asyncio.sleep(0.005)
    task.cancel()  # the process dies before Telegram answers
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.35)  # the fake notices the client is gone and drops the message
    assert fake.sent() == []
    (row,) = await all_rows(sessionmaker)
    assert (row.status, row.attempts, row.sent_at) == (OutboxStatus.PENDING, 0, None)

    fake.set_latency(0)
    restarted = make_sender(bot, sessionmaker, Throttle(RATE, CHAT_INTERVAL))
    await run_until(restarted, lambda: len(fake.sent()) >= 1)
    await asyncio.sleep(0.1)
    assert [m["text"] for m in fake.sent()] == ["通知 1"]
    (row,) = await all_rows(sessionmaker)
    assert (row.status, row.attempts) == (OutboxStatus.SENT, 1)


async def test_stop_records_exactly_what_telegram_accepted(
    sessionmaker, fake: FakeTelegram, bot: Bot
) -> None:
    await add(sessionmaker, *(Outgoing(5000 + n, "notice", notice(n)) for n in range(300)))
    sender = make_sender(
        bot,
        sessionmaker,
        Throttle(150, CHAT_INTERVAL),
        batch=30,
        flush_interval=10,
        flush_rows=1000,
    )
    # Stop mid-drain, after several fetches saw rows that are sent but not yet saved.
    await run_until(sender, lambda: len(fake.sent()) >= 100)

    delivered = {m["chat"]["id"] for m in fake.sent()}
    assert len(delivered) == len(fake.sent())  # nothing went twice
    rows = await all_rows(sessionmaker)
    sent = {r.chat_id for r in rows if r.status == OutboxStatus.SENT}
    assert sent == delivered  # flushed on stop, though the flush interval is 10 s
    assert len(sent) < 300
    assert all(r.status == OutboxStatus.PENDING for r in rows if r.chat_id not in sent)


async def test_per_chat_bucket(
    sessionmaker, fake: FakeTelegram, bot: Bot, throttle: Throttle
) -> None:
    # The fake's bucket is the judge: a send faster than a burst, then one per interval,
    # would be refused with 429.
    fake.limits(global_per_s=None, chat_interval_s=CHAT_INTERVAL, chat_burst=BURST)
    items = [Outgoing(chat, "notice", notice(n), Lane.BULK) for n in range(8) for chat in (1, 2)]
    await add(sessionmaker, *items)
    sender = make_sender(bot, sessionmaker, throttle)
    await run_until(sender, lambda: len(fake.sent()) >= 16)

    assert fake.rejected_429 == 0
    for chat in (1, 2):
        messages = fake.sent(chat)
        assert [m["text"] for m in messages] == [f"通知 {n}" for n in range(8)]  # in order
    # Replies to the same chats shared the buckets and were not refused either.
    fake.push_message(1, "hello")
    for n in range(4):
        await bot.send_message(1, f"reply {n}")
    assert fake.rejected_429 == 0


async def test_a_reply_goes_at_once_while_the_outbox_is_saturated(
    sessionmaker, fake: FakeTelegram
) -> None:
    fake.limits()  # Telegram's limits, unscaled
    throttle = Throttle(20, 1.0, 3)  # under the fake's 30/s
    bot = fake.make_bot()
    bot.session.middleware(ThrottleMiddleware(throttle))
    await add(sessionmaker, *(Outgoing(1000 + n, "notice", notice(n)) for n in range(400)))
    sender = make_sender(bot, sessionmaker, throttle)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        while len(fake.sent()) < 10:
            await asyncio.sleep(0.005)
        assert throttle.outbox.waiting() > 0  # rows queue for the budget
        fake.push_message(7, "hello")
        before = len(fake.sent())
        await asyncio.wait_for(bot.send_message(7, "reply"), 2)
        outbox_meanwhile = len(fake.sent()) - before - 1
        assert outbox_meanwhile <= 1  # it waited for no outbox slot (50 ms each)
        assert throttle.outbox.waiting() > 0
        assert fake.rejected_429 == 0
    finally:
        stop.set()
        await task
        await bot.session.close()


async def test_one_chats_long_429_holds_that_chat_only(
    sessionmaker, fake: FakeTelegram, bot: Bot, throttle: Throttle
) -> None:
    fake.force_429(5, 120)
    first, second, *others = await add(
        sessionmaker,
        Outgoing(5, "notice", notice(0)),
        Outgoing(5, "notice", notice(1)),
        *(Outgoing(10 + n, "notice", notice(10 + n)) for n in range(6)),
    )
    sender = make_sender(bot, sessionmaker, throttle)
    asked = clock.now()
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        await asyncio.wait_for(_until(lambda: sender.counts["sent"] == 6), 5)
        # Replies elsewhere go at once; one to the blocked chat is given up without a call.
        await asyncio.wait_for(bot.send_message(20, "a reply"), 2)
        with pytest.raises(TelegramRetryAfter):
            await asyncio.wait_for(bot.send_message(5, "a reply"), 2)
        # More rows for other chats still go.
        await add(sessionmaker, Outgoing(30, "notice", notice(30)))
        sender.wake()
        await asyncio.wait_for(_until(lambda: sender.counts["sent"] == 7), 5)
    finally:
        stop.set()
        await task

    assert sender.counts["deferred"] == 1 and sender.counts["rate_limited"] == 1
    assert len(fake.calls_to("sendMessage", 5)) == 1  # nothing more asked of the blocked chat
    assert throttle.outbox.paused_until < time.monotonic()  # the outbox never paused
    rows = {r.id: r for r in await all_rows(sessionmaker)}
    held = rows[first]
    assert (held.status, held.attempts) == (OutboxStatus.PENDING, 0)  # not the row's fault
    assert asked + timedelta(seconds=119) <= held.not_before <= clock.now() + timedelta(seconds=121)
    assert "retry after 120" in held.error
    assert (rows[second].status, rows[second].attempts) == (OutboxStatus.PENDING, 0)
    assert all(rows[i].status == OutboxStatus.SENT for i in others)


async def test_a_short_429_is_retried_in_memory(
    sessionmaker, fake: FakeTelegram, bot: Bot, throttle: Throttle
) -> None:
    fake.force_429(5, 1)
    (row_id,) = await add(sessionmaker, Outgoing(5, "notice", notice(0)))
    sender = make_sender(bot, sessionmaker, throttle)
    await run_until(sender, lambda: sender.counts["sent"] == 1)

    assert [c.status for c in fake.calls_to("sendMessage", 5)] == [429, 200]
    assert (sender.counts["rate_limited"], sender.counts["deferred"]) == (1, 0)
    assert throttle.outbox.paused_until < time.monotonic()  # one chat: no pause
    (row,) = await all_rows(sessionmaker)
    assert (row.id, row.status, row.attempts) == (row_id, OutboxStatus.SENT, 1)


async def test_two_chats_429s_pause_the_outbox_but_not_replies(
    sessionmaker, fake: FakeTelegram, bot: Bot, throttle: Throttle
) -> None:
    # The first two sends are refused for 120 s: two chats within a second, so a global limit.
    fake.fail_next(2, status=429, methods=["sendMessage"], retry_after=120)
    await add(sessionmaker, *(Outgoing(40 + n, "notice", notice(n)) for n in range(20)))
    sender = make_sender(bot, sessionmaker, throttle)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        await asyncio.wait_for(_until(lambda: sender.counts["deferred"] == 2), 5)
        assert throttle.rate_limited == {"chat": 1, "global": 1}
        assert throttle.outbox.paused_until > time.monotonic() + 100
        await asyncio.sleep(0.1)  # sends already on the wire land
        sent_then = len(fake.sent())
        await asyncio.wait_for(bot.send_message(99, "a reply goes on"), 2)
        await asyncio.sleep(0.1)
        assert len(fake.sent()) == sent_then + 1  # the reply, and no outbox row meanwhile
    finally:
        stop.set()
        await task

    rows = await all_rows(sessionmaker)
    refused = [r for r in rows if r.error]
    assert len(refused) == 2
    assert all((r.status, r.attempts) == (OutboxStatus.PENDING, 0) for r in refused)
    assert all(r.not_before > clock.now() + timedelta(seconds=100) for r in refused)
    # Rows that did not get through before the pause wait, unattempted, in the table.
    assert all(r.attempts == 0 for r in rows if r.status == OutboxStatus.PENDING)


async def test_paid_broadcast_sends_bulk_rows_on_their_own_budget(
    sessionmaker, fake: FakeTelegram
) -> None:
    # Free sends beyond 5/s would be refused; paid ones have 1,000/s of their own.
    fake.limits(global_per_s=5, chat_interval_s=None, paid_per_s=1000)
    throttle = Throttle(4, CHAT_INTERVAL, BURST, paid_rate=500)
    bot = fake.make_bot()
    bot.session.middleware(ThrottleMiddleware(throttle))
    lanes = [Lane.INTERACTIVE, Lane.ESCALATION] + [Lane.BULK] * 40
    await add(
        sessionmaker,
        *(Outgoing(100 + n, "notice", notice(n), lane) for n, lane in enumerate(lanes)),
    )
    sender = make_sender(bot, sessionmaker, throttle)
    try:
        await run_until(sender, lambda: sender.counts["sent"] == len(lanes))
        await bot.send_message(7, "a reply never pays")
    finally:
        await bot.session.close()

    assert fake.rejected_429 == 0
    calls = {c.chat_id: c for c in fake.calls_to("sendMessage")}
    for n, lane in enumerate(lanes):
        assert calls[100 + n].params.get("allow_paid_broadcast") is (
            True if lane == Lane.BULK else None
        )
    assert fake.stats()["paid"] == sender.counts["paid"] == 40
    assert "allow_paid_broadcast" not in fake.calls_to("sendMessage", 7)[0].params


async def _until(done: Callable[[], bool]) -> None:
    while not done():
        await asyncio.sleep(0.01)


async def test_photos_albums_venues_and_locations_each_go_in_one_call(
    sessionmaker, fake: FakeTelegram, bot: Bot, throttle: Throttle
) -> None:
    from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Yes", callback_data="f:1:1")]]
    )
    renderer = Renderer()
    renderer.register(
        "photo", lambda data, language: Rendered("a caption", photos=("ph1",), reply_markup=markup)
    )
    renderer.register(
        "album", lambda data, language: Rendered(f"album {language}", photos=("a1", "a2", "a3"))
    )
    renderer.register(
        "venue",
        lambda data, language: Rendered(
            place=Place(34.742, 113.632, title="Qingtong Grid 1", address="ZZ-20261125-0001")
        ),
    )
    renderer.register("location", lambda data, language: Rendered(place=Place(34.75, 113.65)))
    # The album fails once (5xx): it is retried as a whole, like any row.
    fake.fail_next(1, status=500, methods=["sendMediaGroup"])
    photo_id, album_id, venue_id, location_id = await add(
        sessionmaker,
        Outgoing(21, "photo", {}),
        Outgoing(22, "album", {}),
        Outgoing(23, "venue", {}),
        Outgoing(24, "location", {}),
    )
    sender = OutboxSender(
        bot, sessionmaker, throttle, renderer, clock, backoff_base=0.01, poll_interval=0.1
    )
    await run_until(sender, lambda: sender.counts["sent"] == 4)

    (photo,) = fake.calls_to("sendPhoto")
    assert (photo.chat_id, photo.params["photo"], photo.params["caption"]) == (
        21,
        "ph1",
        "a caption",
    )
    assert photo.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "f:1:1"
    failed, album = fake.calls_to("sendMediaGroup")
    assert (failed.status, album.status) == (500, 200)
    media = album.params["media"]
    assert [(m["type"], m["media"]) for m in media] == [
        ("photo", "a1"),
        ("photo", "a2"),
        ("photo", "a3"),
    ]
    assert media[0]["caption"] == "album zh-hans"
    assert all("caption" not in m for m in media[1:])
    (venue,) = fake.calls_to("sendVenue")
    assert {
        k: venue.params[k] for k in ("chat_id", "latitude", "longitude", "title", "address")
    } == {
        "chat_id": 23,
        "latitude": 34.742,
        "longitude": 113.632,
        "title": "Qingtong Grid 1",
        "address": "ZZ-20261125-0001",
    }
    (location,) = fake.calls_to("sendLocation")
    assert (location.chat_id, location.params["latitude"], location.params["longitude"]) == (
        24,
        34.75,
        113.65,
    )
    assert fake.calls_to("sendMessage") == []
    assert len(fake.sent(22)) == 3  # an album is three messages, from one row and one call

    rows = {r.id: r for r in await all_rows(sessionmaker)}
    assert {r.status for r in rows.values()} == {OutboxStatus.SENT}
    assert rows[album_id].attempts == 2
    # The album's row keeps the first message's id.
    assert rows[album_id].telegram_message_id == fake.sent(22)[0]["message_id"]
    for row_id, chat in ((photo_id, 21), (venue_id, 23), (location_id, 24)):
        assert rows[row_id].telegram_message_id == fake.sent(chat)[0]["message_id"]


async def test_a_blocked_chat_fails_an_album_at_once(
    sessionmaker, fake: FakeTelegram, bot: Bot, throttle: Throttle
) -> None:
    fake.forbid(31)
    renderer = Renderer()
    renderer.register("album", lambda data, language: Rendered(photos=("a1", "a2")))
    (row_id,) = await add(sessionmaker, Outgoing(31, "album", {}))
    sender = OutboxSender(bot, sessionmaker, throttle, renderer, clock, poll_interval=0.1)
    await run_until(sender, lambda: sender.counts["failed"] == 1)
    (row,) = await all_rows(sessionmaker)
    assert (row.id, row.status, row.attempts) == (row_id, OutboxStatus.FAILED, 1)
    assert "Forbidden" in row.error
    assert len(fake.calls_to("sendMediaGroup")) == 1


# -- rendering -----------------------------------------------------------------------------


def test_notice_renders_in_the_recipients_language() -> None:
    renderer = default_renderer()
    texts = {"text": {"zh-hans": "停水通知", "en": "Water cut"}}
    assert renderer.render("notice", texts, "en") == Rendered("Water cut")
    assert renderer.render("notice", texts, "zh-hans").text == "停水通知"
    assert renderer.render("notice", {"text": {"zh-hans": "只有中文"}}, "en").text == "只有中文"
    assert renderer.render("notice", {"text": "plain"}, "en").text == "plain"
    keyed = {"key": "outbox.ping", "params": {"ref": "#7"}, "sender": "Grid 3"}
    assert renderer.render("notice", keyed, "en").text == "🔔 Notification #7\n\n— Grid 3"
    assert renderer.render("notice", keyed, "zh-hans").text == "🔔 通知 #7\n\n——Grid 3"


def test_render_errors() -> None:
    renderer = default_renderer()
    with pytest.raises(UnknownKind):
        renderer.render("ticket_new", {}, "en")
    with pytest.raises(RenderError, match="unknown locale key"):
        renderer.render("notice", {"key": "outbox.nope"}, "en")
    with pytest.raises(RenderError, match="ref"):
        renderer.render("notice", {"key": "outbox.ping"}, "en")
    with pytest.raises(RenderError):
        renderer.render("notice", {"text": {}}, "en")


def test_register_more_kinds() -> None:
    renderer = Renderer()
    renderer.register("hello", lambda data, language: f"{language}:{data['name']}")
    assert renderer.render("hello", {"name": "Li"}, "en") == Rendered("en:Li")
    with pytest.raises(ValueError, match="already registered"):
        renderer.register("hello", lambda data, language: "")
    assert renderer.kinds() == {"hello"}


def test_outbox_locale_keys_match() -> None:
    locales = Path(__file__).resolve().parents[1] / "views" / "locales"
    zh = yaml.safe_load((locales / "zh-hans" / "outbox.yaml").read_text(encoding="utf-8"))
    en = yaml.safe_load((locales / "en" / "outbox.yaml").read_text(encoding="utf-8"))
    assert zh.keys() == en.keys()
    assert all(key.startswith("outbox.") for key in zh)


def test_the_senders_query_uses_the_pending_index_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    upgrade(url)
    engine = sa.create_engine(sync_url(url))

    @sa.event.listens_for(engine, "before_cursor_execute", retval=True)
    def explain(conn, cursor, statement, parameters, context, executemany):
        return f"EXPLAIN QUERY PLAN {statement}", parameters

    query = pending_query(now=clock.now(), limit=200, exclude_chats=[1, 2])
    with engine.connect() as conn:
        plan = [row[-1] for row in conn.execute(query)]
    engine.dispose()
    assert any("USING INDEX ix_outbox_pending" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan  # no sort: index order
