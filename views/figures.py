"""The three rates as officials read them: a unit's month and its children ranked, as text
(chat and command line) and as CSV; each rate with its counts beside it."""

from __future__ import annotations

import csv
import io

from domain.figures import Figures, Line, UnitReport
from views.common import scope_name
from views.i18n import Translate


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


def report_text(report: UnitReport, language: str, t: Translate) -> str:
    """The unit's month, then the units below it ranked by score."""
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
    if report.children:
        lines += ["", t("stats.children")]
        for rank, child in enumerate(report.children, start=1):
            name = scope_name(language, child.unit.name_zh, child.unit.name_en)
            if child.score is None:
                lines.append(t("stats.child_nothing", rank=rank, name=name, overdue=child.overdue))
                continue
            lines.append(
                t("stats.child", rank=rank, name=name, score=f"{child.score * 100:.1f}")
                + "\n   "
                + rates_text(child.figures, t)
                + (f" · {t('stats.overdue', count=child.overdue)}" if child.overdue else "")
            )
    return "\n".join(lines)


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
    lines = [("", report.unit)] + [(str(n), c) for n, c in enumerate(report.children, 1)]
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
