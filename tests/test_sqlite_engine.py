"""SQLite through the engine storage.db makes (aiosqlite): WAL, immediate transactions, and
waiting for another connection's write lock without holding up the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage.db import SQLITE_BUSY_TIMEOUT_S, make_engine

SCHEMA = [
    "CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)",
    "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent(id))",
    "CREATE TABLE hit (id INTEGER PRIMARY KEY, task INTEGER NOT NULL, n INTEGER NOT NULL)",
]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "driver.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        for statement in SCHEMA:
            conn.execute(statement)
    conn.close()
    return path


@pytest.fixture
async def engine(db_path: Path) -> AsyncIterator[sa.ext.asyncio.AsyncEngine]:
    engine = make_engine(f"sqlite:///{db_path}")
    yield engine
    await engine.dispose()


class Ticker:
    """Counts 10 ms ticks of the event loop: stalls while the loop is blocked."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.ticks += 1

    def __enter__(self) -> Ticker:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


def hold_write_lock(path: Path, seconds: float) -> tuple[threading.Thread, threading.Event]:
    """Another "process": a plain sqlite3 connection in a thread holds the write lock."""
    locked = threading.Event()

    def run() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO parent (name) VALUES ('held')")
            locked.set()
            time.sleep(seconds)
            conn.execute("COMMIT")
        finally:
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, locked


async def count(engine, table: str) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(sa.text(f"SELECT count(*) FROM {table}"))).scalar_one()


async def test_the_engine_uses_aiosqlite_with_wal_and_a_busy_timeout(engine) -> None:
    async with engine.connect() as conn:
        pragmas = {
            name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar_one()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    assert engine.dialect.driver == "aiosqlite"
    # WAL, synchronous=NORMAL (1), foreign keys on; a lock is waited for up to 10 s.
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 1,
        "foreign_keys": 1,
        "busy_timeout": int(SQLITE_BUSY_TIMEOUT_S * 1000),
    }


async def test_many_concurrent_writers_all_commit(engine) -> None:
    tasks, transactions = 50, 20

    async def writer(task: int) -> None:
        for n in range(transactions):
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text("INSERT INTO hit (task, n) VALUES (:task, :n)"), {"task": task, "n": n}
                )
                # Yield while holding the write lock, so that other tasks find it taken.
                await asyncio.sleep(0)
                await conn.execute(
                    sa.text("UPDATE hit SET n = n WHERE task = :task AND n = :n"),
                    {"task": task, "n": n},
                )

    await asyncio.gather(*(writer(task) for task in range(tasks)))
    assert await count(engine, "hit") == tasks * transactions
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT DISTINCT task, n FROM hit"))).all()
    assert len(rows) == tasks * transactions


async def test_a_transaction_waits_for_another_in_this_process_without_a_deadlock(engine) -> None:
    holding = asyncio.Event()

    async def holder() -> None:
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO parent (name) VALUES ('first')"))
            holding.set()
            await asyncio.sleep(0.3)  # the write lock is held while the loop runs on

    task = asyncio.create_task(holder())
    await holding.wait()
    started = time.monotonic()
    with Ticker() as ticker:
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO parent (name) VALUES ('second')"))
    waited = time.monotonic() - started
    await task
    assert 0.15 < waited < 3  # waited for the holder, nowhere near the 10 s timeout
    assert ticker.ticks >= 5
    assert await count(engine, "parent") == 2


async def test_a_lock_held_by_another_connection_is_waited_for_while_the_loop_runs(
    engine, db_path: Path
) -> None:
    thread, locked = hold_write_lock(db_path, 0.3)
    assert await asyncio.to_thread(locked.wait, 5)
    started = time.monotonic()
    with Ticker() as ticker:
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO parent (name) VALUES ('after')"))
        waited = time.monotonic() - started
        ticks = ticker.ticks
    await asyncio.to_thread(thread.join, 5)
    assert waited > 0.15
    assert ticks >= 5  # the loop kept ticking (a loop blocked in SQLite would not tick at all)
    async with engine.connect() as conn:
        names = (await conn.execute(sa.text("SELECT name FROM parent ORDER BY id"))).scalars()
        assert names.all() == ["held", "after"]


async def test_a_lock_held_too_long_times_out_as_database_is_locked(db_path: Path) -> None:
    engine = make_engine(f"sqlite:///{db_path}", connect_args={"timeout": 0.2})
    try:
        thread, locked = hold_write_lock(db_path, 1.0)
        assert await asyncio.to_thread(locked.wait, 5)
        started = time.monotonic()
        with Ticker() as ticker, pytest.raises(sa.exc.OperationalError, match="database is locked"):
            async with engine.begin() as conn:
                await conn.execute(sa.text("INSERT INTO parent (name) VALUES ('late')"))
        assert 0.15 < time.monotonic() - started < 0.9
        assert ticker.ticks >= 5
        await asyncio.to_thread(thread.join, 5)
        # The engine is fine afterwards.
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO parent (name) VALUES ('later')"))
        assert await count(engine, "parent") == 2
    finally:
        await engine.dispose()


