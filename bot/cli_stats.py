"""`gridbot stats`: a unit's three rates for a month and its children ranked, as the /stats
text or as CSV, from the command line."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import Annotated

import typer

from bot.cli_support import database_setup, fail, load_settings
from storage.db import require_driver


class Format(StrEnum):
    TABLE = "table"
    CSV = "csv"


def stats(
    unit: str | None = typer.Option(None, help="Code of the unit (default: the city)."),
    month: str | None = typer.Option(
        None, help="The month, YYYY-MM, in the city's time (default: this month)."
    ),
    output: Annotated[
        Format, typer.Option("--format", help="table (the /stats text) or csv.")
    ] = Format.TABLE,
    language: str | None = typer.Option(
        None, help="zh-hans or en (default: GRIDBOT_DEFAULT_LANGUAGE)."
    ),
) -> None:
    """Print the response, resolution and satisfaction rates of UNIT for MONTH (its subtree
    counted), with the units below it ranked (see the README for the definitions)."""
    from domain.errors import DomainError
    from domain.languages import LANGUAGES
    from views.i18n import text

    settings = load_settings()
    language = language or settings.default_language
    if language not in LANGUAGES:
        fail(f"--language {language!r}: use one of {', '.join(LANGUAGES)}", 2)
    try:
        with database_setup():
            require_driver(settings.database_url)
            out = asyncio.run(_stats(settings, unit, month, output, language))
    except DomainError as exc:
        fail(text(language, exc.key, **exc.params), 2)
    typer.echo(out, nl=not out.endswith("\n"))


async def _stats(settings, code: str | None, month: str | None, output: Format, language: str):
    from domain.clock import SystemClock
    from domain.errors import DomainError, NotFound
    from domain.figures import month_of, parse_month, unit_report
    from domain.reference import load_snapshot
    from storage.db import check_writable, make_engine, make_sessionmaker, upgrade
    from views.figures import report_csv, report_text
    from views.i18n import translator

    clock = SystemClock()
    wanted = parse_month(month) if month is not None else month_of(clock.now(), settings.tz)
    await asyncio.to_thread(upgrade, settings.database_url)
    await asyncio.to_thread(check_writable, settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            org = await load_snapshot(session)
            units = list(org.units.values())
            if not units:
                raise DomainError("stats.no_org")
            if code is None:
                found = next(u for u in units if u.parent_id is None)
            else:
                found = next((u for u in units if u.code == code), None)
            if found is None:
                raise NotFound("unit.unknown", code=code)
            report = await unit_report(
                session=session, org=org, clock=clock, tz=settings.tz, unit=found, month=wanted
            )
    finally:
        await engine.dispose()
    if output is Format.CSV:
        return report_csv(report, language)
    return report_text(report, language, translator(language))
