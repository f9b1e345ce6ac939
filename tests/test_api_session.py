"""The Bot API session: JSON bodies out, answers validated from bytes, errors as aiogram's."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)

from bot.api_session import JsonSession
from tests.fake_telegram import FakeTelegram

CHAT = 4242


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as server:
        server.no_limits()
        yield server


def _bot(fake: FakeTelegram, session_class: type[AiohttpSession] = JsonSession) -> Bot:
    session = session_class(api=TelegramAPIServer.from_base(fake.base_url))
    return Bot(
        fake.token, session=session, default=DefaultBotProperties(link_preview_is_disabled=True)
    )


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    bot = _bot(fake)
    yield bot
    await bot.session.close()


KEYBOARD = InlineKeyboardMarkup(
    inline_keyboard=[
        [InlineKeyboardButton(text="接受 Accept", callback_data="t:a:7")],
        [InlineKeyboardButton(text="Map", url="https://example.org/map")],
    ]
)


async def test_a_call_goes_as_one_json_body_and_its_answer_is_a_bound_message(
    fake: FakeTelegram, bot: Bot
) -> None:
    sent = await bot.send_message(CHAT, "<b>ZZ-20261125-0042</b> 已受理", reply_markup=KEYBOARD)

    [call] = fake.calls_to("sendMessage")
    assert call.encoding == "json"
    assert call.params["chat_id"] == CHAT
    assert call.params["text"] == "<b>ZZ-20261125-0042</b> 已受理"
    # Nested objects travel as objects, the bot's defaults filled in, unset fields left out.
    assert call.params["reply_markup"] == {
        "inline_keyboard": [
            [{"text": "接受 Accept", "callback_data": "t:a:7"}],
            [{"text": "Map", "url": "https://example.org/map"}],
        ]
    }
    assert call.params["link_preview_options"] == {"is_disabled": True}
    assert "parse_mode" not in call.params  # the bot has no default parse mode

    assert isinstance(sent, Message)
    assert sent.chat.id == CHAT
    assert sent.text == "<b>ZZ-20261125-0042</b> 已受理"
    # The keyboard that was sent stands in for Telegram's copy of it.
    assert sent.reply_markup is KEYBOARD
    assert sent.reply_markup.inline_keyboard[0][0].callback_data == "t:a:7"
    assert sent.reply_markup.inline_keyboard[1][0].url == "https://example.org/map"
    # Bound to the bot, as aiogram's own answers are: its shortcuts work.
    edited = await sent.edit_text("已解决")
    assert isinstance(edited, Message) and edited.text == "已解决"
    assert fake.calls_to("editMessageText")[0].params["message_id"] == sent.message_id


async def test_json_and_form_bodies_reach_telegram_alike(fake: FakeTelegram, bot: Bot) -> None:
    """The same calls through aiogram's stock session and through ours arrive the same."""
    stock = _bot(fake, AiohttpSession)
    try:
        for client in (stock, bot):
            await client.send_message(
                CHAT,
                "位置 location",
                reply_markup=ReplyKeyboardMarkup(
                    keyboard=[[KeyboardButton(text="📍", request_location=True)]],
                    resize_keyboard=True,
                    one_time_keyboard=True,
                ),
                disable_notification=True,
            )
            await client.send_message(CHAT, "done", reply_markup=ReplyKeyboardRemove())
            await client.send_location(CHAT, latitude=30.25, longitude=120.16)
            await client.send_venue(
                CHAT, latitude=30.25, longitude=120.16, title="东湖社区", address="1号网格"
            )
            await client.answer_callback_query("q1", text="已过期", show_alert=True)
    finally:
        await stock.session.close()
    calls = [c for c in fake.calls if c.method != "getMe"]
    half = len(calls) // 2
    assert [c.encoding for c in calls] == ["form"] * half + ["json"] * half
    for form, json in zip(calls[:half], calls[half:], strict=True):
        assert (form.method, form.params) == (json.method, json.params)


async def test_answers_of_other_types(fake: FakeTelegram, bot: Bot) -> None:
    assert await bot.answer_callback_query("q1") is True
    fake.push_message(user_id=CHAT, text="hello")
    [update] = await bot.get_updates(timeout=0)
    assert update.message is not None and update.message.text == "hello"
    me = await bot.get_me()
    assert me.username == fake.username


async def test_a_file_upload_goes_the_stock_way(fake: FakeTelegram, bot: Bot) -> None:
    photo = BufferedInputFile(b"\x89PNG fake image", filename="chart.png")
    sent = await bot.send_photo(CHAT, photo, caption="周报 weekly", reply_markup=KEYBOARD)
    [call] = fake.calls_to("sendPhoto")
    assert call.encoding == "form"
    assert call.params["caption"] == "周报 weekly"
    assert call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "t:a:7"
    assert sent.photo and sent.caption == "周报 weekly"


async def test_refusals_raise_aiogram_errors(fake: FakeTelegram, bot: Bot) -> None:
    fake.forbid(CHAT)
    with pytest.raises(TelegramForbiddenError, match="blocked"):
        await bot.send_message(CHAT, "x")
    fake.allow(CHAT)
    fake.chat_not_found(CHAT)
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.send_message(CHAT, "x")
    fake.allow(CHAT)
    with pytest.raises(TelegramBadRequest, match="text is empty"):
        await bot.send_message(CHAT, "")
    fake.fail_next(1, 500)
    with pytest.raises(TelegramServerError):
        await bot.send_message(CHAT, "x")
    fake.drop_next(1)
    with pytest.raises(TelegramNetworkError):
        await bot.send_message(CHAT, "x")
    fake.limits(global_per_s=None, chat_interval_s=60.0, chat_burst=1)
    await bot.send_message(CHAT + 2, "first")
    with pytest.raises(TelegramRetryAfter) as flood:
        await bot.send_message(CHAT + 2, "second")
    assert flood.value.retry_after >= 1
    # After all that, the session still works.
    fake.no_limits()
    assert (await bot.send_message(CHAT + 1, "ok")).text == "ok"


async def test_a_slow_answer_times_out_as_a_network_error(fake: FakeTelegram, bot: Bot) -> None:
    fake.set_latency(2.0, methods=["sendMessage"])
    with pytest.raises(TelegramNetworkError, match="timeout"):
        await bot.send_message(CHAT, "x", request_timeout=0.2)


async def test_calls_to_a_https_server_use_aiograms_limit_and_certificates() -> None:
    session = JsonSession(api=TelegramAPIServer.from_base("https://api.example.org"), limit=7)
    try:
        client, path = session._route("1:x", "sendMessage")
        assert path == "/bot1:x/sendMessage"
        assert (client.host, client.port) == ("api.example.org", 443)
        assert client._ssl is session._connector_init["ssl"]
        assert client._slots._value == 7
        # One client per server, whatever the method.
        assert session._route("1:x", "getUpdates")[0] is client
    finally:
        await session.close()
