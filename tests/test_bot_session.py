"""The Bot API session is aiogram's own (aiohttp, orjson for the JSON), and a connection the
server closed while idle costs no call."""

from __future__ import annotations

import asyncio

import orjson
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup
from aiohttp import web

from bot.app import build_bot, build_throttle
from tests.botkit import bot_settings


def _message(chat_id: int, text: str) -> dict:
    return {
        "message_id": 1,
        "date": 1_700_000_000,
        "chat": {"id": chat_id, "type": "private"},
        "text": text,
    }


async def test_the_bot_talks_through_aiograms_own_session() -> None:
    settings = bot_settings("http://127.0.0.1:1", "sqlite://")
    bot = build_bot(settings, build_throttle(settings))
    try:
        assert type(bot.session) is AiohttpSession
        assert bot.session.json_loads is orjson.loads
        assert orjson.loads(bot.session.json_dumps({"a": "乙"})) == {"a": "乙"}
    finally:
        await bot.session.close()


async def test_a_connection_the_server_closed_while_idle_costs_no_call() -> None:
    """Servers close kept-alive connections that sit idle (here after 20 ms): each call after
    such a pause still reaches the server, on a new connection."""
    received: list[dict] = []
    peers: set[int] = set()

    async def send_message(request: web.Request) -> web.Response:
        form = dict(await request.post())
        received.append(form)
        transport = request.transport
        assert transport is not None
        peers.add(transport.get_extra_info("peername")[1])
        result = _message(int(form["chat_id"]), str(form["text"]))
        return web.json_response({"ok": True, "result": result})

    app = web.Application()
    app.router.add_post("/bot{token}/sendMessage", send_message)
    runner = web.AppRunner(app, keepalive_timeout=0.02)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    settings = bot_settings(f"http://127.0.0.1:{port}", "sqlite://")
    bot = build_bot(settings, build_throttle(settings))
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="接受", callback_data="t:a:7")]]
    )
    try:
        for n in range(8):
            sent = await bot.send_message(100 + n, f"call {n}", reply_markup=keyboard)
            assert sent.text == f"call {n}"
            await asyncio.sleep(0.06)  # idle for longer than the server keeps a connection
    finally:
        await bot.session.close()
        await runner.cleanup()
    assert [r["text"] for r in received] == [f"call {n}" for n in range(8)]
    assert orjson.loads(received[0]["reply_markup"]) == {
        "inline_keyboard": [[{"text": "接受", "callback_data": "t:a:7"}]]
    }
    # The server did close them: the calls came over several connections.
    assert len(peers) > 1
