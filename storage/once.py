"""Jobs that must happen once (a day's digest, a month's summaries), however many schedulers run."""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from storage.dialect import insert
from storage.models import JobRun


async def claim_once(session: AsyncSession, key: str, now: datetime) -> bool:
    """Claim `key` in the session's transaction; whether it was free.

    The key is the row's primary key, inserted unless there: of two schedulers inserting it
    at once, the second waits for the first's transaction, then finds the key taken (or free
    again, if the first rolled back), so only one goes on. The caller does the work in this
    same transaction and commits it with the claim: a claim without its work is never
    committed, and work that rolls back frees the key for the next sweep. A key taken leaves
    the transaction as it was.
    """
    statement = (
        insert(session)(JobRun)
        .values(key=key, at=now)
        .on_conflict_do_nothing()
        .returning(JobRun.key)
    )
    return (await session.exec(statement)).first() is not None
