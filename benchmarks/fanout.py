"""A community's call (社区吹哨) to all its Party members: enqueue, delivery, the race for places.

    .venv/bin/python benchmarks/fanout.py [--members 20000] [--scale 3] [--deliver 30]
                                          [--claims 200] [--places 50]
                                          [--database-url postgresql://postgres@127.0.0.1/test]

On a database of its own (a temp SQLite file, or a new PostgreSQL database created on the
--database-url server and dropped at the end) with one community, its secretary and --members
approved members (people and members inserted in bulk with Core executemany), one run measures:

1. Enqueue: the real `domain.calls.create_call` for the whole community, which writes two
   outbox rows per approved member (the call's place as a venue, then its text), committed.
   Target < 2 s. Baseline in the same run: a plain Core executemany insert of the same
   number of outbox rows, committed (the floor; those rows are written as already sent so
   the sender ignores them); "x" is the ratio.
2. Delivery: the fake Bot API runs as its own process with Telegram's limits (30 bulk
   sends/s overall, per chat a burst of 3 then one a second, the rates multiplied by --scale;
   sends to people who wrote within a minute are replies, not counted overall; paid
   broadcasts up to 1,000/s apart); the real OutboxSender and aiogram Bot, with the throttle
   set to the settings' defaults (29/s outbox, 1 s and a burst of 3 per chat) times the same
   scale, send the call's rows while people chat: they wrote to the bot, and one gets a
   direct reply every 0.5 s, its latency recorded. With --paid-rate R the call goes out as a
   paid broadcast (allow_paid_broadcast, 0.1 Stars a message) at R/s, not scaled. To keep the
   run short the sender is stopped after --deliver seconds (or when every row is sent, if
   sooner): only the rows sent in that window are delivered and the rate is measured over it
   (every send the fake accepted, replies included, from the first to the last). The
   baseline is the allowed rate: delivery_ratio = measured rate / (30 x scale, or R when
   paid), target >= 0.95 (the throttle's own 29/30 caps the free rate at about 0.967).
   Replies' p99 target < 1 s.
3. Claims: a call with --places places for a grid holding the first --claims members; --claims
   claims are fired at 200/s (each scheduled with asyncio, one session each, calling the real
   `domain.calls.answer_call`). Counted: accepted and refused ("duty.call_full"); checked in the
   database: exactly --places claim rows and DutyCall.claimed == --places ("never a 51st").

The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from aiogram import Bot  # noqa: E402
from aiogram.client.session.aiohttp import AiohttpSession  # noqa: E402
from aiogram.client.telegram import TelegramAPIServer  # noqa: E402
from sqlmodel import select  # noqa: E402

from benchmarks.common import database  # noqa: E402
from benchmarks.outbox import (  # noqa: E402
    build_throttle,
    chat_meanwhile,
    fake_stats,
    percentile,
    start_fake,
)
from bot.outbox import OutboxSender  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.throttle import ThrottleMiddleware  # noqa: E402
from domain.calls import answer_call, create_call  # noqa: E402
from domain.clock import SystemClock  # noqa: E402
from domain.errors import DomainError  # noqa: E402
from storage.db import make_engine, make_sessionmaker  # noqa: E402
from storage.enums import ClaimStatus, Lane, MemberStatus, OutboxStatus, Role  # noqa: E402
from storage.models import (  # noqa: E402
    CallClaim,
    DutyCall,
    Member,
    OutboxMessage,
    Person,
    RoleAssignment,
)
from tests.factories import make_person, make_tree  # noqa: E402
from views.outbox import default_renderer  # noqa: E402

TOKEN = "123456:TEST"
FIRST_CHAT = 100_000  # members' telegram ids: FIRST_CHAT + n
CHUNK = 1000
# The rows a call writes for each member: its place (a venue), then its text.
CALL_KINDS = ["duty_call_place", "duty_call"]
CLAIMS_PER_S = 200.0
TARGET_ENQUEUE_S = 2.0
TARGET_RATIO = 0.95
TARGET_P99_MS = 1000.0
PLACE = (34.742, 113.632)


async def seed(sessionmaker, members: int, claimers: int) -> tuple:
    """One community, its secretary, and approved members: the first `claimers` in grid G1."""
    clock = SystemClock()
    async with sessionmaker() as session:
        tree = await make_tree(session)
        secretary = await make_person(session, 300, "Secretary")
        session.add(
            RoleAssignment(
                person_id=secretary.id, role=Role.COMMUNITY_SECRETARY, unit_id=tree.community.id
            )
        )
        await session.commit()
        now = clock.now()
        people = [
            {
                "telegram_id": FIRST_CHAT + n,
                "full_name": f"Member {n}",
                "username": None,
                "language": "en" if n % 3 == 0 else "zh-hans",
                "created_at": now,
                "updated_at": now,
            }
            for n in range(members)
        ]
        for start in range(0, members, CHUNK):
            await session.exec(sa.insert(Person.__table__), params=people[start : start + CHUNK])
        found = await session.exec(
            select(Person.id, Person.telegram_id)
            .where(Person.telegram_id >= FIRST_CHAT)
            .order_by(Person.telegram_id)
        )
        grids = {True: tree.grid.id, False: tree.other_grid.id}
        rows = [
            {
                "person_id": person_id,
                "full_name": f"Member {telegram_id - FIRST_CHAT}",
                "branch": "第一党支部",
                "community_id": tree.community.id,
                "grid_id": grids[telegram_id - FIRST_CHAT < claimers],
                "skills": [],
                "services": [],
                "phone": None,
                "status": MemberStatus.APPROVED,
                "created_at": now,
                "updated_at": now,
            }
            for person_id, telegram_id in found.all()
        ]
        for start in range(0, len(rows), CHUNK):
            await session.exec(sa.insert(Member.__table__), params=rows[start : start + CHUNK])
        await session.commit()
    return tree, secretary


async def new_call(sessionmaker, tree, secretary, title: str, capacity: int, grids=()) -> tuple:
    """create_call, timed from a fresh session to its commit: (call id, rows, seconds)."""
    clock = SystemClock()
    starts = clock.now() + timedelta(days=1)
    async with sessionmaker() as session:
        actor = await session.get(Person, secretary.id)
        started = time.perf_counter()
        call, _ = await create_call(
            session=session,
            clock=clock,
            actor=actor,
            community_id=tree.community.id,
            title=title,
            description="Benchmark call",
            latitude=PLACE[0],
            longitude=PLACE[1],
            starts_at=starts,
            ends_at=starts + timedelta(hours=2),
            capacity=capacity,
            grid_ids=list(grids),
        )
        await session.commit()
        elapsed = time.perf_counter() - started
        rows = (
            await session.exec(
                select(sa.func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.kind.in_(CALL_KINDS))
                .where(OutboxMessage.created_at >= call.created_at)
            )
        ).one()
    return call.id, rows, elapsed


async def floor(sessionmaker, count: int) -> float:
    """The same number of outbox rows by a plain Core executemany, committed (marked sent)."""
    now = SystemClock().now()
    data = {"call_id": 0, "title": "floor", "starts_at": now.isoformat()}
    rows = [
        {
            "chat_id": FIRST_CHAT + n,
            "lane": int(Lane.BULK),
            "kind": "floor",
            "data": data,
            "status": OutboxStatus.SENT,
            "attempts": 0,
            "not_before": now,
            "created_at": now,
        }
        for n in range(count)
    ]
    async with sessionmaker() as session:
        started = time.perf_counter()
        statement = sa.insert(OutboxMessage.__table__)
        for start in range(0, count, CHUNK):
            await session.exec(statement, params=rows[start : start + CHUNK])
        await session.commit()
        return time.perf_counter() - started


async def deliver(sessionmaker, args: argparse.Namespace, fake_url: str, total: int) -> dict:
    settings = Settings(_env_file=None, paid_broadcast_rate=args.paid_rate)
    limit = args.paid_rate or 30 * args.scale

    renderer = default_renderer()
    throttle = build_throttle(settings, args.scale)
    session = AiohttpSession(api=TelegramAPIServer.from_base(fake_url))
    session.middleware(ThrottleMiddleware(throttle))
    bot = Bot(TOKEN, session=session)
    sender = OutboxSender(bot, sessionmaker, throttle, renderer, SystemClock(), batch=args.batch)
    stop = asyncio.Event()
    done = asyncio.Event()
    latencies: list[float] = []

    async with aiohttp.ClientSession() as http:
        started = time.perf_counter()
        sender_task = asyncio.create_task(sender.run(stop))
        chatter = asyncio.create_task(chat_meanwhile(bot, done, latencies, http, fake_url))
        while time.perf_counter() < started + args.deliver:
            await asyncio.sleep(0.2)
            if sender.counts["sent"] >= total or sender_task.done():
                break
        done.set()
        await chatter
        stop.set()
        await sender_task
        stats = await fake_stats(http, fake_url, times=True)
    await bot.session.close()

    async with sessionmaker() as db:
        by_status = dict(
            (
                await db.exec(
                    select(OutboxMessage.status, sa.func.count())
                    .where(OutboxMessage.kind.in_(CALL_KINDS))
                    .group_by(OutboxMessage.status)
                )
            ).all()
        )
    times = stats["send_times"]
    span = times[-1] - times[0] if len(times) > 1 else float("nan")
    measured = (len(times) - 1) / span if len(times) > 1 else 0.0
    return {
        "limit": limit,
        "window": time.perf_counter() - started,
        "span": span,
        "rate": measured,
        "ratio": measured / limit,
        "sent": sender.counts["sent"],
        "sent_in_db": by_status.get(OutboxStatus.SENT, 0),
        "failed": by_status.get(OutboxStatus.FAILED, 0),
        "pending": by_status.get(OutboxStatus.PENDING, 0),
        "received_429": stats["rejected_429"],
        "received_429_by_kind": stats["rejected_429_by_kind"],
        "paid": stats["paid"],
        "duplicates": stats["duplicates"],
        "replies": len(latencies),
        "reply_p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "reply_p99_ms": percentile(latencies, 0.99),
    }


async def claims(sessionmaker, tree, secretary, args: argparse.Namespace) -> dict:
    call_id, _, _ = await new_call(
        sessionmaker, tree, secretary, "Claims race", args.places, grids=[tree.grid.id]
    )
    async with sessionmaker() as session:
        claimers = (
            await session.exec(
                select(Member.person_id)
                .where(Member.grid_id == tree.grid.id)
                .order_by(Member.id)
                .limit(args.claims)
            )
        ).all()
    outcomes: Counter[str] = Counter()
    clock = SystemClock()

    async def one(person_id: int, at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        try:
            async with sessionmaker() as session:
                person = await session.get(Person, person_id)
                await answer_call(session=session, clock=clock, person=person, call_id=call_id)
                await session.commit()
            outcomes["accepted"] += 1
        except DomainError as exc:
            outcomes[exc.key] += 1
        except Exception as exc:  # noqa: BLE001 - a benchmark counts every outcome
            outcomes[f"error:{type(exc).__name__}"] += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(pid, started + n / CLAIMS_PER_S) for n, pid in enumerate(claimers)))
    elapsed = time.perf_counter() - started

    async with sessionmaker() as session:
        rows = (
            await session.exec(
                select(sa.func.count())
                .select_from(CallClaim)
                .where(CallClaim.call_id == call_id, CallClaim.status == ClaimStatus.CLAIMED)
            )
        ).one()
        call = await session.get(DutyCall, call_id)
        claimed = call.claimed
    return {
        "fired": len(claimers),
        "elapsed": elapsed,
        "accepted": outcomes["accepted"],
        "refused": outcomes["duty.call_full"],
        "other": {k: v for k, v in outcomes.items() if k not in ("accepted", "duty.call_full")},
        "claim_rows": rows,
        "claimed": claimed,
        "status": str(call.status),
        "overfilled": rows > args.places or claimed > args.places,
        "ok": rows == args.places == claimed == outcomes["accepted"],
    }


async def run(url: str, args: argparse.Namespace, fake_url: str) -> dict:
    engine = make_engine(url)
    sessionmaker = make_sessionmaker(engine)
    try:
        started = time.perf_counter()
        tree, secretary = await seed(sessionmaker, args.members, args.claims)
        seeded = time.perf_counter() - started
        call_id, total, enqueue_s = await new_call(
            sessionmaker, tree, secretary, "Snow on the roads: all hands", capacity=1000
        )
        # As many rows as the call wrote (each member: its place, then its text).
        floor_s = await floor(sessionmaker, total)
        delivery = await deliver(sessionmaker, args, fake_url, total)
        race = await claims(sessionmaker, tree, secretary, args)
    finally:
        await engine.dispose()
    return {
        "seed_s": seeded,
        "enqueued": total,
        "enqueue_s": enqueue_s,
        "floor_s": floor_s,
        "delivery": delivery,
        "claims": race,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=None, help="default: a temp SQLite file")
    parser.add_argument("--members", type=int, default=20000)
    parser.add_argument("--scale", type=float, default=3.0, help="multiplies both limits")
    parser.add_argument("--deliver", type=float, default=30.0, help="seconds of delivery")
    parser.add_argument("--claims", type=int, default=200)
    parser.add_argument("--places", type=int, default=50)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument(
        "--paid-rate",
        type=float,
        default=0.0,
        help="send the call as a paid broadcast at this many messages/s (0: free, up to 1000)",
    )
    args = parser.parse_args()
    if args.members < args.claims:
        parser.error("--members must be at least --claims")
    if not 0 <= args.paid_rate <= 1000:
        parser.error("--paid-rate must be between 0 and 1000")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    process, fake_url = start_fake(
        round(30 * args.scale), 1.0 / args.scale, Settings(_env_file=None).chat_burst
    )
    try:
        with database(args.database_url) as (url, kind):
            result = asyncio.run(run(url, args, fake_url))
    finally:
        process.terminate()
        process.wait(timeout=10)

    d, c = result["delivery"], result["claims"]
    enqueue_s, floor_s = result["enqueue_s"], result["floor_s"]

    def verdict(ok: bool) -> str:
        return "OK" if ok else "MISSED"

    lines = [
        f"database         {kind}",
        f"members          {args.members} (seeded in {result['seed_s']:.2f} s)",
        f"enqueue          {result['enqueued']} rows in {enqueue_s:.3f} s,"
        f" {result['enqueued'] / enqueue_s:,.0f} members/s"
        f" [target < {TARGET_ENQUEUE_S:g} s: {verdict(enqueue_s < TARGET_ENQUEUE_S)}]",
        f"enqueue floor    {floor_s:.3f} s plain executemany, x{enqueue_s / floor_s:.2f}",
        f"scale            {args.scale:g} (limit {d['limit']:g}/s"
        + (
            f", paid broadcast: {d['paid']} messages, {d['paid'] / 10:g} Stars)"
            if args.paid_rate
            else ")"
        ),
        f"delivery window  {d['window']:.1f} s (sends span {d['span']:.2f} s)",
        f"delivered        {d['sent']}/{result['enqueued']} call rows + {d['replies']} replies"
        f" (in db: sent {d['sent_in_db']}, pending {d['pending']}, failed {d['failed']})",
        f"delivered rate   {d['rate']:.2f}/s, ratio {d['ratio']:.3f}"
        f" [target >= {TARGET_RATIO:g}: {verdict(d['ratio'] >= TARGET_RATIO)}]",
        f"429s/duplicates  {d['received_429']} {d['received_429_by_kind']} / {d['duplicates']}",
        f"reply p50/p99    {d['reply_p50_ms']:.1f} / {d['reply_p99_ms']:.1f} ms"
        f" [target < {TARGET_P99_MS:g} ms: {verdict(d['reply_p99_ms'] < TARGET_P99_MS)}]",
        f"claims           {c['fired']} at {CLAIMS_PER_S:g}/s in {c['elapsed']:.2f} s:"
        f" accepted {c['accepted']}, refused {c['refused']}, other {c['other']}",
        f"in the database  {c['claim_rows']} claim rows, claimed {c['claimed']},"
        f" status {c['status']} (places {args.places})",
        f"never a {args.places + 1}st: {'OK' if c['ok'] and not c['overfilled'] else 'FAILED'}",
    ]
    print("\n".join(lines))  # noqa: T201 - a benchmark reports on stdout
    print(  # noqa: T201
        json.dumps(
            {
                "benchmark": "fanout",
                "database": kind,
                "members": args.members,
                "enqueue_s": round(enqueue_s, 4),
                "enqueue_floor_s": round(floor_s, 4),
                "enqueue_x_floor": round(enqueue_s / floor_s, 2),
                "scale": args.scale,
                "paid_rate": args.paid_rate,
                "paid": d["paid"],
                "delivered": d["sent"],
                "delivery_ratio": round(d["ratio"], 4),
                "received_429": d["received_429"],
                "duplicates": d["duplicates"],
                "reply_p99_ms": round(d["reply_p99_ms"], 1),
                "claims": c["fired"],
                "places": args.places,
                "accepted": c["accepted"],
                "refused": c["refused"],
                "claim_rows": c["claim_rows"],
                "overfilled": c["overfilled"],
                "claims_ok": c["ok"],
            }
        )
    )


if __name__ == "__main__":
    main()
