"""The three rates at city scale: /stats on a month of 2,000,000 tickets over 2,000 grids.

    .venv/bin/python benchmarks/stats.py [--tickets 2000000]
                                         [--database-url postgresql://postgres@127.0.0.1/test]

On a database of its own (a temp SQLite file, or a new PostgreSQL database created on the
--database-url server and dropped at the end): a city of 10 districts, 100 streets, 400
communities and 2,000 grids, a leader per grid, and --tickets tickets filed in November 2026
with their events as the use cases write them (filed; accepted in time, late, or passed up
to the community, which accepts; answered; confirmed, reopened or left unanswered; rated),
plus a few hundred open tickets past their deadline. Then, as production runs:

- the first roll-up of the month's events into the monthly rows (the scheduler's
  domain.figures.roll_up): this is also the baseline, the cost of tallying the month from
  its events, which every read would pay without the rows;
- the cost the figures add to filing a ticket: the real `file_ticket`, committed per ticket
  as the bot does, with the index on the events' time (which the roll-up reads by) and
  without it, in the same run (with, without, with again), plus the roll-up's own cost per
  ticket filed (the scheduler's work, amortised);
- a tail of events after the roll-up's mark (what a read adds), then `/stats`'s report
  (domain.figures.unit_report: the rows, the tail, overdue now, members on duty,
  departments) for the city and for a street, median of 5; and the chart for each (first
  drawing with matplotlib's import, then the median of 3).

Targets: the city's report < 1 s on PostgreSQL and < 3 s on SQLite, a street's < 200 ms, the
chart < 1 s, the figures' cost on filing < 5%. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from benchmarks.common import database  # noqa: E402
from domain.clock import FrozenClock  # noqa: E402
from domain.deadlines import Timing  # noqa: E402
from domain.figures import ROLL_UP_SLICE, month_of, roll_up, trend, unit_report  # noqa: E402
from domain.reference import load_snapshot  # noqa: E402
from domain.tickets import file_ticket  # noqa: E402
from storage.db import make_engine, make_sessionmaker, sync_url  # noqa: E402
from storage.dialect import SQLITE_TIME  # noqa: E402
from storage.models import Person  # noqa: E402
from views.charts import chart_png  # noqa: E402
from views.i18n import translator  # noqa: E402

TZ = ZoneInfo("Asia/Shanghai")
MONTH_START = datetime(2026, 11, 1, tzinfo=TZ).astimezone(UTC)
NOW = datetime(2026, 11, 30, 10, 0, tzinfo=TZ).astimezone(UTC)
SHAPE = (10, 10, 4, 5)  # districts, streets per district, communities per street, grids each
TARGETS = {"city_s": {"postgresql": 1.0, "sqlite": 3.0}, "street_s": 0.2, "chart_s": 1.0}
TARGET_FILING_COST = 0.05
OVERDUE = 500
TICKET_COLUMNS = (
    "id, number, category_id, grid_id, community_id, reporter_id, description, photos, "
    "latitude, longitude, anonymous, affected, urgency, status, level, holder_unit_id, "
    "holder_since, accept_deadline, next_deadline, alerts, alert_at, reopen_count, rating, "
    "created_at, updated_at"
)
EVENT_COLUMNS = "ticket_id, at, kind, from_status, to_status, data"


def build_city(conn: sa.Connection, stamp) -> tuple[list[tuple[int, int]], int, int]:
    """The units, a category with its deadlines, a leader per grid and a reporter: the
    (grid, community) pairs, the category id and the reporter's person id."""
    units: list[tuple] = []
    next_id = iter(range(1, 10_000_000))

    def add(kind: str, code: str, parent: tuple | None) -> tuple:
        unit_id = next(next_id)
        path = f"{parent[3] if parent else '/'}{unit_id}/"
        row = (unit_id, kind, code, parent[0] if parent else None, path)
        units.append(row)
        return (unit_id, kind, code, path)

    grids = []
    city = add("city", "ZZ", None)
    for d in range(SHAPE[0]):
        district = add("district", f"ZZ-D{d}", city)
        for s in range(SHAPE[1]):
            street = add("street", f"ZZ-D{d}-S{s}", district)
            for c in range(SHAPE[2]):
                community = add("community", f"ZZ-D{d}-S{s}-C{c}", street)
                for g in range(SHAPE[3]):
                    grid = add("grid", f"ZZ-D{d}-S{s}-C{c}-G{g}", community)
                    grids.append((grid[0], community[0]))
    conn.execute(
        sa.text(
            "INSERT INTO org_unit (id, kind, code, name_zh, name_en, parent_id, path, "
            "created_at, updated_at) VALUES (:id, :kind, :code, :zh, :en, :parent, :path, "
            ":now, :now)"
        ),
        [
            {
                "id": unit_id,
                "kind": kind,
                "code": code,
                "zh": f"{code}（单位）",
                "en": f"{code} unit",
                "parent": parent,
                "path": path,
                "now": stamp,
            }
            for unit_id, kind, code, parent, path in units
        ],
    )
    conn.execute(
        sa.text(
            "INSERT INTO category (id, code, name_zh, name_en, urgency, position, active, "
            "created_at, updated_at) VALUES (1, 'LIGHT', '路灯', 'Street light', 'normal', 0, "
            "true, :now, :now)"
        ),
        {"now": stamp},
    )
    conn.execute(
        sa.text(
            "INSERT INTO deadline_policy (urgency, level, accept_minutes, resolve_minutes, "
            "working_time, reminders) VALUES ('normal', :level, 120, 4320, false, '[]')"
        ),
        [{"level": level} for level in ("grid", "community", "street", "district")],
    )
    people = [{"t": 1_000_000 + n, "now": stamp} for n in range(len(grids) + 1)]
    conn.execute(
        sa.text(
            "INSERT INTO person (telegram_id, full_name, language, created_at, updated_at) "
            "VALUES (:t, 'P', 'zh-hans', :now, :now)"
        ),
        people,
    )
    ids = dict(conn.execute(sa.text("SELECT telegram_id, id FROM person")).all())
    conn.execute(
        sa.text(
            "INSERT INTO role_assignment (person_id, role, unit_id, status, created_at) "
            "VALUES (:p, 'grid_leader', :u, 'active', :now)"
        ),
        [{"p": ids[1_000_001 + n], "u": grid, "now": stamp} for n, (grid, _) in enumerate(grids)],
    )
    return grids, 1, ids[1_000_000]


