"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import storage.models  # noqa: F401
from storage.db import sync_url


def test_migrations_match_models(db_url: str) -> None:
    engine = sa.create_engine(sync_url(db_url), poolclass=sa.NullPool)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, SQLModel.metadata)
    engine.dispose()
    assert diff == [], f"models and migrations differ; add a migration: {diff}"


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:
    import asyncio

    from storage.db import make_engine, upgrade

    url = f"sqlite:///{tmp_path / 'wal.db'}"
    upgrade(url)

    async def journal_mode() -> str:
        engine = make_engine(url)
        async with engine.connect() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one()
        await engine.dispose()
        return mode

    assert asyncio.run(journal_mode()) == "wal"
