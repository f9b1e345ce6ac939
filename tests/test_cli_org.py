"""`gridbot org load` and `gridbot org sample` through typer's test runner."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bot.cli_org import org_app
from storage.db import describe
from storage.org_loader import sample_path
from storage.orgfile import parse_org
from tests.test_migrations import read_only


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "cli.db"


@pytest.fixture
def runner(db_file: Path) -> CliRunner:
    return CliRunner(env={"GRIDBOT_DATABASE_URL": f"sqlite:///{db_file}"})


def count(db_file: Path, table: str) -> int:
    with sqlite3.connect(db_file) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_load_applies_the_file_and_prints_the_summary(runner: CliRunner, db_file: Path) -> None:
    result = runner.invoke(org_app, ["load", str(sample_path())])

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Organisation ZZ: units 47 created, 0 updated, 0 unchanged;")
    assert len(result.stdout.splitlines()) == 1
    assert count(db_file, "org_unit") == 47
    assert count(db_file, "deadline_policy") == 16

    again = runner.invoke(org_app, ["load", str(sample_path())])
    assert again.exit_code == 0
    assert "units 0 created, 0 updated, 47 unchanged" in again.stdout


def test_a_broken_file_is_refused_with_every_problem(
    runner: CliRunner, db_file: Path, tmp_path: Path
) -> None:
    data = yaml.safe_load(sample_path().read_text(encoding="utf-8"))
    data["units"][1]["parent"] = "ZZ-XX"
    data["deadlines"][0]["accept"] = "soon"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")

    result = runner.invoke(org_app, ["load", str(broken)])

    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines == [
        f"Refused {broken}: 2 problems",
        "  units[1].parent: unknown unit 'ZZ-XX'",
        "  deadlines[0].accept: 'soon' is not a duration like 30m, 2h, 3d or 1d12h",
    ]
    assert "Traceback" not in result.output
    # Refused before the database was even opened.
    assert not db_file.exists()


def test_a_yaml_syntax_error_names_the_line(runner: CliRunner, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("city:\n  code: ZZ\n  name_zh: [oops\n", encoding="utf-8")

    result = runner.invoke(org_app, ["load", str(broken)])

    assert result.exit_code == 1
    first, second = result.stderr.splitlines()
    assert first == f"Refused {broken}: 1 problem"
    assert second.startswith("  line 4: YAML syntax error:")


def test_a_missing_file_gets_one_clear_line(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"
    result = runner.invoke(org_app, ["load", str(missing)])

    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"Cannot read {missing}: No such file or directory"]


def test_sample_prints_the_bundled_yaml(runner: CliRunner, db_file: Path) -> None:
    result = runner.invoke(org_app, ["sample"])

    assert result.exit_code == 0
    assert result.stdout == sample_path().read_text(encoding="utf-8")
    assert parse_org(result.stdout).city.code == "ZZ"
    assert not db_file.exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--help"], "load"),
        (["load", "--help"], "Validate FILE and apply it"),
        (["sample", "--help"], "Print the bundled sample city"),
    ],
)
def test_every_command_explains_itself(runner: CliRunner, args: list[str], expected: str) -> None:
    result = runner.invoke(org_app, args)
    assert result.exit_code == 0
    assert expected in result.stdout


def test_a_bad_setting_is_named_in_one_line(tmp_path: Path) -> None:
    env = {"GRIDBOT_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "GRIDBOT_TIMEZONE": "Mars"}
    runner = CliRunner(env=env)
    result = runner.invoke(org_app, ["load", str(sample_path())])

    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["gridbot: GRIDBOT_TIMEZONE: unknown time zone 'Mars'"]


def test_a_database_url_gridbot_cannot_use_is_one_line(tmp_path: Path) -> None:
    runner = CliRunner(env={"GRIDBOT_DATABASE_URL": "mysql://gridbot:s3cret@db/gridbot"})
    result = runner.invoke(org_app, ["load", str(sample_path())])

    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "gridbot: GRIDBOT_DATABASE_URL: unsupported database 'mysql': "
        "use sqlite:///path.db or postgresql://user:password@host/db"
    ]
    assert "s3cret" not in result.output


def test_a_read_only_database_is_refused_in_one_line_before_loading(db_url: str) -> None:
    """Made read-only as `tests.test_migrations.read_only` says (it holds even for root)."""
    url = read_only(db_url)
    result = CliRunner(env={"GRIDBOT_DATABASE_URL": url}).invoke(
        org_app, ["load", str(sample_path())]
    )

    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    reason = (
        "attempt to write a readonly database"
        if url.startswith("sqlite")
        else "cannot execute UPDATE in a read-only transaction"
    )
    assert result.stderr.splitlines() == [f"gridbot: cannot write to {describe(url)}: {reason}"]
    assert isinstance(result.exception, SystemExit)
