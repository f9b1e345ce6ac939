"""Updates in: each handled once, none lost, and nobody's burst in anybody else's way.

- **Per-person limit.** A person may send `flood_rate` updates a second with a burst of
  `flood_burst`; the excess is dropped, and the person is told once to slow down.
- **Fair handling.** Updates wait in one queue per chat; a chat has at most one update being
  handled, so however many a chat has queued, it holds one of the process's
  `max_concurrent_updates` slots at most, and other chats take turns with it.
- **Long polling, at least once.** The poller asks Telegram for updates as raw JSON, so one
  update the models cannot read is logged and skipped instead of failing the whole batch.
  It records each update in the database (`inbound_update`) before confirming it to Telegram,
  then handles it; an update recorded but never handled (the process died) is handled by the
  next poller. Handling claims the update in its own transaction (ContextMiddleware), so a
  redelivered update_id is recognised and not handled twice.
- **Webhook.** A request is answered after its update was handled (Telegram sends it again
  otherwise); a body that is not a JSON update gets 400, a request without the secret 401.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from aiogram import Bot
from aiogram.dispatcher.middlewares.user_context import UserContextMiddleware
from aiogram.exceptions import TelegramAPIError
from aiogram.methods.base import TelegramMethod
from aiogram.types import Update
from aiohttp import web
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import async_sessionmaker

from domain.clock import Clock
from domain.people import guess_language
from storage.faults import is_disconnect
from storage.inbox import record_received, unhandled
from views.i18n import text

logger = logging.getLogger(__name__)

# How often one person is told to slow down while they keep flooding.
NOTICE_EVERY_S = 30.0
# An update received this long ago and still unhandled was left by a process that died.
ABANDONED_AFTER = timedelta(seconds=30)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class GetRawUpdates(TelegramMethod[list[dict[str, Any]]]):
    """getUpdates, answered as plain JSON objects: each update is read on its own."""

    __returning__ = list[dict[str, Any]]
    __api_method__ = "getUpdates"

    offset: int | None = None
    limit: int | None = None
    timeout: int | None = None
    allowed_updates: list[str] | None = None


def webhook_secret(token: str) -> str:
    """The secret Telegram must send with every webhook request when none is configured.

    Derived from the bot token, so every process of the bot agrees on it without being told,
    and nobody without the token can guess it.
    """
    return hmac.new(token.encode(), b"gridbot webhook", "sha256").hexdigest()


# -- the per-person limit ----------------------------------------------------------------------


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float
    noticed_at: float = -math.inf


class FloodLimit:
    """A token bucket per person: `rate` updates a second, `burst` at once."""

    def __init__(
        self,
        rate: float,
        burst: int,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        notice_every: float = NOTICE_EVERY_S,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._monotonic = monotonic
        self._notice_every = notice_every
        self._buckets: dict[Hashable, _Bucket] = {}
        self._prune_above = 4096
        self.dropped = 0

    def check(self, person: Hashable) -> tuple[bool, bool]:
        """(accepted, tell the person to slow down) for one update from `person`."""
        now = self._monotonic()
        bucket = self._buckets.get(person)
        if bucket is None:
            bucket = self._buckets[person] = _Bucket(float(self.burst), now)
            if len(self._buckets) > self._prune_above:
                self._prune(now)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True, False
        self.dropped += 1
        if now - bucket.noticed_at >= self._notice_every:
            bucket.noticed_at = now
            return False, True
        return False, False

    def _prune(self, now: float) -> None:
        # A bucket that has refilled is the same as no bucket at all.
        full = self.burst / self.rate
        self._buckets = {
            person: bucket
            for person, bucket in self._buckets.items()
            if now - bucket.at < max(full, self._notice_every)
        }
        self._prune_above = max(4096, 2 * len(self._buckets))


# -- fair handling ------------------------------------------------------------------------------


def chat_key(update: Update) -> Hashable:
    """Updates with the same key are handled one at a time, in order: the chat, else the person."""
    context = UserContextMiddleware.resolve_event_context(update)
    if context.chat is not None:
        return ("chat", context.chat.id)
    if context.user is not None:
        return ("user", context.user.id)
    return ("update", update.update_id)


class UpdateQueue:
    """Hands updates to `handle`, one at a time per chat, at most `limit` at once overall."""

    def __init__(self, handle: Callable[[Update], Awaitable[Any]], limit: int) -> None:
        self._handle = handle
        self._slots = asyncio.Semaphore(limit)
        self._queues: dict[Hashable, deque[tuple[Update, asyncio.Future[bool]]]] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._ids: dict[int, asyncio.Future[bool]] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def pending(self) -> int:
        """Updates queued or being handled."""
        return len(self._ids)

    def holds(self, update_id: int) -> asyncio.Future[bool] | None:
        """The outcome of an update queued or being handled here, if it is."""
        return self._ids.get(update_id)

    def submit(self, update: Update) -> asyncio.Future[bool]:
        """Queue an update; the future says whether it was handled without an error."""
        known = self._ids.get(update.update_id)
        if known is not None:
            return known
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._ids[update.update_id] = future
        self._idle.clear()
        key = chat_key(update)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
            worker = asyncio.create_task(self._work(key, queue), name=f"updates-{key}")
            self._workers.add(worker)
            worker.add_done_callback(self._workers.discard)
        queue.append((update, future))
        return future

    async def _work(self, key: Hashable, queue: deque) -> None:
        try:
            while queue:
                update, future = queue[0]
                # A slot per update, not per chat: a chat with many queued updates takes its
                # turn with every other chat waiting for a slot.
                async with self._slots:
                    try:
                        await self._handle(update)
                    except Exception:
                        logger.exception("update %s failed", update.update_id)
                        outcome = False
                    else:
                        outcome = True
                queue.popleft()
                self._ids.pop(update.update_id, None)
                if not future.done():
                    future.set_result(outcome)
        finally:
            self._queues.pop(key, None)
            for update, future in queue:  # cancelled: these were never handled
                self._ids.pop(update.update_id, None)
                if not future.done():
                    future.cancel()
            if not self._ids:
                self._idle.set()

    async def drained(self, timeout: float) -> bool:
        """Wait until nothing is queued or being handled; False if `timeout` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def cancel(self) -> None:
        """Stop handling: updates not yet handled stay unhandled (a poller's are recorded)."""
        for worker in list(self._workers):
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)


