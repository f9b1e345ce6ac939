"""What the benchmarks share: a database of their own for the length of a run."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from storage.db import sync_url, upgrade


@contextmanager
def database(url: str | None, *, migrate: bool = True) -> Iterator[tuple[str, str]]:
    """A fresh database: a temp SQLite file, or a new PostgreSQL database on the URL's server
    (dropped at the end). Yields (url, "sqlite" | "postgresql")."""
    if url is None or make_url(url).get_backend_name() == "sqlite":
        with tempfile.TemporaryDirectory(prefix="gridbot-bench-") as tmp:
            url = url or f"sqlite:///{tmp}/gridbot.db"
            if migrate:
                upgrade(url)
            yield url, "sqlite"
        return
    name = f"gridbot_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(sync_url(url), poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    own = make_url(url).set(database=name).render_as_string(hide_password=False)
    try:
        if migrate:
            upgrade(own)
        yield own, "postgresql"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
