"""`gridbot stats`: a unit's three rates for a month and its children ranked, from the command
line: the /stats text or CSV printed, the Excel file or the chart written."""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from bot.cli_support import database_setup, fail, load_settings
from storage.db import require_driver


class Format(StrEnum):
    TABLE = "table"
    CSV = "csv"
    XLSX = "xlsx"
    PNG = "png"


def stats(
    unit: str | None = typer.Option(None, help="Code of the unit (default: the city)."),
    month: str | None = typer.Option(
        None, help="The month, YYYY-MM, in the city's time (default: this month)."
    ),
    output: Annotated[
        Format,
        typer.Option(
            "--format",
            help="table (the /stats text) or csv, printed; xlsx or png, written to a file.",
        ),
    ] = Format.TABLE,
    file: Annotated[
        Path | None,
        typer.Option(
            "--output", help="Where xlsx or png goes (default: CODE-YYYY-MM.xlsx or .png here)."
        ),
    ] = None,
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
    if file is not None and output in (Format.TABLE, Format.CSV):
        fail("--output goes with --format xlsx or png (table and csv are printed)", 2)
    try:
        with database_setup():
            require_driver(settings.database_url)
            out, stem = asyncio.run(_stats(settings, unit, month, output, language))
    except DomainError as exc:
        fail(text(language, exc.key, **exc.params), 2)
    if isinstance(out, str):
        typer.echo(out, nl=not out.endswith("\n"))
        return
    target = file or Path(f"{stem}.{output.value}")
    try:
        target.write_bytes(out)
    except OSError as exc:
        fail(f"cannot write {target}: {exc.strerror or exc}", 2)
    typer.echo(f"wrote {target}")


async def _stats(settings, code: str | None, month: str | None, output: Format, language: str):
    from domain.clock import SystemClock
    from domain.errors import DomainError, NotFound
    from domain.figures import month_of, parse_month, trend, unit_report
    from domain.reference import load_snapshot
    from storage.db import check_writable, make_engine, make_sessionmaker, upgrade
    from views.charts import chart_png
    from views.figures import month_text, report_csv, report_text, report_xlsx
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
            months = []
            if output is Format.PNG:
                months = await trend(session, org, settings.tz, found, wanted)
    finally:
        await engine.dispose()
    t = translator(language)
    stem = f"{found.code}-{month_text(wanted)}"
    if output is Format.CSV:
        return report_csv(report, language), stem
    if output is Format.XLSX:
        return report_xlsx(report, language, t), stem
    if output is Format.PNG:
        return chart_png(report, months, language, t), stem
    return report_text(report, language, t), stem
