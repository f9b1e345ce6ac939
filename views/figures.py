"""The three rates as officials read them: a unit's month and its children ranked, as text
(chat and command line) and as CSV; each rate with its counts beside it."""

from __future__ import annotations

import csv
import io
from datetime import tzinfo

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from domain.figures import (
    DepartmentFigures,
    DepartmentReport,
    Figures,
    Line,
    UnitReport,
    next_month,
    previous_month,
)
from storage.figures import OverdueTicket
from storage.models import OrgUnit
from views.buttons import StatsOp, StatsView, TicketAction, TicketOp
from views.cards import local_time
from views.common import hours, scope_name
from views.i18n import Translate

TEXT_LIMIT = 4096  # Telegram's, for a message
CHILD_BUTTONS = 20  # the units below that get a button, by rank


def percent(rate: float | None) -> str:
    """0.8 as "80.0%"; "—" when there is nothing to rate."""
    return "—" if rate is None else f"{rate * 100:.1f}%"


def month_text(month: int) -> str:
    return f"{month // 100}-{month % 100:02d}"


def rates_text(figures: Figures, t: Translate) -> str:
    """The three rates, each with its counts, on one line."""
    parts = [
        t(
            "stats.response",
            rate=percent(figures.response_rate),
            responded=figures.responded,
            dispatched=figures.dispatched,
        ),
        t(
            "stats.resolution",
            rate=percent(figures.resolution_rate),
            solved=figures.solved + figures.unanswered,
            followups=figures.followups,
        ),
        t(
            "stats.satisfaction",
            rate=percent(figures.satisfaction_rate),
            satisfied=figures.satisfied,
            ratings=figures.ratings,
        ),
    ]
    return " · ".join(parts)


def _details(line: Line, t: Translate) -> list[str]:
    figures = line.figures
    out = []
    if figures.unanswered:
        out.append(t("stats.unanswered", count=figures.unanswered))
    if figures.returned:
        out.append(t("stats.returned", count=figures.returned))
    if figures.mean_rating is not None:
        out.append(t("stats.mean", mean=f"{figures.mean_rating:.2f}"))
    out.append(t("stats.overdue", count=line.overdue))
    return out


def report_text(
    report: UnitReport, language: str, t: Translate, *, limit: int | None = None
) -> str:
    """The unit's month, then the units below it ranked by score; with a `limit` (a chat
    message's), the ranking is cut where it would not fit, saying how many are left out."""
    unit = report.unit
    lines = [
        t(
            "stats.title",
            unit=scope_name(language, unit.unit.name_zh, unit.unit.name_en),
            month=month_text(report.month),
        ),
        rates_text(unit.figures, t),
        " · ".join(_details(unit, t)),
    ]
    if report.previous is not None:
        lines.append(
            t(
                "stats.previous",
                month=month_text(previous_month(report.month)),
                rates=rates_text(report.previous, t),
            )
        )
    if report.duty is not None:
        duty = report.duty
        lines.append(
            t(
                "stats.duty",
                registered=duty.registered,
                approved=duty.approved,
                calls=duty.calls,
                filled=duty.filled,
                hours=hours(duty.minutes),
                no_shows=duty.no_shows,
            )
        )
    if report.departments:
        lines += ["", t("stats.departments")]
        lines += [
            "• "
            + scope_name(language, department.name_zh, department.name_en)
            + ": "
            + department_rates(figures, t)
            for department, figures in report.departments
        ]
    if report.children:
        lines += ["", t("stats.children")]
        entries = []
        for rank, child in enumerate(report.children, start=1):
            name = scope_name(language, child.unit.name_zh, child.unit.name_en)
            if child.score is None:
                entries.append(
                    t("stats.child_nothing", rank=rank, name=name, overdue=child.overdue)
                )
                continue
            entries.append(
                t("stats.child", rank=rank, name=name, score=f"{child.score * 100:.1f}")
                + "\n   "
                + rates_text(child.figures, t)
                + (f" · {t('stats.overdue', count=child.overdue)}" if child.overdue else "")
            )
        lines = _as_fits(lines, entries, limit, t)
    return "\n".join(lines)


def _as_fits(lines: list[str], entries: list[str], limit: int | None, t: Translate) -> list[str]:
    """`lines`, then the ranked entries as far as they fit in `limit` characters (a message;
    None: all of them), those left out named by how many they are."""
    out = list(lines)
    used = sum(len(line) + 1 for line in out)
    for index, entry in enumerate(entries):
        more = t("stats.more", count=len(entries) - index)
        if limit is not None and used + len(entry) + 1 + len(more) + 1 > limit:
            out.append(more)
            break
        out.append(entry)
        used += len(entry) + 1
    return out


