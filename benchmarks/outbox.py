"""Outbox throughput against Telegram-like limits, with a person chatting at the same time.

    .venv/bin/python benchmarks/outbox.py [--scale 3] [--database-url postgresql://...]

The fake Bot API runs as its own process and enforces 30 sends/s overall and 1 s between
sends to a chat, both multiplied by --scale; the real OutboxSender and aiogram Bot send
3,000 notices to 1,000 chats through the ThrottleMiddleware set to the settings' defaults
(29/s, 1 s) times the same scale, while a direct reply is sent every 0.5 s. The last line
printed is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
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
from aiogram import Bot  # noqa: E402
from aiogram.client.session.aiohttp import AiohttpSession  # noqa: E402
from aiogram.client.telegram import TelegramAPIServer  # noqa: E402

from benchmarks.common import database  # noqa: E402
from bot.outbox import OutboxSender  # noqa: E402
from bot.render import default_renderer  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.throttle import Throttle, ThrottleMiddleware  # noqa: E402
from domain.clock import SystemClock  # noqa: E402
from domain.outbox import Outgoing, count_by_status, enqueue_many  # noqa: E402
from storage.db import make_engine, make_sessionmaker  # noqa: E402
from storage.enums import Lane, OutboxStatus  # noqa: E402
from storage.models import Person  # noqa: E402

TOKEN = "123456:TEST"
FIRST_CHAT = 100_000
CHATTING = [900_001, 900_002, 900_003, 900_004]  # people talking to the bot meanwhile


def start_fake(global_per_s: int, chat_interval_s: float) -> tuple[subprocess.Popen, str]:
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


async def chat_meanwhile(bot: Bot, done: asyncio.Event, latencies: list[float]) -> None:
    """A person chatting: one direct reply every 0.5 s, priority 0 through the same throttle."""
    n = 0
    while not done.is_set():
        started = time.perf_counter()
        await bot.send_message(CHATTING[n % len(CHATTING)], f"reply {n}")
        latencies.append((time.perf_counter() - started) * 1000)
        n += 1
        with suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), max(0.0, 0.5 - (time.perf_counter() - started)))


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
    chat_interval = settings.chat_interval / args.scale
    limit = 30 * args.scale
    rng = random.Random(42)

    engine = make_engine(url)
    sessionmaker = make_sessionmaker(engine)
    total = await seed(sessionmaker, args.chats, args.per_chat, rng)

    throttle = Throttle(rate, chat_interval)
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

    async with aiohttp.ClientSession() as http:
        started = time.perf_counter()
        sender_task = asyncio.create_task(sender.run(stop))
        chatter = asyncio.create_task(chat_meanwhile(bot, done, latencies))
        deadline = started + max(120.0, 4 * total / rate)
        delivered_outbox = 0
        finished = started
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.2)
            stats = await fake_stats(http, fake_url)
            delivered_outbox = sum(
                count for chat, count in stats["per_chat"].items() if chat in outbox_chats
            )
            if delivered_outbox >= total:
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
    await engine.dispose()

    times = stats["send_times"]
    span = times[-1] - times[0] if len(times) > 1 else float("nan")
    delivered = stats["delivered"]
    delivered_rate = (delivered - 1) / span
    elapsed = finished - started
    return {
        "total": total,
        "delivered_outbox": delivered_outbox,
        "delivered_all": delivered,
        "elapsed": elapsed,
        "span": span,
        "delivered_rate": delivered_rate,
        "outbox_rate": delivered_outbox / elapsed,
        "limit": limit,
        "rate_ratio": delivered_rate / limit,
        "received_429": stats["rejected_429"],
        "lost": counts[OutboxStatus.PENDING] + counts[OutboxStatus.FAILED],
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
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    process, fake_url = start_fake(round(30 * args.scale), 1.0 / args.scale)
    try:
        with database(args.database_url) as (url, kind):
            result = asyncio.run(run(url, args, fake_url))
    finally:
        process.terminate()
        process.wait(timeout=10)

    lines = [
        f"database         {kind}",
        f"scale            {args.scale:g} (limit {result['limit']:g}/s)",
        f"delivered        {result['delivered_outbox']}/{result['total']} outbox"
        f" + {result['replies']} replies",
        f"elapsed          {result['elapsed']:.2f} s (sends span {result['span']:.2f} s)",
        f"delivered rate   {result['delivered_rate']:.2f}/s all sends,"
        f" {result['outbox_rate']:.2f}/s outbox incl. start-up",
        f"rate_ratio       {result['rate_ratio']:.3f}",
        f"429s             {result['received_429']}",
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
                "scale": args.scale,
                "database": kind,
            }
        )
    )


if __name__ == "__main__":
    main()
