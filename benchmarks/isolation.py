"""Isolation: one person's flood, one chat's 429 and a paid broadcast hold nobody else up.

    .venv/bin/python benchmarks/isolation.py [--others 50] [--seconds 15] [--flood 300]
                                             [--flood-seconds 10] [--retry-after 120]
                                             [--paid-rate 250] [--paid-members 20000]
                                             [--database-url postgresql://postgres@127.0.0.1/test]

The fake Bot API (tests/fake_telegram.py) runs in this process with Telegram's limits (per
chat a burst of 3 then 1/s, 30/s to chats that did not write within a minute, paid
broadcasts up to 1,000/s apart, 429 with retry_after); gridbot runs as `python -m bot run`
on a fresh database with its production settings. `--others` residents file whole reports
as people do (they read each answer for `--think` s, +-25%, and never write twice within a
second: see benchmarks/inbound.py). Phases, one after the other:

1. baseline: the residents alone; the p99 the next phases are compared with.
2. flood: the residents, and one person sending `--flood` messages in `--flood-seconds` s,
   evenly. gridbot's per-person limit (production default: 2/s, a burst of 10) drops the
   excess and tells the person once to slow down; the flooder's chat is followed until it
   goes quiet, and its "slow down" notices counted (exactly one expected).
3. 429: the residents, and one person whose chat the fake answers 429 with
   retry_after=`--retry-after` for as long; that person writes /report every 2 s.
4. paid broadcast: gridbot restarted with GRIDBOT_PAID_BROADCAST_RATE=`--paid-rate` (what
   this machine sustains; Telegram allows up to 1,000/s, at 0.1 Star a message); a call to
   `--paid-members` members (seeded as benchmarks/fanout.py does, posted with the real
   `domain.calls.create_call`) goes out through the outbox's bulk lane as paid broadcasts
   while the residents file reports; then the driver waits for the call's last message.

The window of phases 2 and 3 opens when the flood (or the 429) starts. Latency runs from
pushing an update into the fake to the bot's first call for its chat.

Targets: the others' p99 < 1 s in phases 2 and 3, exactly one "slow down" notice; the call
delivered at >= 0.9 x the configured paid rate with the residents' p99 < 150 ms meanwhile.
The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import database  # noqa: E402
from benchmarks.inbound import (  # noqa: E402
    DIALOG_STEPS,
    FIRST_RESIDENT,
    GC_PAUSES,
    GRIDBOT_TOKEN,
    LANGUAGE,
    SLOW_DOWN,
    BenchFake,
    Chat,
    Delivery,
    Driver,
    Load,
    Phase,
    add_common_arguments,
    connections,
    count_tickets,
    delivery_of,
    finite,
    gridbot_process,
    keep_logs,
    load_average,
    post_call,
    print_database_note,
    refused_connections,
    seed_members,
    table,
    verdict,
    wait_delivered,
)
from tests.fake_telegram import REJECTION_KINDS  # noqa: E402

FLOODER = FIRST_RESIDENT - 1
BLOCKED = FIRST_RESIDENT - 2
TARGET_OTHERS_P99_MS = 1000.0
TARGET_PAID_RATIO = 0.90
TARGET_PAID_P99_MS = 150.0


async def flood(fake: BenchFake, count: int, seconds: float) -> None:
    """One person sends `count` texts in `seconds`, evenly."""
    started = time.perf_counter()
    for n in range(count):
        delay = started + seconds * n / count - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        fake.push_message(FLOODER, f"flood {n}", language_code=LANGUAGE)


async def quiet(chat: Chat, for_s: float = 3.0, at_most: float = 90.0) -> None:
    """Until the chat got nothing new for `for_s` seconds (or `at_most` passed)."""
    deadline = time.perf_counter() + at_most
    seen, since = len(chat.messages), time.perf_counter()
    while time.perf_counter() < deadline:
        await asyncio.sleep(0.25)
        if len(chat.messages) != seen:
            seen, since = len(chat.messages), time.perf_counter()
        elif time.perf_counter() - since >= for_s:
            return


async def keep_writing(fake: BenchFake, chat_id: int, every: float, until: float) -> int:
    """A person writing /report every `every` s until `until`; how many they sent."""
    sent = 0
    while time.perf_counter() < until:
        fake.push_message(chat_id, "/report", language_code=LANGUAGE)
        sent += 1
        await asyncio.sleep(every)
    return sent


def dropped_in(log: Path, user_id: int) -> int:
    """Updates gridbot logged as dropped for flooding, from this person."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return 0
    return text.count(f"dropped: {user_id} is flooding")


