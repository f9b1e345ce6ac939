"""`gridbot org ...`: load an organisation file, print the bundled sample city."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bot.cli_support import database_setup, load_settings

# The organisation file's reader (YAML, shapely, numpy) is imported by the commands that read
# one, not by every `gridbot` command.
if TYPE_CHECKING:
    from storage.org_loader import LoadReport
    from storage.orgfile import Organisation, OrgFileError

logger = logging.getLogger(__name__)

org_app = typer.Typer(
    name="org",
    help="Organisation: the city's units, grids, departments, categories, deadlines, calendar.",
    no_args_is_help=True,
    add_completion=False,
)


def _refuse(file: Path, error: OrgFileError) -> None:
    count = len(error.problems)
    typer.echo(f"Refused {file}: {count} problem{'s' if count != 1 else ''}", err=True)
    for where, reason in error.problems:
        typer.echo(f"  {where}: {reason}", err=True)


async def _load(database_url: str, org: Organisation) -> LoadReport:
    from domain.clock import SystemClock
    from storage.db import make_engine, make_sessionmaker
    from storage.org_loader import apply_org

    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            return await apply_org(session=session, org=org, clock=SystemClock())
    finally:
        await engine.dispose()


@org_app.command("load")
def load(
    file: Annotated[
        Path, typer.Argument(help="Organisation YAML file (see `gridbot org sample`).")
    ],
) -> None:
    """Validate FILE and apply it to the database: upsert by code, all or nothing.

    A file with problems is refused whole, every problem listed, the database untouched.

    Units and departments missing from the file are kept (tickets refer to them).

    Categories missing from the file become inactive; missing deadline policies are removed.

    Migrations run first; the database is GRIDBOT_DATABASE_URL.
    """
    from sqlalchemy.exc import SQLAlchemyError

    from storage.db import check_writable, upgrade
    from storage.orgfile import OrgFileError, read_org_file

    try:
        org = read_org_file(file)
    except OrgFileError as exc:
        _refuse(file, exc)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"Cannot read {file}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None

    settings = load_settings()
    try:
        with database_setup():
            upgrade(settings.database_url)
            check_writable(settings.database_url)
            report = asyncio.run(_load(settings.database_url, org))
    except OrgFileError as exc:
        # Problems only the database can reveal (a unit whose kind would change).
        _refuse(file, exc)
        raise typer.Exit(1) from None
    except (SQLAlchemyError, OSError) as exc:
        typer.echo(f"Database error, nothing was changed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(report.summary())


@org_app.command("sample")
def sample() -> None:
    """Print the bundled sample city (a synthetic slice of Zhengzhou) as YAML.

    The format is documented at the top: save it, edit it, then load it with `org load`.
    """
    from storage.org_loader import sample_path

    # No migrations here: printing a file must work before any database is set up.
    typer.echo(sample_path().read_text(encoding="utf-8"), nl=False)