# -- intake: limit, read, hand over -------------------------------------------------------------


class Intake:
    """What every way in (polling, webhook, recovery) shares: parse, limit, queue."""

    def __init__(
        self,
        bot: Bot,
        queue: UpdateQueue,
        flood: FloodLimit,
        *,
        default_language: str,
    ) -> None:
        self.bot = bot
        self.queue = queue
        self.flood = flood
        self._default_language = default_language
        self._notices: set[asyncio.Task[Any]] = set()
        self.malformed = 0

    def parse(self, raw: Any) -> Update | None:
        """The update, or None (logged) when it is not one the bot can read."""
        try:
            return Update.model_validate(raw, context={"bot": self.bot})
        except ValidationError as exc:
            self.malformed += 1
            update_id = raw.get("update_id") if isinstance(raw, dict) else None
            logger.warning(
                "update %s skipped: not a valid update (%s)",
                update_id,
                "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:3]),
            )
            return None

    def admit(self, update: Update) -> bool:
        """Whether the update's sender is within their limit (if not, maybe tell them)."""
        context = UserContextMiddleware.resolve_event_context(update)
        if context.user is None or context.user.is_bot:
            return True
        accepted, notify = self.flood.check(context.user.id)
        if not accepted:
            logger.info("update %s dropped: %s is flooding", update.update_id, context.user.id)
            if notify and context.chat is not None:
                language = guess_language(context.user.language_code, self._default_language)
                task = asyncio.create_task(self._slow_down(context.chat.id, language))
                self._notices.add(task)
                task.add_done_callback(self._notices.discard)
        return accepted

    async def _slow_down(self, chat_id: int, language: str) -> None:
        try:
            await self.bot.send_message(chat_id, text(language, "flood.slow_down"))
        except TelegramAPIError as exc:
            logger.info("could not ask %s to slow down: %s", chat_id, exc)

    async def close(self) -> None:
        for task in list(self._notices):
            task.cancel()
        await asyncio.gather(*self._notices, return_exceptions=True)


# -- long polling ---------------------------------------------------------------------------------


