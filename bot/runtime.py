"""`gridbot run`: migrate, seed the sample city if empty, then serve until told to stop."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from urllib.parse import urlparse

from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramNetworkError, TelegramUnauthorizedError
from aiogram.types import User
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.app import build_bot, build_dispatcher, build_throttle, set_commands
from bot.middlewares import UpdateTracker
from bot.outbox import OutboxSender
from bot.render import default_renderer
from bot.settings import Settings
from domain.clock import Clock, SystemClock
from domain.deadlines import load_timing
from scheduler import jobs
from storage.conversations import open_store
from storage.db import make_engine, make_sessionmaker, upgrade
from storage.org_loader import apply_org, org_is_empty, sample_path
from storage.orgfile import read_org_file

logger = logging.getLogger(__name__)

# How long a stopping bot waits for updates already being handled.
DRAIN_TIMEOUT = 15.0

# The collector's default first threshold (700 allocations) runs a collection every few updates
# of a busy bot, and the full collections that follow walk every object the process holds:
# pauses of hundreds of milliseconds under load. So what exists once the bot is set up (modules,
# routers, caches) is frozen out of the collector's sight, and the youngest generation is
# collected every GC_THRESHOLDS[0] allocations (the inbound benchmark: p99 at 200 updates/s
# from about 400 ms to under 100 ms).
GC_THRESHOLDS = (50_000, 20, 20)


def settle_memory() -> None:
    """Collect once, freeze what survives, and space out later collections."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class StartupError(Exception):
    """Start-up cannot go on; the message is one line for the operator."""


async def seed_sample_city(sessionmaker: async_sessionmaker, clock: Clock) -> str | None:
    """Load the bundled sample city into an empty database; the summary, or None if not empty."""
    async with sessionmaker() as session:
        if not await org_is_empty(session):
            return None
        org = await asyncio.to_thread(read_org_file, sample_path())
        report = await apply_org(session=session, org=org, clock=clock)
    return report.summary()


async def check_token(bot: Bot, api_base: str) -> User:
    """Ask Telegram who we are; a rejected token or an unreachable API is a StartupError."""
    try:
        return await bot.get_me()
    except TelegramUnauthorizedError as exc:
        raise StartupError(
            "Telegram rejected the bot token (401 Unauthorized): check GRIDBOT_BOT_TOKEN"
        ) from exc
    except TelegramNetworkError as exc:
        raise StartupError(f"cannot reach the Telegram Bot API at {api_base}: {exc}") from exc


