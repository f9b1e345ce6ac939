"""People are created on first contact, with a language guessed from Telegram."""

from __future__ import annotations

import pytest

from domain.errors import DomainError
from domain.people import ensure_person, guess_language, set_language
from storage.models import Person
from storage.people import person_by_telegram_id


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("zh-hans", "zh-hans"),
        ("zh-CN", "zh-hans"),
        ("en-GB", "en"),
        ("en", "en"),
        ("ru", "zh-hans"),
        (None, "zh-hans"),
    ],
)
def test_guess_language(code, expected) -> None:
    assert guess_language(code, "zh-hans") == expected


async def _meet(session, clock, telegram_id: int, name: str, username, code: str):
    """The person as an update's middleware meets them, its transaction committed."""
    person = await ensure_person(
        session=session,
        clock=clock,
        telegram_id=telegram_id,
        full_name=name,
        username=username,
        language_code=code,
        default_language="zh-hans",
    )
    await session.commit()
    return person


async def test_person_created_once_and_language_remembered(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        first = await _meet(session, clock, 77, "Li Lei", "lilei", "en-US")
    assert first.language == "en"
    async with sessionmaker() as session:
        await set_language(session=session, clock=clock, person_id=first.id, language="zh-hans")
        await session.commit()
        with pytest.raises(DomainError):
            await set_language(session=session, clock=clock, person_id=first.id, language="fr")
    async with sessionmaker() as session:
        again = await _meet(session, clock, 77, "Li Lei", "lilei2", "en-US")
        # The chosen language wins over Telegram's guess; the username follows Telegram.
        assert (again.id, again.language, again.username) == (first.id, "zh-hans", "lilei2")


async def test_the_person_read_straight_from_the_driver_is_the_sessions_own(
    sessionmaker, clock
) -> None:
    """storage.people reads the row past the ORM but hands out the session's Person: the
    same object the ORM gives for that id, whose changes flush and commit as usual."""
    async with sessionmaker() as session:
        made = await _meet(session, clock, 88, "Han Meimei", None, "en")
    async with sessionmaker() as session:
        assert await person_by_telegram_id(session, 89) is None
        found = await person_by_telegram_id(session, 88)
        assert found is not None
        assert (found.id, found.full_name, found.username, found.language) == (
            made.id,
            "Han Meimei",
            None,
            "en",
        )
        assert found.created_at == made.created_at
        assert found.created_at.tzinfo is not None
        assert await session.get(Person, made.id) is found
        # Read again in the same session: the same object, not a second copy.
        assert await person_by_telegram_id(session, 88) is found
        found.full_name = "Han Meimei (renamed)"
        await session.commit()
    async with sessionmaker() as session:
        stored = await session.get(Person, made.id)
        assert stored is not None and stored.full_name == "Han Meimei (renamed)"
