"""Engines, sessions and migrations. Nothing here runs at import time."""

from __future__ import annotations

import asyncio
import importlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

# Alembic is imported where a migration needs it, not here: this module serves every command
# and the bot's update handling, which never migrate.
if TYPE_CHECKING:
    from alembic.config import Config

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# How long a statement waits for another connection's lock before "database is locked".
SQLITE_BUSY_TIMEOUT_S = 10.0
# PostgreSQL connections a process keeps open, and how many more it may open for a burst (the
# settings GRIDBOT_DB_POOL_SIZE and GRIDBOT_DB_POOL_OVERFLOW); a `gridbot run` process also
# holds 3 of its own (dialog state, per-chat locks, leases). The server's max_connections
# (100 by default) must cover every process's sum: three processes at 40 each did not.
POOL_SIZE = 15
POOL_OVERFLOW = 5


URL_FORMS = "sqlite:///path.db or postgresql://user:password@host/db"
POSTGRES_FIX = "pip install -e '.[postgres]'"


class DatabaseSetupError(Exception):
    """The database the URL names cannot be used as it is; the message is one line for the
    operator (never the password)."""


class DriverMissing(DatabaseSetupError):
    """The URL's database needs a driver that is not installed."""


class DatabaseUnavailable(DatabaseSetupError):
    """The database cannot be opened or reached."""


class DatabaseNotWritable(DatabaseSetupError):
    """The database opens but refuses writes (a read-only file, a read-only server or role)."""


class RevisionRefused(DatabaseSetupError):
    """An unknown migration target, a downgrade, or a database newer than this code."""


def parse_database_url(url: str) -> URL:
    """The URL parsed, or ValueError naming what is wrong (never echoing the URL: it may hold a
    password)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ValueError(f"not a database URL: use {URL_FORMS}") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql", "postgres"):
        raise ValueError(f"unsupported database {backend!r}: use {URL_FORMS}")
    return parsed


def require_driver(url: str) -> None:
    """DriverMissing when the URL's database needs a driver this installation lacks.

    psycopg comes with the `postgres` extra only, so a plain install meets it here first.
    """
    if parse_database_url(url).get_backend_name() == "sqlite":
        return  # sqlite3 ships with Python
    try:
        importlib.import_module("psycopg")
    except ImportError:
        raise DriverMissing(
            f"PostgreSQL needs the psycopg driver, which is not installed: {POSTGRES_FIX}"
        ) from None


def describe(url: str) -> str:
    """The database as the operator knows it, without the password."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return f"the SQLite file {parsed.database}" if parsed.database else "in-memory SQLite"
    where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
    return f"the PostgreSQL database {parsed.database or parsed.username or ''} at {where}"


def _reason(exc: DBAPIError) -> str:
    lines = [line.strip() for line in str(exc.orig).splitlines() if line.strip()]
    return lines[0] if lines else exc.orig.__class__.__name__


def _with_driver(url: str, sqlite_driver: str) -> str:
    require_driver(url)
    parsed = make_url(url)
    # psycopg 3 speaks both sync and async, so PostgreSQL needs one driver only.
    drivers = {"sqlite": sqlite_driver, "postgresql": "postgresql+psycopg"}
    drivers["postgres"] = drivers["postgresql"]
    driver = drivers[parsed.get_backend_name()]
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def async_url(url: str) -> str:
    """The URL with the async driver gridbot uses: aiosqlite or psycopg."""
    return _with_driver(url, "sqlite+aiosqlite")


def sync_url(url: str) -> str:
    """The same database through a synchronous driver (for migrations)."""
    return _with_driver(url, "sqlite")


SQLITE_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON")


def sqlite_pragmas(dbapi_connection: Any, _record: Any = None) -> None:
    """WAL, NORMAL sync and foreign keys on a new SQLite connection (every one gridbot opens)."""
    # Autocommit at the driver level: the engine's "begin" event issues the BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


