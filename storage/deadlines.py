"""What deadlines are computed from (domain.deadlines): the deadline policies and the
organisation's settings for the calendar and the ladder."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import DeadlinePolicy, OrgSetting


async def deadline_policies(session: AsyncSession) -> list[DeadlinePolicy]:
    """Every deadline policy."""
    return list((await session.exec(select(DeadlinePolicy))).all())


async def settings(session: AsyncSession, keys: Collection[str]) -> dict[str, Any]:
    """The organisation's settings with these keys, key -> value (keys not set left out)."""
    rows = await session.exec(select(OrgSetting).where(OrgSetting.key.in_(list(keys))))
    return {s.key: s.value for s in rows.all()}