class Poller:
    """Long polling that records each update before confirming it (at least once)."""

    def __init__(
        self,
        intake: Intake,
        sessionmaker: async_sessionmaker,
        clock: Clock,
        *,
        allowed_updates: list[str],
        timeout: int = 10,
        limit: int = 100,
        backoff_max: float = 30.0,
    ) -> None:
        self._intake = intake
        self._bot = intake.bot
        self._sessionmaker = sessionmaker
        self._clock = clock
        self._allowed = allowed_updates
        self._timeout = timeout
        self._limit = limit
        self._backoff_max = backoff_max
        self._offset: int | None = None
        self.received = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set; what was recorded but not handled is handled first."""
        await self.recover(abandoned_after=timedelta(0))
        failures = 0
        last_recovery = time.monotonic()
        while not stop.is_set():
            poll = asyncio.ensure_future(self._poll())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({poll, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not poll.done():
                # Stopping: an unanswered poll confirms nothing, so nothing is lost.
                poll.cancel()
                await asyncio.gather(poll, return_exceptions=True)
                break
            stopped.cancel()
            try:
                poll.result()
            except Exception as exc:
                # Telegram, the network or the database: try again soon, then less often.
                failures += 1
                wait = min(self._backoff_max, 0.25 * 2 ** min(failures - 1, 8))
                if isinstance(exc, TelegramAPIError | OSError) or is_disconnect(exc):
                    logger.warning("polling failed (%s); again in %.2f s", exc, wait)
                else:
                    logger.exception("polling failed; again in %.2f s", wait)
                await _sleep_or_stop(stop, wait)
                continue
            failures = 0
            if time.monotonic() - last_recovery > ABANDONED_AFTER.total_seconds():
                last_recovery = time.monotonic()
                await self.recover(abandoned_after=ABANDONED_AFTER)

    async def _poll(self) -> None:
        raw_updates = await self._bot(
            GetRawUpdates(
                offset=self._offset,
                limit=self._limit,
                timeout=self._timeout,
                allowed_updates=self._allowed,
            ),
            request_timeout=self._timeout + 10,
        )
        if not raw_updates:
            return
        kept: list[tuple[int, str]] = []
        parsed: dict[int, Update] = {}
        offset = self._offset or 0
        for raw in raw_updates:
            update_id = raw.get("update_id") if isinstance(raw, dict) else None
            if not isinstance(update_id, int):
                logger.warning("skipped an update without an update_id: %.200r", raw)
                continue
            offset = max(offset, update_id + 1)
            update = self._intake.parse(raw)
            if update is None or not self._intake.admit(update):
                continue
            kept.append((update_id, orjson.dumps(raw).decode()))
            parsed[update_id] = update
        if kept:
            # Durable before the next getUpdates confirms these to Telegram; if this fails,
            # the offset stays and Telegram hands the same updates over again.
            async with self._sessionmaker() as session:
                new = await record_received(session, self._bot.id, kept, self._clock.now())
                await session.commit()
            for update_id, _ in kept:
                if update_id in new:
                    self._intake.queue.submit(parsed[update_id])
        self._offset = offset
        self.received += len(kept)

    async def recover(self, *, abandoned_after: timedelta) -> int:
        """Hand over updates that were recorded but never handled (a process died)."""
        now = self._clock.now()
        try:
            async with self._sessionmaker() as session:
                payloads = await unhandled(
                    session, self._bot.id, received_before=now - abandoned_after + _EPSILON
                )
                await session.commit()
        except Exception:
            logger.exception("could not read the updates left unhandled")
            return 0
        handed = 0
        for payload in payloads:
            raw = orjson.loads(payload)
            if self._intake.queue.holds(raw.get("update_id", -1)) is not None:
                continue
            update = self._intake.parse(raw)
            if update is not None:
                self._intake.queue.submit(update)
                handed += 1
        if handed:
            logger.warning("handling %d updates a stopped process left unhandled", handed)
        return handed


_EPSILON = timedelta(microseconds=1)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


# -- webhook ------------------------------------------------------------------------------------


def webhook_handler(
    intake: Intake, secret: str
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The aiohttp handler for Telegram's webhook requests."""

    async def handle(request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            logger.warning("webhook request without the right secret from %s", request.remote)
            return web.Response(status=401, text="unauthorized")
        try:
            raw = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.Response(status=400, text="body is not JSON")
        if not isinstance(raw, dict) or not isinstance(raw.get("update_id"), int):
            return web.Response(status=400, text="body is not an update")
        update = intake.parse(raw)
        if update is None or not intake.admit(update):
            return web.Response(status=200)  # skipped: sending it again would not help
        outcome = intake.queue.submit(update)
        # Answered once handled, so that Telegram sends it again if this process dies first;
        # shielded, so that a client hanging up does not cut the handling short.
        try:
            await asyncio.shield(outcome)
        except asyncio.CancelledError:
            if outcome.cancelled():  # the process is stopping before handling it
                return web.Response(status=503, text="stopping")
            raise
        return web.Response(status=200)

    return handle
