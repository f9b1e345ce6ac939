"""People as every update meets them: found by their Telegram account."""

from __future__ import annotations

from sqlalchemy.orm import make_transient_to_detached
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.dialect import Driver, utc_time
from storage.models import Person

# Straight to the driver: every update asks, and through the ORM the query cost about 150 us of
# the event loop (SQLAlchemy's statement and loading machinery) where the database takes a few
# (storage.dialect). The row still becomes the session's own Person, as if the ORM had loaded it.
_BY_TELEGRAM_ID = (
    "SELECT id, telegram_id, full_name, username, language, created_at, updated_at "
    "FROM person WHERE telegram_id = ?"
)


async def person_by_telegram_id(session: AsyncSession, telegram_id: int) -> Person | None:
    """The person with this Telegram account, a persistent object of the session (changes to
    it flush as usual), or None."""
    db = await Driver.of(session)
    rows = await db.rows(_BY_TELEGRAM_ID, (telegram_id,))
    if not rows:
        return None
    person_id, telegram_id, full_name, username, language, created_at, updated_at = rows[0]
    known = session.identity_map.get(session.identity_key(Person, person_id))
    if known is not None:
        return known
    person = Person(
        id=person_id,
        telegram_id=telegram_id,
        full_name=full_name,
        username=username,
        language=language,
        created_at=utc_time(created_at),
        updated_at=utc_time(updated_at),
    )
    make_transient_to_detached(person)
    session.add(person)
    return person
