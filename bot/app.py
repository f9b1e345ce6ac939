"""Factories for the Bot and the Dispatcher, and the command menu."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramRetryAfter
from aiogram.fsm.storage.base import BaseEventIsolation, BaseStorage, DefaultKeyBuilder
from aiogram.fsm.storage.memory import MemoryStorage, SimpleEventIsolation
from aiogram.methods.base import Response
from aiogram.types import (
    BotCommand,
    BotCommandScopeDefault,
    ErrorEvent,
    Message,
    Update,
)
from sqlalchemy.ext.asyncio import async_sessionmaker

import handlers
from bot.fsm import DatabaseEventIsolation, DatabaseStorage
from bot.middlewares import ContextMiddleware, EndTransactionMiddleware
from bot.routing import install_gates
from bot.settings import Settings
from bot.throttle import Throttle, ThrottleMiddleware
from domain.clock import Clock
from domain.deadlines import Timing
from domain.errors import DomainError
from domain.languages import LANGUAGES
from domain.reference import Reference
from storage.conversations import ConversationStore
from views.common import refusal_text
from views.i18n import text, translator

logger = logging.getLogger(__name__)

# aiogram parses every answer as Response[T]; pydantic caches parametrised generics only
# weakly, so without a strong reference each call rebuilds the model class (measured: about
# a quarter of the bot's CPU per update). Holding the common ones keeps them built.
_RESPONSE_MODELS = (
    Response[list[Update]],
    Response[Message],
    Response[bool],
    Response[Message | bool],
)

COMMANDS = (
    "start",
    "help",
    "lang",
    "queue",
    "report",
    "my",
    "duty",
    "me",
    "posts",
    "call",
    "calls",
    "stats",
    "cancel",
)


def build_throttle(settings: Settings) -> Throttle:
    """Per-chat buckets for every send; the outbox's budget (and the paid one, if set)."""
    return Throttle(
        settings.outbox_rate,
        settings.chat_interval,
        settings.chat_burst,
        paid_rate=settings.paid_broadcast_rate,
        retry_after_cap=settings.retry_after_cap,
    )


def _json_text(value: Any) -> str:
    """orjson for the JSON inside a Bot API call (keyboards, entities): aiogram takes text."""
    return orjson.dumps(value).decode()


def build_bot(settings: Settings, throttle: Throttle) -> Bot:
    """A Bot talking to the configured Bot API base; replies paced per chat by the throttle."""
    if settings.bot_token is None:
        raise ValueError("no bot token")
    session = AiohttpSession(
        api=TelegramAPIServer.from_base(settings.telegram_api_base),
        json_loads=orjson.loads,
        json_dumps=_json_text,
    )
    session.middleware(EndTransactionMiddleware())
    session.middleware(ThrottleMiddleware(throttle))
    return Bot(
        token=settings.bot_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(link_preview_is_disabled=True),
    )


def build_dispatcher(
    *,
    settings: Settings,
    sessionmaker: async_sessionmaker,
    clock: Clock,
    on_queued: Callable[[], None] | None = None,
    timing: Timing | None = None,
    conversations: ConversationStore | None = None,
    across_processes: bool = False,
    reference: Reference | None = None,
    **workflow_data: Any,
) -> Dispatcher:
    """The dispatcher with durable FSM storage, the middlewares and every router.

    Dialog state and per-chat ordering: with GRIDBOT_REDIS_URL, aiogram's Redis storage and
    isolation; else the database's `conversation_state`, with the order of one chat's updates
    kept in the process, or across processes (`across_processes`: webhook processes behind a
    load balancer may get one chat's updates at once) by database locks. Without
    `conversations` dialogs are kept in memory only: for tests that never restart.
    """
    storage, isolation = _dialog_state(settings, clock, conversations, across_processes)
    dp = Dispatcher(
        storage=storage,
        events_isolation=isolation,
        settings=settings,
        sessionmaker=sessionmaker,
        reference=reference or Reference(),
        timing=timing or Timing.plain(settings.tz),
        **workflow_data,
    )
    dp.update.outer_middleware(
        ContextMiddleware(sessionmaker, clock, settings.default_language, on_queued)
    )
    routers = handlers.routers()
    for router in routers:
        install_gates(router)
    dp.include_routers(*routers)
    dp.errors.register(on_error)
    return dp


def _dialog_state(
    settings: Settings,
    clock: Clock,
    conversations: ConversationStore | None,
    across_processes: bool,
) -> tuple[BaseStorage, BaseEventIsolation]:
    if settings.redis_url:
        from aiogram.fsm.storage.redis import RedisEventIsolation, RedisStorage

        storage = RedisStorage.from_url(
            settings.redis_url,
            key_builder=DefaultKeyBuilder(with_destiny=True, with_bot_id=True),
        )
        return storage, RedisEventIsolation(redis=storage.redis)
    if conversations is None:
        return MemoryStorage(), SimpleEventIsolation()
    # One update at a time per chat: an album's photos, a double-tapped button.
    if across_processes and conversations.locks_across_processes:
        isolation: BaseEventIsolation = DatabaseEventIsolation(conversations)
    else:
        isolation = SimpleEventIsolation()
    return DatabaseStorage(conversations, clock), isolation


async def on_error(event: ErrorEvent, **data: Any) -> bool:
    """Domain refusals become a reply in the person's language; anything else is logged."""
    t = data.get("t") or translator(data["settings"].default_language)
    exc = event.exception
    if isinstance(exc, TelegramRetryAfter):
        # Flood control blocks the chat: an apology sent into it would be refused too.
        logger.warning("update %s: reply given up (%s)", event.update.update_id, exc.message)
        return True
    if isinstance(exc, DomainError):
        reply = refusal_text(exc, t, data["settings"].tz)
    else:
        logger.exception("update %s failed", event.update.update_id, exc_info=exc)
        reply = t("error.internal")
    update = event.update
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(reply, show_alert=True)
        elif update.message is not None:
            await update.message.answer(reply)
    except Exception:
        logger.exception("could not tell the person about a failed update")
    return True


async def set_commands(bot: Bot) -> None:
    """The command menu: Chinese by default, English for English-speaking clients."""
    for language in LANGUAGES:
        commands = [
            BotCommand(command=c, description=text(language, f"command.{c}")) for c in COMMANDS
        ]
        code = None if language == "zh-hans" else language.split("-")[0]
        await bot.set_my_commands(commands, scope=BotCommandScopeDefault(), language_code=code)
