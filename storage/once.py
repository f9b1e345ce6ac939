"""Jobs that must happen once (a day's digest, a month's summaries), however many schedulers run."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import JobRun


async def claim_once(session: AsyncSession, key: str, now: datetime) -> bool:
    """Claim `key` in the session's transaction; False (transaction ended) if already taken.

    The key is the row's primary key: of two schedulers inserting it at once, the second
    waits for the first and then fails, so only one goes on. The caller does the work in this
    same transaction and commits it with the claim: a claim without its work is never
    committed, and work that rolls back frees the key for the next sweep. Call it with no
    other change pending in the session (a refusal rolls the transaction back).
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
