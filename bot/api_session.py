"""The Bot API session: each call one JSON body on a kept-alive connection, answers parsed lean."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, cast
from urllib.parse import urlsplit

import orjson
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response, TelegramType
from aiogram.types import InlineKeyboardMarkup
from pydantic import ValidationError

from bot.http_client import HttpClient


class JsonSession(AiohttpSession):
    """aiogram's session for the Bot API, lighter on the CPU for the calls a bot makes most.

    A call without files is one orjson-dumped JSON body, posted through bot.http_client over
    kept-alive connections (aiohttp's client machinery cost more than the rest of the call);
    the answer is decoded by orjson and validated with the inline keyboard that was sent
    standing in for Telegram's copy of it (validating a keyboard of eight buttons costs twice
    as much as the rest of the message). A call that uploads a file, and every call when a
    proxy is set, goes aiogram's stock way (through aiohttp). An answer that is not a success
    is handed to aiogram's own check, so the errors raised are aiogram's.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[str, HttpClient] = {}  # by origin
        self._routes: dict[tuple[str, str], tuple[HttpClient, str]] = {}

    def _route(self, token: str, api_method: str) -> tuple[HttpClient, str]:
        """The client for the method's server and the path to post to, worked out once."""
        route = self._routes.get((token, api_method))
        if route is None:
            url = urlsplit(self.api.api_url(token=token, method=api_method))
            origin = f"{url.scheme}://{url.netloc}"
            client = self._clients.get(origin)
            if client is None:
                # The same limit and certificate authorities (certifi's) as aiogram's own.
                client = self._clients[origin] = HttpClient(
                    origin,
                    limit=self._connector_init.get("limit", 100),
                    ssl_context=self._connector_init.get("ssl"),
                )
            path = url.path + (f"?{url.query}" if url.query else "")
            route = self._routes[(token, api_method)] = (client, path)
        return route

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
        self._routes.clear()
        await super().close()

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,
    ) -> TelegramType:
        files: dict[str, Any] = {}
        payload = {}
        # None is never sent (the stock session drops it too): leaving it out of the dump
        # spares walking every unset field of every button.
        for key, value in method.model_dump(exclude_none=True, warnings=False).items():
            value = self.prepare_value(value, bot=bot, files=files, _dumps_json=False)
            if value is not None and value != "":
                payload[key] = value
        if files or self._proxy is not None:
            # Uploads, and everything when a proxy is set, go aiogram's way through aiohttp.
            return await super().make_request(bot, method, timeout)

        client, path = self._route(bot.token, method.__api_method__)
        try:
            status, raw = await client.post(
                path,
                orjson.dumps(payload),
                timeout=self.timeout if timeout is None else timeout,
            )
        except TimeoutError as e:
            raise TelegramNetworkError(method=method, message="Request timeout error") from e
        except OSError as e:  # HttpError included
            raise TelegramNetworkError(method=method, message=f"{type(e).__name__}: {e}") from e

        if HTTPStatus.OK <= status <= HTTPStatus.IM_USED:
            try:
                data = orjson.loads(raw)
                _reuse_keyboard(method, data)
                response = Response[method.__returning__].model_validate(  # type: ignore[name-defined]
                    data, context={"bot": bot}
                )
            except (orjson.JSONDecodeError, ValidationError):
                response = None
            if response is not None and response.ok:
                return cast(TelegramType, response.result)
        # Not a success, or not what was expected: aiogram's check raises the right error.
        response = self.check_response(
            bot=bot, method=method, status_code=status, content=raw.decode(errors="replace")
        )
        return cast(TelegramType, response.result)


def _reuse_keyboard(method: TelegramMethod[Any], data: Any) -> None:
    """Put the inline keyboard this call sent in place of the copy Telegram sent back."""
    markup = getattr(method, "reply_markup", None)
    if not isinstance(markup, InlineKeyboardMarkup) or not isinstance(data, dict):
        return
    result = data.get("result")
    if isinstance(result, dict) and "reply_markup" in result:
        result["reply_markup"] = markup
