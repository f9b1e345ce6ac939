"""Outbox throughput against Telegram's limits, with people chatting at the same time.

    .venv/bin/python benchmarks/outbox.py [--scale 3] [--database-url postgresql://...]
                                          [--force-429 120]

The fake Bot API runs as its own process and enforces Telegram's limits: 30 bulk sends/s
overall (sends to chats that wrote within the last minute are replies, not counted), and
per chat a burst of 3 then one a second; the overall rate and the per-chat rate are
multiplied by --scale. The real OutboxSender and aiogram Bot send 3,000 notices to 1,000
chats with the throttle set to the settings' defaults (29/s outbox, 1 s and a burst of 3
per chat, 10 s retry_after cap) times the same scale, while people who just wrote get a
direct reply every 0.5 s. With --force-429 N the fake refuses the first outbox chat with
429 retry_after=N for N seconds: its rows wait (in their table when N is over the cap)
and everybody else's replies and rows must not. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import random
import statistics
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from aiogram import Bot  # noqa: E402
from aiogram.client.session.aiohttp import AiohttpSession  # noqa: E402
from aiogram.client.telegram import TelegramAPIServer  # noqa: E402

from benchmarks.common import database  # noqa: E402
from bot.outbox import OutboxSender  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.throttle import Throttle, ThrottleMiddleware  # noqa: E402
from domain.clock import SystemClock  # noqa: E402
from domain.outbox import Outgoing, enqueue_many  # noqa: E402
from storage.db import make_engine, make_sessionmaker  # noqa: E402
from storage.enums import Lane, OutboxStatus  # noqa: E402
from storage.models import OutboxMessage, Person  # noqa: E402
from storage.outbox import count_by_status  # noqa: E402
from views.outbox import default_renderer  # noqa: E402

TOKEN = "123456:TEST"
FIRST_CHAT = 100_000
CHATTING = [900_001, 900_002, 900_003, 900_004]  # people talking to the bot meanwhile


def start_fake(
    global_per_s: int, chat_interval_s: float, chat_burst: int = 3, paid_per_s: int = 1000
) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fake_telegram",
            "--port",
            "0",
            "--global-per-s",
            str(global_per_s),
            "--chat-interval-s",
            str(chat_interval_s),
            "--chat-burst",
            str(chat_burst),
            "--paid-per-s",
            str(paid_per_s),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise RuntimeError("the fake Bot API did not start")
    return process, json.loads(line)["url"]


async def seed(sessionmaker, chats: int, per_chat: int, rng: random.Random) -> int:
    clock = SystemClock()
    async with sessionmaker() as session:
        session.add_all(
            Person(telegram_id=FIRST_CHAT + i, language="en" if i % 3 == 0 else "zh-hans")
            for i in range(chats)
        )
        items = []
        for n in range(chats * per_chat):
            chat = FIRST_CHAT + n % chats
            lane = rng.choices([Lane.INTERACTIVE, Lane.ESCALATION, Lane.BULK], [1, 2, 7])[0]
            # A unique text per row lets the fake count duplicate deliveries.
            text = {"zh-hans": f"基准通知 #{n}", "en": f"Benchmark notice #{n}"}
            items.append(Outgoing(chat, "notice", {"text": text}, lane))
        rng.shuffle(items)
        count = await enqueue_many(session, items, clock=clock)
        await session.commit()
    return count


def build_throttle(settings: Settings, scale: float) -> Throttle:
    """The throttle `gridbot run` builds from the settings, its rates times `scale`."""
    return Throttle(
        settings.outbox_rate * scale,
        settings.chat_interval / scale,
        settings.chat_burst,
        paid_rate=settings.paid_broadcast_rate,
        retry_after_cap=settings.retry_after_cap,
    )


async def chat_meanwhile(
    bot: Bot, done: asyncio.Event, latencies: list[float], http: aiohttp.ClientSession, url: str
) -> None:
    """People chatting: each wrote to the bot (an update pushed into the fake, again every
    30 s), and one of them gets a direct reply every 0.5 s."""
    n = 0
    wrote_at = -math.inf
    while not done.is_set():
        if time.perf_counter() - wrote_at > 30:
            wrote_at = time.perf_counter()
            for chat in CHATTING:
                await push_message(http, url, chat)
        started = time.perf_counter()
        await bot.send_message(CHATTING[n % len(CHATTING)], f"reply {n}")
        latencies.append((time.perf_counter() - started) * 1000)
        n += 1
        with suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), max(0.0, 0.5 - (time.perf_counter() - started)))


async def push_message(http: aiohttp.ClientSession, url: str, chat: int) -> None:
    """A message from `chat` to the bot, as Telegram would deliver it."""
    update = {
        "message": {
            "message_id": 1,
            "date": int(time.time()),
            "chat": {"id": chat, "type": "private", "first_name": "Resident"},
            "from": {"id": chat, "is_bot": False, "first_name": "Resident"},
            "text": "hello",
        }
    }
    async with http.post(f"{url}/_push", json=update) as response:
        response.raise_for_status()


async def force_429(http: aiohttp.ClientSession, url: str, chat: int, retry_after: int) -> None:
    body = {"chat_id": chat, "retry_after": retry_after}
    async with http.post(f"{url}/_force_429", json=body) as response:
        response.raise_for_status()


async def fake_stats(http: aiohttp.ClientSession, url: str, times: bool = False) -> dict:
    async with http.get(f"{url}/_stats", params={"times": "1" if times else "0"}) as response:
        return await response.json()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def run(url: str, args: argparse.Namespace, fake_url: str) -> dict:
    settings = Settings(_env_file=None)
    rate = settings.outbox_rate * args.scale
    limit = 30 * args.scale
    rng = random.Random(42)

    engine = make_engine(url)
    sessionmaker = make_sessionmaker(engine)
    total = await seed(sessionmaker, args.chats, args.per_chat, rng)

    throttle = build_throttle(settings, args.scale)
    session = AiohttpSession(api=TelegramAPIServer.from_base(fake_url))
    session.middleware(ThrottleMiddleware(throttle))
    bot = Bot(TOKEN, session=session)
    sender = OutboxSender(
        bot, sessionmaker, throttle, default_renderer(), SystemClock(), batch=args.batch
    )
    stop = asyncio.Event()
    done = asyncio.Event()
    latencies: list[float] = []
    outbox_chats = {str(FIRST_CHAT + i) for i in range(args.chats)}
    blocked = str(FIRST_CHAT) if args.force_429 else None
    expected = total - (args.per_chat if blocked else 0)  # the blocked chat's rows wait

    async with aiohttp.ClientSession() as http:
        if args.force_429:
            await force_429(http, fake_url, FIRST_CHAT, args.force_429)
        started = time.perf_counter()
        sender_task = asyncio.create_task(sender.run(stop))
        chatter = asyncio.create_task(chat_meanwhile(bot, done, latencies, http, fake_url))
        deadline = started + max(120.0, 4 * total / rate)
        delivered_outbox = 0
        finished = started
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.2)
            stats = await fake_stats(http, fake_url)
            delivered_outbox = sum(
                count
                for chat, count in stats["per_chat"].items()
                if chat in outbox_chats and chat != blocked
            )
            if delivered_outbox >= expected:
                finished = time.perf_counter()
                break
            if sender_task.done():
                break
        done.set()
        await chatter
        stop.set()
        await sender_task
        stats = await fake_stats(http, fake_url, times=True)
    await bot.session.close()

    async with sessionmaker() as db:
        counts = await count_by_status(db)
        # Rows not sent, the forced chat's aside (they wait for its retry_after).
        unsent = sa.select(sa.func.count()).where(OutboxMessage.status != OutboxStatus.SENT)
        if blocked is not None:
            unsent = unsent.where(OutboxMessage.chat_id != int(blocked))
        lost = (await db.exec(unsent)).scalar_one()
    await engine.dispose()

    times = stats["send_times"]
    span = times[-1] - times[0] if len(times) > 1 else float("nan")
    delivered = stats["delivered"]
    delivered_rate = (delivered - 1) / span
    elapsed = finished - started
    return {
        "total": total,
        "expected": expected,
        "delivered_outbox": delivered_outbox,
        "delivered_all": delivered,
        "elapsed": elapsed,
        "span": span,
        "delivered_rate": delivered_rate,
        "outbox_rate": delivered_outbox / elapsed,
        "limit": limit,
        "rate_ratio": delivered_rate / limit,
        "received_429": stats["rejected_429"],
        "received_429_by_kind": stats["rejected_429_by_kind"],
        "lost": lost,
        "failed": counts[OutboxStatus.FAILED],
        "sent_in_db": counts[OutboxStatus.SENT],
        "duplicates": stats["duplicates"],
        "replies": len(latencies),
        "reply_p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "reply_p99_ms": percentile(latencies, 0.99),
        "sender": dict(sender.counts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=3.0, help="multiplies both limits")
    parser.add_argument("--database-url", default=None, help="default: a temp SQLite file")
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--per-chat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument(
        "--force-429",
        type=int,
        default=0,
        help="seconds of 429 (retry_after) forced on one outbox chat; 0: none",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    settings = Settings(_env_file=None)
    process, fake_url = start_fake(round(30 * args.scale), 1.0 / args.scale, settings.chat_burst)
    try:
        with database(args.database_url) as (url, kind):
            result = asyncio.run(run(url, args, fake_url))
    finally:
        process.terminate()
        process.wait(timeout=10)

    lines = [
        f"database         {kind}",
        f"scale            {args.scale:g} (limit {result['limit']:g}/s)",
        f"delivered        {result['delivered_outbox']}/{result['expected']} outbox"
        f" + {result['replies']} replies"
        + (f" (chat {FIRST_CHAT} refused for {args.force_429} s)" if args.force_429 else ""),
        f"elapsed          {result['elapsed']:.2f} s (sends span {result['span']:.2f} s)",
        f"delivered rate   {result['delivered_rate']:.2f}/s all sends,"
        f" {result['outbox_rate']:.2f}/s outbox incl. start-up",
        f"rate_ratio       {result['rate_ratio']:.3f}",
        f"429s             {result['received_429']} {result['received_429_by_kind']}",
        f"lost             {result['lost']} (failed {result['failed']},"
        f" sent in db {result['sent_in_db']})",
        f"duplicates       {result['duplicates']}",
        f"reply p50/p99    {result['reply_p50_ms']:.1f} / {result['reply_p99_ms']:.1f} ms",
        f"sender counters  {result['sender']}",
    ]
    print("\n".join(lines))  # noqa: T201 - a benchmark reports on stdout
    print(  # noqa: T201
        json.dumps(
            {
                "benchmark": "outbox",
                "rate_ratio": round(result["rate_ratio"], 4),
                "received_429": result["received_429"],
                "lost": result["lost"],
                "duplicates": result["duplicates"],
                "reply_p99_ms": round(result["reply_p99_ms"], 1),
                "forced_429_s": args.force_429,
                "scale": args.scale,
                "database": kind,
            }
        )
    )


if __name__ == "__main__":
    main()
