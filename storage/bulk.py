"""Many rows at once, straight to the driver: no ORM objects and no per-value type processing.

For the writes that come by the thousand (the sweep's escalations: their ticket rows, events
and outbox messages). Values are converted here as the column types would convert them (UTC
timestamps, JSON, enums), once per distinct timestamp, and the rows go to the driver in the
caller's transaction: executemany on SQLite, COPY on PostgreSQL (a plain INSERT for a few).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from datetime import datetime
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import json_dumps
from storage.dialect import Driver, db_time

_scratch = itertools.count()


def _time_converter(name: str, dialect: str) -> Callable[[datetime], Any]:
    memo: dict[datetime, Any] = {}

    def convert(value: datetime) -> Any:
        found = memo.get(value)
        if found is None:
            if value.tzinfo is None:
                raise ValueError(f"naive datetime given to {name}")
            found = memo[value] = db_time(value, dialect)
        return found

    return convert


def _enum_converter() -> Callable[[Any], Any]:
    # Memoised like the times: an enum's `.value` is a property, slow next to a dict lookup.
    memo: dict[Any, Any] = {}

    def convert(value: Any) -> Any:
        found = memo.get(value)
        if found is None:
            found = memo[value] = value.value if isinstance(value, Enum) else value
        return found

    return convert


def _converters(columns: Sequence[sa.Column], dialect: str) -> list[tuple[int, Callable]]:
    """(position, converter) for the columns whose values need one."""
    found = []
    for position, column in enumerate(columns):
        kind = column.type
        if isinstance(kind, sa.JSON):
            found.append((position, json_dumps))
        elif isinstance(kind, sa.types.TypeDecorator) and isinstance(kind.impl, sa.DateTime):
            found.append((position, _time_converter(column.name, dialect)))
        elif isinstance(kind, sa.Enum):
            found.append((position, _enum_converter()))
    return found


def _tuples(
    columns: Sequence[sa.Column], rows: Sequence[dict[str, Any]], dialect: str
) -> list[tuple]:
    names = [c.name for c in columns]
    converters = _converters(columns, dialect)
    out = []
    for row in rows:
        values = [row[name] for name in names]
        for position, convert in converters:
            value = values[position]
            if value is not None:
                values[position] = convert(value)
        out.append(tuple(values))
    return out


# Above this many rows PostgreSQL takes them by COPY; below it a plain INSERT is cheaper.
COPY_FROM = 50


async def insert_rows(
    session: AsyncSession | Driver,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    *,
    chunk: int = 5000,
) -> None:
    """INSERT every row (all with the same keys) in the session's transaction."""
    if not rows:
        return
    # What the session holds goes first, as an ORM write would (Driver.of flushes).
    db = session if isinstance(session, Driver) else await Driver.of(session)
    columns = [table.c[name] for name in rows[0]]
    values = _tuples(columns, rows, db.dialect)
    names = ", ".join(c.name for c in columns)
    if db.dialect == "postgresql" and len(values) >= COPY_FROM:
        # COPY: PostgreSQL's own bulk path, several times faster than INSERT executemany.
        await db.copy(table.name, names, values)
        return
    sql = _insert_sql(table, columns)
    for start in range(0, len(values), chunk):
        await db.many(sql, values[start : start + chunk])


def _insert_sql(table: sa.Table, columns: list[sa.Column]) -> str:
    names = ", ".join(c.name for c in columns)
    return f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join("?" * len(columns))})'


async def update_rows(
    session: AsyncSession,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    *,
    key: str = "id",
    chunk: int = 5000,
) -> None:
    """UPDATE each row by `key` (every row with the same keys) in the session's transaction."""
    if not rows:
        return
    db = await Driver.of(session)
    dialect = db.dialect
    # The key last, where the WHERE clause wants it.
    columns = [table.c[name] for name in rows[0] if name != key] + [table.c[key]]
    values = _tuples(columns, rows, dialect)
    changed = [c.name for c in columns[:-1]]
    if dialect == "postgresql":
        # COPY the new values into a scratch table, then one UPDATE ... FROM it.
        scratch = f"_bulk_{table.name}_{next(_scratch)}"
        names = ", ".join(c.name for c in columns)
        await db.rows(
            f'CREATE TEMP TABLE "{scratch}" ON COMMIT DROP AS '
            f'SELECT {names} FROM "{table.name}" WITH NO DATA'
        )
        await db.copy(scratch, names, values)
        sets = ", ".join(f"{name} = s.{name}" for name in changed)
        await db.rows(
            f'UPDATE "{table.name}" AS t SET {sets} FROM "{scratch}" AS s WHERE t.{key} = s.{key}'
        )
        await db.rows(f'DROP TABLE "{scratch}"')
        return
    sets = ", ".join(f"{name} = ?" for name in changed)
    sql = f'UPDATE "{table.name}" SET {sets} WHERE {key} = ?'
    for start in range(0, len(values), chunk):
        await db.many(sql, values[start : start + chunk])
