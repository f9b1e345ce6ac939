"""Test data: a tiny organisation tree and people, straight into the tables; Telegram
messages and button presses as aiogram objects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiogram.types import CallbackQuery, Message
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.enums import MemberStatus, UnitKind
from storage.models import Department, Member, OrgUnit, Person


@dataclass
class Tree:
    city: OrgUnit
    district: OrgUnit
    street: OrgUnit
    community: OrgUnit
    grid: OrgUnit
    other_grid: OrgUnit
    department: Department


async def add_unit(
    session: AsyncSession, kind: UnitKind, code: str, parent: OrgUnit | None
) -> OrgUnit:
    unit = OrgUnit(
        kind=kind,
        code=code,
        name_zh=f"{code}（中）",
        name_en=f"{code} (en)",
        parent_id=parent.id if parent else None,
    )
    session.add(unit)
    await session.flush()
    unit.path = f"{parent.path if parent else '/'}{unit.id}/"
    return unit


async def make_tree(session: AsyncSession) -> Tree:
    """city > district > street > community > two grids, and one department at the district."""
    city = await add_unit(session, UnitKind.CITY, "ZZ", None)
    district = await add_unit(session, UnitKind.DISTRICT, "ZZ-JS", city)
    street = await add_unit(session, UnitKind.STREET, "ZZ-JS-01", district)
    community = await add_unit(session, UnitKind.COMMUNITY, "ZZ-JS-01-01", street)
    grid = await add_unit(session, UnitKind.GRID, "ZZ-JS-01-01-G1", community)
    other_grid = await add_unit(session, UnitKind.GRID, "ZZ-JS-01-01-G2", community)
    department = Department(
        code="CG", name_zh="城管局", name_en="Urban Management", unit_id=district.id
    )
    session.add(department)
    await session.commit()
    return Tree(city, district, street, community, grid, other_grid, department)


async def make_person(
    session: AsyncSession, telegram_id: int, name: str = "Tester", language: str = "zh-hans"
) -> Person:
    person = Person(telegram_id=telegram_id, full_name=name, language=language)
    session.add(person)
    await session.commit()
    return person


PHOTO = [{"file_id": "p", "file_unique_id": "u", "width": 1, "height": 1}]


async def make_members(session: AsyncSession, tree: Tree, count: int) -> list[Person]:
    """Approved Party members of the tree's community, in its grid (telegram ids 1000...)."""
    people = []
    for n in range(count):
        person = await make_person(session, 1000 + n, f"Member {n}")
        session.add(
            Member(
                person_id=person.id,
                full_name=f"Member {n}",
                branch="第一党支部",
                community_id=tree.community.id,
                grid_id=tree.grid.id,
                status=MemberStatus.APPROVED,
            )
        )
        people.append(person)
    await session.commit()
    return people


def tg_message(text: str | None = None, **extra: Any) -> Message:
    """A private message from user 5 (extra fields: photo=PHOTO, location=..., caption=...)."""
    return Message.model_validate(
        {
            "message_id": 1,
            "date": 0,
            "chat": {"id": 5, "type": "private"},
            "from": {"id": 5, "is_bot": False, "first_name": "A"},
            "text": text,
            **extra,
        }
    )


def tg_query(data: str) -> CallbackQuery:
    """A button press by user 5 with this callback data, on a message of the bot's."""
    return CallbackQuery.model_validate(
        {
            "id": "q",
            "from": {"id": 5, "is_bot": False, "first_name": "A"},
            "chat_instance": "c",
            "data": data,
            "message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"}},
        }
    )
