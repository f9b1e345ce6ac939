"""Durable conversation (FSM) state: one row per chat/user key.

Every step of every dialog reads and writes its row, so these are the statements nearly every
update makes. Through the ORM each cost a session, a pooled connection, a transaction and
SQLAlchemy's statement machinery: far more than the statement. Here they go straight to the
driver: a step's write in the update's own transaction (`save_in`: one statement, and one
commit with the rest of the update), reads and writes outside updates on a connection kept
for them, in autocommit mode (an upsert or a delete is atomic by itself). Rows are written
exactly as the `conversation_state` table's column types write them, so the ORM reads them
back unchanged.

SQLite: an aiosqlite connection in autocommit mode, whose statements wait for another
connection's write lock in its own thread, up to the timeout. PostgreSQL: a psycopg
connection in autocommit mode; a broken connection is opened again and the statement
repeated once (both statements are idempotent).
"""

from __future__ import annotations

import asyncio
import hashlib
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.engine import make_url
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import SQLITE_BUSY_TIMEOUT_S, SQLITE_PRAGMAS, json_dumps
from storage.dialect import Driver, db_time

Conversation = tuple[str | None, dict[str, Any]]

_UPSERT = (
    'INSERT INTO conversation_state ("key", state, data, updated_at) VALUES ({p}, {p}, {p}, {p}) '
    'ON CONFLICT ("key") DO UPDATE SET state = excluded.state, data = excluded.data, '
    "updated_at = excluded.updated_at"
)
_DELETE = 'DELETE FROM conversation_state WHERE "key" = {p}'
_SELECT = 'SELECT state, data FROM conversation_state WHERE "key" = {p}'
# In the `?` style of storage.dialect.Driver, which speaks each database's own.
_DRIVER_UPSERT = _UPSERT.format(p="?")
_DRIVER_DELETE = _DELETE.format(p="?")


def _stored_data(data: dict[str, Any], dialect: str) -> Any:
    """The data column's value as the database's driver takes it: JSON text, or jsonb."""
    if dialect == "postgresql":
        from psycopg.types.json import Jsonb  # only PostgreSQL deployments have it

        return Jsonb(data, dumps=json_dumps)
    return json_dumps(data)


class ConversationStore(ABC):
    """Loads and saves conversations; `open_store` picks the database's kind."""

    # Whether try_lock/unlock hold a lock that other processes see (PostgreSQL's advisory
    # locks); SQLite serves one process, whose own locks are enough.
    locks_across_processes = False

    async def try_lock(self, name: str) -> bool:
        """Take the lock `name` if nobody holds it; whether it was taken."""
        raise NotImplementedError

    async def unlock(self, name: str) -> None:
        """Give up the lock `name` taken with try_lock."""
        raise NotImplementedError

    async def save(self, key: str, now: datetime, state: str | None, data: dict[str, Any]) -> None:
        """Store the whole conversation; an empty one (no state, no data) is deleted instead."""
        if now.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        if state is None and not data:
            await self._delete(key)
        else:
            await self._upsert(key, now.astimezone(UTC), state, data)

    async def save_in(
        self,
        session: AsyncSession,
        key: str,
        now: datetime,
        state: str | None,
        data: dict[str, Any],
    ) -> None:
        """Store the whole conversation in the session's transaction: a dialog step commits
        with the rest of its update (its claim, what it changed), or not at all."""
        db = await Driver.of(session)
        if state is None and not data:
            await db.rows(_DRIVER_DELETE, (key,))
            return
        stored = _stored_data(data, db.dialect)
        await db.rows(_DRIVER_UPSERT, (key, state, stored, db_time(now, db.dialect)))

    async def save_after(
        self,
        session: AsyncSession,
        key: str,
        now: datetime,
        state: str | None,
        data: dict[str, Any],
    ) -> None:
        """Store the whole conversation for an update whose transaction has ended (its
        changes committed before a reply): on the store's own connection, one statement in
        autocommit, cheaper than a transaction of its own."""
        await self.save(key, now, state, data)

    @abstractmethod
    async def load(self, key: str) -> Conversation:
        """The stored state and data for a key; (None, {}) when nothing is stored."""

    @abstractmethod
    async def _upsert(
        self, key: str, now: datetime, state: str | None, data: dict[str, Any]
    ) -> None: ...

    @abstractmethod
    async def _delete(self, key: str) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...