async def serve(
    settings: Settings,
    *,
    clock: Clock | None = None,
    stop: asyncio.Event | None = None,
    tune_memory: bool = False,
) -> None:
    """Run the bot until SIGINT/SIGTERM (or `stop`): polling, or a webhook when configured.

    `tune_memory` (the `gridbot run` process) settles the garbage collector once set up; not
    for a bot started inside another program, whose memory is not the bot's to tune.
    """
    clock = clock or SystemClock()
    if settings.bot_token is None:
        raise StartupError("GRIDBOT_BOT_TOKEN is not set: get a token from @BotFather")
    throttle = build_throttle(settings)
    bot = build_bot(settings, throttle)
    engine = None
    conversations = None
    try:
        # Ask Telegram first: a bad token should not leave a migrated, seeded database behind.
        me = await check_token(bot, settings.telegram_api_base)
        await asyncio.to_thread(upgrade, settings.database_url)
        engine = make_engine(settings.database_url)
        sessionmaker = make_sessionmaker(engine)
        conversations = open_store(settings.database_url)
        if settings.load_sample_city:
            summary = await seed_sample_city(sessionmaker, clock)
            if summary:
                logger.warning(
                    "The database was empty: loaded the bundled sample city (%s)", summary
                )
        async with sessionmaker() as session:
            timing = await load_timing(session, settings.tz)
        logger.info("Bot @%s (id %s) starting", me.username, me.id)
        tracker = UpdateTracker()
        sender = OutboxSender(
            bot,
            sessionmaker,
            throttle,
            default_renderer(tz=settings.tz),
            clock,
            default_language=settings.default_language,
        )
        dp = build_dispatcher(
            settings=settings,
            sessionmaker=sessionmaker,
            clock=clock,
            tracker=tracker,
            on_queued=sender.wake,
            timing=timing,
            conversations=conversations,
        )
        await set_commands(bot)
        sender_stop = asyncio.Event()
        sender_task = asyncio.create_task(sender.run(sender_stop), name="outbox-sender")
        scheduler = None
        if settings.scheduler:
            scheduler = start_scheduler(
                jobs.JobContext(
                    sessionmaker,
                    clock,
                    timing,
                    settings.digest_time,
                    sender.wake,
                    timedelta(minutes=settings.call_reminder_minutes),
                ),
                settings.sweep_interval,
            )
        if tune_memory:
            settle_memory()
        try:
            if settings.webhook_url:
                await _run_webhook(bot, dp, settings, stop, tracker)
            else:
                await _run_polling(bot, dp, stop)
        finally:
            if scheduler is not None:
                scheduler.shutdown(wait=False)
                await jobs.wait_idle()
                jobs.configure(None)
            if not await tracker.drained(DRAIN_TIMEOUT):
                logger.error("stopped with %d updates still being handled", tracker.active)
            sender_stop.set()
            await sender_task
        logger.info("Stopped cleanly")
    finally:
        await bot.session.close()
        if conversations is not None:
            await conversations.close()
        if engine is not None:
            await engine.dispose()


def start_scheduler(context: jobs.JobContext, interval: float) -> AsyncIOScheduler:
    """The deadline sweep every `interval` seconds, the first one now (it catches up)."""
    jobs.configure(context)
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(
        jobs.sweep_job,
        IntervalTrigger(seconds=interval, timezone=UTC),
        id=jobs.SWEEP_JOB_ID,
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
        next_run_time=datetime.now(UTC),
    )
    scheduler.start()
    return scheduler


async def _run_polling(bot: Bot, dp: Dispatcher, stop: asyncio.Event | None) -> None:
    watcher = None
    if stop is not None:

        async def stop_when_told() -> None:
            await stop.wait()
            await dp.stop_polling()

        watcher = asyncio.create_task(stop_when_told())
    try:
        await bot.delete_webhook(drop_pending_updates=False)
        await dp.start_polling(
            bot,
            handle_signals=stop is None,
            close_bot_session=False,
            allowed_updates=dp.resolve_used_update_types(),
            tasks_concurrency_limit=200,
        )
    finally:
        if watcher is not None:
            watcher.cancel()
            with suppress(asyncio.CancelledError):
                await watcher


async def _run_webhook(
    bot: Bot,
    dp: Dispatcher,
    settings: Settings,
    stop: asyncio.Event | None,
    tracker: UpdateTracker,
) -> None:
    assert settings.webhook_url is not None
    secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
    path = urlparse(settings.webhook_url).path or "/"
    app = web.Application()
    SimpleRequestHandler(dispatcher=dp, bot=bot, secret_token=secret).register(app, path=path)
    setup_application(app, dp, bot=bot)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, settings.webhook_listen_host, settings.webhook_listen_port)
    await site.start()
    await bot.set_webhook(
        settings.webhook_url,
        secret_token=secret,
        allowed_updates=dp.resolve_used_update_types(),
    )
    logger.info(
        "Webhook mode: listening on %s:%s%s",
        settings.webhook_listen_host,
        settings.webhook_listen_port,
        path,
    )
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with suppress(NotImplementedError):
                loop.remove_signal_handler(sig)
        # Stop taking requests, let the updates already taken finish, and only then let
        # aiohttp's shutdown close the bot session.
        await site.stop()
        await tracker.drained(DRAIN_TIMEOUT)
        await runner.cleanup()
