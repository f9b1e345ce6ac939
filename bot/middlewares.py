"""Update middlewares: one database session per update, the acting person, their language."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from aiogram import BaseMiddleware
from aiogram.client.session.middlewares.base import BaseRequestMiddleware
from aiogram.types import TelegramObject, Update, User
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import Clock
from domain.errors import DomainError
from domain.outbox import QUEUED
from domain.people import ensure_person
from storage.faults import is_disconnect
from storage.inbox import claim_update
from views.i18n import translator

logger = logging.getLogger(__name__)

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]

# The session of the update being handled in this task, for the FSM storage and for
# EndTransactionMiddleware; None outside updates (the outbox sender, the scheduler).
current_session: ContextVar[AsyncSession | None] = ContextVar("gridbot_session", default=None)


# session.info key: the conversations (dialog states) an update read or wrote, by storage key.
CONVERSATIONS = "gridbot_conversations"

# Conversations read in an update before its session existed (aiogram's FSM middleware reads
# the state first): the session takes them over, so that an update reads each once. A dict
# while `feed_update` hands an update over, None elsewhere.
early_reads: ContextVar[dict[str, Any] | None] = ContextVar("gridbot_early_reads", default=None)


async def feed_update(dp: Any, bot: Any, update: Update) -> Any:
    """Hand an update to the dispatcher, its early reads kept for its session."""
    token = early_reads.set({})
    try:
        return await dp.feed_update(bot, update)
    finally:
        early_reads.reset(token)


# Writes that were put off until the update's transaction ends (session.info key): for each,
# the write (an async callable taking the session) and what to undo if it is not committed.
DEFERRED_WRITES = "gridbot_deferred_writes"

# Given the session, and whether its transaction is still open (the write joins it) or has
# ended (the write goes as the store finds cheapest; what it begins, the caller commits).
DeferredWrite = Callable[[AsyncSession, bool], Awaitable[None]]


def defer_write(
    session: AsyncSession, key: str, write: DeferredWrite, undo: Callable[[], None]
) -> None:
    """Run `write` in the transaction when it ends (before the next call to Telegram, at the
    latest when the update is done), or `undo` if it does not commit; a later write under a
    key replaces the earlier one."""
    session.info.setdefault(DEFERRED_WRITES, {})[key] = (write, undo)


async def end_transaction(session: AsyncSession) -> None:
    """Commit what the update did so far, with what was deferred, in one transaction. With
    no transaction open (its changes committed, say before a reply), each deferred write is
    told so, and goes as its store finds cheapest."""
    writes = session.info.pop(DEFERRED_WRITES, None)
    open_transaction = session.in_transaction()
    try:
        for write, _ in (writes or {}).values():
            await write(session, open_transaction)
        if session.in_transaction():
            await session.commit()
    except BaseException:
        for _, undo in (writes or {}).values():
            undo()
        raise


class ContextMiddleware(BaseMiddleware):
    """Gives each update a session, the person behind it and `t` in their language, and
    makes each update count once.

    It owns the update's transaction: use cases stage their changes, and it commits them
    before each call to Telegram (EndTransactionMiddleware) and when the handler is done; a
    refusal keeps only its audit record. The update is claimed (storage.inbox) in the same
    transaction, so the claim commits with the handler's first change: an update delivered
    again (a webhook retried, a poll repeated after a crash) finds its claim and is skipped.
    A handler that fails leaves
    nothing half-written (its transaction is rolled back and its dialog step not stored), and
    the update is marked handled with the error, so it is not handled again. A lost database
    connection is different: the update is handled once more on a new connection, so the
    person need not send it again.
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

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        update_id = event.update_id if isinstance(event, Update) else None
        bot_id = data["bot"].id if update_id is not None else 0
        for attempt in (1, 2):
            try:
                return await self._handle(handler, event, data, bot_id, update_id)
            except Exception as exc:
                if attempt == 1 and is_disconnect(exc):
                    logger.warning(
                        "update %s: the database connection was lost (%s); handling it again",
                        update_id,
                        exc.__class__.__name__,
                    )
                    continue
                if update_id is not None:
                    await self._mark_failed(bot_id, update_id, exc)
                raise
        raise AssertionError("unreachable")

    async def _handle(
        self,
        handler: Handler,
        event: TelegramObject,
        data: dict[str, Any],
        bot_id: int,
        update_id: int | None,
    ) -> Any:
        user: User | None = data.get("event_from_user")
        early = early_reads.get()
        early_reads.set(None)  # taken once: a retry on a new connection reads again
        async with self._sessionmaker() as session:
            if early:
                session.info[CONVERSATIONS] = early
            person = None
            if user is not None and not user.is_bot:
                person = await ensure_person(
                    session=session,
                    clock=self._clock,
                    telegram_id=user.id,
                    full_name=user.full_name,
                    username=user.username,
                    language_code=user.language_code,
                    default_language=self._default_language,
                )
            if update_id is not None and not await claim_update(
                session, bot_id, update_id, self._clock.now()
            ):
                logger.info("update %s was handled already; skipped", update_id)
                await session.rollback()
                return None
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
                try:
                    result = await handler(event, data)
                except DomainError:
                    # A refusal that reached the errors router: a refused use case changed
                    # nothing, but its audit record and the update's claim are kept.
                    await end_transaction(session)
                    raise
                await end_transaction(session)
            except BaseException:
                _forget_deferred(session)
                raise
            finally:
                current_session.reset(token)
            # Only when the update queued messages: a wake-up costs the sender a query.
            if self._on_queued is not None and session.info.pop(QUEUED, False):
                self._on_queued()
            return result

    async def _mark_failed(self, bot_id: int, update_id: int, exc: BaseException) -> None:
        """Record a failed update as handled, so that a redelivery does not run it again."""
        try:
            async with self._sessionmaker() as session:
                await claim_update(
                    session,
                    bot_id,
                    update_id,
                    self._clock.now(),
                    error=f"{exc.__class__.__name__}: {exc}",
                )
                await session.commit()
        except Exception:
            logger.exception("update %s: could not record its failure", update_id)


def _forget_deferred(session: AsyncSession) -> None:
    """The update failed: what it deferred is not written, and its reads are forgotten."""
    writes = session.info.pop(DEFERRED_WRITES, None) or {}
    for _, undo in writes.values():
        undo()


class EndTransactionMiddleware(BaseRequestMiddleware):
    """No database transaction stays open across a call to Telegram.

    On SQLite a transaction holds the write lock; held through a network round trip it
    would stall every other update. What the update did so far is committed: a reply never
    tells of a change that is not stored.
    """

    async def __call__(self, make_request: Any, bot: Any, method: Any) -> Any:
        session = current_session.get()
        if session is not None:
            await end_transaction(session)
        return await make_request(bot, method)
