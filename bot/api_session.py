"""The Bot API session: each call one JSON body, each answer validated straight from bytes."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, cast

import orjson
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods import TelegramMethod
from aiogram.methods.base import Response, TelegramType
from aiogram.types import InlineKeyboardMarkup
from aiohttp import ClientError
from pydantic import ValidationError
from yarl import URL

JSON_HEADERS = {"Content-Type": "application/json"}


class JsonSession(AiohttpSession):
    """aiogram's aiohttp session, sending a call without files as one JSON body.

    The stock session posts every call as multipart form data, dumping each nested value
    (a keyboard, an entity list) to JSON on its own, then decodes the answer and validates it.
    Here the call is one orjson dump; the answer is decoded by orjson and validated with the
    inline keyboard that was sent standing in for Telegram's copy of it (validating a keyboard
    of eight buttons costs twice as much as the rest of the message). A call that uploads a
    file goes the stock way; an answer that is not a success is handed to aiogram's own check,
    so errors are raised as they always were.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._urls: dict[tuple[str, str], URL] = {}

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,
    ) -> TelegramType:
        files: dict[str, Any] = {}
        payload = {}
        for key, value in method.model_dump(warnings=False).items():
            value = self.prepare_value(value, bot=bot, files=files, _dumps_json=False)
            if value is not None and value != "":
                payload[key] = value
        if files:
            return await super().make_request(bot, method, timeout)

        session = await self.create_session()
        url = self._urls.get((bot.token, method.__api_method__))
        if url is None:
            # Parsed once per method: aiohttp would parse and quote the string on every call.
            url = URL(self.api.api_url(token=bot.token, method=method.__api_method__))
            self._urls[(bot.token, method.__api_method__)] = url
        try:
            async with session.post(
                url,
                data=orjson.dumps(payload),
                headers=JSON_HEADERS,
                timeout=self.timeout if timeout is None else timeout,
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except TimeoutError as e:
            raise TelegramNetworkError(method=method, message="Request timeout error") from e
        except ClientError as e:
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
