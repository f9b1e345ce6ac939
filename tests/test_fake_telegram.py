"""The fake Bot API behaves like Telegram where the bot and its tests rely on it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    BotCommand,
    BotCommandScopeDefault,
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    KeyboardButton,
    ReplyKeyboardMarkup,
)

from tests.fake_telegram import FakeTelegram

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    bot = fake.make_bot()
    yield bot
    await bot.session.close()


async def test_get_me_and_unknown_token(fake: FakeTelegram, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (123456, "gridbot_test_bot", True)

    stranger = fake.make_bot("999:WRONG")
    try:
        with pytest.raises(TelegramUnauthorizedError):
            await stranger.get_me()
    finally:
        await stranger.session.close()
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{fake.base_url}/bot999:WRONG/getMe") as response,
    ):
        assert response.status == 401
        assert await response.json() == {
            "ok": False,
            "error_code": 401,
            "description": "Unauthorized",
        }


async def test_send_message_returns_message_and_records(fake: FakeTelegram, bot: Bot) -> None:
    inline = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="OK", callback_data="ok:1")]]
    )
    first = await bot.send_message(42, "hello", reply_markup=inline)
    keyboard = ReplyKeyboardMarkup(keyboard=[[KeyboardButton(text="Menu")]])
    second = await bot.send_message(42, "menu", reply_markup=keyboard)
    other = await bot.send_message(43, "elsewhere")

    assert (first.message_id, second.message_id, other.message_id) == (1, 2, 1)
    assert first.chat.id == 42 and first.chat.type == "private"
    assert first.text == "hello"
    assert first.reply_markup is not None
    assert first.reply_markup.inline_keyboard[0][0].callback_data == "ok:1"
    assert second.reply_markup is None  # Telegram echoes inline keyboards only
    sent = fake.sent(42)
    assert [m["text"] for m in sent] == ["hello", "menu"]
    assert sent[1]["reply_markup"]["keyboard"] == [[{"text": "Menu"}]]
    assert [c.method for c in fake.calls] == ["sendMessage"] * 3
    assert fake.calls[0].params["chat_id"] == 42


async def test_json_and_form_bodies_and_method_case(fake: FakeTelegram) -> None:
    url = f"{fake.base_url}/bot{fake.token}"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{url}/SENDMESSAGE",
            json={"chat_id": 5, "text": "json", "reply_markup": {"inline_keyboard": []}},
        ) as response:
            body = await response.json()
        assert body["ok"] is True and body["result"]["text"] == "json"
        form = {"chat_id": "5", "text": "123"}
        async with http.post(f"{url}/sendmessage", data=form) as response:
            body = await response.json()
        assert body["result"]["text"] == "123"  # a numeric text stays a string
        async with http.post(f"{url}/noSuchMethod", data={}) as response:
            assert response.status == 404
    assert [c.method for c in fake.calls[:2]] == ["sendMessage", "sendMessage"]
    assert fake.calls[1].params == {"chat_id": 5, "text": "123"}


async def test_global_limit_gives_429_and_does_not_deliver(fake: FakeTelegram, bot: Bot) -> None:
    fake.limits(global_per_s=5, chat_interval_s=None)
    for chat in range(1, 6):
        await bot.send_message(chat, "ok")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(6, "too many")
    assert caught.value.retry_after == 1
    assert fake.rejected_429 == 1
    assert fake.stats()["rejected_429_by_kind"] == {"chat": 0, "global": 1, "paid": 0, "forced": 0}
    assert len(fake.sent()) == 5 and fake.sent(6) == []
    last = fake.calls[-1]
    assert (last.status, last.description) == (429, "Too Many Requests: retry after 1")

    await asyncio.sleep(1.0 - (time.monotonic() - fake.sent()[0]["at"]) + 0.01)
    await bot.send_message(6, "window moved on")
    assert len(fake.sent()) == 6


async def test_chat_interval_gives_429_with_rounded_up_retry_after(
    fake: FakeTelegram, bot: Bot
) -> None:
    fake.limits(global_per_s=None, chat_interval_s=2.5, chat_burst=1)
    await bot.send_message(1, "first")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(1, "second")
    assert caught.value.retry_after == 3  # ceil(2.5 - a few ms)
    await bot.send_message(2, "another chat is fine")

    fake.limits(global_per_s=None, chat_interval_s=0.1, chat_burst=1)
    await bot.send_message(3, "a")
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(3, "b")
    assert caught.value.retry_after == 1  # at least 1
    await asyncio.sleep(0.11)
    await bot.send_message(3, "c")
    assert [m["text"] for m in fake.sent(3)] == ["a", "c"]
    assert fake.rejected_429 == 2
    assert fake.rejected_by_kind["chat"] == 2

    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{fake.base_url}/bot{fake.token}/sendMessage", json={"chat_id": 3, "text": "d"}
        ) as response,
    ):
        assert response.status == 429
        assert await response.json() == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1},
        }


async def test_failure_injection(fake: FakeTelegram, bot: Bot) -> None:
    fake.forbid(7)
    with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
        await bot.send_message(7, "hi")
    fake.chat_not_found(8)
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(8, "hi")

    fake.fail_next(1, status=500)
    fake.fail_next(1, status=502)
    with pytest.raises(TelegramServerError, match="Internal Server Error"):
        await bot.send_message(9, "a")
    with pytest.raises(TelegramServerError, match="Bad Gateway"):
        await bot.send_message(9, "b")
    fake.drop_next(1)
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(9, "c")
    await bot.send_message(9, "d")
    assert [m["text"] for m in fake.sent(9)] == ["d"]
    assert [c.status for c in fake.calls_to("sendMessage", 9)] == [500, 502, 0, 200]

    # Injections skip getUpdates unless asked, so a polling bot doesn't swallow them.
    fake.fail_next(1)
    assert await bot.get_updates(timeout=0) == []
    with pytest.raises(TelegramServerError):
        await bot.get_me()


async def test_get_updates_long_polls_and_confirms(fake: FakeTelegram, bot: Bot) -> None:
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == []
    assert time.monotonic() - started >= 0.95

    async def push_later() -> None:
        await asyncio.sleep(0.2)
        fake.push_message(11, "/start abc", language_code="en")

    started = time.monotonic()
    pusher = asyncio.create_task(push_later())
    updates = await bot.get_updates(timeout=5)
    await pusher
    assert 0.15 < time.monotonic() - started < 1.0
    assert len(updates) == 1
    message = updates[0].message
    assert message is not None and message.text == "/start abc"
    assert message.from_user is not None and message.from_user.language_code == "en"
    assert message.entities is not None and message.entities[0].type == "bot_command"

    fake.push_message(11, "two")
    fake.push_message(12, "three", location={"latitude": 31.2, "longitude": 121.5})
    again = await bot.get_updates(timeout=0)
    assert [u.update_id for u in again] == [1, 2, 3]  # unconfirmed ones come back
    limited = await bot.get_updates(offset=2, limit=1, timeout=0)
    assert [u.update_id for u in limited] == [2]
    rest = await bot.get_updates(offset=3, timeout=0)
    assert rest[0].message is not None and rest[0].message.location is not None
    assert await bot.get_updates(offset=4, timeout=0) == []
    assert fake.pending_updates == 0


async def test_callback_refers_to_the_bots_message(fake: FakeTelegram, bot: Bot) -> None:
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Accept", callback_data="t:1:accept")]]
    )
    sent = await bot.send_message(21, "ticket 1", reply_markup=markup)
    fake.push_callback(21, "t:1:accept", sent.message_id)
    (update,) = await bot.get_updates(timeout=0)
    query = update.callback_query
    assert query is not None and query.data == "t:1:accept"
    assert query.message is not None and query.message.message_id == sent.message_id
    assert query.message.text == "ticket 1"
    assert await bot.answer_callback_query(query.id, text="done")
    call = await fake.wait_for_call("answerCallbackQuery")
    assert call.params["text"] == "done"


async def test_wait_for_message_walks_the_conversation(fake: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(31, "one")

    async def later() -> None:
        await asyncio.sleep(0.1)
        await bot.send_message(31, "two")
        await bot.send_message(31, "three")

    task = asyncio.create_task(later())
    assert (await fake.wait_for_message(31))["text"] == "one"
    assert (await fake.wait_for_message(31, lambda m: m["text"] == "three"))["text"] == "three"
    assert (await fake.wait_for_message(31))["text"] == "two"
    await task
    with pytest.raises(TimeoutError, match="chat 31"):
        await fake.wait_for_message(31, timeout=0.1)


async def test_other_methods(fake: FakeTelegram, bot: Bot) -> None:
    assert await bot.set_my_commands(
        [BotCommand(command="start", description="开始")], language_code="zh-hans"
    )
    assert await bot.set_my_commands([BotCommand(command="start", description="Start")])
    english = await bot.get_my_commands(scope=BotCommandScopeDefault(), language_code="")
    assert [c.description for c in english] == ["Start"]
    assert fake.my_commands("zh-hans") == [{"command": "start", "description": "开始"}]

    assert await bot.delete_webhook(drop_pending_updates=True)
    assert await bot.set_webhook("https://example.org/hook")
    assert (await bot.get_webhook_info()).url == "https://example.org/hook"

    photo = await bot.send_photo(41, BufferedInputFile(b"\x89PNG", "p.png"), caption="pic")
    assert photo.photo is not None and photo.caption == "pic"
    assert fake.calls_to("sendPhoto")[0].params["photo"]["size"] == 4  # multipart upload
    location = await bot.send_location(41, latitude=31.23, longitude=121.47)
    assert location.location is not None and location.location.latitude == pytest.approx(31.23)
    venue = await bot.send_venue(41, 31.23, 121.47, title="Grid 3", address="Road 1")
    assert venue.venue is not None and venue.venue.title == "Grid 3"
    group = await bot.send_media_group(
        41, [InputMediaPhoto(media="file-a"), InputMediaPhoto(media="file-b", caption="b")]
    )
    assert [m.message_id for m in group] == [4, 5]
    assert group[0].media_group_id == group[1].media_group_id

    fake.push_message(50, "please forward me")
    copied = await bot.copy_message(41, from_chat_id=50, message_id=1)
    assert fake.sent(41)[-1]["text"] == "please forward me"
    assert copied.message_id == 6

    edited = await bot.edit_message_text("pic?", chat_id=41, message_id=2)
    assert edited.text == "pic?"  # a location message gets a text here; the fake doesn't mind
    with pytest.raises(TelegramBadRequest, match="not modified"):
        await bot.edit_message_text("pic?", chat_id=41, message_id=2)
    with pytest.raises(TelegramBadRequest, match="message to edit not found"):
        await bot.edit_message_text("x", chat_id=41, message_id=999)
    markup = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="a", url="https://a.b")]]
    )
    assert await bot.edit_message_reply_markup(chat_id=41, message_id=2, reply_markup=markup)
    assert await bot.delete_message(41, 2)
    with pytest.raises(TelegramBadRequest, match="message to delete not found"):
        await bot.delete_message(41, 2)

    file = await bot.get_file("file-a")
    assert file.file_path is not None
    fake.files["file-a"] = b"content"
    downloaded = await bot.download_file(file.file_path)
    assert downloaded is not None and downloaded.read() == b"content"


async def test_counts_duplicates(fake: FakeTelegram, bot: Bot) -> None:
    await bot.send_message(1, "notice #1")
    await bot.send_message(1, "notice #1")
    await bot.send_message(2, "notice #1")  # same text, other chat: not a duplicate
    stats = fake.stats()
    assert stats["duplicates"] == 1
    assert stats["delivered"] == 3
    assert stats["per_chat"] == {"1": 2, "2": 1}


class MovableClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def timed() -> AsyncIterator[tuple[FakeTelegram, MovableClock, Bot]]:
    """A fake whose flood limits run on a clock the test moves, and a bot talking to it."""
    clock = MovableClock()
    async with FakeTelegram(monotonic=clock) as server:
        bot = server.make_bot()
        try:
            yield server, clock, bot
        finally:
            await bot.session.close()


async def _refused(bot: Bot, chat_id: int, **kwargs: object) -> int:
    """Send to the chat expecting a 429; its retry_after."""
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.send_message(chat_id, "refused", **kwargs)
    return caught.value.retry_after


async def test_a_chat_gets_a_burst_then_one_message_per_interval(timed) -> None:
    fake, clock, bot = timed
    fake.limits(global_per_s=None)  # Telegram's per chat: 3 at once, then 1 a second
    for n in range(3):
        await bot.send_message(1, f"burst {n}")
    assert await _refused(bot, 1) == 1
    await bot.send_message(2, "another chat has its own bucket")
    clock.now += 0.5
    assert await _refused(bot, 1) == 1  # half a token: still none
    clock.now += 0.5
    await bot.send_message(1, "one more after a second")
    assert await _refused(bot, 1) == 1
    clock.now += 10  # a quiet chat refills up to the burst, no more
    for n in range(3):
        await bot.send_message(1, f"again {n}")
    assert await _refused(bot, 1) == 1
    assert len(fake.sent(1)) == 7
    assert fake.stats()["rejected_429_by_kind"] == {"chat": 4, "global": 0, "paid": 0, "forced": 0}

    fake.limits(global_per_s=None, chat_interval_s=2.0, chat_burst=2)
    await bot.send_message(9, "a")
    await bot.send_message(9, "b")
    assert await _refused(bot, 9) == 2  # a whole token is 2 s away


async def test_replies_to_people_who_just_wrote_are_not_counted_globally(timed) -> None:
    fake, clock, bot = timed
    fake.limits(global_per_s=2, chat_interval_s=None)
    fake.push_message(50, "hello")
    fake.push_callback(51, "t:1:accept", message_id=1)
    fake.push_update(
        {"message": {"message_id": 1, "date": 0, "chat": {"id": 52, "type": "private"}}}
    )
    for chat in (50, 51, 52, 50, 51, 52):
        await bot.send_message(chat, "a reply")  # not bulk: none of these count
    await bot.send_message(60, "bulk 1")
    await bot.send_message(61, "bulk 2")
    assert await _refused(bot, 62) == 1
    await bot.send_message(50, "replies still go")
    assert fake.rejected_by_kind["global"] == 1

    clock.now += 61  # a minute later, 50 has not written again: a send to it is bulk
    await bot.send_message(60, "bulk 3")
    await bot.send_message(61, "bulk 4")
    assert await _refused(bot, 50) == 1
    fake.wrote(50)  # ... until it writes again
    await bot.send_message(50, "a reply again")
    assert fake.rejected_by_kind["global"] == 2


async def test_paid_broadcasts_have_a_window_of_their_own(timed) -> None:
    fake, clock, bot = timed
    fake.limits(global_per_s=1, chat_interval_s=None, paid_per_s=3)
    for chat in (1, 2, 3):
        await bot.send_message(chat, "paid", allow_paid_broadcast=True)
    assert await _refused(bot, 4, allow_paid_broadcast=True) == 1
    await bot.send_message(10, "free")  # the free window is untouched by paid sends
    assert await _refused(bot, 11) == 1
    clock.now += 1.0
    await bot.send_message(4, "paid again", allow_paid_broadcast=True)
    stats = fake.stats()
    assert stats["paid"] == 4
    assert stats["rejected_429_by_kind"] == {"chat": 0, "global": 1, "paid": 1, "forced": 0}
    assert [m["paid"] for m in fake.sent()] == [True, True, True, False, True]
    assert fake.calls_to("sendMessage", 4)[-1].params["allow_paid_broadcast"] is True
    assert stats["limits"]["paid_per_s"] == 3


async def test_a_forced_429_blocks_one_chat_for_a_while(timed) -> None:
    fake, clock, bot = timed
    fake.no_limits()
    fake.force_429(7, 120)
    assert await _refused(bot, 7) == 120
    await bot.send_message(8, "other chats are fine")
    clock.now += 119.5
    assert await _refused(bot, 7) == 1  # the time left, rounded up
    clock.now += 0.5
    await bot.send_message(7, "over")

    fake.force_429(7, 5, seconds=300)  # keeps answering 5 for five minutes
    assert await _refused(bot, 7) == 5
    clock.now += 200
    assert await _refused(bot, 7) == 5
    clock.now += 100
    await bot.send_message(7, "over again")

    fake.fail_next(1, status=429, methods=["answerCallbackQuery"], retry_after=30)
    with pytest.raises(TelegramRetryAfter) as caught:
        await bot.answer_callback_query("cb1")
    assert caught.value.retry_after == 30
    assert fake.stats()["rejected_429_by_kind"] == {"chat": 0, "global": 0, "paid": 0, "forced": 5}
    assert [m["text"] for m in fake.sent(7)] == ["over", "over again"]


async def test_limits_and_forced_429s_over_http(fake: FakeTelegram, bot: Bot) -> None:
    async with aiohttp.ClientSession() as http:
        body = {"global_per_s": 10, "chat_interval_s": 5, "chat_burst": 2, "paid_per_s": 50}
        async with http.post(f"{fake.base_url}/_limits", json=body) as response:
            assert response.status == 200
        async with http.post(
            f"{fake.base_url}/_force_429", json={"chat_id": 3, "retry_after": 60}
        ) as response:
            assert response.status == 200
        async with http.post(
            f"{fake.base_url}/_push",
            json={"message": {"message_id": 1, "date": 0, "chat": {"id": 4, "type": "private"}}},
        ) as response:
            assert response.status == 200
    assert fake.stats()["limits"] == {
        "global_per_s": 10,
        "chat_interval_s": 5,
        "chat_burst": 2,
        "recent_s": 60.0,
        "paid_per_s": 50,
    }
    assert await _refused(bot, 3) == 60
    await bot.send_message(4, "a")
    await bot.send_message(4, "b")
    assert await _refused(bot, 4) == 5


def test_separate_process_takes_over_1000_requests_per_second() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fake_telegram",
            "--port",
            "0",
            "--global-per-s",
            "100000",
            "--chat-burst",
            "5",
            "--recent-s",
            "30",
            "--paid-per-s",
            "2000",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = json.loads(process.stdout.readline())["url"]
        stats = asyncio.run(_hammer(url, requests=3000, concurrency=32))
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert stats["delivered"] == 3000
    assert stats["rejected_429"] == 0
    assert stats["limits"]["global_per_s"] == 100000
    assert (stats["limits"]["chat_burst"], stats["limits"]["recent_s"]) == (5, 30)
    assert stats["limits"]["paid_per_s"] == 2000


async def _hammer(url: str, *, requests: int, concurrency: int) -> dict:
    endpoint = f"{url}/bot123456:TEST/sendMessage"
    counter = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            for n in counter:
                async with http.post(endpoint, data={"chat_id": str(n), "text": "x"}) as response:
                    assert response.status == 200
                    await response.read()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        async with http.get(f"{url}/_stats") as response:
            stats = await response.json()
        async with http.post(f"{url}/_reset") as response:
            assert response.status == 200
        async with http.get(f"{url}/_stats") as response:
            assert (await response.json())["delivered"] == 0
    return stats
