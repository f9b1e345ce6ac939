"""`gridbot run`: migrate, seed the sample city if empty, then serve until told to stop."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramNetworkError, TelegramUnauthorizedError
from aiogram.types import User
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.app import build_bot, build_dispatcher, build_throttle, set_commands
from bot.inbound import FloodLimit, Intake, Poller, UpdateQueue, webhook_handler, webhook_secret
from bot.leadership import Duty, Start, process_name
from bot.memory import settle_memory
from bot.middlewares import feed_update
from bot.outbox import OutboxSender
from bot.settings import Settings
from bot.throttle import Throttle
from domain.clock import Clock, SystemClock
from domain.deadlines import Timing, load_timing
from domain.reference import Reference
from scheduler import jobs
from storage.conversations import ConversationStore, open_store
from storage.db import check_writable, make_engine, make_sessionmaker, setup_turn, upgrade
from storage.org_loader import apply_org, org_is_empty, sample_path
from views.outbox import default_renderer

# The scheduler and the webhook's web server are imported when a process takes them on, not
# before its first answer (as is the organisation file's reader, by a first start only).
if TYPE_CHECKING:
    from aiohttp import web
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

logger = logging.getLogger(__name__)

# How long a stopping bot waits for updates already being handled.
DRAIN_TIMEOUT = 15.0

# settle_memory's collection walks everything the process holds (about 0.15 s): it waits until
# the bot has served this long, so that the first answers after a start do not wait for it.
SETTLE_DELAY = 1.0


class StartupError(Exception):
    """Start-up cannot go on; the message is one line for the operator."""


async def seed_sample_city(sessionmaker: async_sessionmaker, clock: Clock) -> str | None:
    """Load the bundled sample city into an empty database; the summary, or None if not empty."""
    async with sessionmaker() as session:
        if not await org_is_empty(session):
            return None
        # Imported here: only a first start reads an organisation file.
        from storage.orgfile import read_org_file

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
    engine = lease_engine = None
    conversations = None
    try:
        # Ask Telegram first: a bad token should not leave a migrated, seeded database behind.
        me = await check_token(bot, settings.telegram_api_base)
        engine = make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            pool_overflow=settings.db_pool_overflow,
        )
        sessionmaker = make_sessionmaker(engine)
        # Leases on a connection of their own: renewing one must not wait for a pool that busy
        # updates hold (it did, and the send lease changed hands twice in 30 s).
        lease_engine = make_engine(settings.database_url, pool_size=1, pool_overflow=0)
        async with setup_turn(settings.database_url):
            await asyncio.to_thread(upgrade, settings.database_url)
            await asyncio.to_thread(check_writable, settings.database_url)
            if settings.load_sample_city:
                summary = await seed_sample_city(sessionmaker, clock)
                if summary:
                    logger.warning(
                        "The database was empty: loaded the bundled sample city (%s)", summary
                    )
        conversations = open_store(settings.database_url)
        async with sessionmaker() as session:
            timing = await load_timing(session, settings.tz)
        logger.info(
            "Bot @%s (id %s) starting: %s", me.username, me.id, ", ".join(active_roles(settings))
        )
        stop = stop or _stop_on_signals()
        city = City(settings, bot, throttle, sessionmaker, clock, timing, conversations)
        city.leases = make_sessionmaker(lease_engine)
        await city.run(stop, tune_memory=tune_memory)
        logger.info("Stopped cleanly")
    finally:
        await bot.session.close()
        if conversations is not None:
            await conversations.close()
        for each in (engine, lease_engine):
            if each is not None:
                await each.dispose()


def active_roles(settings: Settings) -> list[str]:
    """The process's roles; GRIDBOT_SCHEDULER=false takes scheduling away."""
    roles = set(settings.roles)
    if not settings.scheduler:
        roles.discard("schedule")
    return sorted(roles)