async def run(args: argparse.Namespace, url: str, kind: str, workdir: str) -> dict:
    rng = random.Random(args.seed)
    phases: dict[str, Phase] = {}
    startup: dict[str, float] = {}
    spread = args.think * DIALOG_STEPS
    load_at_start = load_average()
    connections_at_start = connections(url)

    def others(name: str) -> Phase:
        return Phase(name, Load(args.others, think=args.think, gap=1.0, spread=spread))

    async with BenchFake(tokens=[GRIDBOT_TOKEN]) as fake:
        fake.limits()  # Telegram's, paid broadcasts up to 1,000/s
        driver = Driver(fake, rng, args.timeout)
        warmup = max(args.warmup, spread)

        gridbot = gridbot_process(args, fake, url, workdir, "gridbot")
        startup["gridbot"] = await gridbot.start(fake, GRIDBOT_TOKEN)
        rejected_before = fake.rejections()
        flooder = fake.chats[FLOODER] = Chat()
        blocked = fake.chats[BLOCKED] = Chat()
        try:
            phases["baseline"] = await driver.run(
                others(f"{args.others} residents alone"),
                driver.report,
                warmup=warmup,
                seconds=args.seconds,
                bot_pid=gridbot.pid,
            )

            flooding: list[asyncio.Task[None]] = []

            async def start_flood(phase: Phase) -> None:
                flooding.append(asyncio.create_task(flood(fake, args.flood, args.flood_seconds)))

            phases["flood"] = await driver.run(
                others(f"+ {args.flood} msgs in {args.flood_seconds:g} s"),
                driver.report,
                warmup=warmup,
                seconds=max(args.seconds, args.flood_seconds),
                bot_pid=gridbot.pid,
                on_window=start_flood,
            )
            await flooding[0]
            await quiet(flooder)
            notices = sum(
                1 for m in flooder.messages if (m.get("text") or "").startswith(SLOW_DOWN)
            )
            flood_result = {
                "pushed": args.flood,
                "dropped": dropped_in(gridbot.log, FLOODER),
                "answers": len(flooder.messages) - notices,
                "notices": notices,
                "rejected": flooder.rejected,
            }

            writing: list[asyncio.Task[int]] = []

            async def block_one(phase: Phase) -> None:
                fake.force_429(BLOCKED, args.retry_after)
                writing.append(
                    asyncio.create_task(keep_writing(fake, BLOCKED, 2.0, phase.window_end))
                )

            phases["429"] = await driver.run(
                others(f"+ 1 chat 429 for {args.retry_after} s"),
                driver.report,
                warmup=warmup,
                seconds=args.seconds,
                bot_pid=gridbot.pid,
                on_window=block_one,
            )
            blocked_result = {
                "pushed": await writing[0],
                "calls_refused": blocked.rejected,
                "delivered": len(blocked.messages),
                "given_up": gridbot_log_count(gridbot.log, f"to {BLOCKED} given up"),
            }
        finally:
            code = await gridbot.stop()
        if code not in (0, -signal.SIGTERM):
            print(f"gridbot exited {code}:\n{gridbot.tail()}")
        rejected_defaults = fake.rejections() - rejected_before

        # Paid broadcasting on: the same database, gridbot started again with the rate set.
        paid = gridbot_process(
            args,
            fake,
            url,
            workdir,
            "gridbot-paid",
            paid_broadcast_rate=f"{args.paid_rate:g}",
        )
        startup["gridbot-paid"] = await paid.start(fake, GRIDBOT_TOKEN)
        rejected_before = fake.rejections()
        delivery: Delivery | None = None
        try:
            community = await seed_members(url, args.paid_members)
            since = len(fake.bulk_times)
            paid_before = fake.bulk_paid
            rows, enqueue_s = await post_call(url, community, "Flood warning: all hands")
            posted_at = time.perf_counter()
            expected = rows / args.paid_rate
            window = max(1.0, min(args.paid_window, expected - warmup - 3))
            phase = phases["paid"] = await driver.run(
                others(f"+ paid call at {args.paid_rate:g}/s"),
                driver.report,
                warmup=warmup,
                seconds=window,
                bot_pid=paid.pid,
            )
            await wait_delivered(fake, rows, since, expected * 3 + 30)
            delivery = delivery_of(fake, since, rows, posted_at, enqueue_s, phase)
            delivery.paid = fake.bulk_paid - paid_before
        finally:
            code = await paid.stop()
        if code not in (0, -signal.SIGTERM):
            print(f"gridbot-paid exited {code}:\n{paid.tail()}")
        rejected_paid = fake.rejections() - rejected_before

    return {
        "phases": phases,
        "startup": startup,
        "flood": flood_result,
        "blocked": blocked_result,
        "delivery": delivery,
        "rejected_defaults": rejected_defaults,
        "rejected_paid": rejected_paid,
        "tickets": count_tickets(url),
        "dialogs": sum(p.dialogs for p in phases.values()),
        "log_problems": gridbot.problems() + paid.problems(),
        "load": (load_at_start, load_average()),
        "connections": (connections_at_start, connections(url)),
        "refused_connections": refused_connections(gridbot, paid),
    }


