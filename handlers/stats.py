"""/stats: the three rates for community secretaries, street officers and administrators,
and a department's own figures for its liaisons, scoped to what they cover (domain.figures
decides, and refuses anyone else): a unit's month with its children ranked, another month
or unit in place, the overdue list, the chart and the Excel and CSV files."""

from __future__ import annotations

import asyncio
from contextlib import suppress
from typing import Any

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command
from aiogram.types import BufferedInputFile, CallbackQuery, Message
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import Clock
from domain.figures import (
    UnitReport,
    department_report,
    figures_home,
    figures_of,
    month_of,
    overdue_in,
    trend,
)
from domain.reference import OrgSnapshot, Reference
from storage.models import OrgUnit, Person
from views.buttons import StatsOp, StatsView
from views.charts import chart_png
from views.common import scope_name
from views.figures import (
    TEXT_LIMIT,
    department_keyboard,
    department_text,
    month_text,
    overdue_keyboard,
    overdue_text,
    report_csv,
    report_keyboard,
    report_text,
    report_xlsx,
)
from views.i18n import Translate


def _screen(
    org: OrgSnapshot,
    home: OrgUnit | None,
    report: UnitReport,
    language: str,
    t: Translate,
    this_month: int,
) -> tuple[str, Any]:
    """The report's text and buttons; ⬆ leads to the unit above while the reader sees it
    (it lies under `home`, the highest unit whose figures they see)."""
    unit = report.unit.unit
    up = org.units.get(unit.parent_id or 0)
    if up is not None and (home is None or unit.id == home.id or not up.path.startswith(home.path)):
        up = None
    text = report_text(report, language, t, limit=TEXT_LIMIT)
    return text, report_keyboard(report, language, t, this_month=this_month, up=up)


async def stats_command(
    message: Message,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    reference: Reference,
    settings: Any,
    language: str,
    t: Translate,
) -> None:
    """/stats: the reader's own unit, this month (a department liaison: their department)."""
    org = await reference.get(session)
    this_month = month_of(clock.now(), settings.tz)
    home = await figures_home(session, person)
    if home is None:
        # A department's liaison; anyone else is refused by department_report.
        own = await department_report(
            session=session,
            clock=clock,
            tz=settings.tz,
            person=person,
            department_id=None,
            month=None,
        )
        await message.answer(
            department_text(own, language, t),
            reply_markup=department_keyboard(own, this_month=this_month),
        )
        return
    report = await figures_of(
        session=session,
        org=org,
        clock=clock,
        tz=settings.tz,
        person=person,
        unit_id=home.id,
        month=None,
    )
    text, markup = _screen(org, home, report, language, t, this_month)
    await message.answer(text, reply_markup=markup)


async def stats_pressed(
    query: CallbackQuery,
    callback_data: StatsView,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    reference: Reference,
    settings: Any,
    language: str,
    t: Translate,
) -> None:
    """A /stats button: checked again for this unit (a forged one is refused and audited)."""
    org = await reference.get(session)
    tz = settings.tz
    op, month = callback_data.op, callback_data.month
    if op is StatsOp.DEPARTMENT:
        own = await department_report(
            session=session,
            clock=clock,
            tz=tz,
            person=person,
            department_id=callback_data.unit,
            month=month,
        )
        await query.answer()
        if isinstance(query.message, Message):
            markup = department_keyboard(own, this_month=month_of(clock.now(), tz))
            text = department_text(own, language, t)
            with suppress(TelegramBadRequest):
                await query.message.edit_text(text, reply_markup=markup)
        return
    if op is StatsOp.OVERDUE:
        unit, tickets = await overdue_in(
            session=session, org=org, clock=clock, person=person, unit_id=callback_data.unit
        )
        await query.answer()
        if isinstance(query.message, Message):
            await query.message.answer(
                overdue_text(unit, tickets, org.units, language, t, tz),
                reply_markup=overdue_keyboard(tickets),
            )
        return
    report = await figures_of(
        session=session,
        org=org,
        clock=clock,
        tz=tz,
        person=person,
        unit_id=callback_data.unit,
        month=month,
    )
    this_month = month_of(clock.now(), tz)
    await query.answer()
    if not isinstance(query.message, Message):
        return
    if op is StatsOp.SHOW:
        home = await figures_home(session, person)
        text, markup = _screen(org, home, report, language, t, this_month)
        with suppress(TelegramBadRequest):  # the same figures again: nothing to change
            await query.message.edit_text(text, reply_markup=markup)
        return
    unit = report.unit.unit
    name = scope_name(language, unit.name_zh, unit.name_en)
    caption = t("stats.file_caption", unit=name, month=month_text(report.month))
    stem = f"{unit.code}-{month_text(report.month)}"
    if op is StatsOp.CHART:
        months = await trend(session, org, tz, unit, report.month)
        # Drawn off the event loop: a chart takes a good part of a second.
        png = await asyncio.to_thread(chart_png, report, months, language, t)
        await query.message.answer_photo(BufferedInputFile(png, f"{stem}.png"), caption=caption)
    elif op is StatsOp.XLSX:
        data = await asyncio.to_thread(report_xlsx, report, language, t)
        await query.message.answer_document(
            BufferedInputFile(data, f"{stem}.xlsx"), caption=caption
        )
    else:
        data = report_csv(report, language).encode("utf-8-sig")  # Excel reads the BOM as UTF-8
        await query.message.answer_document(BufferedInputFile(data, f"{stem}.csv"), caption=caption)


def router() -> Router:
    """A fresh router for /stats and its buttons."""
    r = Router(name="stats")
    r.message.register(stats_command, Command("stats"))
    r.callback_query.register(stats_pressed, StatsView.filter(F.op.in_(set(StatsOp))))
    return r