async def cancel_a_waiting_writer(engine, db_path: Path) -> None:
    """A write cancelled while it waits for another "process's" write lock, which is then
    let go."""
    thread, locked = hold_write_lock(db_path, 0.3)
    assert await asyncio.to_thread(locked.wait, 5)

    async def writer() -> None:
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO parent (name) VALUES ('cancelled')"))

    task = asyncio.create_task(writer())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(thread.join, 5)


async def test_a_cancelled_waiter_leaves_the_engine_usable(engine, db_path: Path) -> None:
    await cancel_a_waiting_writer(engine, db_path)
    async with engine.begin() as conn:
        await conn.execute(sa.text("INSERT INTO parent (name) VALUES ('next')"))
    async with engine.connect() as conn:
        names = (await conn.execute(sa.text("SELECT name FROM parent ORDER BY id"))).scalars()
        assert names.all() == ["held", "next"]


async def test_a_cancelled_waiter_does_not_keep_the_write_lock(engine, db_path: Path) -> None:
    """Its BEGIN, still waiting in the driver's thread when the wait is cancelled, takes the
    lock once the holder lets go: its connection must not keep it, or every other process
    waits for the next update of this one."""
    await cancel_a_waiting_writer(engine, db_path)
    await asyncio.sleep(0.2)  # the engine idle, as between updates
    other = sqlite3.connect(db_path, timeout=0.5, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO parent (name) VALUES ('other process')")
        other.execute("COMMIT")
    finally:
        other.close()


async def test_a_connection_given_back_in_a_transaction_is_rolled_back(
    engine, db_path: Path
) -> None:
    """The pool rolls back only a connection that is still in a transaction (not one whose
    transaction ended): here one begun behind SQLAlchemy's back."""
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.execute_fetchall("BEGIN IMMEDIATE")
        await raw.driver_connection.execute_fetchall(
            "INSERT INTO parent (name) VALUES ('never committed')"
        )
    other = sqlite3.connect(db_path, timeout=0.5, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # the lock was let go...
        other.execute("ROLLBACK")
        assert other.execute("SELECT count(*) FROM parent").fetchone() == (0,)  # ...undone
    finally:
        other.close()


async def test_transactions_are_immediate(engine, db_path: Path) -> None:
    other = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT count(*) FROM parent"))  # a read only...
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")  # ...yet it holds the write lock
            await conn.rollback()
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
    finally:
        other.close()


async def test_rollback_discards_the_changes(engine) -> None:
    async with engine.connect() as conn:
        await conn.execute(sa.text("INSERT INTO parent (name) VALUES ('gone')"))
        await conn.rollback()
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO parent (name) VALUES ('also gone')"))
            raise RuntimeError("boom")
    assert await count(engine, "parent") == 0


async def test_errors_surface_as_sqlalchemy_errors(engine) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text("INSERT INTO parent (name) VALUES ('unique')"))
    with pytest.raises(sa.exc.IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO parent (name) VALUES ('unique')"))
    with pytest.raises(sa.exc.IntegrityError, match="FOREIGN KEY"):
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO child (parent_id) VALUES (12345)"))
    with pytest.raises(sa.exc.OperationalError, match="no such table"):
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT * FROM nowhere"))
    # The connections are still good.
    assert await count(engine, "parent") == 1


async def test_results_returning_executemany_and_streaming(engine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.text("INSERT INTO parent (name) VALUES (:name)"),
            [{"name": f"p{i}"} for i in range(5)],
        )
        returned = await conn.execute(
            sa.text("INSERT INTO parent (name) VALUES ('r') RETURNING id, name")
        )
        assert returned.one() == (6, "r")
        result = await conn.execute(sa.text("UPDATE parent SET name = name || '!' WHERE id < 3"))
        assert result.rowcount == 2
    async with engine.connect() as conn:
        result = await conn.execute(sa.text("SELECT id FROM parent ORDER BY id"))
        await conn.commit()  # the rows were fetched already: a result outlives its transaction
        assert result.scalars().all() == [1, 2, 3, 4, 5, 6]
        async with conn.stream(sa.text("SELECT name FROM parent ORDER BY id")) as stream:
            names = [row.name async for row in stream]
        assert names == ["p0!", "p1!", "p2", "p3", "p4", "r"]