def gridbot_log_count(log: Path, needle: str) -> int:
    try:
        return log.read_text(errors="replace").count(needle)
    except OSError:
        return 0


def kinds(counter: Counter[str]) -> dict[str, int]:
    return {k: counter.get(k, 0) for k in REJECTION_KINDS}


def report(args: argparse.Namespace, kind: str, result: dict) -> dict:
    phases: dict[str, Phase] = result["phases"]
    base, flooded, blocked, paid = (phases[k] for k in ("baseline", "flood", "429", "paid"))
    f, b = result["flood"], result["blocked"]
    d: Delivery = result["delivery"]
    print(
        f"isolation: {args.others} residents filing reports through `gridbot run` ({kind}), "
        "against the fake Bot API in this process, enforcing Telegram's limits"
    )
    print(
        "production settings (no GRIDBOT_ setting but the token, the API base and the database; "
        f"the paid phase adds GRIDBOT_PAID_BROADCAST_RATE={args.paid_rate:g}); residents read "
        f"each answer {args.think:g} s (+-25%) and write at most once a second; bot start-up: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in result["startup"].items())
    )
    print(f"machine load average at the start {result['load'][0]}, at the end {result['load'][1]}")
    print_database_note(result)
    print()
    table(list(phases.values()))
    print()
    errors = sum(p.errors for p in phases.values())
    mismatch = result["tickets"] != result["dialogs"]
    print(
        f"dialogs completed {result['dialogs']}, tickets in the database {result['tickets']}"
        + ("  MISMATCH" if mismatch else "  (equal)")
        + f"; errors {errors}"
    )
    for p in phases.values():
        for sample in p.samples:
            print(f"  {p.name}: {sample}")
    for line in result["log_problems"]:
        print(f"  log {line[:240]}")
    base_p99 = base.p(0.99)

    def against_base(p: Phase) -> str:
        return (
            f"p50/p99 {p.p(0.5):.1f}/{p.p(0.99):.1f} ms (x{p.p(0.99) / base_p99:.2f} the "
            f"baseline's p99 {base_p99:.1f} ms), {p.rate:.1f} updates/s "
            f"(x{p.rate / base.rate:.2f})"
        )

    flood_ok = flooded.p(0.99) < TARGET_OTHERS_P99_MS
    print(
        f"flood: the others' {against_base(flooded)}; target p99 < "
        f"{TARGET_OTHERS_P99_MS:g} ms: {verdict(flood_ok)}"
    )
    print(
        f"  the flooder sent {f['pushed']}: {f['dropped']} dropped, {f['answers']} answered, "
        f"{f['notices']} 'slow down' notice(s) (target exactly 1: {verdict(f['notices'] == 1)}),"
        f" {f['rejected']} 429s to its chat"
    )
    blocked_ok = blocked.p(0.99) < TARGET_OTHERS_P99_MS
    print(
        f"429: the others' {against_base(blocked)}; target p99 < {TARGET_OTHERS_P99_MS:g} ms: "
        f"{verdict(blocked_ok)}"
    )
    print(
        f"  the blocked person wrote {b['pushed']} times; gridbot sent {b['calls_refused']} "
        f"request(s) to the chat (answered 429 retry_after={args.retry_after}) and logged "
        f"{b['given_up']} reply(ies) given up, none waited for (longer than the 10 s cap); "
        f"delivered {b['delivered']}"
    )
    ratio = d.rate / args.paid_rate
    paid_ok = ratio >= TARGET_PAID_RATIO
    paid_p99_ok = paid.p(0.99) < TARGET_PAID_P99_MS
    print(
        f"paid broadcast: {d.rows} rows written by create_call in {d.enqueue_s:.2f} s; "
        f"{d.delivered} delivered ({d.paid} as paid broadcasts, {d.paid / 10:g} Stars; "
        f"{d.duplicates} twice) at {d.rate:.1f}/s first to last, x{ratio:.3f} of the configured "
        f"{args.paid_rate:g}/s (target >= {TARGET_PAID_RATIO:g}: {verdict(paid_ok)}); "
        f"{d.window_rate:.1f}/s during the residents' window"
    )
    print(
        f"  the residents meanwhile: {against_base(paid)}; target p99 < "
        f"{TARGET_PAID_P99_MS:g} ms: {verdict(paid_p99_ok)}"
    )
    defaults, paid_429 = result["rejected_defaults"], result["rejected_paid"]
    unforced = sum(v for k, v in defaults.items() if k != "forced") + sum(paid_429.values())
    print(
        f"429s answered to gridbot: production settings {kinds(defaults)} (the forced ones are "
        f"the blocked chat's), paid {kinds(paid_429)}; unforced {unforced} (target 0): "
        f"{verdict(unforced == 0)}"
    )
    print(
        "the fake runs in this process: its CPU with the residents' is the 'fake+drv' column "
        "(near 100% would mean the fake was the limit, not the bot)"
    )
    return finite(
        {
            "benchmark": "isolation",
            "database": kind,
            "fake": "in the driver's process",
            "others": args.others,
            "baseline_p50_ms": round(base.p(0.5), 1),
            "baseline_p99_ms": round(base_p99, 1),
            "baseline_updates_per_s": round(base.rate, 1),
            "flood_p50_ms": round(flooded.p(0.5), 1),
            "flood_p99_ms": round(flooded.p(0.99), 1),
            "flood_p99_ratio": round(flooded.p(0.99) / base_p99, 2),
            "flood_p99_met": flood_ok,
            "flood_pushed": f["pushed"],
            "flood_dropped": f["dropped"],
            "flood_answered": f["answers"],
            "flood_notices": f["notices"],
            "flood_notice_met": f["notices"] == 1,
            "blocked_p50_ms": round(blocked.p(0.5), 1),
            "blocked_p99_ms": round(blocked.p(0.99), 1),
            "blocked_p99_ratio": round(blocked.p(0.99) / base_p99, 2),
            "blocked_p99_met": blocked_ok,
            "blocked_sends_refused": b["calls_refused"],
            "paid_rate": args.paid_rate,
            "paid_members": args.paid_members,
            "paid_delivered": d.delivered,
            "paid_broadcasts": d.paid,
            "paid_duplicates": d.duplicates,
            "paid_delivered_rate": round(d.rate, 1),
            "paid_ratio": round(ratio, 3),
            "paid_ratio_met": paid_ok,
            "paid_p50_ms": round(paid.p(0.5), 1),
            "paid_p99_ms": round(paid.p(0.99), 1),
            "paid_p99_met": paid_p99_ok,
            "gridbot_429": {"defaults": kinds(defaults), "paid": kinds(paid_429)},
            "unforced_429": unforced,
            "tickets_filed": result["tickets"],
            "dialogs_completed": result["dialogs"],
            "errors": errors + (1 if mismatch else 0),
            "bot_cpu": {k: round(p.bot_cpu, 2) for k, p in phases.items()},
            "bot_wait": {k: round(p.bot_wait, 2) for k, p in phases.items()},
            "driver_cpu": {k: round(p.driver_cpu, 2) for k, p in phases.items()},
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--others", type=int, default=50, help="residents filing reports")
    parser.add_argument("--flood", type=int, default=300, help="messages the flooder sends")
    parser.add_argument("--flood-seconds", type=float, default=10.0, help="... in this long")
    parser.add_argument(
        "--retry-after", type=int, default=120, help="the blocked chat's 429 retry_after"
    )
    parser.add_argument(
        "--paid-rate", type=float, default=250.0, help="GRIDBOT_PAID_BROADCAST_RATE (1-1000)"
    )
    parser.add_argument("--paid-members", type=int, default=20000, help="members the call reaches")
    parser.add_argument(
        "--paid-window",
        type=float,
        default=60.0,
        help="seconds measured while the call goes out (at most its length, less the warm-up)",
    )
    args = parser.parse_args()
    if not 0 < args.paid_rate <= 1000:
        parser.error("--paid-rate must be above 0 and at most 1000")

    gc.callbacks.append(GC_PAUSES)
    with tempfile.TemporaryDirectory(prefix="gridbot-isolation-") as workdir:
        with database(args.database_url, migrate=False) as (url, kind):
            result = asyncio.run(run(args, url, kind, workdir))
        keep_logs(workdir, args.logs)
        print(json.dumps(report(args, kind, result)))


if __name__ == "__main__":
    main()