def month_of_tickets(
    count: int, grids: list[tuple[int, int]], reporter: int, dialect: str, rng: random.Random
):
    """Chunks of (ticket rows, event rows) for `count` tickets filed over November, up to
    four days before now: every step of theirs (at most three days) is over by now, as
    events are in production (none is written ahead of the clock)."""
    span = (NOW - timedelta(days=4) - MONTH_START).total_seconds()

    def when(moment: datetime):
        return moment if dialect == "postgresql" else moment.strftime(SQLITE_TIME)

    tickets, events = [], []
    for n in range(1, count + 1):
        grid, community = grids[n % len(grids)]
        filed = MONTH_START + timedelta(seconds=rng.random() * span)
        due = filed + timedelta(hours=2)
        iso_filed, iso_due = filed.isoformat(), due.isoformat()
        held = {"unit": grid, "since": iso_filed, "due": iso_due}
        events.append((n, when(filed), "file", None, "new", json.dumps({"unit": grid})))
        roll = rng.random()
        holder, level = grid, "grid"
        if roll < 0.08:  # the grid misses it: passed up to the community, which accepts
            escalated = due + timedelta(minutes=1)
            events.append((n, when(escalated), "escalate", "new", "new", json.dumps(held)))
            holder, level = community, "community"
            since, due = escalated, escalated + timedelta(hours=2)
            held = {"unit": community, "since": since.isoformat(), "due": due.isoformat()}
            accepted = since + timedelta(minutes=20)
        elif roll < 0.14:  # late
            accepted = due + timedelta(minutes=30)
        else:
            accepted = filed + timedelta(minutes=rng.randint(2, 110))
        events.append((n, when(accepted), "accept", "new", "accepted", json.dumps(held)))
        resolved = accepted + timedelta(hours=rng.randint(1, 48))
        unit = json.dumps({"unit": holder})
        events.append((n, when(resolved), "resolve", "accepted", "resolved", unit))
        ended = resolved + timedelta(hours=rng.randint(1, 20))
        outcome = rng.random()
        kind, status, rating = "confirm", "closed", None
        if outcome < 0.07:
            kind, status = "reopen", "reopened"
        elif outcome < 0.15:
            kind = "expire"
        events.append((n, when(ended), kind, "resolved", status, unit))
        if kind == "confirm" and rng.random() < 0.7:
            rating = rng.choice((5, 5, 5, 4, 4, 3, 2, 1))
            rated = json.dumps({"unit": holder, "rating": rating})
            events.append((n, when(ended), "rate", "closed", "closed", rated))
        open_late = n <= OVERDUE
        tickets.append(
            (
                n,
                f"ZZ-BENCH-{n:08d}",
                1,
                grid,
                community,
                reporter,
                "路灯不亮",
                "[]",
                34.75,
                113.65,
                False,
                1,
                "normal",
                "new" if open_late else status,
                "grid" if open_late else level,
                grid if open_late else holder,
                when(filed),
                when(due),
                when(NOW - timedelta(hours=1)) if open_late else None,
                "[]",
                None,
                0,
                rating,
                when(filed),
                when(filed),
            )
        )
        if len(tickets) == 50_000:
            yield tickets, events
            tickets, events = [], []
    if tickets:
        yield tickets, events


