"""The command line: help everywhere, one clear line for every refusal."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from bot.cli import app

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
    ],
)
def test_every_command_has_help(args) -> None:
    result = runner.invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def _env(tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBOT_")}
    env["GRIDBOT_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
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
