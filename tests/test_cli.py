"""The command line: help everywhere, one clear line for every refusal."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from storage.db import describe
from storage.org_loader import sample_path
from tests.fake_telegram import FakeTelegram
from tests.test_migrations import head_revision, read_only

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["run"],
        ["db"],
        ["db", "upgrade"],
        ["org"],
        ["org", "load"],
        ["org", "sample"],
        ["invite"],
        ["stats"],
    ],
)
def test_every_command_has_help(args) -> None:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def _env(tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBOT_")}
    env["GRIDBOT_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    env["PYTHONPATH"] = str(ROOT)  # the code of this tree, whatever is installed
    env.update(extra)
    return env


def _gridbot(tmp_path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        env=_env(tmp_path, **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_run_without_token_says_so_in_one_line(tmp_path) -> None:
    result = _gridbot(tmp_path, "run")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        == "gridbot: GRIDBOT_BOT_TOKEN is not set: get a token from @BotFather"
    )


def test_bad_setting_is_named(tmp_path) -> None:
    result = _gridbot(tmp_path, "run", GRIDBOT_TIMEZONE="Mars/Olympus", GRIDBOT_BOT_TOKEN="1:x")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "GRIDBOT_TIMEZONE" in result.stderr and "Mars/Olympus" in result.stderr


def test_db_upgrade_creates_the_schema(tmp_path) -> None:
    result = _gridbot(tmp_path, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cli.db").exists()


def test_invite_refusals_are_one_line(tmp_path) -> None:
    bad_role = _gridbot(
        tmp_path, "invite", "--role", "mayor", "--unit", "X", GRIDBOT_BOT_USERNAME="b"
    )
    assert bad_role.returncode == 2
    assert "unknown role 'mayor'" in bad_role.stderr
    no_unit = _gridbot(
        tmp_path, "invite", "--role", "grid_leader", "--unit", "NOPE", GRIDBOT_BOT_USERNAME="b"
    )
    assert no_unit.returncode == 1
    assert no_unit.stderr.strip() == "gridbot: There is no unit with code NOPE."
    no_name = _gridbot(tmp_path, "invite", "--role", "admin")
    assert no_name.returncode == 2
    assert "GRIDBOT_BOT_USERNAME" in no_name.stderr
    for result in (bad_role, no_unit, no_name):
        assert "Traceback" not in result.stderr


def one_line(result) -> str:
    """The only line on stderr, with no traceback (a process's) or uncaught exception (typer's
    test runner's)."""
    assert "Traceback" not in result.stderr
    if not isinstance(result, subprocess.CompletedProcess):
        assert isinstance(result.exception, SystemExit), result.exception
    (line,) = result.stderr.strip().splitlines()
    return line


NOT_A_TOKEN = (
    "gridbot: GRIDBOT_BOT_TOKEN: is not a bot token: @BotFather gives one like 123456789:AAH... "
    "(digits, a colon, then letters, digits, - and _)"
)


def test_the_shipped_env_example_is_taken_and_its_empty_token_is_not_set(tmp_path) -> None:
    # `.env.example` ships GRIDBOT_BOT_TOKEN= (and the webhook settings) empty: copied to
    # .env as it is, every setting in it is valid and the empty token means "not set".
    shutil.copyfile(ROOT / ".env.example", tmp_path / ".env")
    result = _gridbot(tmp_path, "run")
    assert result.returncode == 1
    assert one_line(result) == "gridbot: GRIDBOT_BOT_TOKEN is not set: get a token from @BotFather"


@pytest.mark.parametrize("token", ["abc", "<token from @BotFather>"])
def test_a_malformed_token_is_one_line_that_does_not_show_it(tmp_path, token: str) -> None:
    result = _gridbot(tmp_path, "run", GRIDBOT_BOT_TOKEN=token)
    assert result.returncode == 2
    assert one_line(result) == NOT_A_TOKEN
    assert token not in result.stderr


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"GRIDBOT_TELEGRAM_API_BASE": "not a url"},
            "gridbot: GRIDBOT_TELEGRAM_API_BASE: must be an http:// or https:// URL with a host, "
            "e.g. https://api.telegram.org",
        ),
        (
            {"GRIDBOT_WEBHOOK_URL": "not a url"},
            "gridbot: GRIDBOT_WEBHOOK_URL: must be an http:// or https:// URL with a host, "
            "e.g. https://bot.example.org/telegram",
        ),
        (
            {"GRIDBOT_WEBHOOK_URL": "http://bot.example.org/telegram"},
            "gridbot: GRIDBOT_WEBHOOK_URL: must be an https:// URL: Telegram posts updates over "
            "HTTPS only (plain http:// works with a local Bot API server, "
            "GRIDBOT_TELEGRAM_API_BASE)",
        ),
        (
            {"GRIDBOT_LOG_LEVEL": "LOUD"},
            "gridbot: GRIDBOT_LOG_LEVEL: unknown level 'LOUD': "
            "use DEBUG, INFO, WARNING, ERROR, CRITICAL (any case)",
        ),
        (
            {"GRIDBOT_DATABASE_URL": "mysql://gridbot:s3cret@db/gridbot"},
            "gridbot: GRIDBOT_DATABASE_URL: unsupported database 'mysql': "
            "use sqlite:///path.db or postgresql://user:password@host/db",
        ),
        (
            {"GRIDBOT_DATABASE_URL": "not a url"},
            "gridbot: GRIDBOT_DATABASE_URL: not a database URL: "
            "use sqlite:///path.db or postgresql://user:password@host/db",
        ),
        (
            {"GRIDBOT_INVITE_TTL_DAYS": "1e9"},
            "gridbot: GRIDBOT_INVITE_TTL_DAYS: must be a number of days above 0 and at most 365",
        ),
    ],
)
def test_a_bad_setting_is_one_line_naming_it(tmp_path, monkeypatch, env, line) -> None:
    monkeypatch.chdir(tmp_path)  # no .env but the test's
    result = CliRunner().invoke(
        app, ["run"], env={**_env(tmp_path, GRIDBOT_BOT_TOKEN="123456:TEST"), **env}
    )
    assert result.exit_code == 2
    assert one_line(result) == line


