"""SQLite for SQLAlchemy's asyncio engine, with the sqlite3 calls made inline on the event loop.

aiosqlite gives every connection a thread and hands every call over to it and back; for a
local WAL file, where a statement takes microseconds, the hand-offs cost more than the SQL.
Here the asyncio engine drives the standard `sqlite3` module directly: a statement runs on
the event loop's thread, within SQLAlchemy's greenlet, and returns without yielding.

The catch is waiting for a lock. SQLite's own busy handler sleeps in the calling thread, so
an inline call waiting for the write lock would freeze the loop; if the holder is another
connection of this same process, it needs that loop to finish its transaction: a deadlock
until the timeout, then "database is locked". So SQLite's busy timeout stays 0 and a call
that gets SQLITE_BUSY is retried after an `asyncio.sleep`, with a growing backoff, until the
connection's timeout (sqlite3's `timeout` argument, in seconds) has passed: the loop keeps
running meanwhile, whoever holds the lock (this process or another one) can finish, and a
statement that got SQLITE_BUSY had no effect, so running it again is safe. Do not set
`PRAGMA busy_timeout` on these connections: pass `timeout` to connect instead.

Rows are fetched when the statement runs, as with aiosqlite, so a result never keeps a
statement (and its read snapshot) open after its transaction ends. Server-side cursors
(`AsyncConnection.stream()`) fetch lazily instead.

URL: ``sqlite+gridbot_inline:///path/to/file.db``; importing this module registers the driver.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sqlalchemy import pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.base import SQLiteExecutionContext
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import AdaptedConnection
from sqlalchemy.engine.url import URL
from sqlalchemy.util.concurrency import in_greenlet

try:
    from sqlalchemy.util.concurrency import await_
except ImportError:  # SQLAlchemy 2.0
    from sqlalchemy.util.concurrency import await_only as await_

DRIVER = "gridbot_inline"
DEFAULT_TIMEOUT = 5.0  # seconds, sqlite3.connect's default
FIRST_BACKOFF = 0.0005  # seconds before the first retry; doubles up to MAX_BACKOFF
MAX_BACKOFF = 0.01

_SQLITE_BUSY = 5
_SQLITE_BUSY_SNAPSHOT = 517  # a stale read snapshot: waiting can't help, SQLite fails at once

busy_retries = 0  # how many times a call slept waiting for a lock, in this process (diagnostics)

_BEGIN_MODES = {"DEFERRED", "IMMEDIATE", "EXCLUSIVE"}

_T = TypeVar("_T")


class _Ready:
    """An awaitable that is already done: awaiting it returns None without yielding."""

    __slots__ = ()

    def __await__(self) -> Any:
        return iter(())


_READY = _Ready()


def _checkpoint() -> None:
    # AsyncConnection.execute() insists that its greenlet awaited something (a check for
    # sync drivers used by mistake): hand it a finished awaitable. The loop is not entered.
    if in_greenlet():
        await_(_READY)


def is_busy(error: BaseException) -> bool:
    """Whether the error is SQLITE_BUSY (another connection holds a lock) and worth a retry."""
    if not isinstance(error, sqlite3.OperationalError):
        return False
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:
        return "database is locked" in str(error)
    return code & 0xFF == _SQLITE_BUSY and code != _SQLITE_BUSY_SNAPSHOT


def busy_waits(timeout: float) -> Iterator[float]:
    """The sleeps between tries of a statement that found the database locked: FIRST_BACKOFF,
    doubling up to MAX_BACKOFF, until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    backoff = FIRST_BACKOFF
    while (remaining := deadline - time.monotonic()) > 0:
        yield min(backoff, remaining)
        backoff = min(backoff * 2, MAX_BACKOFF)