def json_dumps(value: Any) -> str:
    """JSON text as the columns store it (dict keys that are not strings become strings)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def make_engine(
    url: str, *, pool_size: int = POOL_SIZE, pool_overflow: int = POOL_OVERFLOW, **kwargs: Any
) -> AsyncEngine:
    """An async engine for the URL; SQLite gets WAL, foreign keys and immediate transactions.

    SQLite runs through aiosqlite, on one connection with a thread of its own, where a
    statement waiting for another process's write lock waits (sqlite3's `timeout`) without
    holding up the event loop. PostgreSQL keeps `pool_size` connections open and opens up to
    `pool_overflow` more.
    """
    if make_url(url).get_backend_name() == "sqlite":
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S, **kwargs.pop("connect_args", {})}
        kwargs["connect_args"] = connect_args
        # SQLite has one write lock, and every transaction here takes it (IMMEDIATE, below):
        # one connection, which transactions queue for in the event loop, first come first
        # served. Several connections would queue in SQLite's busy handler instead, which
        # sleeps up to 100 ms between tries: measured at capacity (benchmarks/inbound.py) with
        # the 5 + 10 connections SQLAlchemy pools by default, throughput fell to 86 updates/s
        # and 392 updates waited past the 10 s timeout ("database is locked").
        kwargs["pool_size"] = 1
        kwargs["max_overflow"] = 0
        # A connection given back is rolled back only if a transaction is still open on it
        # (_reset_if_open): the pool's default rollback after every commit is one more trip
        # to aiosqlite's thread for nothing, about 1.8 per update.
        kwargs["pool_reset_on_return"] = None
    else:
        # Enough connections kept open for a busy bot: past pool_size, a connection given back
        # is closed, and opening one to PostgreSQL costs more than the statements it runs.
        kwargs["pool_size"] = pool_size
        kwargs["max_overflow"] = pool_overflow
    # orjson reads and writes JSON columns several times faster than the json module.
    kwargs.setdefault("json_serializer", json_dumps)
    kwargs.setdefault("json_deserializer", orjson.loads)
    engine = create_async_engine(async_url(url), **kwargs)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        # IMMEDIATE takes the write lock up front, so a transaction that read first and writes
        # later can't fail on a snapshot another writer made stale: writers wait their turn.
        sa.event.listen(engine.sync_engine, "begin", _begin_immediate_async)
        sa.event.listen(engine.sync_engine, "reset", _reset_if_open)
    return engine


# Every statement SQLAlchemy runs on aiosqlite is three or four trips to aiosqlite's thread
# (make a cursor, execute, fetch, close), each a wake-up of that thread and of the event loop:
# about 100 µs of CPU apiece on a 2-core machine, measured, against about 10 µs for the
# statement in sqlite3 itself. The transaction's own statements go in one trip each, through
# SQLAlchemy's documented `run_async` on the driver's connection. Together with
# _reset_if_open, measured (sequential transactions of two statements): 1.70 -> 1.40 ms of
# CPU per transaction, 37 -> 30 context switches.
def _begin_immediate_async(conn: sa.Connection) -> None:
    try:
        conn.connection.dbapi_connection.run_async(
            lambda driver: driver.execute_fetchall("BEGIN IMMEDIATE")
        )
    except sqlite3.Error as exc:
        # As SQLAlchemy raises a failed statement: "database is locked" after the timeout.
        raise sa.exc.DBAPIError.instance("BEGIN IMMEDIATE", (), exc, sqlite3.Error) from exc
    except BaseException:
        # Cancelled while waiting for the write lock: the BEGIN still runs on the driver's
        # thread. The connection is closed (after it, in that thread's order) rather than
        # given back holding a transaction nobody knows of, as SQLAlchemy does with a
        # statement of its own that is cancelled.
        conn.invalidate()
        raise


def _reset_if_open(dbapi_connection: Any, record: Any, state: Any) -> None:
    """The pool's reset of a connection given back: a rollback, if a transaction is open."""
    if not state.terminate_only and record.driver_connection.in_transaction:
        dbapi_connection.rollback()


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic's config is %-interpolated; escape percent signs in passwords.
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return config


def _sync_engine(url: str) -> sa.Engine:
    sqlite = make_url(url).get_backend_name() == "sqlite"
    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S} if sqlite else {}
    return sa.create_engine(sync_url(url), poolclass=sa.NullPool, connect_args=connect_args)


def _migration_connection(dbapi_connection: Any, _record: Any = None) -> None:
    """A SQLite connection for migrations: transactions begun by the engine only, and WAL."""
    # The sqlite3 module begins a transaction before INSERT, UPDATE and DELETE only, so each
    # CREATE, ALTER or DROP commits on its own. With isolation_level None it begins none, and
    # _begin_immediate begins every one (SQLAlchemy's recipe for transactional DDL on SQLite).
    dbapi_connection.isolation_level = None
    # WAL is a setting of the file, kept once made: a database is WAL from its first
    # migration, before any serving process opens it (a connection that finds another holding
    # a lock in the old journal mode cannot switch, and gets "database is locked" at once).
    dbapi_connection.execute("PRAGMA journal_mode=WAL")