@pytest.mark.parametrize("days", ["1e9", "nan", "inf", "3000000", "0", "-1", "365.5"])
def test_invite_days_out_of_range_is_one_line(tmp_path, monkeypatch, days: str) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app,
        ["invite", "--role", "admin", "--days", days],
        env=_env(tmp_path, GRIDBOT_BOT_USERNAME="gridbot_test_bot"),
    )
    assert result.exit_code == 2
    assert one_line(result) == "gridbot: --days must be a number of days above 0 and at most 365"
    assert not (tmp_path / "cli.db").exists()  # refused before the database was touched


def test_db_upgrade_reports_the_revision_reached_and_never_downgrades(tmp_path) -> None:
    head = head_revision()
    first = _gridbot(tmp_path, "db", "upgrade", "0003")
    assert first.returncode == 0, first.stderr
    assert first.stdout == "database at revision 0003\n"
    newest = _gridbot(tmp_path, "db", "upgrade")
    assert newest.stdout == f"database at revision {head}\n"

    back = _gridbot(tmp_path, "db", "upgrade", "0003")
    assert back.returncode == 2
    assert back.stdout == ""
    assert one_line(back) == (
        f"gridbot: the SQLite file {tmp_path / 'cli.db'} is at revision {head}, newer than 0003: "
        "gridbot never downgrades"
    )
    unknown = _gridbot(tmp_path, "db", "upgrade", "0099")
    assert unknown.returncode == 2
    assert one_line(unknown) == (
        f"gridbot: unknown revision '0099': use head or a revision from 0001 to {head}"
    )
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]


def test_a_database_that_cannot_be_opened_is_one_line(tmp_path) -> None:
    missing = tmp_path / "no-such-dir" / "gridbot.db"
    result = _gridbot(tmp_path, "db", "upgrade", GRIDBOT_DATABASE_URL=f"sqlite:///{missing}")
    assert result.returncode == 2
    assert one_line(result) == (
        f"gridbot: cannot open the SQLite file {missing}: unable to open database file"
    )


# A fresh interpreter where `import psycopg` fails, as after `pip install -e .` without extras.
WITHOUT_PSYCOPG = (
    "import sys; sys.modules['psycopg'] = None; from bot.cli import app; app(prog_name='gridbot')"
)


@pytest.mark.parametrize(
    "args",
    [
        ["run"],
        ["db", "upgrade"],
        ["invite", "--role", "admin"],
        ["org", "load", str(sample_path())],
    ],
)
def test_postgresql_without_its_driver_names_the_fix(tmp_path, args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_PSYCOPG, *args],
        env=_env(
            tmp_path,
            GRIDBOT_DATABASE_URL="postgresql://gridbot@127.0.0.1:9/gridbot",
            GRIDBOT_BOT_TOKEN="123456:TEST",
            GRIDBOT_BOT_USERNAME="gridbot_test_bot",
        ),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert one_line(result) == (
        "gridbot: PostgreSQL needs the psycopg driver, which is not installed: "
        "pip install -e '.[postgres]'"
    )


async def test_run_refuses_a_read_only_database_in_one_line(db_url: str, tmp_path) -> None:
    """`gridbot run` against a database that reads but refuses writes stops at start-up.

    The database is made read-only by `tests.test_migrations.read_only`, which holds even for
    root: SQLite through the file's own header, PostgreSQL through read-only transactions.
    """
    url = read_only(db_url)
    async with FakeTelegram(tokens=["123456:TEST"]) as fake:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "run",
            env=_env(
                tmp_path,
                GRIDBOT_BOT_TOKEN="123456:TEST",
                GRIDBOT_TELEGRAM_API_BASE=fake.base_url,
                GRIDBOT_DATABASE_URL=url,
            ),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(process.communicate(), 60)
        assert fake.calls_to("getUpdates") == []  # it never served
    assert process.returncode == 2
    reason = (
        "attempt to write a readonly database"
        if url.startswith("sqlite")
        else "cannot execute UPDATE in a read-only transaction"
    )
    lines = err.decode().strip().splitlines()
    assert lines == [f"gridbot: cannot write to {describe(url)}: {reason}"]
