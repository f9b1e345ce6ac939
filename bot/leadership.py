"""One process at a time does what must be done once: send the outbox, run the scheduler, poll.

Each such duty has a lease in the database (storage.leases). Every process that may do it
tries to take the lease every few seconds; the one holding it renews it and does the duty.
When the holder dies, its lease expires and another process takes over: within the lease's
time plus one try (6 s + 2 s by default, under the 10 s the city asks for). A holder that
cannot renew (the database is unreachable) stops the duty before its lease can expire, so
two processes never do it at once. A holder that stops cleanly gives the lease up at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy.ext.asyncio import async_sessionmaker

from domain.clock import Clock
from storage.leases import release, take_or_renew

logger = logging.getLogger(__name__)

LEASE_TTL = timedelta(seconds=6)
TRY_EVERY_S = 2.0
# A holder stops its work this long before its lease would expire unrenewed.
SAFETY_MARGIN_S = 1.0

# Starts the duty; returns what stops it.
Start = Callable[[], Awaitable[Callable[[], Awaitable[None]]]]


def process_name() -> str:
    """Who holds a lease, as an operator reads it: host, process id and a random tail."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Duty:
    """Does `start`'s work only while this process holds the lease `name`."""

    def __init__(
        self,
        name: str,
        start: Start,
        *,
        sessionmaker: async_sessionmaker,
        clock: Clock,
        holder: str,
        ttl: timedelta = LEASE_TTL,
        try_every: float = TRY_EVERY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if try_every * 2 >= ttl.total_seconds():
            raise ValueError("the lease must outlast two tries to renew it")
        self.name = name
        self._start = start
        self._sessionmaker = sessionmaker
        self._clock = clock
        self._holder = holder
        self._ttl = ttl
        self._try_every = try_every
        self._monotonic = monotonic
        self._stop_work: Callable[[], Awaitable[None]] | None = None
        self._valid_until = 0.0
        self._watchdog: asyncio.Task[None] | None = None
        self.terms = 0  # how many times this process took the duty up

    @property
    def active(self) -> bool:
        return self._stop_work is not None

    async def run(self, stop: asyncio.Event) -> None:
        """Try, hold and renew the lease until `stop`; then stop the work and give it up."""
        try:
            while not stop.is_set():
                await self.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._try_every)
        finally:
            await self._step_down("stopping")
            try:
                await release(self._sessionmaker, self.name, self._holder)
            except Exception:
                logger.warning("could not give up the lease %s; it expires by itself", self.name)

    async def step(self) -> None:
        """One try: take or renew the lease, and start or stop the work to match."""
        asked_at = self._monotonic()
        try:
            held = await take_or_renew(
                self._sessionmaker, self.name, self._holder, self._clock.now(), self._ttl
            )
        except Exception as exc:
            logger.warning("lease %s: cannot reach the database (%s)", self.name, exc)
            held = None
        if held:
            # Counted from before the request (the lease may have been written at its start),
            # less a margin: the work stops before another process could take the lease.
            self._valid_until = asked_at + self._ttl.total_seconds() - SAFETY_MARGIN_S
            if not self.active:
                logger.info("lease %s taken: doing it here (%s)", self.name, self._holder)
                self.terms += 1
                self._stop_work = await self._start()
                self._watchdog = asyncio.create_task(self._watch(), name=f"lease-{self.name}")
            return
        if held is False:
            await self._step_down("another process holds the lease")
        elif self.active and self._monotonic() >= self._valid_until:
            await self._step_down("the lease could not be renewed in time")

    async def _watch(self) -> None:
        """Stop the work when the lease runs out unrenewed, even while a renewal hangs."""
        while True:
            delay = self._valid_until - self._monotonic()
            if delay <= 0:
                self._watchdog = None
                await self._step_down("the lease could not be renewed in time")
                return
            await asyncio.sleep(delay)

    async def _step_down(self, why: str) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.cancel()
        stop_work, self._stop_work = self._stop_work, None
        if stop_work is not None:
            logger.warning("lease %s: stopping here (%s)", self.name, why)
            await stop_work()
