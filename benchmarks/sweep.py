"""The deadline sweep at city scale: its cost follows what is due, not what is open.

    .venv/bin/python benchmarks/sweep.py [--sizes 10000,100000,1000000] [--due 10000]
                                         [--database-url postgresql://postgres@127.0.0.1/test]

On a database of its own (a temp SQLite file, or a new PostgreSQL database created on the
--database-url server and dropped at the end) with the bundled sample city, a grid leader per
grid, a secretary per community, an officer per street and an administrator per district,
the open tickets are grown to each size in turn (each with its reporter as a watcher and a
deadline a day away). At each size:

- idle: the median of 21 sweeps with nothing due (the real `domain.sweep.sweep`);
- due: `--due` tickets are made overdue at the grid (their next alert in the past), and one
  sweep escalates them all to their community: ticket rows, events and outbox rows (the
  community's card, the note to the grid leader, the note to the reporter) written and
  committed. Checked afterwards: every one of them escalated once.

Two baselines are measured in the same run: the smallest size, so the ratios show how the
two times grow with the open tickets (flat is the goal); and, at each size, writing exactly
the rows the escalation wrote through the same bulk path and nothing else (the floor), so
"x" shows what deciding and composing them costs on top, whatever the machine's speed.
The collector runs with the thresholds a serving bot sets (bot.memory.GC_THRESHOLDS), where
the sweep runs in production.
Targets: idle < 20 ms and --due escalated in < 3 s at 1,000,000 open tickets.
The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from benchmarks.common import database  # noqa: E402
from bot.memory import GC_THRESHOLDS  # noqa: E402
from domain.clock import FrozenClock  # noqa: E402
from domain.deadlines import Timing  # noqa: E402
from scheduler.sweep import sweep  # noqa: E402
from storage.bulk import insert_rows, update_rows  # noqa: E402
from storage.db import make_engine, make_sessionmaker, sync_url  # noqa: E402
from storage.enums import Role, UnitKind  # noqa: E402
from storage.models import OutboxMessage, Ticket, TicketEvent  # noqa: E402
from storage.org_loader import apply_org, sample_path  # noqa: E402
from storage.orgfile import read_org_file  # noqa: E402

NOW = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)
TARGET_IDLE_MS = 20.0
TARGET_DUE_S = 3.0
ROLE_OF = {
    UnitKind.GRID: Role.GRID_LEADER,
    UnitKind.COMMUNITY: Role.COMMUNITY_SECRETARY,
    UnitKind.STREET: Role.STREET_OFFICER,
    UnitKind.DISTRICT: Role.ADMIN,
}
RESIDENTS = 5000
# The ticket columns an escalation sets (the sweep writes each column its steps set): what the
# floor writes for each escalated ticket.
ESCALATED_COLUMNS = (
    "id",
    "status",
    "level",
    "holder_unit_id",
    "holder_since",
    "accept_deadline",
    "next_deadline",
    "alerts",
    "alert_at",
    "updated_at",
)


async def load_city(url: str) -> None:
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            await apply_org(
                session=session, org=read_org_file(sample_path()), clock=FrozenClock(NOW)
            )
    finally:
        await engine.dispose()


def add_people(conn: sa.Connection) -> tuple[list[tuple[int, int]], list[int], int]:
    """Holders for every unit, residents; returns (grid id, community id) pairs, resident ids,
    and a category id."""
    units = conn.execute(sa.text("SELECT id, kind, parent_id FROM org_unit")).all()
    telegram_id = 1_000_000
    people = []
    for unit_id, kind, _ in units:
        if UnitKind(kind) in ROLE_OF:
            telegram_id += 1
            people.append((telegram_id, unit_id, ROLE_OF[UnitKind(kind)]))
    for _ in range(RESIDENTS):
        telegram_id += 1
        people.append((telegram_id, None, None))
    conn.execute(
        sa.text(
            "INSERT INTO person (telegram_id, full_name, language, created_at, updated_at) "
            "VALUES (:t, :n, 'zh-hans', :now, :now)"
        ),
        [{"t": t, "n": f"P{t}", "now": NOW.replace(tzinfo=None)} for t, _, _ in people],
    )
    ids = dict(conn.execute(sa.text("SELECT telegram_id, id FROM person")).all())
    conn.execute(
        sa.text(
            "INSERT INTO role_assignment (person_id, role, unit_id, status, created_at) "
            "VALUES (:p, :r, :u, 'active', :now)"
        ),
        [
            {"p": ids[t], "r": role.value, "u": unit, "now": NOW.replace(tzinfo=None)}
            for t, unit, role in people
            if role is not None
        ],
    )
    grids = [(u, p) for u, k, p in units if UnitKind(k) == UnitKind.GRID]
    residents = [ids[t] for t, unit, _ in people if unit is None]
    category = conn.execute(sa.text("SELECT min(id) FROM category")).scalar_one()
    return grids, residents, category


def grow(url: str, dialect: str, start: int, stop: int, context: tuple, rng: random.Random) -> None:
    """Insert open tickets start+1..stop (deadline a day away) with their reporters."""
    grids, residents, category = context
    engine = sa.create_engine(sync_url(url), poolclass=sa.NullPool)
    later = NOW + timedelta(days=1)
    stamp = NOW if dialect == "postgresql" else NOW.replace(tzinfo=None)
    later_stamp = later if dialect == "postgresql" else later.replace(tzinfo=None)
    alerts = json.dumps(
        [{"at": later.isoformat(), "kind": "overdue", "deadline": later.isoformat()}]
    )
    chunk = 20_000
    try:
        for low in range(start, stop, chunk):
            high = min(stop, low + chunk)
            tickets, watchers = [], []
            for n in range(low + 1, high + 1):
                grid, community = rng.choice(grids)
                reporter = rng.choice(residents)
                tickets.append(
                    {
                        "id": n,
                        "number": f"ZZ-BENCH-{n:07d}",
                        "category_id": category,
                        "grid_id": grid,
                        "community_id": community,
                        "reporter_id": reporter,
                        "description": "路灯不亮",
                        "photos": "[]",
                        "holder_unit_id": grid,
                        "holder_since": stamp,
                        "accept_deadline": later_stamp,
                        "next_deadline": later_stamp,
                        "alerts": alerts,
                        "alert_at": later_stamp,
                        "created_at": stamp,
                    }
                )
                watchers.append({"t": n, "p": reporter, "now": stamp})
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO ticket (id, number, category_id, grid_id, community_id, "
                        "reporter_id, description, photos, latitude, longitude, anonymous, "
                        "affected, urgency, status, level, holder_unit_id, holder_since, "
                        "accept_deadline, next_deadline, alerts, alert_at, reopen_count, "
                        "created_at, updated_at) VALUES (:id, :number, :category_id, :grid_id, "
                        ":community_id, :reporter_id, :description, :photos, 34.75, 113.65, "
                        "false, 1, 'normal', 'new', 'grid', :holder_unit_id, :holder_since, "
                        ":accept_deadline, :next_deadline, :alerts, :alert_at, 0, :created_at, "
                        ":created_at)"
                    ),
                    tickets,
                )
                conn.execute(
                    sa.text(
                        "INSERT INTO ticket_watcher (ticket_id, person_id, kind, created_at) "
                        "VALUES (:t, :p, 'reporter', :now)"
                    ),
                    watchers,
                )
        with engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))
    finally:
        engine.dispose()


def make_due(url: str, dialect: str, size: int, due: int, rng: random.Random) -> list[int]:
    """`due` tickets still at their grid become overdue (their next alert an hour ago)."""
    engine = sa.create_engine(sync_url(url), poolclass=sa.NullPool)
    past = NOW - timedelta(hours=1)
    stamp = past if dialect == "postgresql" else past.replace(tzinfo=None)
    alerts = json.dumps([{"at": past.isoformat(), "kind": "overdue", "deadline": past.isoformat()}])
    try:
        with engine.begin() as conn:
            at_grid = [
                i
                for (i,) in conn.execute(
                    sa.text("SELECT id FROM ticket WHERE level = 'grid' AND id <= :n"), {"n": size}
                )
            ]
            chosen = rng.sample(at_grid, due)
            conn.execute(
                sa.text("UPDATE ticket SET alert_at = :at, alerts = :alerts WHERE id = :id"),
                [{"at": stamp, "alerts": alerts, "id": i} for i in chosen],
            )
        return chosen
    finally:
        engine.dispose()


def count(url: str, sql: str, params: dict | None = None) -> int:
    engine = sa.create_engine(sync_url(url), poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params or {}).scalar_one()
    finally:
        engine.dispose()


async def measure(url: str, timing: Timing, *, idle_runs: int = 21) -> tuple[float, list[float]]:
    engine = make_engine(url)
    clock = FrozenClock(NOW)
    times = []
    try:
        maker = make_sessionmaker(engine)
        # Two sessions, as the scheduler's job gives the sweep (the second works on PostgreSQL).
        async with maker() as session, maker() as second:
            await sweep(session=session, clock=clock, timing=timing, also=[second])  # warm up
            for _ in range(idle_runs):
                started = time.perf_counter()
                report = await sweep(session=session, clock=clock, timing=timing, also=[second])
                times.append(time.perf_counter() - started)
                assert report.total == 0, report
    finally:
        await engine.dispose()
    return statistics.median(times), times


async def escalate_due(url: str, timing: Timing, due: int) -> float:
    engine = make_engine(url)
    clock = FrozenClock(NOW)
    try:
        maker = make_sessionmaker(engine)
        async with maker() as session, maker() as second:
            started = time.perf_counter()
            report = await sweep(session=session, clock=clock, timing=timing, also=[second])
            elapsed = time.perf_counter() - started
    finally:
        await engine.dispose()
    assert report.escalated == due, report
    return elapsed


async def write_floor(url: str, chosen: list[int], events_after: int, outbox_after: int) -> float:
    """The same-run baseline: writing exactly the rows that escalation wrote (its events,
    its outbox rows, its tickets' new columns) with the same bulk path, and nothing else."""
    events_table, outbox_table = TicketEvent.__table__, OutboxMessage.__table__
    ticket_table = Ticket.__table__
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:

            async def rows(statement) -> list[dict]:
                return [dict(r) for r in (await session.exec(statement)).mappings()]

            events = await rows(sa.select(events_table).where(events_table.c.id > events_after))
            outbox = await rows(sa.select(outbox_table).where(outbox_table.c.id > outbox_after))
            columns = [ticket_table.c[name] for name in ESCALATED_COLUMNS]
            tickets = await rows(sa.select(*columns).where(ticket_table.c.id.in_(chosen)))
            for row in events + outbox:
                del row["id"]
            await session.commit()
            started = time.perf_counter()
            await insert_rows(session, events_table, events)
            await insert_rows(session, outbox_table, outbox)
            await update_rows(session, ticket_table, tickets)
            await session.flush()
            elapsed = time.perf_counter() - started
            await session.rollback()
    finally:
        await engine.dispose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None, help="default: a temp SQLite file")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--due", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rng = random.Random(args.seed)
    timing = Timing.plain(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
    gc.set_threshold(*GC_THRESHOLDS)
    results = []
    with database(args.database_url) as (url, dialect):
        asyncio.run(load_city(url))
        engine = sa.create_engine(sync_url(url), poolclass=sa.NullPool)
        with engine.begin() as conn:
            context = add_people(conn)
        engine.dispose()
        open_now = 0
        for size in sizes:
            started = time.perf_counter()
            grow(url, dialect, open_now, size, context, rng)
            open_now = size
            grown = time.perf_counter() - started
            idle, _ = asyncio.run(measure(url, timing))
            chosen = make_due(url, dialect, size, args.due, rng)
            events_before = count(url, "SELECT count(*) FROM ticket_event")
            outbox_before = count(url, "SELECT count(*) FROM outbox")
            last_event = count(url, "SELECT coalesce(max(id), 0) FROM ticket_event")
            last_message = count(url, "SELECT coalesce(max(id), 0) FROM outbox")
            due_s = asyncio.run(escalate_due(url, timing, args.due))
            events = count(url, "SELECT count(*) FROM ticket_event") - events_before
            outbox = count(url, "SELECT count(*) FROM outbox") - outbox_before
            escalated_once = count(
                url,
                "SELECT count(DISTINCT ticket_id) FROM ticket_event WHERE kind = 'escalate' "
                f"AND ticket_id IN ({','.join(map(str, chosen))})",
            )
            assert events == args.due == escalated_once, (events, escalated_once)
            floor_s = asyncio.run(write_floor(url, chosen, last_event, last_message))
            row = {
                "open": size,
                "idle_ms": round(idle * 1000, 2),
                "due_s": round(due_s, 3),
                "due_per_s": round(args.due / due_s),
                "floor_s": round(floor_s, 3),
                "events": events,
                "outbox_rows": outbox,
                "grow_s": round(grown, 1),
            }
            results.append(row)
            print(
                f"{dialect:10} open {size:>9,}: idle sweep {row['idle_ms']:7.2f} ms | "
                f"{args.due:,} due escalated in {due_s:6.3f} s ({row['due_per_s']:,}/s; "
                f"{events:,} events, {outbox:,} outbox rows; writing them alone "
                f"{floor_s:.3f} s, x{due_s / floor_s:.1f}) | grown in {grown:.1f} s",
                flush=True,
            )
    base, last = results[0], results[-1]
    idle_ratio = last["idle_ms"] / base["idle_ms"] if base["idle_ms"] else None
    due_ratio = last["due_s"] / base["due_s"]
    idle_ok = last["idle_ms"] < TARGET_IDLE_MS
    due_ok = last["due_s"] < TARGET_DUE_S
    print(
        f"growth from {base['open']:,} to {last['open']:,} open: idle x{idle_ratio:.2f}, "
        f"due x{due_ratio:.2f} (flat is 1.0)"
    )
    print(
        f"idle sweep at {last['open']:,} open {last['idle_ms']} ms (target < {TARGET_IDLE_MS}): "
        f"{'MET' if idle_ok else 'MISSED'}; {args.due:,} due in {last['due_s']} s "
        f"(target < {TARGET_DUE_S}): {'MET' if due_ok else 'MISSED'}"
    )
    print(
        json.dumps(
            {
                "benchmark": "sweep",
                "database": dialect,
                "due": args.due,
                "sizes": [r["open"] for r in results],
                "idle_ms": [r["idle_ms"] for r in results],
                "due_s": [r["due_s"] for r in results],
                "idle_growth_ratio": round(idle_ratio, 3) if idle_ratio else None,
                "due_growth_ratio": round(due_ratio, 3),
                "floor_s": [r["floor_s"] for r in results],
                "due_vs_floor_ratio": round(last["due_s"] / last["floor_s"], 2),
                "idle_target_met": idle_ok,
                "due_target_met": due_ok,
            }
        )
    )


if __name__ == "__main__":
    main()
