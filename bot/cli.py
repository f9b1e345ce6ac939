"""The `gridbot` command line: run the bot, migrate, load the organisation, invite people,
print a unit's figures.

Each command imports what it uses when it runs: `gridbot --help` loads neither aiogram (most of
a start-up) nor the handlers, the scheduler, Alembic or the organisation file's reader, and
`gridbot invite` does without aiogram when GRIDBOT_BOT_USERNAME is set.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import timedelta
from urllib.parse import urlencode

import typer

from bot.cli_org import org_app
from bot.cli_stats import stats
from bot.cli_support import database_setup, fail, load_settings
from bot.memory import collector_off
from bot.settings import MAX_INVITE_DAYS, Settings, invite_days_problem
from storage.db import DatabaseSetupError, require_driver, upgrade

app = typer.Typer(
    help="gridbot: a Telegram bot for grid governance (reports, escalation, Party member duty).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(org_app, name="org")
app.command()(stats)


def setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiogram logs every handled update at INFO, alembic every step of every start: noise.
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


@app.command()
def run() -> None:
    """Run the bot: migrate the database, load the sample city if it is empty, then serve.

    Long polling by default; webhook mode when GRIDBOT_WEBHOOK_URL is set. Stops cleanly on
    SIGINT/SIGTERM, letting updates being handled finish.
    """
    settings = load_settings()  # a bad setting is refused before the bot's code is loaded
    setup_logging(settings)

    with collector_off():
        from bot.runtime import StartupError, serve

        try:
            with database_setup():
                # Before asking Telegram: a missing driver is found without the network.
                require_driver(settings.database_url)
                asyncio.run(serve(settings, tune_memory=True))
        except StartupError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            pass


@db_app.command("upgrade")
def db_upgrade(
    revision: str = typer.Argument(
        "head", help="Target revision, e.g. 0005 (default: head, the newest)."
    ),
) -> None:
    """Apply the migrations to GRIDBOT_DATABASE_URL (creates the schema on a new database).

    Never downgrades: a REVISION older than the database's is refused.
    """
    settings = load_settings()
    with database_setup():
        try:
            reached = upgrade(settings.database_url, revision)
        except DatabaseSetupError:
            raise
        except Exception as exc:
            # SQLAlchemy's message goes on with the statement and a link: its first line says it.
            first = next(iter(str(exc).splitlines()), "")
            fail(f"migration failed: {exc.__class__.__name__}: {first}")
    typer.echo(f"database at revision {reached}")


@app.command()
def invite(
    role: str = typer.Option(
        ...,
        help="grid_leader, community_secretary, street_officer, department_liaison or admin.",
    ),
    unit: str | None = typer.Option(
        None, help="Code of the unit (grid, community or street; any unit for admin)."
    ),
    department: str | None = typer.Option(None, help="Department code, for department_liaison."),
    days: float | None = typer.Option(
        None,
        help=f"Days the invitation stays valid, above 0 and at most {MAX_INVITE_DAYS} "
        "(default GRIDBOT_INVITE_TTL_DAYS, 7).",
    ),
) -> None:
    """Print a one-time invitation link that binds whoever opens it to ROLE in UNIT."""
    from domain.errors import DomainError
    from storage.enums import Role
    from views.i18n import text

    settings = load_settings()
    try:
        role_value = Role(role)
    except ValueError:
        fail(f"unknown role {role!r}; use one of: {', '.join(r.value for r in Role)}", 2)
    if days is not None and (problem := invite_days_problem(days)):
        fail(f"--days {problem}", 2)
    ttl = timedelta(days=days if days is not None else settings.invite_ttl_days)
    try:
        with database_setup():
            require_driver(settings.database_url)
            link, expires = asyncio.run(_invite(settings, role_value, unit, department, ttl))
    except DomainError as exc:
        fail(text("en", exc.key, **exc.params))
    typer.echo(link)
    typer.echo(f"single use, valid until {expires:%Y-%m-%d %H:%M %Z}", err=True)


def start_link(username: str, payload: str) -> str:
    """The link that opens a chat with the bot and sends it `/start payload`: Telegram's deep
    link, as aiogram's create_deep_link makes it (importing which loads all of aiogram). The
    payload is at most 64 of A-Z, a-z, 0-9, _ and -, as an invitation code is."""
    return f"https://t.me/{username}?{urlencode({'start': payload})}"


async def _invite(settings, role, unit, department, ttl):
    from domain.clock import SystemClock
    from domain.invitations import create_invitation
    from storage.db import check_writable, make_engine, make_sessionmaker

    username = settings.bot_username
    if not username:
        username = await _ask_username(settings)
    await asyncio.to_thread(upgrade, settings.database_url)
    await asyncio.to_thread(check_writable, settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            issued = await create_invitation(
                session=session,
                clock=SystemClock(),
                role=role,
                unit_code=unit,
                department_code=department,
                ttl=ttl,
            )
            await session.commit()
    finally:
        await engine.dispose()
    link = start_link(username.lstrip("@"), issued.code)
    return link, issued.invitation.expires_at.astimezone(settings.tz)


async def _ask_username(settings: Settings) -> str:
    from bot.app import build_bot, build_throttle
    from bot.runtime import StartupError, check_token

    if settings.bot_token is None:
        fail("set GRIDBOT_BOT_USERNAME (or GRIDBOT_BOT_TOKEN, to ask Telegram for it)", 2)
    bot = build_bot(settings, build_throttle(settings))
    try:
        me = await check_token(bot, settings.telegram_api_base)
    except StartupError as exc:
        fail(str(exc))
    finally:
        await bot.session.close()
    return me.username or ""
