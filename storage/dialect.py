"""The session's own database connection, spoken to directly: for the few statements every
report runs, where building, compiling and executing them through SQLAlchemy costs many
times what the database does. The same statement text serves SQLite and PostgreSQL but for
the placeholders (written `?`, sent to psycopg as `%s`); the statements run in the session's
transaction, so they commit or roll back with everything else it did.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel.ext.asyncio.session import AsyncSession

# session.info key: the transaction a Driver was made for, and the Driver.
_DRIVER = "gridbot_driver"


def insert(session: AsyncSession) -> Any:
    """The session's database's INSERT, which knows ON CONFLICT."""
    return postgresql.insert if session.bind.dialect.name == "postgresql" else sqlite.insert


@cache
def driver_sql(sql: str, dialect: str) -> str:
    """A statement written with `?` placeholders, in the driver's own style."""
    return sql.replace("?", "%s") if dialect == "postgresql" else sql


class Driver:
    """The driver's connection under a session's transaction: aiosqlite's or psycopg's, both
    asynchronous."""

    __slots__ = ("dialect", "_conn")

    def __init__(self, dialect: str, conn: Any) -> None:
        self.dialect = dialect
        self._conn = conn

    @classmethod
    async def of(cls, session: AsyncSession) -> Driver:
        """The session's connection, its transaction begun (what the ORM has pending first).

        Kept in the session for the length of its transaction: the statements every update
        runs would otherwise each pay for looking the connection up again."""
        if session.new or session.dirty or session.deleted:
            await session.flush()
        known = session.info.get(_DRIVER)
        if known is not None and known[0] is session.get_transaction():
            return known[1]
        connection = await session.connection()
        raw = await connection.get_raw_connection()
        driver = cls(connection.dialect.name, raw.driver_connection)
        session.info[_DRIVER] = (session.get_transaction(), driver)
        return driver

    async def rows(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        """Run one statement; its rows (none for a statement that returns none)."""
        if self.dialect == "sqlite":
            # One trip to aiosqlite's thread rather than two (execute, then fetchall).
            return list(await self._conn.execute_fetchall(sql, params))
        cursor = await self._conn.execute(driver_sql(sql, self.dialect), params)
        return await cursor.fetchall() if cursor.description else []

    async def many(self, sql: str, seq: list[tuple]) -> None:
        """Run one statement for each parameter tuple."""
        if self.dialect == "postgresql":
            async with self._conn.cursor() as cursor:
                await cursor.executemany(driver_sql(sql, "postgresql"), seq)
            return
        await self._conn.executemany(sql, seq)

    async def copy(self, table: str, names: str, values: list[tuple]) -> None:
        """PostgreSQL's COPY: its own bulk path, each row formatted in C by psycopg."""
        statement = f'COPY "{table}" ({names}) FROM STDIN'
        async with self._conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in values:
                await copy.write_row(row)


# How a timestamp column (storage.types.UTCDateTime) keeps a value on SQLite: naive UTC text,
# which sorts like the time it holds.
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def db_time(value: datetime, dialect: str) -> Any:
    """An aware timestamp as the column's driver takes it: SQLite's text, or the datetime."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    utc = value.astimezone(UTC)
    if dialect != "sqlite":
        return utc
    # isoformat writes SQLITE_TIME's text several times faster than strftime.
    return utc.replace(tzinfo=None).isoformat(" ", "microseconds")


def utc_time(value: Any) -> datetime | None:
    """A timestamp as the driver hands it back (SQLite: naive UTC text), aware and in UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
