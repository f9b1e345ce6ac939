"""Update middlewares: one database session per update, the acting person, their language."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from aiogram import BaseMiddleware
from aiogram.client.session.middlewares.base import BaseRequestMiddleware
from aiogram.types import TelegramObject, User
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.i18n import translator
from domain.clock import Clock
from domain.outbox import QUEUED
from domain.people import PEOPLE_CHANGED, ensure_person
from storage.models import Person

logger = logging.getLogger(__name__)

PEOPLE_CACHE_SIZE = 50_000

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]

# The session of the update being handled in this task, for the FSM storage and for
# EndTransactionMiddleware; None outside updates (the outbox sender, the scheduler).
current_session: ContextVar[AsyncSession | None] = ContextVar("gridbot_session", default=None)


# Writes that were put off until the update's transaction ends (session.info key): for each,
# the write (an async callable taking the session) and what to undo if it is not committed.
DEFERRED_WRITES = "gridbot_deferred_writes"

DeferredWrite = Callable[[AsyncSession], Awaitable[None]]


def defer_write(
    session: AsyncSession, key: str, write: DeferredWrite, undo: Callable[[], None]
) -> None:
    """Run `write` when the transaction ends (before the next call to Telegram, at the latest
    when the update is done), or `undo` if it fails; a later write under a key replaces the
    earlier one."""
    session.info.setdefault(DEFERRED_WRITES, {})[key] = (write, undo)


async def end_transaction(session: AsyncSession) -> None:
    """Close the open transaction (rolling back changes nobody committed), then write what was
    deferred."""
    if session.in_transaction():
        if session.new or session.dirty or session.deleted:
            logger.error("uncommitted changes dropped before a call to Telegram")
            await session.rollback()
        else:
            await session.commit()
    writes = session.info.pop(DEFERRED_WRITES, None)
    if not writes:
        return
    # After the transaction: on SQLite it may hold the write lock the deferred writes need.
    try:
        for write, _ in writes.values():
            await write(session)
    except BaseException:
        for _, undo in writes.values():
            undo()
        raise


class UpdateTracker(BaseMiddleware):
    """Counts updates being handled, so a shutdown can wait for them to finish."""

    def __init__(self) -> None:
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def active(self) -> int:
        return self._active

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        self._active += 1
        self._idle.clear()
        try:
            return await handler(event, data)
        finally:
            self._active -= 1
            if self._active == 0:
                self._idle.set()

    async def drained(self, timeout: float) -> bool:
        """Wait until no update is in flight; False if `timeout` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True


class ContextMiddleware(BaseMiddleware):
    """Gives each update a session, the person behind it and `t` in their language.

    The session is closed (and anything uncommitted rolled back) when the update is done,
    so a handler that fails half-way leaves nothing half-written.
    """

    def __init__(
        self,
        sessionmaker: async_sessionmaker,
        clock: Clock,
        default_language: str,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._clock = clock
        self._default_language = default_language
        # Called when an update queued outbox rows: wakes the sender for them.
        self._on_queued = on_queued
        # People seen lately, so a returning person costs no query; a use case that changes
        # a person names them in session.info[PEOPLE_CHANGED] and they are looked up again.
        self._people: OrderedDict[int, Person] = OrderedDict()

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        async with self._sessionmaker() as session:
            person = None
            if user is not None and not user.is_bot:
                person = await self._person(session, user)
            language = person.language if person else self._default_language
            data.update(
                session=session,
                clock=self._clock,
                person=person,
                language=language,
                t=translator(language),
                translator=translator,
            )
            token = current_session.set(session)
            try:
                return await handler(event, data)
            finally:
                current_session.reset(token)
                # What the update deferred (its dialog's state) is written even when the
                # handler failed: the state was already changed in memory.
                if session.info.get(DEFERRED_WRITES):
                    await end_transaction(session)
                for telegram_id in session.info.pop(PEOPLE_CHANGED, ()):
                    self._people.pop(telegram_id, None)
                # Only when the update queued messages: a wake-up costs the sender a query.
                if self._on_queued is not None and session.info.pop(QUEUED, False):
                    self._on_queued()

    async def _person(self, session: AsyncSession, user: User) -> Person:
        known = self._people.get(user.id)
        if known is not None and (known.full_name, known.username) == (
            user.full_name[:300],
            user.username,
        ):
            self._people.move_to_end(user.id)
            return known
        person = await ensure_person(
            session=session,
            clock=self._clock,
            telegram_id=user.id,
            full_name=user.full_name,
            username=user.username,
            language_code=user.language_code,
            default_language=self._default_language,
        )
        self._people[user.id] = person
        if len(self._people) > PEOPLE_CACHE_SIZE:
            self._people.popitem(last=False)
        return person


class EndTransactionMiddleware(BaseRequestMiddleware):
    """No database transaction stays open across a call to Telegram.

    On SQLite a transaction holds the write lock; held through a network round trip it
    would stall every other update. Use cases commit their own changes, so what is open
    here is a read, and committing it loses nothing.
    """

    async def __call__(self, make_request: Any, bot: Any, method: Any) -> Any:
        session = current_session.get()
        if session is not None:
            await end_transaction(session)
        return await make_request(bot, method)
