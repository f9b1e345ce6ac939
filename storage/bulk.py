"""Many rows at once, straight to the driver: no ORM objects and no per-value type processing.

For the few writes that come by the thousand (the sweep's escalations: their ticket rows,
events and outbox messages). Values are converted here exactly as the column types would
convert them (UTC timestamps, JSON, enums), once per value, and the statement goes to the
driver's executemany in the caller's transaction.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from datetime import UTC
from enum import Enum
from typing import Any

import sqlalchemy as sa
from sqlmodel.ext.asyncio.session import AsyncSession

# How SQLAlchemy's SQLite DATETIME stores a value: text that sorts like the time.
_SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def _converter(column: sa.Column, dialect: str):
    is_json = isinstance(column.type, sa.JSON)
    is_time = isinstance(column.type, sa.types.TypeDecorator) and isinstance(
        column.type.impl, sa.DateTime
    )

    def convert(value: Any) -> Any:
        if value is None:
            return None
        if is_json:
            return json.dumps(value)
        if is_time:
            if value.tzinfo is None:
                raise ValueError(f"naive datetime given to {column.name}")
            value = value.astimezone(UTC)
            return (
                value.replace(tzinfo=None).strftime(_SQLITE_TIME) if dialect == "sqlite" else value
            )
        if isinstance(value, Enum):
            return value.value
        return value

    return convert


def _placeholder(column: sa.Column, dialect: str) -> str:
    name = column.name
    if dialect == "sqlite":
        return f":{name}"
    if isinstance(column.type, sa.JSON):
        return f"CAST(%({name})s AS jsonb)"
    return f"%({name})s"


def _prepare(
    table: sa.Table, rows: Sequence[dict[str, Any]], dialect: str
) -> tuple[list[sa.Column], list[dict[str, Any]]]:
    columns = [table.c[name] for name in rows[0]]
    converters = [(c.name, _converter(c, dialect)) for c in columns]
    return columns, [{name: convert(row[name]) for name, convert in converters} for row in rows]


async def insert_rows(
    session: AsyncSession, table: sa.Table, rows: Sequence[dict[str, Any]], *, chunk: int = 5000
) -> None:
    """INSERT every row (all with the same keys) in the session's transaction."""
    if not rows:
        return
    connection = await session.connection()
    dialect = connection.dialect.name
    columns, params = _prepare(table, rows, dialect)
    names = ", ".join(c.name for c in columns)
    if dialect == "postgresql":
        # COPY: PostgreSQL's own bulk path, several times faster than INSERT executemany.
        raw = await connection.get_raw_connection()
        statement = f'COPY "{table.name}" ({names}) FROM STDIN'
        async with raw.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
            for row in params:
                await copy.write_row(tuple(row.values()))
        return
    sql = (
        f'INSERT INTO "{table.name}" ({names}) '
        f"VALUES ({', '.join(_placeholder(c, dialect) for c in columns)})"
    )
    for start in range(0, len(params), chunk):
        await connection.exec_driver_sql(sql, params[start : start + chunk])


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
    connection = await session.connection()
    dialect = connection.dialect.name
    columns, params = _prepare(table, rows, dialect)
    if dialect == "postgresql":
        await _update_by_copy(connection, table, columns, params, key)
        return
    sets = ", ".join(f"{c.name} = {_placeholder(c, dialect)}" for c in columns if c.name != key)
    where = _placeholder(table.c[key], dialect)
    sql = f'UPDATE "{table.name}" SET {sets} WHERE {key} = {where}'
    for start in range(0, len(params), chunk):
        await connection.exec_driver_sql(sql, params[start : start + chunk])


_scratch = itertools.count()


async def _update_by_copy(
    connection: Any, table: sa.Table, columns: list[sa.Column], params: list[dict], key: str
) -> None:
    """PostgreSQL: COPY the new values into a scratch table, then one UPDATE ... FROM it."""
    scratch = f"_bulk_{table.name}_{next(_scratch)}"
    names = ", ".join(c.name for c in columns)
    await connection.exec_driver_sql(
        f'CREATE TEMP TABLE "{scratch}" ON COMMIT DROP AS '
        f'SELECT {names} FROM "{table.name}" WITH NO DATA'
    )
    raw = await connection.get_raw_connection()
    statement = f'COPY "{scratch}" ({names}) FROM STDIN'
    async with raw.driver_connection.cursor() as cursor, cursor.copy(statement) as copy:
        for row in params:
            await copy.write_row(tuple(row.values()))
    sets = ", ".join(f"{c.name} = s.{c.name}" for c in columns if c.name != key)
    await connection.exec_driver_sql(
        f'UPDATE "{table.name}" AS t SET {sets} FROM "{scratch}" AS s WHERE t.{key} = s.{key}'
    )
    await connection.exec_driver_sql(f'DROP TABLE "{scratch}"')
