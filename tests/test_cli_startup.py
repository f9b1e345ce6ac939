"""What `gridbot` loads and does before it answers: commands that do not serve never import the
bot's serving stack, and migrating a new SQLite database is one transaction that processes take
in turn (the garbage collector through start-up: tests/test_memory.py)."""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import start_link
from storage.org_loader import sample_path
from tests.test_migrations import head_revision

ROOT = Path(__file__).resolve().parent.parent

# Run the command line in a fresh interpreter, then list which of these it had imported.
REPORT_IMPORTS = """
import json, sys
from bot.cli import app
code = 0
try:
    app(args=sys.argv[1:], prog_name="gridbot")
except SystemExit as exit:
    code = exit.code
watched = ("aiogram", "aiohttp", "apscheduler", "handlers", "bot.app", "bot.runtime",
           "alembic", "numpy", "shapely", "yaml")
loaded = sorted(name for name in watched if name in sys.modules)
print("IMPORTED " + json.dumps(loaded), file=sys.stderr)
sys.exit(code)
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBOT_")}
    env["GRIDBOT_DATABASE_URL"] = f"sqlite:///{tmp_path / 'cli.db'}"
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _imports_of(tmp_path: Path, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, set]:
    result = subprocess.run(
        [sys.executable, "-c", REPORT_IMPORTS, *args],
        env=_env(tmp_path, **env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in result.stderr.splitlines() if line.startswith("IMPORTED ")]
    assert lines, result.stderr
    return result, set(json.loads(lines[-1].removeprefix("IMPORTED ")))


@pytest.mark.parametrize("args", [["--help"], ["invite", "--help"], ["org", "--help"]])
def test_help_imports_neither_the_bot_nor_the_organisation_reader(tmp_path, args) -> None:
    result, loaded = _imports_of(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    assert loaded == set(), loaded


def test_invite_prints_a_link_without_importing_aiogram(tmp_path) -> None:
    loaded_city = subprocess.run(
        [sys.executable, "-m", "bot", "org", "load", str(sample_path())],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert loaded_city.returncode == 0, loaded_city.stderr

    result, loaded = _imports_of(
        tmp_path, "invite", "--role", "admin", GRIDBOT_BOT_USERNAME="@gridbot_test_bot"
    )
    assert result.returncode == 0, result.stderr
    (link,) = result.stdout.splitlines()
    assert link.startswith("https://t.me/gridbot_test_bot?start=")
    assert "single use, valid until" in result.stderr
    # What only serving needs stays unloaded (the database's migrations do run: alembic).
    assert not loaded & {"aiogram", "apscheduler", "handlers", "bot.app", "bot.runtime"}, loaded


def test_the_invitation_link_is_the_one_aiogram_makes() -> None:
    from aiogram.utils.deep_linking import create_deep_link

    # Codes as domain.invitations makes them, and the edges of what a payload may hold.
    codes = ["abc", "A-b_9", "x" * 64, *(secrets.token_urlsafe(18) for _ in range(50))]
    for code in codes:
        assert start_link("gridbot_test_bot", code) == create_deep_link(
            "gridbot_test_bot", "start", code
        )


def test_processes_migrating_one_new_sqlite_file_at_once_take_turns(tmp_path) -> None:
    """Two `gridbot db upgrade` on a file that does not exist yet: both succeed, the second
    waiting for the first's transaction and then finding nothing left to do."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "bot", "db", "upgrade"],
            env=_env(tmp_path),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    head = head_revision()
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert out == f"database at revision {head}\n"
    with sqlite3.connect(tmp_path / "cli.db") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(head,)]


def test_a_migration_is_one_transaction_on_sqlite(tmp_path) -> None:
    """A new SQLite database's migrations commit once: the statements of every migration and
    the revision they reach are one transaction (what a failed migration can undo whole)."""
    from storage.db import upgrade

    path = tmp_path / "one.db"
    upgrade(f"sqlite:///{path}", "0001")
    before = _change_counter(path)
    upgrade(f"sqlite:///{path}")  # the migrations after 0001: dozens of statements
    assert _change_counter(path) == before + 1


def _change_counter(path: Path) -> int:
    # The database header's "file change counter" (offset 24, 4 bytes big-endian): SQLite adds
    # one for every transaction that writes, in the rollback-journal mode migrations run in.
    with open(path, "rb") as file:
        file.seek(24)
        return int.from_bytes(file.read(4), "big")
