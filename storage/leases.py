"""Leases: which process does a one-process job (storage.models.Lease), until when.

Each function runs in its own short transaction on the given sessionmaker: a lease is
taken or renewed by one conditional UPDATE (or the first INSERT), so of several processes
trying at once exactly one holds it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from storage.models import Lease

_lease = Lease.__table__


async def take_or_renew(
    sessionmaker: async_sessionmaker, name: str, holder: str, now: datetime, ttl: timedelta
) -> bool:
    """Hold `name` until now + ttl if it is free, expired or already ours; whether we hold it."""
    expires = now + ttl
    async with sessionmaker() as session:
        result = await session.exec(
            sa.update(_lease)
            .where(
                _lease.c.name == name,
                sa.or_(_lease.c.holder == holder, _lease.c.expires_at < now),
            )
            .values(
                holder=holder,
                expires_at=expires,
                acquired_at=sa.case((_lease.c.holder == holder, _lease.c.acquired_at), else_=now),
            )
        )
        if result.rowcount == 1:
            await session.commit()
            return True
        await session.rollback()
    try:
        async with sessionmaker() as session:
            await session.exec(
                sa.insert(_lease).values(
                    name=name, holder=holder, expires_at=expires, acquired_at=now
                )
            )
            await session.commit()
    except IntegrityError:
        return False  # someone else holds it
    return True


async def release(sessionmaker: async_sessionmaker, name: str, holder: str) -> None:
    """Give the lease up at once (a clean stop), so another process need not wait for it."""
    async with sessionmaker() as session:
        await session.exec(
            sa.delete(_lease).where(_lease.c.name == name, _lease.c.holder == holder)
        )
        await session.commit()


async def holder_of(sessionmaker: async_sessionmaker, name: str, now: datetime) -> str | None:
    """Who holds `name` now (None when nobody does or the lease expired)."""
    async with sessionmaker() as session:
        result = await session.exec(
            sa.select(_lease.c.holder).where(_lease.c.name == name, _lease.c.expires_at >= now)
        )
        return result.scalar_one_or_none()
