"""What the organisation's snapshot (domain.reference) is read from: every unit and every
category."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import defer
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Category, OrgUnit


async def all_units(session: AsyncSession) -> list[OrgUnit]:
    """Every unit, without its boundary."""
    # Not the polygons: the locator reads them once, and they are the bulk of a row.
    return list(
        (await session.exec(select(OrgUnit).options(defer(OrgUnit.boundary, raiseload=True)))).all()
    )


async def all_categories(session: AsyncSession) -> list[Category]:
    """Every category, active or not, in the order residents see them."""
    return list(
        (await session.exec(select(Category).order_by(Category.position, Category.id))).all()
    )


def detach(session: AsyncSession, objects: Iterable[object]) -> None:
    """Take loaded rows out of the session, with what they hold: a snapshot that outlives it
    (the organisation's, shared by every update and the scheduler) must not be expired by a
    rollback of the session that read it."""
    for row in objects:
        session.expunge(row)
