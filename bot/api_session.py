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
from aiohttp import ClientError
from pydantic import ValidationError

JSON_HEADERS = {"Content-Type": "application/json"}


class JsonSession(AiohttpSession):
    """aiogram's aiohttp session, sending a call without files as one JSON body.

    The stock session posts every call as multipart form data, dumping each nested value
    (a keyboard, an entity list) to JSON on its own, then decodes the answer to Python objects
    and validates those. Here the call is one orjson dump and pydantic validates the answer
    from its bytes in one pass. A call that uploads a file goes the stock way; an answer that
    is not a success is handed to aiogram's own check, so errors are raised as they always were.
    """

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
        url = self.api.api_url(token=bot.token, method=method.__api_method__)
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
                response = Response[method.__returning__].model_validate_json(  # type: ignore[name-defined]
                    raw, context={"bot": bot}
                )
            except ValidationError:
                response = None
            if response is not None and response.ok:
                return cast(TelegramType, response.result)
        # Not a success, or not what was expected: aiogram's check raises the right error.
        response = self.check_response(
            bot=bot, method=method, status_code=status, content=raw.decode(errors="replace")
        )
        return cast(TelegramType, response.result)