def seed(url: str, dialect: str, count: int, rng: random.Random) -> list[tuple[int, int]]:
    engine = sa.create_engine(sync_url(url), poolclass=sa.NullPool)
    stamp = NOW if dialect == "postgresql" else NOW.strftime(SQLITE_TIME)
    try:
        with engine.begin() as conn:
            grids, _, reporter = build_city(conn, stamp)
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            if dialect == "sqlite":
                cursor.execute("PRAGMA synchronous=OFF")
            for tickets, events in month_of_tickets(count, grids, reporter, dialect, rng):
                if dialect == "postgresql":
                    # COPY, PostgreSQL's own bulk path (the seeding is not what is measured).
                    with cursor.copy(f"COPY ticket ({TICKET_COLUMNS}) FROM STDIN") as copy:
                        for row in tickets:
                            copy.write_row(row)
                    with cursor.copy(f"COPY ticket_event ({EVENT_COLUMNS}) FROM STDIN") as copy:
                        for row in events:
                            copy.write_row(row)
                else:
                    marks = ", ".join("?" * 25)
                    cursor.executemany(
                        f"INSERT INTO ticket ({TICKET_COLUMNS}) VALUES ({marks})", tickets
                    )
                    cursor.executemany(
                        f"INSERT INTO ticket_event ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                        events,
                    )
                raw.commit()
            if dialect == "postgresql":
                cursor.execute("SELECT setval('ticket_id_seq', (SELECT max(id) FROM ticket))")
                raw.commit()
            cursor.execute("ANALYZE")
            raw.commit()
        finally:
            raw.close()
        return grids
    finally:
        engine.dispose()


async def file_many(maker, clock: FrozenClock, count: int, grids, rng) -> float:
    """`count` tickets through the real use case, each committed: seconds per ticket."""
    async with maker() as session:
        org = await load_snapshot(session)
        reporter = (await session.exec(sa.select(Person).limit(1))).scalars().first()
        timing = Timing.plain(TZ)
        started = time.perf_counter()
        for _ in range(count):
            clock.advance(timedelta(milliseconds=50))
            await file_ticket(
                session=session,
                org=org,
                clock=clock,
                timing=timing,
                reporter=reporter,
                category_id=1,
                description="路灯不亮",
                grid_id=rng.choice(grids)[0],
            )
            await session.commit()
        return (time.perf_counter() - started) / count


