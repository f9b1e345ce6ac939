"""People are created on first contact, with a language guessed from Telegram."""

from __future__ import annotations

import pytest

from domain.errors import DomainError
from domain.people import ensure_person, guess_language, set_language


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


async def test_person_created_once_and_language_remembered(sessionmaker, clock) -> None:
    async with sessionmaker() as session:
        first = await ensure_person(
            session=session,
            clock=clock,
            telegram_id=77,
            full_name="Li Lei",
            username="lilei",
            language_code="en-US",
            default_language="zh-hans",
        )
    assert first.language == "en"
    async with sessionmaker() as session:
        await set_language(session=session, clock=clock, person_id=first.id, language="zh-hans")
        with pytest.raises(DomainError):
            await set_language(session=session, clock=clock, person_id=first.id, language="fr")
    async with sessionmaker() as session:
        again = await ensure_person(
            session=session,
            clock=clock,
            telegram_id=77,
            full_name="Li Lei",
            username="lilei2",
            language_code="en-US",
            default_language="zh-hans",
        )
        # The chosen language wins over Telegram's guess; the username follows Telegram.
        assert (again.id, again.language, again.username) == (first.id, "zh-hans", "lilei2")
