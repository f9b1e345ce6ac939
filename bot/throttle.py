"""Send pacing: replies are limited per chat only; the outbox also by a global budget.

Telegram limits a bot to about one message a second per chat (short bursts tolerated) and
about 30 a second for bulk notifications; a reply to a person who just wrote is not bulk.

- **Per chat**, every send (a reply or an outbox row) takes a token from the chat's bucket:
  `chat_burst` tokens, one back every `chat_interval` seconds. A token counts as taken when
  the send starts, and its refill starts when the send completed, one token at a time:
  Telegram sees the request before we see its answer, so counting from the answer keeps
  us at or under what it counts.
- **Replies** are any send made outside `slot_held()`, that is not by the outbox sender.
  `ThrottleMiddleware` gives them the chat's token and nothing else: no global budget.
- **The outbox** sender takes a slot of the global budget (`Pacer`, `outbox_rate`/s, lanes
  by priority: interactive > escalation > bulk), then the chat's token, with
  `Throttle.outbox_slot()`. With paid broadcasting on, bulk rows take their slots from a
  budget of their own (`paid_rate`/s) and go out with allow_paid_broadcast.

429s: Telegram does not say which limit a 429 is for. The rule used here:

- A 429 for a send to a chat blocks that chat, replies and outbox alike, until retry_after.
  Other chats are untouched.
- A 429 on a call without a chat_id, or 429s for two or more different chats within
  `GLOBAL_429_WINDOW` seconds on outbox sends of one budget, is taken as a global limit:
  that outbox budget pauses for retry_after. Replies never pause for it (the chats named
  keep their own blocks, since Telegram asked for the wait on those requests).
- `retry_after_cap`: a reply whose chat is blocked for at most the cap waits and is retried
  once; longer, it is given up and TelegramRetryAfter reaches the caller. The outbox sender
  keeps a row in memory for a wait up to the cap and otherwise puts it back in its table.
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

# 429s for different chats this close together on outbox sends are taken as a global limit.
GLOBAL_429_WINDOW = 1.0

_NOT_COUNTED = frozenset({"sendchataction", "sendmessagedraft", "sendrichmessagedraft"})
_SEND_EXTRA = frozenset({"copymessage", "copymessages", "forwardmessage", "forwardmessages"})

_slot_held: ContextVar[bool] = ContextVar("gridbot_send_slot_held", default=False)


def lane_priority(lane: int) -> int:
    """The outbox budget's priority of a lane: a lower number is served first."""
    return int(lane)


def is_send_method(api_method: str) -> bool:
    """Whether a Bot API method puts a message into a chat (and so counts against limits)."""
    name = api_method.lower()
    if name in _NOT_COUNTED:
        return False
    return name.startswith("send") or name in _SEND_EXTRA


@contextmanager
def slot_held() -> Iterator[None]:
    """Sends inside this block are the outbox sender's: it holds their slot and token."""
    token = _slot_held.set(True)
    try:
        yield
    finally:
        _slot_held.reset(token)


