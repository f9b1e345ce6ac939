"""Shared rate limiting for every outgoing send: one global slot scheduler with priorities,
spacing per chat, and a pause when Telegram answers 429.

Priority 0 is a reply to the person chatting; outbox lanes map to 1, 2, 3 (`lane_priority`).
Direct sends go through `ThrottleMiddleware`; the outbox sender takes its slot itself with
`Throttle.slot()` and marks the call with `slot_held()` so the middleware lets it pass.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiogram.client.session.middlewares.base import BaseRequestMiddleware
from aiogram.exceptions import TelegramRetryAfter

if TYPE_CHECKING:
    from aiogram import Bot
    from aiogram.client.session.middlewares.base import NextRequestMiddlewareType
    from aiogram.methods import Response, TelegramMethod
    from aiogram.methods.base import TelegramType

logger = logging.getLogger(__name__)

PRIORITY_REPLY = 0

_NOT_COUNTED = frozenset({"sendchataction", "sendmessagedraft", "sendrichmessagedraft"})
_SEND_EXTRA = frozenset({"copymessage", "copymessages", "forwardmessage", "forwardmessages"})

_priority: ContextVar[int] = ContextVar("gridbot_send_priority", default=PRIORITY_REPLY)
_slot_held: ContextVar[bool] = ContextVar("gridbot_send_slot_held", default=False)


def lane_priority(lane: int) -> int:
    """The throttle priority of an outbox lane: replies (0) always come first."""
    return int(lane) + 1


def is_send_method(api_method: str) -> bool:
    """Whether a Bot API method puts a message into a chat (and so counts against limits)."""
    name = api_method.lower()
    if name in _NOT_COUNTED:
        return False
    return name.startswith("send") or name in _SEND_EXTRA


@contextmanager
def send_priority(priority: int) -> Iterator[None]:
    """Sends made inside this block go through the middleware at `priority` instead of 0."""
    token = _priority.set(priority)
    try:
        yield
    finally:
        _priority.reset(token)


@contextmanager
def slot_held() -> Iterator[None]:
    """The caller already holds a throttle slot for the sends made inside this block."""
    token = _slot_held.set(True)
    try:
        yield
    finally:
        _slot_held.reset(token)


@dataclass(slots=True)
class _Chat:
    busy: bool = False
    ready_at: float = -math.inf
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)


class Throttle:
    """Releases at most `rate_per_s` sends per second, best priority first, spaced per chat.

    Releases follow a fixed grid of 1/rate seconds. A release that comes late because the
    event loop woke late keeps the grid, but only up to `catch_up` of an interval: later
    than that, the grid restarts from now. So any n+1 consecutive releases span at least
    n/rate - catch_up/rate seconds, and a stalled loop never causes a burst.
    """

    def __init__(
        self,
        rate_per_s: float,
        chat_interval_s: float,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        catch_up: float = 0.5,
    ) -> None:
        if rate_per_s <= 0 or chat_interval_s < 0:
            raise ValueError("rate_per_s must be > 0 and chat_interval_s >= 0")
        if not 0 <= catch_up < 1:
            raise ValueError("catch_up must be in [0, 1)")
        self.rate_per_s = rate_per_s
        self.interval = 1.0 / rate_per_s
        self.chat_interval_s = chat_interval_s
        self._monotonic = monotonic
        self._catch_up = catch_up * self.interval
        self._next_slot = -math.inf
        self._paused_until = -math.inf
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._chats: dict[Hashable, _Chat] = {}
        self._prune_above = 1024
        self.released = 0

    # -- global slots --------------------------------------------------------------------

    @property
    def paused_until(self) -> float:
        return self._paused_until

    @property
    def next_slot(self) -> float:
        """Monotonic time of the earliest possible next release."""
        return self._next_slot

    def waiting(self) -> int:
        """How many acquisitions are queued (cancelled ones may still be counted)."""
        return sum(1 for _, _, fut in self._heap if not fut.done())

    def pause_until(self, moment: float) -> None:
        """Release nothing before `moment` (monotonic): Telegram said retry_after."""
        if moment > self._paused_until:
            self._paused_until = moment
        if moment > self._next_slot:
            self._next_slot = moment

    def pause_for(self, seconds: float) -> None:
        self.pause_until(self._monotonic() + seconds)

    async def acquire(self, priority: int = PRIORITY_REPLY) -> None:
        """Wait for a global send slot; a lower priority number is served first."""
        now = self._monotonic()
        if not self._heap and now >= self._next_slot:
            # Idle and due: release at once; the grid restarts here.
            self._next_slot = now + self.interval
            self.released += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._heap, (priority, next(self._seq), future))
        self._arm(now)
        await future

    def _arm(self, now: float) -> None:
        if self._timer is None and self._heap:
            delay = max(0.0, self._next_slot - now)
            self._timer = asyncio.get_running_loop().call_later(delay, self._release)

    def _release(self) -> None:
        self._timer = None
        heap = self._heap
        while heap and heap[0][2].done():  # cancelled waiters
            heapq.heappop(heap)
        if not heap:
            return
        now = self._monotonic()
        if now >= self._next_slot:
            _, _, future = heapq.heappop(heap)
            future.set_result(None)
            self.released += 1
            # Keep the grid through a small lateness; never owe more than catch_up.
            self._next_slot = max(self._next_slot, now - self._catch_up) + self.interval
        self._arm(now)

    # -- chats ---------------------------------------------------------------------------

    def chat_ready_at(self, chat_id: Hashable) -> float:
        """Monotonic time from which a send to the chat may start (inf while one is on its way)."""
        state = self._chats.get(chat_id)
        if state is None:
            return -math.inf
        return math.inf if state.busy else state.ready_at

    def busy_chats(self) -> set[Hashable]:
        """Chats with a send on its way or sent less than chat_interval_s ago."""
        now = self._monotonic()
        return {
            chat_id
            for chat_id, state in self._chats.items()
            if state.busy or state.ready_at > now or state.waiters
        }

    def next_chat_ready(self) -> float | None:
        """The earliest time a currently spaced-out (not busy) chat becomes ready, if any."""
        now = self._monotonic()
        times = [s.ready_at for s in self._chats.values() if not s.busy and s.ready_at > now]
        return min(times) if times else None

    async def reserve_chat(self, chat_id: Hashable) -> None:
        """Wait until the chat is free and spaced out, then hold it until release_chat()."""
        while True:
            # Looked up each time: an idle entry may have been pruned while we slept.
            state = self._chats.get(chat_id)
            if state is None:
                state = self._chats[chat_id] = _Chat()
            if not state.busy:
                wait = state.ready_at - self._monotonic()
                if wait <= 0:
                    state.busy = True
                    return
                await asyncio.sleep(wait)
                continue
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            state.waiters.append(future)
            try:
                await future
            finally:
                if future in state.waiters:
                    state.waiters.remove(future)

    def release_chat(self, chat_id: Hashable, *, sent: bool = True) -> None:
        """The send is over; the next one may start chat_interval_s from now (if it was sent)."""
        state = self._chats.get(chat_id)
        if state is None:
            return
        state.busy = False
        if sent:
            state.ready_at = max(state.ready_at, self._monotonic() + self.chat_interval_s)
        self._wake_chat(state)
        if len(self._chats) > self._prune_above:
            self._prune()

    @staticmethod
    def _wake_chat(state: _Chat) -> None:
        # Wake them all: each re-checks, the first to find the chat ready takes it.
        waiters, state.waiters = state.waiters, deque()
        for future in waiters:
            if not future.done():
                future.set_result(None)

    def _prune(self) -> None:
        now = self._monotonic()
        self._chats = {
            chat_id: state
            for chat_id, state in self._chats.items()
            if state.busy or state.waiters or state.ready_at > now
        }
        self._prune_above = max(1024, 2 * len(self._chats))

    # -- both ----------------------------------------------------------------------------

    @asynccontextmanager
    async def slot(self, priority: int, chat_id: Hashable | None = None) -> AsyncIterator[None]:
        """Hold the chat and one global slot for one send; the chat is spaced from its end."""
        if chat_id is not None:
            await self.reserve_chat(chat_id)
        try:
            await self.acquire(priority)
        except BaseException:
            if chat_id is not None:
                self.release_chat(chat_id, sent=False)
            raise
        try:
            yield
        finally:
            if chat_id is not None:
                self.release_chat(chat_id)


class ThrottleMiddleware(BaseRequestMiddleware):
    """Puts every outgoing send through the throttle; pauses everything on a 429.

    A direct send (priority 0 unless `send_priority()` says otherwise) that gets a 429 is
    retried once after the pause. A send made under `slot_held()` is not throttled again;
    its 429 pauses the throttle and is left to the caller.
    """

    def __init__(self, throttle: Throttle) -> None:
        self.throttle = throttle

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        if not is_send_method(method.__api_method__):
            return await make_request(bot, method)
        if _slot_held.get():
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                self.throttle.pause_for(exc.retry_after)
                raise
        priority = _priority.get()
        chat_id: Any = getattr(method, "chat_id", None)
        try:
            async with self.throttle.slot(priority, chat_id):
                return await make_request(bot, method)
        except TelegramRetryAfter as exc:
            logger.warning(
                "%s to %s hit flood control; pausing sends for %s s and retrying once",
                method.__api_method__,
                chat_id,
                exc.retry_after,
            )
            self.throttle.pause_for(exc.retry_after)
        async with self.throttle.slot(priority, chat_id):
            return await make_request(bot, method)
