"""The per-update middleware owns the update's transaction: no transaction stays open across a
call to Telegram, what the update did is committed before the reply, a failure keeps nothing
and a refusal keeps only its audit record."""

from __future__ import annotations

from typing import Any

import pytest
from aiogram import Bot, Dispatcher
from aiogram.types import Message
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.middlewares import ContextMiddleware, EndTransactionMiddleware, current_session
from domain.access import deny
from domain.clock import FrozenClock
from domain.errors import NotAllowed
from storage.db import make_engine, make_sessionmaker
from storage.enums import UnitKind
from storage.models import AuditEntry, InboundUpdate, OrgUnit, Person
from tests.botkit import TOKEN
from tests.factories import add_unit, make_person
from tests.test_inbound import _update


async def test_a_read_is_committed_before_telegram_is_called(sessionmaker) -> None:
    async with sessionmaker() as session:
        await make_person(session, 1, "Reader")
        (await session.exec(select(Person))).all()
        assert session.in_transaction()
        seen = []

        async def make_request(bot, method):
            # What another connection sees while "Telegram" is being called.
            seen.append(session.in_transaction())
            async with sessionmaker() as other:
                other.add(Person(telegram_id=2, full_name="Writer", language="en"))
                await other.commit()
            return "ok"

        token = current_session.set(session)
        try:
            assert await EndTransactionMiddleware()(make_request, None, None) == "ok"
        finally:
            current_session.reset(token)
        assert seen == [False]


async def test_what_an_update_staged_is_committed_before_telegram_is_called(
    sessionmaker,
) -> None:
    """The middleware owns the update's transaction: a reply never tells of a change that is
    not stored, flushed or still pending."""
    async with sessionmaker() as session:
        session.add(Person(telegram_id=3, full_name="Flushed", language="en"))
        await session.flush()
        session.add(Person(telegram_id=4, full_name="Pending", language="en"))
        stored_before_reply = []

        async def make_request(bot, method):
            async with sessionmaker() as other:
                names = (await other.exec(select(Person.full_name))).all()
                stored_before_reply.extend(sorted(names))
            return "ok"

        token = current_session.set(session)
        try:
            await EndTransactionMiddleware()(make_request, None, None)
        finally:
            current_session.reset(token)
    assert stored_before_reply == ["Flushed", "Pending"]


# -- the update's transaction: ContextMiddleware ------------------------------------------------


async def _feed(db_url: str, clock: FrozenClock, handler) -> tuple[Any, Bot]:
    engine = make_engine(db_url)
    dp = Dispatcher()
    dp.update.outer_middleware(ContextMiddleware(make_sessionmaker(engine), clock, "en"))
    dp.message()(handler)
    return engine, dp


async def _stored(engine, model) -> list:
    async with make_sessionmaker(engine)() as session:
        return list((await session.exec(select(model))).all())


async def test_a_handler_that_fails_commits_nothing_it_staged(
    db_url: str, clock: FrozenClock
) -> None:
    async def handler(message: Message, session: AsyncSession) -> None:
        session.add(Person(telegram_id=99, full_name="Half-written", language="en"))
        await session.flush()
        raise RuntimeError("a bug")

    engine, dp = await _feed(db_url, clock, handler)
    bot = Bot(TOKEN)
    try:
        with pytest.raises(RuntimeError):
            await dp.feed_update(bot, _update(1, 3001))
        assert [p.telegram_id for p in await _stored(engine, Person)] == []
        (row,) = await _stored(engine, InboundUpdate)
        assert row.error == "RuntimeError: a bug"  # handled, so not run again
    finally:
        await bot.session.close()
        await engine.dispose()


async def test_what_a_handler_did_is_committed_when_it_returns(
    db_url: str, clock: FrozenClock
) -> None:
    async def handler(message: Message, session: AsyncSession) -> None:
        session.add(Person(telegram_id=99, full_name="Written", language="en"))

    engine, dp = await _feed(db_url, clock, handler)
    bot = Bot(TOKEN)
    try:
        await dp.feed_update(bot, _update(2, 3001))
        assert sorted(p.telegram_id for p in await _stored(engine, Person)) == [99, 3001]
        (row,) = await _stored(engine, InboundUpdate)
        assert row.handled_at is not None and row.error is None
    finally:
        await bot.session.close()
        await engine.dispose()


async def test_a_refusal_that_reaches_the_errors_router_keeps_its_audit(
    db_url: str, clock: FrozenClock
) -> None:
    async def handler(message: Message, session: AsyncSession, person: Person) -> None:
        grid = await add_unit(session, UnitKind.GRID, "G-REFUSED", None)
        await session.commit()  # the world this update finds
        await deny(session, clock=clock, person_id=person.id, unit=grid, action="ticket.view:1")

    engine, dp = await _feed(db_url, clock, handler)
    bot = Bot(TOKEN)
    try:
        with pytest.raises(NotAllowed):
            await dp.feed_update(bot, _update(3, 3001))
        (entry,) = await _stored(engine, AuditEntry)
        assert (entry.action, entry.data["attempted"]) == ("access.denied", "ticket.view:1")
        (row,) = await _stored(engine, InboundUpdate)
        assert row.handled_at is not None
    finally:
        await bot.session.close()
        await engine.dispose()


async def test_a_refusal_after_a_change_was_staged_fails_the_update_and_keeps_nothing(
    db_url: str, clock: FrozenClock
) -> None:
    """A use case checks before it changes anything; one that does not is a bug, and its
    change must not be committed with the refusal."""

    async def handler(message: Message, session: AsyncSession, person: Person) -> None:
        grid = await add_unit(session, UnitKind.GRID, "G-REFUSED", None)
        await session.commit()
        grid.name_en = "renamed by a refused action"
        await deny(session, clock=clock, person_id=person.id, unit=grid, action="unit.rename")

    engine, dp = await _feed(db_url, clock, handler)
    bot = Bot(TOKEN)
    try:
        with pytest.raises(RuntimeError, match="unit.rename refused after changes"):
            await dp.feed_update(bot, _update(4, 3001))
        (unit,) = await _stored(engine, OrgUnit)
        assert unit.name_en == "G-REFUSED (en)"
    finally:
        await bot.session.close()
        await engine.dispose()
