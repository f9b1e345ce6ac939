"""People: who is talking to the bot, in which language, and with which roles."""

from __future__ import annotations

import logging

from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import Clock
from domain.errors import DomainError, NotFound
from domain.languages import LANGUAGES
from domain.text import clean_text
from storage.models import Person
from storage.people import HeldRole, active_assignments_of, person_by_telegram_id

logger = logging.getLogger(__name__)


def guess_language(language_code: str | None, default: str) -> str:
    """Telegram's language_code ("zh-hans", "zh-CN", "en-GB"...) to one of ours."""
    if not language_code:
        return default
    code = language_code.lower()
    if code.startswith("zh"):
        return "zh-hans"
    if code.startswith("en"):
        return "en"
    return default


async def ensure_person(
    *,
    session: AsyncSession,
    clock: Clock,
    telegram_id: int,
    full_name: str,
    username: str | None,
    language_code: str | None,
    default_language: str,
) -> Person:
    """The person behind a Telegram account, created on first contact (and flushed, for its
    id) or updated when the profile changed; the update's transaction stores it."""
    # Cleaned (domain.text) and cut to the columns: a forged profile with a NUL or an overlong
    # name would otherwise fail every update from that account on PostgreSQL.
    full_name = clean_text(full_name)[:300]
    username = (clean_text(username)[:64] or None) if username is not None else None
    person = await person_by_telegram_id(session, telegram_id)
    if person is None:
        person = Person(
            telegram_id=telegram_id,
            full_name=full_name,
            username=username,
            language=guess_language(language_code, default_language),
            created_at=clock.now(),
            updated_at=clock.now(),
        )
        session.add(person)
        await session.flush()
        logger.info("new person %s (telegram %s)", person.id, telegram_id)
        return person
    if person.full_name != full_name or person.username != username:
        person.full_name = full_name
        person.username = username
        person.updated_at = clock.now()
        session.add(person)
        await session.flush()
    # Unchanged: the read's transaction goes on (the update's claim joins it).
    return person


async def set_language(
    *, session: AsyncSession, clock: Clock, person_id: int, language: str
) -> Person:
    """Remember the person's chosen language."""
    if language not in LANGUAGES:
        raise DomainError("lang.unknown", language=language)
    person = await session.get(Person, person_id)
    if person is None:
        raise NotFound("person.unknown")
    person.language = language
    person.updated_at = clock.now()
    session.add(person)
    await session.flush()
    return person


async def roles_of(*, session: AsyncSession, person_id: int) -> list[HeldRole]:
    """The person's active role assignments with the unit or department each covers."""
    return await active_assignments_of(session, person_id)
