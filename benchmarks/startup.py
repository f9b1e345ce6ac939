"""How fast `gridbot run` answers /start after launch, on SQLite, against a bare aiogram bot.

Each run launches the process, queues a /start at once in a fake Bot API (loopback HTTP),
and times launch -> the reply arriving. Scenarios: a first run on an empty database
(migrations + the sample city), a restart on that database, and a bare aiogram echo bot
launched the same way (the baseline). Target: gridbot answers within 3 s of launch.

A launch is everything before the answer: the interpreter's start, the imports (aiogram's
alone is most of the baseline), asking Telegram who the bot is, migrating and seeding the
database, setting the command menu, then the first getUpdates and the reply. The processes
get this environment as it is: where PYTHONDONTWRITEBYTECODE is set, the modules of this tree
are compiled from source at every launch (installed packages keep their bytecode), which the
baseline, importing installed packages only, does not pay.

    python benchmarks/startup.py [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_telegram import FakeTelegram  # noqa: E402

TOKEN = "123456:BENCH"


async def launch_and_time(fake: FakeTelegram, argv: list[str], env: dict, chat: int) -> float:
    """Seconds from launch to the reply to /start; the process is then stopped with SIGTERM."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        cwd=env.get("BENCH_CWD"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    fake.push_message(chat, "/start", language_code="zh-hans")
    try:
        await fake.wait_for_message(chat, timeout=60)
    except TimeoutError:
        # It may have exited already (a failed start): its stderr says why.
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        _, err = await process.communicate()
        raise SystemExit(f"no answer from {argv}: {err.decode()[-2000:]}") from None
    elapsed = time.perf_counter() - started
    process.send_signal(signal.SIGTERM)
    _, err = await process.communicate()
    if process.returncode not in (0, -signal.SIGTERM):
        raise SystemExit(f"{argv} exited {process.returncode}: {err.decode()[-2000:]}")
    return elapsed


async def main(runs: int) -> dict:
    python = sys.executable
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBOT_")}
    results: dict[str, list[float]] = {"first_run": [], "restart": [], "bare": []}
    chat = 1000
    async with FakeTelegram(tokens=[TOKEN]) as fake:
        for _ in range(runs):
            workdir = tempfile.mkdtemp(prefix="gridbot-startup-")
            env = {
                **base_env,
                "GRIDBOT_BOT_TOKEN": TOKEN,
                "GRIDBOT_TELEGRAM_API_BASE": fake.base_url,
                "GRIDBOT_DATABASE_URL": f"sqlite:///{workdir}/gridbot.db",
                "PYTHONPATH": str(ROOT),
                "BENCH_CWD": workdir,
            }
            gridbot = [python, "-m", "bot", "run"]
            for scenario in ("first_run", "restart"):
                chat += 1
                results[scenario].append(await launch_and_time(fake, gridbot, env, chat))
            chat += 1
            bare = [python, str(ROOT / "benchmarks" / "bare_bot.py"), fake.base_url, TOKEN]
            results["bare"].append(await launch_and_time(fake, bare, env, chat))

    medians = {name: statistics.median(times) for name, times in results.items()}
    print(f"{'scenario':<10} {'median s':>9} {'runs'}")
    for name, times in results.items():
        print(f"{name:<10} {medians[name]:>9.2f} {' '.join(f'{t:.2f}' for t in times)}")
    return {
        "benchmark": "startup",
        "first_run_s": round(medians["first_run"], 3),
        "restart_s": round(medians["restart"], 3),
        "bare_s": round(medians["bare"], 3),
        "first_run_ratio": round(medians["first_run"] / medians["bare"], 2),
        "restart_ratio": round(medians["restart"] / medians["bare"], 2),
        "target_s": 3.0,
        "runs": runs,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.runs))))