class City:
    """What one `gridbot run` process does, by its roles: serve updates, send, schedule.

    Sending, scheduling and long polling are duties one process at a time holds (bot.leadership);
    serving webhook requests is done by every process that serves.
    """

    def __init__(
        self,
        settings: Settings,
        bot: Bot,
        throttle: Throttle,
        sessionmaker: async_sessionmaker,
        clock: Clock,
        timing: Timing,
        conversations: ConversationStore,
    ) -> None:
        self.settings = settings
        self.bot = bot
        self.throttle = throttle
        self.sessionmaker = sessionmaker
        self.clock = clock
        self.timing = timing
        self.conversations = conversations
        # The organisation's snapshot, one per process: the handlers' and the scheduler's.
        self.reference = Reference()
        self.holder = process_name()
        # Where leases are taken and renewed (by default the updates' own pool).
        self.leases = sessionmaker
        self.sender: OutboxSender | None = None
        self.queue: UpdateQueue | None = None
        self.intake: Intake | None = None

    def wake_sender(self) -> None:
        """Rows were queued here: if this process sends, look at them now (others poll)."""
        if self.sender is not None:
            self.sender.wake()

    def _duty(self, name: str, start: Start) -> Duty:
        return Duty(
            f"{name}:{self.bot.id}",
            start,
            sessionmaker=self.leases,
            clock=self.clock,
            holder=self.holder,
        )

    async def run(self, stop: asyncio.Event, *, tune_memory: bool = False) -> None:
        roles = active_roles(self.settings)
        intake_duties: list[Duty] = []
        other_duties: list[Duty] = []
        site_runner: web.AppRunner | None = None
        if "serve" in roles:
            dp = build_dispatcher(
                settings=self.settings,
                sessionmaker=self.sessionmaker,
                clock=self.clock,
                on_queued=self.wake_sender,
                timing=self.timing,
                conversations=self.conversations,
                across_processes=bool(self.settings.webhook_url),
                reference=self.reference,
            )
            self.queue = UpdateQueue(
                lambda update: feed_update(dp, self.bot, update),
                self.settings.max_concurrent_updates,
            )
            self.intake = Intake(
                self.bot,
                self.queue,
                FloodLimit(self.settings.flood_rate, self.settings.flood_burst),
                default_language=self.settings.default_language,
            )
            await set_commands(self.bot)
            if self.settings.webhook_url:
                site_runner = await self._start_webhook(dp)
            else:
                allowed = dp.resolve_used_update_types()
                intake_duties.append(self._duty("poll", lambda: self._start_polling(allowed)))
        if "send" in roles:
            other_duties.append(self._duty("send", self._start_sender))
        if "schedule" in roles:
            other_duties.append(self._duty("schedule", self._start_scheduler))
        stops = {duty: asyncio.Event() for duty in intake_duties + other_duties}
        tasks = {
            duty: asyncio.create_task(duty.run(stops[duty]), name=f"duty-{duty.name}")
            for duty in stops
        }
        settling = None
        if tune_memory:
            settling = asyncio.get_running_loop().call_later(SETTLE_DELAY, settle_memory)
        try:
            await stop.wait()
        finally:
            if settling is not None:
                settling.cancel()
            # In order: take no more updates, finish those taken, then stop sending and
            # scheduling (what the last updates queued is sent by whoever sends next).
            for duty in intake_duties:
                stops[duty].set()
                await tasks[duty]
            if site_runner is not None:
                await _stop_taking_requests(site_runner)
            if self.queue is not None:
                if not await self.queue.drained(DRAIN_TIMEOUT):
                    logger.error(
                        "stopped with %d updates still queued or being handled (handled at "
                        "the next start when polling, or sent again by Telegram)",
                        self.queue.pending,
                    )
                await self.queue.cancel()
            if self.intake is not None:
                await self.intake.close()
            if site_runner is not None:
                await site_runner.cleanup()
            for duty in other_duties:
                stops[duty].set()
            await asyncio.gather(*(tasks[duty] for duty in other_duties))

    # -- duties ------------------------------------------------------------------------------

    async def _start_polling(self, allowed: list[str]) -> Stop:
        assert self.intake is not None
        await self.bot.delete_webhook(drop_pending_updates=False)
        poller = Poller(self.intake, self.sessionmaker, self.clock, allowed_updates=allowed)
        return _background(poller.run, "poller")

    async def _start_sender(self) -> Stop:
        sender = OutboxSender(
            self.bot,
            self.sessionmaker,
            self.throttle,
            default_renderer(tz=self.settings.tz),
            self.clock,
            default_language=self.settings.default_language,
        )
        self.sender = sender
        stop_sending = _background(sender.run, "outbox-sender")

        async def stop() -> None:
            await stop_sending()
            if self.sender is sender:
                self.sender = None

        return stop

    async def _start_scheduler(self) -> Stop:
        context = jobs.JobContext(
            self.sessionmaker,
            self.clock,
            self.timing,
            self.settings.digest_time,
            self.wake_sender,
            timedelta(minutes=self.settings.call_reminder_minutes),
            reference=self.reference,
        )
        scheduler = start_scheduler(context, self.settings.sweep_interval)

        async def stop() -> None:
            # Start nothing more and let a sweep under way finish: shutting down cancels what
            # runs, which would stop a sweep halfway through a statement.
            scheduler.pause()
            await jobs.wait_idle()
            scheduler.shutdown(wait=False)
            jobs.configure(None)

        return stop

    async def _start_webhook(self, dp: Dispatcher) -> web.AppRunner:
        from aiohttp import web

        assert self.intake is not None and self.settings.webhook_url is not None
        settings = self.settings
        if settings.webhook_secret is not None:
            secret = settings.webhook_secret.get_secret_value()
        else:
            secret = webhook_secret(self.bot.token)
            logger.info(
                "GRIDBOT_WEBHOOK_SECRET is not set: using a secret derived from the bot token "
                "(the same in every process of this bot)"
            )
        path = urlparse(settings.webhook_url).path or "/"
        app = web.Application()
        app.router.add_post(path, webhook_handler(self.intake, secret))
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, settings.webhook_listen_host, settings.webhook_listen_port)
        await site.start()
        await self.bot.set_webhook(
            settings.webhook_url,
            secret_token=secret,
            allowed_updates=dp.resolve_used_update_types(),
            max_connections=100,
        )
        logger.info(
            "Webhook mode: listening on %s:%s%s",
            settings.webhook_listen_host,
            settings.webhook_listen_port,
            path,
        )
        return runner


Stop = Callable[[], Awaitable[None]]


def _background(run: Callable[[asyncio.Event], Awaitable[None]], name: str) -> Stop:
    """Start `run(stop_event)` as a task; what sets the event and waits for the task."""
    event = asyncio.Event()
    task = asyncio.create_task(run(event), name=name)

    async def stop() -> None:
        event.set()
        await task

    return stop


async def _stop_taking_requests(runner: web.AppRunner) -> None:
    """Close the listening sockets; requests already taken go on (answered once handled)."""
    for site in list(runner.sites):
        await site.stop()


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop


def start_scheduler(context: jobs.JobContext, interval: float) -> AsyncIOScheduler:
    """The deadline sweep every `interval` seconds, the first one now (it catches up)."""
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.interval import IntervalTrigger

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
