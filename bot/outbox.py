"""The one outbox sender: pending rows -> Telegram, by lane priority, within the rate limits.

Each row takes a slot of the outbox's global budget (bulk rows the paid budget's, with
allow_paid_broadcast, when paid broadcasting is on), then a token of its chat's bucket,
which it shares with the replies to that chat (bot/throttle.py). A 429 blocks the row's
chat; a row whose wait is within the throttle's retry_after_cap stays in memory, a longer
one goes back to its table (pending, not_before = now + retry_after, attempts unchanged).

Delivery is at least once: a row becomes `sent` only after Telegram accepted it, so a row
whose send was cut short by a crash is sent again on restart. Within one process a row is
never sent twice: rows on their way or with an unsaved outcome are skipped by id. Across
processes, one sender runs per bot: the runtime starts it only in the process holding the
"send" lease (bot/leadership.py), so rows need no claim of their own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.types import InputMediaPhoto

from bot.throttle import Throttle, lane_priority, slot_held
from storage.enums import Lane, OutboxStatus
from storage.outbox import PendingRow, Result, fetch_pending, record_results
from views.outbox import Rendered, Renderer

if TYPE_CHECKING:
    from aiogram import Bot
    from sqlalchemy.ext.asyncio import async_sessionmaker
    from sqlmodel.ext.asyncio.session import AsyncSession

    from domain.clock import Clock

logger = logging.getLogger(__name__)

# Telegram will never take these as they are: fail the row at once.
_PERMANENT = (
    TelegramForbiddenError,
    TelegramBadRequest,
    TelegramNotFound,
    TelegramEntityTooLarge,
    TelegramMigrateToChat,
)
# The bot itself is unusable (bad token, another instance): wait, but don't burn attempts.
_BOT_PROBLEM = (TelegramUnauthorizedError, TelegramConflictError)
_ERROR_LIMIT = 500


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
    return text[:_ERROR_LIMIT]


class OutboxSender:
    """Sends pending outbox rows through the bot, within the throttle's outbox budget and
    its per-chat buckets (shared with the replies to each chat).

    `retry_after_cap` (default: the throttle's) is the longest 429 wait a row spends in
    memory; paid broadcasting is on when the throttle has a paid budget.
    """

    def __init__(
        self,
        bot: Bot,
        sessionmaker: async_sessionmaker[AsyncSession],
        throttle: Throttle,
        renderer: Renderer,
        clock: Clock,
        *,
        batch: int = 200,
        max_in_flight: int | None = None,
        default_language: str = "zh-hans",
        max_attempts: int = 8,
        backoff_base: float = 2.0,
        backoff_max: float = 600.0,
        poll_interval: float = 0.5,
        refresh_interval: float = 0.5,
        # Outcomes are saved within 20 ms of Telegram's answer: a sender killed outright can
        # only send again the rows of its last 20 ms (at 0.1 s, the cluster benchmark's kill
        # sent 3 rows twice at 29/s); at 29/s that is one commit per send or two.
        flush_interval: float = 0.02,
        flush_rows: int = 100,
        send_timeout: int = 30,
        stop_timeout: float = 10.0,
        retry_after_cap: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bot = bot
        self._sessionmaker = sessionmaker
        self._throttle = throttle
        self._renderer = renderer
        self._clock = clock
        self._batch = batch
        # Enough sends queued at the budgets to use every slot while others are on the wire.
        rate = throttle.rate_per_s + throttle.paid_rate
        self._max_in_flight = max_in_flight or max(8, math.ceil(rate * 0.2))
        self._paid = throttle.paid is not None
        self._retry_after_cap = (
            throttle.retry_after_cap if retry_after_cap is None else retry_after_cap
        )
        self._default_language = default_language
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._poll_interval = poll_interval
        self._refresh_interval = refresh_interval
        self._flush_interval = flush_interval
        self._flush_rows = flush_rows
        self._send_timeout = send_timeout
        self._stop_timeout = stop_timeout
        self._monotonic = monotonic

        self._buffer: list[PendingRow] = []  # fetched, not started; by lane, id
        self._tasks: dict[asyncio.Task[None], PendingRow] = {}
        self._chats_in_flight: set[int] = set()
        self._granted: set[int] = set()  # row ids holding a slot and a token (on the wire)
        self._results: list[Result] = []  # outcomes not yet written
        self._unsaved: set[int] = set()  # ids in _results or being written
        self._fetch_at = 0.0
        self._flush_at = math.inf
        self._hold_until = 0.0  # after transient errors: start nothing before this
        self._consecutive_errors = 0
        self._poked = False
        self._waiter: asyncio.Future[None] | None = None
        self.counts: dict[str, int] = {
            "sent": 0,
            "failed": 0,
            "retried": 0,
            "rate_limited": 0,
            "deferred": 0,
            "paid": 0,
            "fetches": 0,
            "flushes": 0,
        }

    # -- control -------------------------------------------------------------------------

    def wake(self) -> None:
        """New rows were committed: look at the table now rather than at the next poll."""
        self._fetch_at = 0.0
        self._poke()

    def _poke(self) -> None:
        self._poked = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def run(self, stop_event: asyncio.Event) -> None:
        """Send until stop_event is set; then finish what is on the wire and save outcomes."""
        watcher = asyncio.create_task(self._watch(stop_event))
        graceful = False
        try:
            while not stop_event.is_set():
                self._poked = False
                await self._step()
                if not self._poked and not stop_event.is_set():
                    await self._sleep(self._next_wake())
            graceful = True
        finally:
            watcher.cancel()
            await self._shutdown(graceful)

    async def _watch(self, stop_event: asyncio.Event) -> None:
        await stop_event.wait()
        self._poke()

    async def _sleep(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        handle = loop.call_later(max(timeout, 0.0), _resolve, waiter)
        try:
            await waiter
        finally:
            handle.cancel()
            self._waiter = None

    # -- the loop ------------------------------------------------------------------------

    async def _step(self) -> None:
        now = self._monotonic()
        if self._results and (len(self._results) >= self._flush_rows or now >= self._flush_at):
            await self._flush()
            now = self._monotonic()
        if self._free() > 0 and now >= self._hold_until and now >= self._fetch_at:
            await self._fetch()
            now = self._monotonic()
        self._dispatch(now)

    def _free(self) -> int:
        return self._max_in_flight - len(self._tasks)

    def _next_wake(self) -> float:
        now = self._monotonic()
        deadlines = [now + self._poll_interval]
        if self._results:
            deadlines.append(self._flush_at)
        if self._free() > 0:
            deadlines.append(max(self._fetch_at, self._hold_until))
            if self._buffer:
                # A buffered row waits for its chat's token or the end of its chat's block.
                ready = min(
                    (
                        self._throttle.chat_ready_at(row.chat_id)
                        for row in self._buffer
                        if row.chat_id not in self._chats_in_flight
                    ),
                    default=math.inf,
                )
                deadlines.append(max(ready, self._hold_until, now + 0.001))
        return min(deadlines) - now

    async def _fetch(self) -> None:
        skip_chats = self._chats_in_flight | {
            c for c in self._throttle.busy_chats() if isinstance(c, int)
        }
        skip_ids = self._unsaved
        try:
            async with self._sessionmaker() as session:
                rows = await fetch_pending(
                    session,
                    now=self._clock.now(),
                    limit=self._batch + len(skip_ids),
                    exclude_chats=skip_chats,
                )
        except Exception:
            logger.exception(
                "outbox: cannot read pending rows; retrying in %s s", self._poll_interval
            )
            self._fetch_at = self._monotonic() + self._poll_interval
            return
        self.counts["fetches"] += 1
        buffer: list[PendingRow] = []
        seen: set[int] = set()
        for row in rows:
            # One row per chat per batch: the next one must wait for the chat's spacing anyway.
            if row.id in skip_ids or row.chat_id in seen:
                continue
            seen.add(row.chat_id)
            buffer.append(row)
            if len(buffer) >= self._batch:
                break
        self._buffer = buffer
        now = self._monotonic()
        if buffer:
            # Look again soon, so that a newer row of a better lane overtakes these.
            self._fetch_at = now + self._refresh_interval
        else:
            ready = self._throttle.next_chat_ready()
            wait = self._poll_interval if ready is None else min(self._poll_interval, ready - now)
            # Rows may wait only for busy or blocked chats; look again at most 20 times/s.
            self._fetch_at = now + max(wait, 0.05)

    def _dispatch(self, now: float) -> None:
        if now < self._hold_until or not self._buffer:
            return
        free = self._free()
        keep: list[PendingRow] = []
        for row in self._buffer:
            if (
                free > 0
                and row.chat_id not in self._chats_in_flight
                and self._throttle.chat_ready_at(row.chat_id) <= now
            ):
                self._start(row)
                free -= 1
            else:
                keep.append(row)
        self._buffer = keep
        if not keep:
            self._fetch_at = 0.0  # drained: there may be more

    def _start(self, row: PendingRow) -> None:
        self._chats_in_flight.add(row.chat_id)
        task = asyncio.create_task(self._send(row), name=f"outbox-{row.id}")
        self._tasks[task] = row
        task.add_done_callback(self._sent_done)

    def _sent_done(self, task: asyncio.Task[None]) -> None:
        row = self._tasks.pop(task)
        self._chats_in_flight.discard(row.chat_id)
        self._granted.discard(row.id)
        # The last fetch skipped this chat while its send was in flight: look again as soon
        # as the chat may be written to, not at the next poll, but not more often than 20
        # times a second (looking again after every send cost a third of the sender's CPU in a
        # paid broadcast at 250/s, 19,218 fetches for 20,000 rows).
        self._fetch_at = min(
            self._fetch_at,
            max(self._throttle.chat_ready_at(row.chat_id), self._monotonic() + 0.05),
        )
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.error("outbox: send task for row %s crashed", row.id, exc_info=exc)
        self._poke()

    # -- one send ------------------------------------------------------------------------

    async def _send(self, row: PendingRow) -> None:
        language = row.language or self._default_language
        try:
            rendered = self._renderer.render(row.kind, row.data, language)
        except Exception as exc:
            logger.warning("outbox: row %s (%s) cannot be rendered: %s", row.id, row.kind, exc)
            self._fail(row, f"render: {_describe(exc)}", attempted=False)
            return
        paid = self._paid and row.lane == Lane.BULK
        try:
            async with self._throttle.outbox_slot(lane_priority(row.lane), row.chat_id, paid=paid):
                self._granted.add(row.id)
                with slot_held():
                    message_id = await self._deliver(row.chat_id, rendered, paid=paid)
        except TelegramRetryAfter as exc:
            self._rate_limited(row, exc, paid=paid)
        except _PERMANENT as exc:
            logger.info("outbox: row %s to %s refused: %s", row.id, row.chat_id, exc.message)
            self._fail(row, _describe(exc))
        except _BOT_PROBLEM as exc:
            # Every row would fail alike: hold the sender, keep the row and its attempts as is.
            hold = min(60.0, self._backoff_max)
            logger.error("outbox: the bot can't send (%s); holding for %s s", exc.message, hold)
            self._hold_until = max(self._hold_until, self._monotonic() + hold)
            self._requeue(row)
        except Exception as exc:  # network, 5xx, anything unexpected: try again later
            if not isinstance(exc, TelegramAPIError):
                logger.exception("outbox: unexpected error sending row %s", row.id)
            self._retry_later(row, exc)
        else:
            self._consecutive_errors = 0
            self.counts["paid"] += paid
            self._save(
                row,
                OutboxStatus.SENT,
                attempts=row.attempts + 1,
                sent_at=self._clock.now(),
                telegram_message_id=message_id,
            )
            self.counts["sent"] += 1

    def _rate_limited(self, row: PendingRow, exc: TelegramRetryAfter, *, paid: bool) -> None:
        """A 429 is not the row's fault: it goes again once its chat (or the budget) may."""
        self.counts["rate_limited"] += 1
        is_global = self._throttle.outbox_retry_after(row.chat_id, exc.retry_after, paid=paid)
        scope = "the outbox" if is_global else f"chat {row.chat_id}"
        if exc.retry_after <= self._retry_after_cap:
            logger.info(
                "outbox: flood control holds %s for %s s; row %s waits in memory",
                scope,
                exc.retry_after,
                row.id,
            )
            self._requeue(row)
            return
        logger.warning(
            "outbox: flood control holds %s for %s s; row %s goes back to its table until then",
            scope,
            exc.retry_after,
            row.id,
        )
        self._save(
            row,
            OutboxStatus.PENDING,
            attempts=row.attempts,
            not_before=self._clock.now() + timedelta(seconds=exc.retry_after),
            error=_describe(exc),
        )
        self.counts["deferred"] += 1

    async def _deliver(self, chat_id: int, rendered: Rendered, *, paid: bool = False) -> int:
        """The one Bot API call for a rendered row; the id of the (first) message it made."""
        common: dict[str, Any] = {"chat_id": chat_id, "request_timeout": self._send_timeout}
        if paid:
            common["allow_paid_broadcast"] = True
        if rendered.reply_markup is not None:
            common["reply_markup"] = rendered.reply_markup
        formatting: dict[str, Any] = {}
        if rendered.parse_mode is not None:
            formatting["parse_mode"] = rendered.parse_mode
        method = rendered.method
        if method == "sendMessage":
            message = await self._bot.send_message(text=rendered.text, **common, **formatting)
        elif method == "sendPhoto":
            message = await self._bot.send_photo(
                photo=rendered.photos[0], caption=rendered.text or None, **common, **formatting
            )
        elif method == "sendMediaGroup":
            common.pop("reply_markup", None)  # refused by the renderer; Telegram takes none
            media = [
                InputMediaPhoto(media=photo, caption=rendered.text or None, **formatting)
                if index == 0
                else InputMediaPhoto(media=photo)
                for index, photo in enumerate(rendered.photos)
            ]
            messages = await self._bot.send_media_group(media=media, **common)
            return messages[0].message_id
        else:
            place = rendered.place
            assert place is not None
            if method == "sendVenue":
                message = await self._bot.send_venue(
                    latitude=place.latitude,
                    longitude=place.longitude,
                    title=place.title or "",
                    address=place.address or "",
                    **common,
                )
            else:
                message = await self._bot.send_location(
                    latitude=place.latitude, longitude=place.longitude, **common
                )
        return message.message_id

    def _requeue(self, row: PendingRow) -> None:
        key = (row.lane, row.id)
        index = next(
            (i for i, other in enumerate(self._buffer) if (other.lane, other.id) > key),
            len(self._buffer),
        )
        self._buffer.insert(index, row)

    def _retry_later(self, row: PendingRow, exc: BaseException) -> None:
        attempts = row.attempts + 1
        if attempts >= self._max_attempts:
            logger.warning("outbox: row %s failed after %s attempts: %s", row.id, attempts, exc)
            self._fail(row, _describe(exc))
            return
        delay = min(self._backoff_max, self._backoff_base * 2 ** (attempts - 1))
        logger.info(
            "outbox: row %s attempt %s failed (%s); again in %s s", row.id, attempts, exc, delay
        )
        self._save(
            row,
            OutboxStatus.PENDING,
            attempts=attempts,
            not_before=self._clock.now() + timedelta(seconds=delay),
            error=_describe(exc),
        )
        self.counts["retried"] += 1
        # Telegram or the network is struggling: slow the whole sender down, not just the row.
        self._consecutive_errors += 1
        hold = min(30.0, self._backoff_base * 2 ** (self._consecutive_errors - 1))
        self._hold_until = max(self._hold_until, self._monotonic() + hold)

    def _fail(self, row: PendingRow, error: str, *, attempted: bool = True) -> None:
        self._save(
            row,
            OutboxStatus.FAILED,
            attempts=row.attempts + (1 if attempted else 0),
            error=error,
        )
        self.counts["failed"] += 1

    def _save(
        self,
        row: PendingRow,
        status: OutboxStatus,
        *,
        attempts: int,
        not_before: Any = None,
        sent_at: Any = None,
        telegram_message_id: int | None = None,
        error: str | None = None,
    ) -> None:
        self._results.append(
            Result(
                id=row.id,
                status=status,
                attempts=attempts,
                not_before=not_before or self._clock.now(),
                sent_at=sent_at,
                telegram_message_id=telegram_message_id,
                error=error,
            )
        )
        self._unsaved.add(row.id)
        if len(self._results) == 1:
            self._flush_at = self._monotonic() + self._flush_interval
        if len(self._results) >= self._flush_rows:
            self._poke()

    async def _flush(self) -> bool:
        results, self._results = self._results, []
        self._flush_at = math.inf
        try:
            async with self._sessionmaker() as session:
                await record_results(session, results)
                await session.commit()
        except Exception:
            logger.exception("outbox: cannot save %s outcomes; retrying", len(results))
            self._results = results + self._results
            self._flush_at = self._monotonic() + max(self._flush_interval, 1.0)
            return False
        self.counts["flushes"] += 1
        for result in results:
            self._unsaved.discard(result.id)
        return True

    # -- stopping ------------------------------------------------------------------------

    async def _shutdown(self, graceful: bool) -> None:
        self._buffer = []
        # Sends still waiting for a slot or a token haven't reached Telegram: drop them (they
        # stay pending).
        for task, row in list(self._tasks.items()):
            if not graceful or row.id not in self._granted:
                task.cancel()
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=self._stop_timeout if graceful else 1.0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # Rows Telegram took but not yet marked sent would be sent again by the next sender:
        # try hard (the database may be busy or briefly away), spaced out, within the timeout.
        deadline = self._monotonic() + self._stop_timeout
        wait = 0.1
        while self._results and self._monotonic() < deadline:
            flush = asyncio.ensure_future(self._flush())
            done, _ = await asyncio.wait({flush}, timeout=max(0.0, deadline - self._monotonic()))
            if not done:
                flush.cancel()
                break
            if self._results:
                await asyncio.sleep(min(wait, max(0.0, deadline - self._monotonic())))
                wait *= 2
        if self._results:
            sent = sum(1 for r in self._results if r.status == OutboxStatus.SENT)
            logger.error(
                "outbox: could not save %d outcomes on stop; %d rows Telegram took will be "
                "sent again by the next sender",
                len(self._results),
                sent,
            )
        logger.info("outbox sender stopped: %s", self.counts)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
