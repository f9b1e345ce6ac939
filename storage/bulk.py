"""Many rows at once, straight to the driver: no ORM objects and no per-value type processing.

For the writes that come by the thousand (the sweep's escalations: their ticket rows, events
and outbox messages). Values are converted here as the column types would convert them (UTC
timestamps, JSON, enums), once per distinct timestamp, and the rows go to the driver in the
caller's transaction: executemany on SQLite, COPY on PostgreSQL.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import json_dumps

# How SQLAlchemy's SQLite DATETIME stores a value: text that sorts like the time.
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"
_scratch = itertools.count()


def _time_converter(name: str, dialect: str) -> Callable[[datetime], Any]:
    memo: dict[datetime, Any] = {}

    def convert(value: datetime) -> Any:
        found = memo.get(value)
        if found is None:
            if value.tzinfo is None:
                raise ValueError(f"naive datetime given to {name}")
            utc = value.astimezone(UTC)
            found = utc.replace(tzinfo=None).strftime(_SQLITE_TIME) if dialect == "sqlite" else utc
            memo[value] = found
        return found

    return convert


def _enum_value(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


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
            found.append((position, _enum_value))
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


async def _copy(connection: Any, table: str, names: str, values: list[tuple]) -> None:
    """COPY the rows in; psycopg formats each row in C."""
    raw = await connection.get_raw_connection()
    statement = f'COPY "{table}" ({names}) FROM STDIN'
    async with raw.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in values:
            await copy.write_row(row)


async def insert_rows(
    session: AsyncSession, table: sa.Table, rows: Sequence[dict[str, Any]], *, chunk: int = 5000
) -> None:
    """INSERT every row (all with the same keys) in the session's transaction."""
    if not rows:
        return
    await session.flush()  # what the session holds goes first, as an ORM write would
    connection = await session.connection()
    dialect = connection.dialect.name
    columns = [table.c[name] for name in rows[0]]
    values = _tuples(columns, rows, dialect)
    names = ", ".join(c.name for c in columns)
    if dialect == "postgresql":
        # COPY: PostgreSQL's own bulk path, several times faster than INSERT executemany.
        await _copy(connection, table.name, names, values)
        return
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join("?" * len(columns))})'
    for start in range(0, len(values), chunk):
        await connection.exec_driver_sql(sql, values[start : start + chunk])


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
    await session.flush()
    connection = await session.connection()
    dialect = connection.dialect.name
    # The key last, where the WHERE clause wants it.
    columns = [table.c[name] for name in rows[0] if name != key] + [table.c[key]]
    values = _tuples(columns, rows, dialect)
    changed = [c.name for c in columns[:-1]]
    if dialect == "postgresql":
        # COPY the new values into a scratch table, then one UPDATE ... FROM it.
        scratch = f"_bulk_{table.name}_{next(_scratch)}"
        names = ", ".join(c.name for c in columns)
        await connection.exec_driver_sql(
            f'CREATE TEMP TABLE "{scratch}" ON COMMIT DROP AS '
            f'SELECT {names} FROM "{table.name}" WITH NO DATA'
        )
        await _copy(connection, scratch, names, values)
        sets = ", ".join(f"{name} = s.{name}" for name in changed)
        await connection.exec_driver_sql(
            f'UPDATE "{table.name}" AS t SET {sets} FROM "{scratch}" AS s WHERE t.{key} = s.{key}'
        )
        await connection.exec_driver_sql(f'DROP TABLE "{scratch}"')
        return
    sets = ", ".join(f"{name} = ?" for name in changed)
    sql = f'UPDATE "{table.name}" SET {sets} WHERE {key} = ?'
    for start in range(0, len(values), chunk):
        await connection.exec_driver_sql(sql, values[start : start + chunk])
