"""`gridbot run` as a real process: start-up refusals, serving, and a clean SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from tests.fake_telegram import FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "123456:PROCESS"


def _env(fake: FakeTelegram, tmp_path: Path, token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBOT_")}
    env.update(
        GRIDBOT_BOT_TOKEN=token,
        GRIDBOT_TELEGRAM_API_BASE=fake.base_url,
        GRIDBOT_DATABASE_URL=f"sqlite:///{tmp_path / 'bot.db'}",
        PYTHONPATH=str(ROOT),
    )
    return env


async def _spawn(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_rejected_token_stops_start_up_with_one_line(tmp_path: Path) -> None:
    async with FakeTelegram(tokens=[TOKEN]) as fake:
        process = await _spawn(_env(fake, tmp_path, "999:WRONG"), tmp_path)
        _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    assert err.decode().strip().splitlines() == [
        "gridbot: Telegram rejected the bot token (401 Unauthorized): check GRIDBOT_BOT_TOKEN"
    ]
    # Nothing was set up for a bot that cannot run.
    assert not (tmp_path / "bot.db").exists()


async def test_unreachable_api_is_one_line(tmp_path: Path) -> None:
    async with FakeTelegram(tokens=[TOKEN]) as fake:
        env = _env(fake, tmp_path, TOKEN)
    # The fake is gone: nothing listens at its address any more.
    process = await _spawn(env, tmp_path)
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    (line,) = err.decode().strip().splitlines()
    assert line.startswith("gridbot: cannot reach the Telegram Bot API at http://127.0.0.1:")


async def test_serves_then_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    async with FakeTelegram(tokens=[TOKEN]) as fake:
        process = await _spawn(_env(fake, tmp_path, TOKEN), tmp_path)
        fake.push_message(42, "/start", first_name="Li", language_code="en")
        reply = await fake.wait_for_message(42, timeout=60)
        assert reply["text"].startswith("Hello, Li!")
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 30)
    log = err.decode()
    assert process.returncode == 0, log
    assert "loaded the bundled sample city" in log
    assert "Stopped cleanly" in log
    assert "Traceback" not in log, log