def _button(text: str, op: StatsOp, unit: int, month: int) -> InlineKeyboardButton:
    return InlineKeyboardButton(
        text=text, callback_data=StatsView(op=op, unit=unit, month=month).pack()
    )


def _months(op: StatsOp, owner: int, month: int, this_month: int) -> list[InlineKeyboardButton]:
    """The month before, and the month after while it is not after this one."""
    before = previous_month(month)
    row = [_button(f"◀ {month_text(before)}", op, owner, before)]
    if month < this_month:
        after = next_month(month)
        row.append(_button(f"{month_text(after)} ▶", op, owner, after))
    return row


def report_keyboard(
    report: UnitReport,
    language: str,
    t: Translate,
    *,
    this_month: int,
    up: OrgUnit | None,
) -> InlineKeyboardMarkup:
    """The month before (and after, up to this one), the overdue list, the chart and the
    files, a button per unit below (by rank), and the unit above when the reader sees it."""
    unit, month = report.unit.unit.id, report.month
    rows = [_months(StatsOp.SHOW, unit, month, this_month)]
    if report.unit.overdue:
        label = t("stats.btn.overdue", count=report.unit.overdue)
        rows.append([_button(label, StatsOp.OVERDUE, unit, month)])
    rows.append(
        [
            _button(t("stats.btn.chart"), StatsOp.CHART, unit, month),
            _button("Excel", StatsOp.XLSX, unit, month),
            _button("CSV", StatsOp.CSV, unit, month),
        ]
    )
    below = []
    for child in report.children[:CHILD_BUTTONS]:
        name = scope_name(language, child.unit.name_zh, child.unit.name_en)
        below.append(_button(f"🔎 {name}", StatsOp.SHOW, child.unit.id, month))
    rows += [below[i : i + 2] for i in range(0, len(below), 2)]
    if up is not None:
        name = scope_name(language, up.name_zh, up.name_en)
        rows.append([_button(f"⬆ {name}", StatsOp.SHOW, up.id, month)])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def overdue_text(
    unit: OrgUnit,
    tickets: list[OverdueTicket],
    units: dict[int, OrgUnit],
    language: str,
    t: Translate,
    tz: tzinfo,
) -> str:
    """The tickets past their deadline in the unit's subtree, each with who holds it."""
    name = scope_name(language, unit.name_zh, unit.name_en)
    if not tickets:
        return t("stats.overdue_none", unit=name)
    lines = [t("stats.overdue_title", unit=name)]
    for ticket in tickets:
        holder = units.get(ticket.holder_unit_id or 0)
        lines.append(
            t(
                "stats.overdue_line",
                number=ticket.number,
                holder=scope_name(language, holder.name_zh, holder.name_en) if holder else "—",
                deadline=local_time(ticket.next_deadline, tz),
                status=t(f"status.{ticket.status.value}"),
            )
        )
    return "\n".join(lines)


def overdue_keyboard(tickets: list[OverdueTicket]) -> InlineKeyboardMarkup | None:
    """A button per ticket that opens its card."""
    if not tickets:
        return None
    rows = [
        [
            InlineKeyboardButton(
                text=ticket.number,
                callback_data=TicketAction(op=TicketOp.OPEN, id=ticket.id).pack(),
            )
        ]
        for ticket in tickets
    ]
    return InlineKeyboardMarkup(inline_keyboard=rows)


CSV_COLUMNS = (
    "rank",
    "code",
    "name",
    "dispatched",
    "responded",
    "response_rate",
    "returned",
    "followups",
    "solved",
    "unanswered",
    "resolution_rate",
    "ratings",
    "satisfied",
    "satisfaction_rate",
    "mean_rating",
    "overdue_now",
    "score",
)


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def report_rows(report: UnitReport, language: str) -> list[list[str | int]]:
    """The report as rows (the unit first, rank empty; then its children by rank)."""
    rows: list[list[str | int]] = []
    lines = [("", report.unit)] + list(enumerate(report.children, 1))
    for rank, line in lines:
        f = line.figures
        rows.append(
            [
                rank,
                line.unit.code,
                scope_name(language, line.unit.name_zh, line.unit.name_en),
                f.dispatched,
                f.responded,
                _ratio(f.response_rate),
                f.returned,
                f.followups,
                f.solved,
                f.unanswered,
                _ratio(f.resolution_rate),
                f.ratings,
                f.satisfied,
                _ratio(f.satisfaction_rate),
                _ratio(f.mean_rating),
                line.overdue,
                _ratio(line.score),
            ]
        )
    return rows