class SQLiteConversations(ConversationStore):
    def __init__(self, path: str, *, timeout: float = SQLITE_BUSY_TIMEOUT_S) -> None:
        self._path = path
        self._timeout = timeout
        self._conn: Any = None
        self._opening = asyncio.Lock()
        self._upsert_sql = _UPSERT.format(p="?")
        self._delete_sql = _DELETE.format(p="?")
        self._select_sql = _SELECT.format(p="?")

    async def _connection(self) -> Any:
        import aiosqlite

        async with self._opening:
            if self._conn is None:
                # Autocommit (isolation_level None): each statement is its own transaction.
                # While another connection holds the write lock, a statement waits for it in
                # the connection's thread, up to the timeout.
                conn = await aiosqlite.connect(
                    self._path, isolation_level=None, timeout=self._timeout
                )
                for pragma in SQLITE_PRAGMAS:
                    await conn.execute(pragma)
                self._conn = conn
        return self._conn

    async def save_after(
        self,
        session: AsyncSession,
        key: str,
        now: datetime,
        state: str | None,
        data: dict[str, Any],
    ) -> None:
        # In a transaction of the session, which its owner commits: on SQLite every write
        # then waits its turn for the engine's one connection (storage.db). From the store's
        # own connection it raced that one for the lock in SQLite's busy handler, and at
        # capacity (benchmarks/inbound.py) 67 steps waited past the 10 s timeout.
        await self.save_in(session, key, now, state, data)

    async def _run(self, sql: str, params: tuple) -> list[tuple]:
        conn = self._conn or await self._connection()
        # One trip to aiosqlite's thread rather than two (execute, then fetchall).
        return list(await conn.execute_fetchall(sql, params))

    async def load(self, key: str) -> Conversation:
        rows = await self._run(self._select_sql, (key,))
        if not rows:
            return None, {}
        state, data = rows[0]
        return state, dict(orjson.loads(data)) if data else {}

    async def _upsert(
        self, key: str, now: datetime, state: str | None, data: dict[str, Any]
    ) -> None:
        stored = _stored_data(data, "sqlite")
        await self._run(self._upsert_sql, (key, state, stored, db_time(now, "sqlite")))

    async def _delete(self, key: str) -> None:
        await self._run(self._delete_sql, (key,))

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


class PostgresConversations(ConversationStore):
    locks_across_processes = True

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._conn: Any = None
        self._lock = asyncio.Lock()
        # Advisory locks live on a connection of their own: a session-level lock is held by
        # the connection that took it, however many statements the other one runs meanwhile.
        self._locks_conn: Any = None
        self._locks_guard = asyncio.Lock()
        self._upsert_sql = _UPSERT.format(p="%s")
        self._delete_sql = _DELETE.format(p="%s")
        self._select_sql = _SELECT.format(p="%s")

    async def _connection(self) -> Any:
        import psycopg  # only PostgreSQL deployments have it

        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        return self._conn

    async def _run(self, sql: str, params: tuple) -> list[tuple]:
        import psycopg

        async with self._lock:
            for attempt in range(2):
                conn = await self._connection()
                try:
                    cursor = await conn.execute(sql, params)
                    return await cursor.fetchall() if cursor.description else []
                except psycopg.OperationalError:
                    # The server went away (a restart, a dropped connection): open a new
                    # connection and say it again; both statements may safely run twice.
                    if attempt or not conn.broken:
                        raise
                    await conn.close()
        raise AssertionError("unreachable")

    async def load(self, key: str) -> Conversation:
        rows = await self._run(self._select_sql, (key,))
        if not rows:
            return None, {}
        state, data = rows[0]
        return state, dict(data or {})

    async def _locks(self, sql: str, name: str) -> bool:
        import psycopg

        key = int.from_bytes(
            hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True
        )
        async with self._locks_guard:
            if self._locks_conn is None or self._locks_conn.closed:
                self._locks_conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True
                )
            try:
                cursor = await self._locks_conn.execute(sql, (key,))
                row = await cursor.fetchone()
            except psycopg.OperationalError:
                # The connection went, and every lock it held with it: the next call opens
                # another; a lock not taken is reported so, and the caller tries again.
                await self._locks_conn.close()
                return False
        return bool(row and row[0])

    async def try_lock(self, name: str) -> bool:
        return await self._locks("SELECT pg_try_advisory_lock(%s)", name)

    async def unlock(self, name: str) -> None:
        await self._locks("SELECT pg_advisory_unlock(%s)", name)

    async def _upsert(
        self, key: str, now: datetime, state: str | None, data: dict[str, Any]
    ) -> None:
        stored = _stored_data(data, "postgresql")
        await self._run(self._upsert_sql, (key, state, stored, now))

    async def _delete(self, key: str) -> None:
        await self._run(self._delete_sql, (key,))

    async def close(self) -> None:
        for conn in (self._conn, self._locks_conn):
            if conn is not None:
                await conn.close()


def open_store(url: str) -> ConversationStore:
    """The store for a database URL (sqlite:///path or postgresql://...)."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError("conversations need a database file, not an in-memory SQLite")
        return SQLiteConversations(parsed.database)
    if backend in ("postgresql", "postgres"):
        return PostgresConversations(
            parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        )
    raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")