def _begin_immediate(conn: sa.Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _migration_engine(url: str) -> sa.Engine:
    """The engine migrations run through: on SQLite, every transaction it begins is a real one
    that takes the write lock at once.

    The migrations of a new database then commit once instead of once per statement (each
    commit a sync to disk: most of the time of migrating a new database), a failed migration
    leaves nothing half done, and a second process migrating the same file waits for the first
    and then finds nothing left to do.
    """
    engine = _sync_engine(url)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _migration_connection)
        sa.event.listen(engine, "begin", _begin_immediate)
    return engine


def current_revision(url: str) -> str | None:
    """The migration the database is at (None for a database never migrated)."""
    from alembic.migration import MigrationContext

    engine = _sync_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except DBAPIError as exc:
        raise DatabaseUnavailable(f"cannot open {describe(url)}: {_reason(exc)}") from exc
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> str | None:
    """Bring the schema up to `revision` (synchronous, run before serving); the revision the
    database is at afterwards, read back from it.

    Never downgrades: a target older than the database's revision is RevisionRefused, as are
    an unknown target and a database migrated by a newer gridbot.

    All the migrations to run are one transaction, on SQLite as on PostgreSQL.
    """
    from alembic import command
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    config = alembic_config(url)
    script = ScriptDirectory.from_config(config)
    known = [each.revision for each in script.walk_revisions()]  # newest first
    span = f"head or a revision from {known[-1]} to {known[0]}"
    if revision != "head" and revision not in known:
        raise RevisionRefused(f"unknown revision {revision!r}: use {span}")
    target = script.get_revision(revision)
    assert target is not None  # "head" or a known revision
    current = current_revision(url)
    if current is not None and current not in known:
        raise RevisionRefused(
            f"{describe(url)} is at revision {current}, which this gridbot does not know "
            "(a newer version migrated it): run that version"
        )
    if current is not None and target.revision != current:
        older = {each.revision for each in script.iterate_revisions(current, "base")}
        if target.revision in older:
            raise RevisionRefused(
                f"{describe(url)} is at revision {current}, newer than {target.revision}: "
                "gridbot never downgrades"
            )
    if current == target.revision:
        # Nothing to run, so no write transaction: a read-only database that is up to date
        # gets as far as check_writable, which says what is wrong.
        return current
    engine = _migration_engine(url)
    try:
        # Alembic runs inside a transaction its caller began, and leaves committing to it
        # (the cookbook's "sharing a connection" with env.py's config.attributes["connection"]).
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, target.revision)
    except CommandError as exc:
        raise RevisionRefused(str(exc)) from exc
    finally:
        engine.dispose()
    return current_revision(url)


def check_writable(url: str) -> None:
    """Open a write transaction, rewrite a row and roll it back: DatabaseNotWritable, naming
    the database and the reason, when the database refuses (a read-only SQLite file, a
    read-only PostgreSQL server, role or transaction default). Run after `upgrade`."""
    engine = _sync_engine(url)
    try:
        with engine.connect() as conn:
            transaction = conn.begin()
            try:
                # A real write to a table every migrated database has; undone below.
                conn.execute(sa.text("UPDATE alembic_version SET version_num = version_num"))
            finally:
                transaction.rollback()
    except DBAPIError as exc:
        raise DatabaseNotWritable(f"cannot write to {describe(url)}: {_reason(exc)}") from exc
    finally:
        engine.dispose()


# The advisory lock processes take turns on while they migrate and seed the database.
SETUP_LOCK = 0x67726964626F74  # "gridbot"


@asynccontextmanager
async def setup_turn(url: str) -> AsyncIterator[None]:
    """Hold the database's set-up lock for the block: processes that start at the same time
    (a rolling deploy, several `gridbot run` at once) migrate and seed one after the other.

    PostgreSQL: a session advisory lock on a connection of its own. SQLite serves one process,
    and its own locks keep a migration whole.
    """
    if make_url(url).get_backend_name() == "sqlite":
        yield
        return
    engine = _sync_engine(url)
    conn = await asyncio.to_thread(engine.connect)
    try:
        await asyncio.to_thread(
            conn.execute, sa.text("SELECT pg_advisory_lock(:key)"), {"key": SETUP_LOCK}
        )
        yield
    finally:
        # Closing the connection lets the lock go, whatever happened in the block.
        await asyncio.to_thread(conn.close)
        await asyncio.to_thread(engine.dispose)
