"""Jobs that must happen once (a day's digest, a month's summaries), however many schedulers run."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import JobRun


async def claim_once(session: AsyncSession, key: str, now: datetime) -> bool:
    """Claim `key` in the session's transaction; False (transaction ended) if already taken.

    The key is the row's primary key: of two schedulers inserting it at once, the second
    waits for the first and then fails, so only one goes on.
    """
    if await session.get(JobRun, key) is not None:
        await session.rollback()
        return False
    session.add(JobRun(key=key, at=now))
    try:
        await session.flush()
    except IntegrityError:
        await session.rollback()
        return False
    return True