async def index(maker, create: bool) -> None:
    async with maker() as session:
        if create:
            await session.exec(sa.text("CREATE INDEX ix_ticket_event_at ON ticket_event (at)"))
        else:
            await session.exec(sa.text("DROP INDEX ix_ticket_event_at"))
        await session.commit()


async def timed(make, runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await make()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


async def roll_all(maker, clock) -> tuple[int, int, float]:
    """Roll up every settled event, slice by slice as the scheduler does, each slice its own
    transaction: the events rolled, the slices, the longest slice's seconds (the longest the
    mark's row, and on SQLite the write lock, is held)."""
    events = slices = 0
    longest = 0.0
    while True:
        async with maker() as session:
            started = time.perf_counter()
            rolled = await roll_up(session=session, clock=clock, tz=TZ)
            await session.commit()
        longest = max(longest, time.perf_counter() - started)
        if not rolled:
            return events, slices, longest
        events += rolled
        slices += 1


async def measure(url: str, dialect: str, grids, filed: int, rng) -> dict:
    engine = make_engine(url)
    maker = make_sessionmaker(engine)
    clock = FrozenClock(NOW)
    out: dict = {}
    try:
        started = time.perf_counter()
        rolled, slices, longest = await roll_all(maker, clock)
        out["first_rollup_s"] = time.perf_counter() - started
        out["events_rolled"] = rolled
        out["rollup_slices"] = slices
        out["rollup_longest_slice_s"] = longest

        # What the figures cost on filing: with the index, without, with again.
        with_a = await file_many(maker, clock, filed, grids, rng)
        await index(maker, create=False)
        without = await file_many(maker, clock, filed, grids, rng)
        await index(maker, create=True)
        with_b = await file_many(maker, clock, filed, grids, rng)
        clock.advance(timedelta(minutes=6))
        started = time.perf_counter()
        rolled_after, _, _ = await roll_all(maker, clock)
        rollup_s = time.perf_counter() - started
        with_index = (with_a + with_b) / 2
        per_ticket_rollup = rollup_s / (3 * filed)
        out["filing"] = {
            "with_index_ms": round(with_index * 1000, 3),
            "without_index_ms": round(without * 1000, 3),
            "rollup_per_ticket_ms": round(per_ticket_rollup * 1000, 4),
            "events_rolled": rolled_after,
        }
        out["filing_cost_ratio"] = round((with_index + per_ticket_rollup) / without - 1, 4)

        # A tail after the mark, as a read finds it in production.
        await file_many(maker, clock, 200, grids, rng)
        async with maker() as session:
            org = await load_snapshot(session)
            city = next(u for u in org.units.values() if u.parent_id is None)
            street = next(u for u in org.units.values() if u.code == "ZZ-D0-S0")
            month = month_of(clock.now(), TZ)

            async def report(unit):
                return await unit_report(
                    session=session, org=org, clock=clock, tz=TZ, unit=unit, month=month
                )

            for name, unit in (("city", city), ("street", street)):
                median, times = await timed(lambda unit=unit: report(unit), 5)
                out[f"{name}_s"] = median
                out[f"{name}_runs_s"] = [round(t, 4) for t in times]
                built = await report(unit)
                months = await trend(session, org, TZ, unit, month)
                t = translator("zh-hans")
                started = time.perf_counter()
                chart_png(built, months, "zh-hans", t)  # the first: matplotlib's import too
                first = time.perf_counter() - started
                draws = []
                for _ in range(3):
                    started = time.perf_counter()
                    chart_png(built, months, "zh-hans", t)
                    draws.append(time.perf_counter() - started)
                out[f"{name}_chart_first_s"] = first
                out[f"{name}_chart_s"] = statistics.median(draws)
                out[f"{name}_children"] = len(built.children)
                if name == "city":
                    figures = built.unit.figures
                    out["city_figures"] = {
                        "dispatched": figures.dispatched,
                        "response_rate": round(figures.response_rate or 0, 4),
                        "resolution_rate": round(figures.resolution_rate or 0, 4),
                        "satisfaction_rate": round(figures.satisfaction_rate or 0, 4),
                        "overdue_now": built.unit.overdue,
                    }
    finally:
        await engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None, help="default: a temp SQLite file")
    parser.add_argument("--tickets", type=int, default=2_000_000)
    parser.add_argument("--filed", type=int, default=500, help="tickets filed per variant")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with database(args.database_url) as (url, dialect):
        started = time.perf_counter()
        grids = seed(url, dialect, args.tickets, rng)
        seeded = time.perf_counter() - started
        figures = asyncio.run(measure(url, dialect, grids, args.filed, rng))
    city_target = TARGETS["city_s"][dialect]
    met = {
        "city": figures["city_s"] < city_target,
        "street": figures["street_s"] < TARGETS["street_s"],
        "chart": max(figures["city_chart_s"], figures["street_chart_s"]) < TARGETS["chart_s"],
        "filing": figures["filing_cost_ratio"] < TARGET_FILING_COST,
    }
    f = figures
    print(
        f"{dialect}: {args.tickets:,} tickets over {len(grids):,} grids, seeded in {seeded:.0f} s"
    )
    print(
        f"first roll-up of the month's {f['events_rolled']:,} events: {f['first_rollup_s']:.2f} s"
        " (the baseline: tallying the month from its events), in"
        f" {f['rollup_slices']:,} slices of at most {ROLL_UP_SLICE:,} events, each its own"
        f" transaction, the longest {f['rollup_longest_slice_s'] * 1000:.0f} ms"
    )
    print(
        f"city /stats report {f['city_s'] * 1000:.0f} ms ({f['city_children']} units below;"
        f" x{f['city_s'] / f['first_rollup_s']:.4f} of the tally; target < {city_target:g} s):"
        f" {'MET' if met['city'] else 'MISSED'}"
    )
    print(
        f"street /stats report {f['street_s'] * 1000:.1f} ms ({f['street_children']} units"
        f" below; target < 200 ms): {'MET' if met['street'] else 'MISSED'}"
    )
    print(
        f"chart: city {f['city_chart_s'] * 1000:.0f} ms, street {f['street_chart_s'] * 1000:.0f}"
        f" ms (first, with matplotlib's import: {f['city_chart_first_s'] * 1000:.0f} ms;"
        f" target < 1 s): {'MET' if met['chart'] else 'MISSED'}"
    )
    filing = f["filing"]
    print(
        f"filing a ticket: {filing['with_index_ms']:.2f} ms with the events' time index,"
        f" {filing['without_index_ms']:.2f} ms without, + {filing['rollup_per_ticket_ms']:.3f}"
        f" ms of roll-up per ticket: cost {f['filing_cost_ratio'] * 100:+.1f}%"
        f" (target < 5%): {'MET' if met['filing'] else 'MISSED'}"
    )
    print(f"city figures: {f['city_figures']}")
    print(
        json.dumps(
            {
                "benchmark": "stats",
                "database": dialect,
                "tickets": args.tickets,
                "grids": len(grids),
                "seed_s": round(seeded, 1),
                "first_rollup_s": round(f["first_rollup_s"], 3),
                "events": f["events_rolled"],
                "rollup_slices": f["rollup_slices"],
                "rollup_longest_slice_s": round(f["rollup_longest_slice_s"], 3),
                "city_s": round(f["city_s"], 4),
                "city_runs_s": f["city_runs_s"],
                "street_s": round(f["street_s"], 4),
                "street_runs_s": f["street_runs_s"],
                "city_vs_tally_ratio": round(f["city_s"] / f["first_rollup_s"], 5),
                "city_chart_s": round(f["city_chart_s"], 3),
                "street_chart_s": round(f["street_chart_s"], 3),
                "chart_first_s": round(f["city_chart_first_s"], 3),
                "filing": filing,
                "filing_cost_ratio": f["filing_cost_ratio"],
                "met": met,
                "city_figures": f["city_figures"],
            }
        )
    )


if __name__ == "__main__":
    main()
