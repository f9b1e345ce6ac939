"""No transaction stays open across a call to Telegram, and nothing uncommitted leaks out."""

from __future__ import annotations

from sqlmodel import select

from bot.middlewares import EndTransactionMiddleware, current_session
from storage.models import Person
from tests.factories import make_person


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


async def test_uncommitted_changes_are_dropped_not_committed(sessionmaker) -> None:
    async with sessionmaker() as session:
        session.add(Person(telegram_id=3, full_name="Half-written", language="en"))
        await session.flush()
        session.add(Person(telegram_id=4, full_name="Pending", language="en"))

        async def make_request(bot, method):
            return "ok"

        token = current_session.set(session)
        try:
            await EndTransactionMiddleware()(make_request, None, None)
        finally:
            current_session.reset(token)
    async with sessionmaker() as session:
        assert (await session.exec(select(Person))).all() == []