class Pacer:
    """Releases at most `rate_per_s` acquisitions per second, best priority first.

    Releases follow a fixed grid of 1/rate seconds. A release that comes late because the
    event loop woke late keeps the grid, but only up to `catch_up` of an interval: later
    than that, the grid restarts from now. So any n+1 consecutive releases span at least
    n/rate - catch_up/rate seconds, and a stalled loop never causes a burst.
    """

    def __init__(
        self,
        rate_per_s: float,
        monotonic: Callable[[], float] = time.monotonic,
        *,
        catch_up: float = 0.5,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be > 0")
        if not 0 <= catch_up < 1:
            raise ValueError("catch_up must be in [0, 1)")
        self.rate_per_s = rate_per_s
        self.interval = 1.0 / rate_per_s
        self._monotonic = monotonic
        self._catch_up = catch_up * self.interval
        self._next_slot = -math.inf
        self._paused_until = -math.inf
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self.released = 0

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

    async def acquire(self, priority: int = 0) -> None:
        """Wait for a slot; a lower priority number is served first."""
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


@dataclass(slots=True, eq=False)
class _Waiter:
    future: asyncio.Future[None] | None = None


@dataclass(slots=True)
class _Chat:
    in_use: int = 0  # tokens taken by sends not yet completed
    returns: deque[float] = field(default_factory=deque)  # when taken tokens come back
    last_return: float = -math.inf
    blocked_until: float = -math.inf  # a 429's retry_after
    waiters: deque[_Waiter] = field(default_factory=deque)  # first come, first served


class Throttle:
    """Per-chat token buckets for every send, and the outbox's global budget(s)."""

    def __init__(
        self,
        outbox_rate: float,
        chat_interval: float,
        chat_burst: int = 3,
        *,
        paid_rate: float = 0.0,
        retry_after_cap: float = 10.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if chat_interval < 0 or chat_burst < 1 or paid_rate < 0 or retry_after_cap < 0:
            raise ValueError(
                "chat_interval, paid_rate and retry_after_cap must be >= 0, chat_burst >= 1"
            )
        # The free budget keeps no catch-up: any 31 releases at 29/s then span 1.034 s, so a
        # send may reach Telegram up to 34 ms late without a 31st falling into one second
        # (with 0.5 the margin was 17 ms, and the three-process cluster benchmark on a busy
        # machine got 4-6 global 429s per 5,000 bulk messages). The paid budget runs far
        # below Telegram's 1,000/s and keeps its catch-up: without it every late timer is a
        # slot lost (250/s configured delivered 0.8 of it).
        self.outbox = Pacer(outbox_rate, monotonic, catch_up=0.0)
        self.paid = Pacer(paid_rate, monotonic) if paid_rate > 0 else None
        self.chat_interval = chat_interval
        self.chat_burst = chat_burst
        self.retry_after_cap = retry_after_cap
        self._monotonic = monotonic
        self._chats: dict[Hashable, _Chat] = {}
        self._prune_above = 1024
        self._recent_429s: dict[bool, deque[tuple[float, Hashable]]] = {
            False: deque(),
            True: deque(),
        }
        self.rate_limited: dict[str, int] = {"chat": 0, "global": 0}

    @property
    def rate_per_s(self) -> float:
        """The outbox's free budget, messages per second."""
        return self.outbox.rate_per_s

    @property
    def paid_rate(self) -> float:
        """The budget of paid broadcasts, messages per second (0: off)."""
        return self.paid.rate_per_s if self.paid is not None else 0.0

    def budget(self, *, paid: bool = False) -> Pacer:
        if not paid:
            return self.outbox
        if self.paid is None:
            raise ValueError("paid broadcasting is off (paid_rate is 0)")
        return self.paid

    # -- chats ---------------------------------------------------------------------------

    def _state(self, chat_id: Hashable) -> _Chat:
        state = self._chats.get(chat_id)
        if state is None:
            state = self._chats[chat_id] = _Chat()
        return state

    def _available(self, state: _Chat, now: float) -> int:
        returns = state.returns
        while returns and returns[0] <= now:
            returns.popleft()
        return self.chat_burst - state.in_use - len(returns)

    def _ready_at(self, state: _Chat, now: float) -> float:
        if self._available(state, now) > 0:
            token_at = -math.inf
        else:  # the next token to come back; none while every token is on the wire
            token_at = state.returns[0] if state.returns else math.inf
        return max(token_at, state.blocked_until)

    def chat_ready_at(self, chat_id: Hashable) -> float:
        """Monotonic time from which a send to the chat may start (inf: not known yet)."""
        state = self._chats.get(chat_id)
        if state is None:
            return -math.inf
        if state.waiters:
            return math.inf  # sends already queued for it go first
        return self._ready_at(state, self._monotonic())

    def chat_tokens(self, chat_id: Hashable) -> int:
        """Tokens the chat has now (a 429 block aside)."""
        state = self._chats.get(chat_id)
        return self.chat_burst if state is None else self._available(state, self._monotonic())

    def chat_blocked_for(self, chat_id: Hashable) -> float:
        """Seconds left of a 429 block on the chat (0 if none)."""
        state = self._chats.get(chat_id)
        if state is None:
            return 0.0
        return max(0.0, state.blocked_until - self._monotonic())

    def busy_chats(self) -> set[Hashable]:
        """Chats a send may not start to now: no token, blocked, or sends queued for them."""
        now = self._monotonic()
        return {
            chat_id
            for chat_id, state in self._chats.items()
            if state.waiters or self._ready_at(state, now) > now
        }

    def next_chat_ready(self) -> float | None:
        """The earliest time a chat that is not ready now becomes ready, if one will by time."""
        now = self._monotonic()
        times = [
            ready
            for state in self._chats.values()
            if now < (ready := self._ready_at(state, now)) < math.inf
        ]
        return min(times) if times else None

    def try_take_chat(self, chat_id: Hashable) -> bool:
        """Take one of the chat's tokens if it has one now and nobody is queued for it."""
        state = self._state(chat_id)
        now = self._monotonic()
        if state.waiters or self._ready_at(state, now) > now:
            return False
        state.in_use += 1
        return True

    async def take_chat(self, chat_id: Hashable) -> None:
        """Wait for one of the chat's tokens (first come, first served) and take it."""
        if self.try_take_chat(chat_id):
            return
        state = self._state(chat_id)
        me = _Waiter()
        state.waiters.append(me)
        loop = asyncio.get_running_loop()
        try:
            while True:
                now = self._monotonic()
                first = state.waiters[0] is me
                ready = self._ready_at(state, now) if first else math.inf
                if ready <= now:
                    state.waiters.popleft()
                    state.in_use += 1
                    self._notify(state)  # the next one may have a token too
                    return
                me.future = loop.create_future()
                handle = (
                    loop.call_later(ready - now, _resolve, me.future) if ready < math.inf else None
                )
                try:
                    await me.future
                finally:
                    if handle is not None:
                        handle.cancel()
        finally:
            if me in state.waiters:  # cancelled while queued
                state.waiters.remove(me)
                self._notify(state)

    def done_chat(self, chat_id: Hashable, *, sent: bool = True) -> None:
        """A send that took a token is over; if it may have reached Telegram, the token's
        refill starts now (one token at a time, `chat_interval` apart)."""
        state = self._chats.get(chat_id)
        if state is None or state.in_use <= 0:
            return
        state.in_use -= 1
        if sent:
            now = self._monotonic()
            back = max(state.last_return, now) + self.chat_interval
            state.last_return = back
            state.returns.append(back)
        self._notify(state)
        if len(self._chats) > self._prune_above:
            self._prune()

    def block_chat(self, chat_id: Hashable, seconds: float) -> None:
        """Start no send to the chat for `seconds` (Telegram's retry_after for it)."""
        state = self._state(chat_id)
        state.blocked_until = max(state.blocked_until, self._monotonic() + seconds)

    @staticmethod
    def _notify(state: _Chat) -> None:
        for waiter in state.waiters:
            if waiter.future is not None and not waiter.future.done():
                waiter.future.set_result(None)

    def _prune(self) -> None:
        now = self._monotonic()
        self._chats = {
            chat_id: state
            for chat_id, state in self._chats.items()
            if state.in_use
            or state.waiters
            or state.blocked_until > now
            or self._available(state, now) < self.chat_burst
        }
        self._prune_above = max(1024, 2 * len(self._chats))

    # -- 429s ----------------------------------------------------------------------------

    def chat_retry_after(self, chat_id: Hashable, retry_after: float) -> None:
        """A reply's (or any non-outbox call's) 429 for a chat: that chat alone waits."""
        self.block_chat(chat_id, retry_after)
        self.rate_limited["chat"] += 1

    def global_retry_after(self, retry_after: float, *, paid: bool = False) -> None:
        """A 429 not about one chat: the outbox budget pauses; replies go on."""
        self.budget(paid=paid).pause_for(retry_after)
        self.rate_limited["global"] += 1

    def outbox_retry_after(
        self, chat_id: Hashable, retry_after: float, *, paid: bool = False
    ) -> bool:
        """An outbox send's 429: blocks its chat; True when it is taken as a global limit
        (another chat's 429 on this budget within GLOBAL_429_WINDOW), which pauses the budget.
        """
        self.block_chat(chat_id, retry_after)
        now = self._monotonic()
        recent = self._recent_429s[paid]
        while recent and recent[0][0] < now - GLOBAL_429_WINDOW:
            recent.popleft()
        is_global = any(other != chat_id for _, other in recent)
        recent.append((now, chat_id))
        if is_global:
            logger.warning(
                "429s for %s chats within %s s: taken as a global limit; the %s outbox "
                "pauses for %s s",
                len({other for _, other in recent}),
                GLOBAL_429_WINDOW,
                "paid" if paid else "free",
                retry_after,
            )
            self.global_retry_after(retry_after, paid=paid)
        else:
            self.rate_limited["chat"] += 1
        return is_global

    # -- one send ------------------------------------------------------------------------

    @asynccontextmanager
    async def reply(self, chat_id: Hashable) -> AsyncIterator[None]:
        """Hold one of the chat's tokens for one reply."""
        await self.take_chat(chat_id)
        try:
            yield
        finally:
            self.done_chat(chat_id)

    @asynccontextmanager
    async def outbox_slot(
        self, priority: int, chat_id: Hashable, *, paid: bool = False
    ) -> AsyncIterator[None]:
        """A slot of the outbox budget (the paid one if `paid`), then one of the chat's tokens.

        The slot comes first so that a row waiting for the budget holds no token a reply
        to its chat could use.
        """
        await self.budget(paid=paid).acquire(priority)
        await self.take_chat(chat_id)
        try:
            yield
        finally:
            self.done_chat(chat_id)


class ThrottleMiddleware(BaseRequestMiddleware):
    """Paces replies per chat and records 429s; the outbox sender's calls pass untouched.

    A reply waits for a token of its chat (and for a 429 block on it of at most the cap);
    a 429 blocks its chat, and the reply is retried once if the wait is within the cap,
    else given up: TelegramRetryAfter reaches the caller. Any other call's 429 blocks its
    chat, or without a chat_id pauses the outbox, and is left to the caller.
    """

    def __init__(self, throttle: Throttle) -> None:
        self.throttle = throttle

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        if _slot_held.get():  # the outbox sender's own send: it handles its 429
            return await make_request(bot, method)
        chat_id: Any = getattr(method, "chat_id", None)
        if chat_id is None or not is_send_method(method.__api_method__):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if chat_id is None:
                    logger.warning(
                        "%s hit flood control without a chat; the outbox pauses %s s",
                        method.__api_method__,
                        exc.retry_after,
                    )
                    self.throttle.global_retry_after(exc.retry_after)
                else:
                    self.throttle.chat_retry_after(chat_id, exc.retry_after)
                raise
        return await self._reply(make_request, bot, method, chat_id)

    async def _reply(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
        chat_id: Hashable,
    ) -> Response[TelegramType]:
        throttle = self.throttle
        cap = throttle.retry_after_cap
        name = method.__api_method__
        retried = False
        while True:
            blocked = throttle.chat_blocked_for(chat_id)
            if blocked > cap:
                logger.warning(
                    "%s to %s given up: flood control blocks the chat for %.0f s more",
                    name,
                    chat_id,
                    blocked,
                )
                raise TelegramRetryAfter(
                    method=method,
                    message=f"Too Many Requests: the chat is blocked for {blocked:.0f} s more",
                    retry_after=math.ceil(blocked),
                )
            try:
                async with throttle.reply(chat_id):
                    return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                throttle.chat_retry_after(chat_id, exc.retry_after)
                if retried or exc.retry_after > cap:
                    logger.warning(
                        "%s to %s given up: flood control, retry after %s s",
                        name,
                        chat_id,
                        exc.retry_after,
                    )
                    raise
                logger.warning(
                    "%s to %s hit flood control; retrying once in %s s",
                    name,
                    chat_id,
                    exc.retry_after,
                )
                retried = True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