def report_csv(report: UnitReport, language: str) -> str:
    """The report as CSV: a header, the unit, its children by rank (rates as fractions)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(report_rows(report, language))
    return out.getvalue()


def report_xlsx(report: UnitReport, language: str, t: Translate) -> bytes:
    """The report as an Excel workbook: the same columns as the CSV, rates as percentages."""
    import xlsxwriter

    out = io.BytesIO()
    workbook = xlsxwriter.Workbook(out, {"in_memory": True})
    sheet = workbook.add_worksheet(month_text(report.month))
    bold = workbook.add_format({"bold": True})
    share = workbook.add_format({"num_format": "0.0%"})
    mean = workbook.add_format({"num_format": "0.00"})
    name = scope_name(language, report.unit.unit.name_zh, report.unit.unit.name_en)
    sheet.write(0, 0, t("stats.chart_title", unit=name, month=month_text(report.month)), bold)
    sheet.write_row(2, 0, CSV_COLUMNS, bold)
    formats = {"mean_rating": mean} | {
        column: share for column in CSV_COLUMNS if column.endswith("_rate") or column == "score"
    }
    for offset, row in enumerate(report_rows(report, language), start=3):
        for column, (key, value) in enumerate(zip(CSV_COLUMNS, row, strict=True)):
            if key in formats:
                if value == "":
                    sheet.write_blank(offset, column, None)
                else:
                    sheet.write_number(offset, column, float(value), formats[key])
            elif isinstance(value, int):
                sheet.write_number(offset, column, value)
            else:
                sheet.write_string(offset, column, value)
    sheet.set_column(2, 2, 24)
    sheet.freeze_panes(3, 3)
    workbook.close()
    return out.getvalue()


def _stored_rates(data: dict, t: Translate) -> str:
    """rates_text for the counts a ranking message carries."""
    keys = ("dispatched", "responded", "followups", "solved", "ratings", "satisfied")
    return rates_text(Figures(**{key: data[key] for key in keys}), t)


def ranking_text(data: dict, language: str, t: Translate) -> str:
    """Last month's ranking of the units below, as the official receives it on the first
    working day (cut to fit one message, saying how many are left out)."""
    unit = scope_name(language, data["unit_zh"], data["unit_en"])
    lines = [
        t("stats.ranking_title", unit=unit, month=month_text(int(data["month"]))),
        _stored_rates(data["figures"], t),
        "",
    ]
    entries = []
    for rank, child in enumerate(data["children"], start=1):
        name = scope_name(language, child["name_zh"], child["name_en"])
        if child["score"] is None:
            entries.append(t("stats.ranking_nothing", rank=rank, name=name))
            continue
        entries.append(
            t("stats.child", rank=rank, name=name, score=f"{child['score'] * 100:.1f}")
            + "\n   "
            + _stored_rates(child["figures"], t)
        )
    return "\n".join(_as_fits(lines, entries, TEXT_LIMIT, t))


def ranking_keyboard(data: dict, t: Translate) -> InlineKeyboardMarkup:
    """Open the month in /stats (chart, files, the units below)."""
    month = int(data["month"])
    button = _button(t("stats.btn.open"), StatsOp.SHOW, int(data["unit_id"]), month)
    return InlineKeyboardMarkup(inline_keyboard=[[button]])


def department_rates(figures: DepartmentFigures, t: Translate) -> str:
    """Reported in and finished on time, with counts; returned and silent when any."""
    parts = [
        t(
            "stats.report_in",
            rate=percent(figures.report_in_rate),
            in_time=figures.reported_in_time,
            done=figures.reported_in,
        ),
        t(
            "stats.finish",
            rate=percent(figures.finish_rate),
            in_time=figures.finished_in_time,
            done=figures.finished,
        ),
    ]
    if figures.returned:
        parts.append(t("stats.returned", count=figures.returned))
    if figures.silent:
        parts.append(t("stats.silent", count=figures.silent))
    return " · ".join(parts)


def department_text(report: DepartmentReport, language: str, t: Translate) -> str:
    """A department's month, as its liaison reads it."""
    department = report.department
    return "\n".join(
        [
            t(
                "stats.title",
                unit=scope_name(language, department.name_zh, department.name_en),
                month=month_text(report.month),
            ),
            department_rates(report.figures, t),
        ]
    )


def department_keyboard(report: DepartmentReport, *, this_month: int) -> InlineKeyboardMarkup:
    """The month before, and after up to this one."""
    row = _months(StatsOp.DEPARTMENT, report.department.id, report.month, this_month)
    return InlineKeyboardMarkup(inline_keyboard=[row])