class Connection(AdaptedConnection):
    """A DB-API connection over `sqlite3.Connection` whose lock waits yield to the loop."""

    __slots__ = ("timeout",)

    _connection: sqlite3.Connection

    def __init__(self, connection: sqlite3.Connection, timeout: float) -> None:
        self._connection = connection
        self.timeout = timeout

    def run(self, fn: Callable[..., _T], *args: Any, changes_safe: bool = True) -> _T:
        """Call fn(*args); on SQLITE_BUSY sleep asynchronously and call again, until timeout.

        changes_safe=False: retry only if nothing was written before the error (executemany
        outside a transaction commits each row by itself).
        """
        global busy_retries
        if not changes_safe:
            before = self._connection.total_changes
        try:
            return fn(*args)
        except sqlite3.OperationalError as error:
            if not is_busy(error) or not in_greenlet():
                raise
            if not changes_safe and self._connection.total_changes != before:
                raise
            busy = error
        for wait in busy_waits(self.timeout):
            busy_retries += 1
            await_(asyncio.sleep(wait))
            try:
                return fn(*args)
            except sqlite3.OperationalError as error:
                if not is_busy(error):
                    raise
                if not changes_safe and self._connection.total_changes != before:
                    raise
                busy = error
        raise busy  # "database is locked", as when SQLite's own busy handler gives up

    def cursor(self, server_side: bool = False) -> Cursor:
        return (ServerSideCursor if server_side else Cursor)(self)

    def execute(self, operation: str, parameters: Any = ()) -> Cursor:
        cursor = self.cursor()
        cursor.execute(operation, parameters)
        return cursor

    def commit(self) -> None:
        self.run(self._connection.commit)

    def rollback(self) -> None:
        self._connection.rollback()

    def close(self) -> None:
        self._connection.close()

    @property
    def isolation_level(self) -> str | None:
        return self._connection.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._connection.isolation_level = value

    @property
    def in_transaction(self) -> bool:
        return self._connection.in_transaction

    def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._connection.create_function(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


class Cursor:
    """Runs the statement (retrying on SQLITE_BUSY) and fetches all its rows at once."""

    __slots__ = ("_connection", "_cursor", "_rows", "arraysize")

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._cursor = connection._connection.cursor()
        self._rows: collections.deque[Any] = collections.deque()
        self.arraysize = 1

    def _run(self, operation: str, parameters: Any) -> None:
        cursor = self._cursor.execute(operation, parameters)
        if cursor.description is not None:
            self._rows = collections.deque(cursor.fetchall())

    def execute(self, operation: str, parameters: Any = ()) -> Cursor:
        _checkpoint()
        self._rows.clear()
        self._connection.run(self._run, operation, parameters if parameters is not None else ())
        return self

    def executemany(self, operation: str, seq_of_parameters: Any) -> Cursor:
        _checkpoint()
        self._rows.clear()
        self._connection.run(
            self._cursor.executemany, operation, seq_of_parameters, changes_safe=False
        )
        return self

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        rows = self._rows
        count = min(self.arraysize if size is None else size, len(rows))
        return [rows.popleft() for _ in range(count)]

    def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    def __iter__(self) -> Any:
        while self._rows:
            yield self._rows.popleft()

    def close(self) -> None:
        self._rows.clear()
        self._cursor.close()

    async def _async_soft_close(self) -> None:
        """SQLAlchemy's asyncio layer calls this on results it hands back: nothing to do."""

    def setinputsizes(self, *args: Any) -> None:
        pass

    def setoutputsize(self, *args: Any) -> None:
        pass


class ServerSideCursor(Cursor):
    """For AsyncConnection.stream(): rows are fetched from SQLite as they are asked for."""

    __slots__ = ()

    def _run(self, operation: str, parameters: Any) -> None:
        self._cursor.execute(operation, parameters)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(self.arraysize if size is None else size)

    def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    def __iter__(self) -> Any:
        return iter(self._cursor)

    def close(self) -> None:
        self._cursor.close()


class _DBAPI:
    """The DB-API module: sqlite3's names (exceptions, constants), with our connect()."""

    paramstyle = "qmark"

    def __getattr__(self, name: str) -> Any:
        return getattr(sqlite3, name)

    @staticmethod
    def connect(database: str, timeout: float = DEFAULT_TIMEOUT, **kwargs: Any) -> Connection:
        # SQLite's busy handler would block the loop: 0 here, and Connection.run waits instead.
        kwargs["check_same_thread"] = False  # all calls come from the loop's thread, but a
        # pool's garbage-collection cleanup may close a connection from another one
        return Connection(sqlite3.connect(database, timeout=0, **kwargs), timeout)


dbapi = _DBAPI()


class SQLiteExecutionContext_inline(SQLiteExecutionContext):
    def create_server_side_cursor(self) -> Any:
        return self._dbapi_connection.cursor(server_side=True)


class SQLiteDialect_inline(SQLiteDialect_pysqlite):
    """The pysqlite dialect, marked async so that create_async_engine accepts it.

    begin_mode="IMMEDIATE" (or DEFERRED, EXCLUSIVE): every transaction starts with
    `BEGIN <mode>` (create_async_engine(..., begin_mode=...)); the connections must then be in
    sqlite3's autocommit mode (isolation_level None), so that the driver adds no BEGIN of its
    own. Cheaper than a "begin" event listener: no statement through the engine, and no
    engine events to dispatch on every execute.
    """

    driver = DRIVER
    is_async = True
    has_terminate = True
    supports_statement_cache = True
    supports_server_side_cursors = True
    execution_ctx_cls = SQLiteExecutionContext_inline

    def __init__(self, begin_mode: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if begin_mode is not None and begin_mode.upper() not in _BEGIN_MODES:
            raise ValueError(f"begin_mode must be one of {sorted(_BEGIN_MODES)}: {begin_mode!r}")
        self._begin = None if begin_mode is None else f"BEGIN {begin_mode.upper()}"

    def do_begin(self, dbapi_connection: Any) -> None:
        if self._begin is not None:
            cursor = dbapi_connection.cursor()
            cursor.execute(self._begin)
            cursor.close()

    @classmethod
    def import_dbapi(cls) -> Any:
        return dbapi

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        if cls._is_url_file_db(url):
            return pool.AsyncAdaptedQueuePool
        return pool.StaticPool

    def get_driver_connection(self, connection: Any) -> Any:
        return connection._connection

    def do_terminate(self, dbapi_connection: Any) -> None:
        dbapi_connection.close()


dialect = SQLiteDialect_inline

registry.register(f"sqlite.{DRIVER}", __name__, "SQLiteDialect_inline")
