"""Engines, sessions and migrations. Nothing here runs at import time."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.sqlite_driver import DRIVER as SQLITE_DRIVER

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# How long a statement waits for another connection's lock before "database is locked".
SQLITE_BUSY_TIMEOUT_S = 10.0
POOL_SIZE = 20  # PostgreSQL connections a process keeps open
POOL_OVERFLOW = 20  # and how many more it may open for a burst


def _with_driver(url: str, sqlite_driver: str) -> str:
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    # psycopg 3 speaks both sync and async, so PostgreSQL needs one driver only.
    drivers = {"sqlite": sqlite_driver, "postgresql": "postgresql+psycopg"}
    drivers["postgres"] = drivers["postgresql"]
    if backend not in drivers:
        raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")
    return parsed.set(drivername=drivers[backend]).render_as_string(hide_password=False)


def async_url(url: str) -> str:
    """The URL with the async driver gridbot uses: storage.sqlite_driver or psycopg."""
    return _with_driver(url, f"sqlite+{SQLITE_DRIVER}")


def sync_url(url: str) -> str:
    """The same database through a synchronous driver (for migrations)."""
    return _with_driver(url, "sqlite")


def sqlite_pragmas(dbapi_connection: Any, _record: Any = None) -> None:
    """WAL, NORMAL sync and foreign keys on a new SQLite connection (every one gridbot opens)."""
    # Autocommit at the driver level: SQLAlchemy's begin event below issues the BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # No PRAGMA busy_timeout: the driver runs statements on the event loop and waits for
    # locks asynchronously (connect's timeout); SQLite's own wait would freeze the loop.
    cursor.close()


def json_dumps(value: Any) -> str:
    """JSON text as the columns store it (dict keys that are not strings become strings)."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def make_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for the URL; SQLite gets WAL, foreign keys and immediate transactions.

    SQLite runs through storage.sqlite_driver: statements inline on the event loop, no thread.
    """
    if make_url(url).get_backend_name() == "sqlite":
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S, **kwargs.pop("connect_args", {})}
        kwargs["connect_args"] = connect_args
        # IMMEDIATE takes the write lock up front, so a transaction that read first and writes
        # later can't fail on a snapshot another writer made stale; the driver queues writers.
        kwargs.setdefault("begin_mode", "IMMEDIATE")
    else:
        # Enough connections kept open for a busy bot: past pool_size, a connection given back
        # is closed, and opening one to PostgreSQL costs more than the statements it runs.
        kwargs.setdefault("pool_size", POOL_SIZE)
        kwargs.setdefault("max_overflow", POOL_OVERFLOW)
    # orjson reads and writes JSON columns several times faster than the json module.
    kwargs.setdefault("json_serializer", json_dumps)
    kwargs.setdefault("json_deserializer", orjson.loads)
    engine = create_async_engine(async_url(url), **kwargs)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine.sync_engine, "connect", sqlite_pragmas)
    return engine


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Alembic's config is %-interpolated; escape percent signs in passwords.
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database schema to the given revision (synchronous, run before serving)."""
    command.upgrade(alembic_config(url), revision)
