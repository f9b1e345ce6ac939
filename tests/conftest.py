"""Shared fixtures: real databases (SQLite files and a PostgreSQL database of our own)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from domain.clock import FrozenClock
from storage.db import make_engine, make_sessionmaker, sync_url, upgrade

# The server this machine runs; GRIDBOT_TEST_POSTGRES_URL points elsewhere, GRIDBOT_TEST_POSTGRES
# says whether it must be there ("require", as CI sets it), may be skipped (default) or is off.
POSTGRES_ADMIN_URL = os.environ.get(
    "GRIDBOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
POSTGRES_MODE = os.environ.get("GRIDBOT_TEST_POSTGRES", "auto")


def _postgres_unavailable() -> str | None:
    if POSTGRES_MODE == "off":
        return "PostgreSQL tests switched off (GRIDBOT_TEST_POSTGRES=off)"
    try:
        engine = sa.create_engine(sync_url(POSTGRES_ADMIN_URL), poolclass=sa.NullPool)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # any failure to connect means "not here"
        reason = f"no PostgreSQL at {make_url(POSTGRES_ADMIN_URL)!r}: {exc.__class__.__name__}"
        if POSTGRES_MODE == "require":
            pytest.fail(f"GRIDBOT_TEST_POSTGRES=require but {reason}", pytrace=False)
        return reason
    return None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test run, dropped at the end."""
    reason = _postgres_unavailable()
    if reason:
        pytest.skip(reason)
    name = f"gridbot_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(
        sync_url(POSTGRES_ADMIN_URL), poolclass=sa.NullPool, isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file; each test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def _truncate_all(url: str) -> None:
    engine = sa.create_engine(sync_url(url), poolclass=sa.NullPool)
    names = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database URL: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        target = tmp_path / "gridbot.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), target)
        return f"sqlite:///{target}"
    url = request.getfixturevalue("postgres_url")
    _truncate_all(url)
    return url


@pytest.fixture
def postgres_db_url(postgres_url: str) -> str:
    """An empty PostgreSQL database, for tests of what only PostgreSQL does (row locks)."""
    _truncate_all(postgres_url)
    return postgres_url


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator:
    engine = make_engine(db_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine):
    return make_sessionmaker(engine)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 11, 25, 2, 0, tzinfo=UTC))
