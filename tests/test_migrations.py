"""The Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import make_url
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


def head_revision() -> str:
    """The newest migration, whichever it is now."""
    from alembic.script import ScriptDirectory

    from storage.db import alembic_config

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head is not None
    return head


def test_upgrade_reports_the_revision_the_database_reached(tmp_path) -> None:
    from storage.db import current_revision, upgrade

    url = f"sqlite:///{tmp_path / 'steps.db'}"
    assert upgrade(url, "0003") == "0003"
    assert current_revision(url) == "0003"
    assert upgrade(url, "0003") == "0003"  # already there: nothing to do
    assert upgrade(url, "0005") == "0005"
    assert upgrade(url) == head_revision()


def test_upgrade_never_downgrades(db_url: str) -> None:
    from storage.db import RevisionRefused, current_revision, describe, upgrade

    head = head_revision()
    with pytest.raises(RevisionRefused) as refused:
        upgrade(db_url, "0003")
    assert str(refused.value) == (
        f"{describe(db_url)} is at revision {head}, newer than 0003: gridbot never downgrades"
    )
    assert current_revision(db_url) == head


@pytest.mark.parametrize("revision", ["0099", "abc", "base", "+1", "000"])
def test_upgrade_refuses_an_unknown_revision(db_url: str, revision: str) -> None:
    from storage.db import RevisionRefused, current_revision, upgrade

    with pytest.raises(RevisionRefused) as refused:
        upgrade(db_url, revision)
    assert str(refused.value) == (
        f"unknown revision {revision!r}: use head or a revision from 0001 to {head_revision()}"
    )
    assert current_revision(db_url) == head_revision()


def test_a_database_migrated_by_a_newer_gridbot_is_refused(tmp_path) -> None:
    from storage.db import RevisionRefused, describe, upgrade

    url = f"sqlite:///{tmp_path / 'future.db'}"
    upgrade(url)
    with sqlite3.connect(tmp_path / "future.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(RevisionRefused) as refused:
        upgrade(url)
    assert str(refused.value) == (
        f"{describe(url)} is at revision 9999, which this gridbot does not know "
        "(a newer version migrated it): run that version"
    )


def read_only(db_url: str) -> str:
    """The same database, made read-only in a way that holds even for root (whose writes no
    file mode stops).

    SQLite: the file's header says "write version 3" (offset 18), and SQLite opens such a file
    read-only, refusing every write with "attempt to write a readonly database", exactly as for
    a file the process may not write. PostgreSQL: the connection's transactions default to
    read-only (`default_transaction_read_only`, what a hot standby or a role set up read-only
    gives), refusing every write with "cannot execute UPDATE in a read-only transaction".
    """
    parsed = make_url(db_url)
    if parsed.get_backend_name() == "sqlite":
        with open(parsed.database, "r+b") as file:
            file.seek(18)
            file.write(bytes([3]))
        return db_url
    options = {"options": "-c default_transaction_read_only=on"}
    return parsed.update_query_dict(options).render_as_string(hide_password=False)


def test_a_writable_database_passes_the_write_check_unchanged(db_url: str) -> None:
    from storage.db import check_writable, current_revision

    check_writable(db_url)
    assert current_revision(db_url) == head_revision()


def test_a_read_only_database_fails_the_write_check(db_url: str) -> None:
    from storage.db import DatabaseNotWritable, check_writable, current_revision, describe

    url = read_only(db_url)
    assert current_revision(url) == head_revision()  # it still reads
    with pytest.raises(DatabaseNotWritable) as refused:
        check_writable(url)
    reason = (
        "attempt to write a readonly database"
        if url.startswith("sqlite")
        else "cannot execute UPDATE in a read-only transaction"
    )
    assert str(refused.value) == f"cannot write to {describe(url)}: {reason}"
