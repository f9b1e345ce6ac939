"""The three rates as a picture for a phone: the units below ranked, each with its three
rates as bars, and the unit's last six months as lines.

Labels are drawn with Noto Sans CJK SC, which the `mplfonts` package installs with the
project (no system font is needed, and none is looked for): Chinese unit names come out as
characters, never as empty boxes. matplotlib is imported when the first chart is drawn, not
when the bot starts.
"""

from __future__ import annotations

import io
from functools import cache
from importlib.resources import files

from domain.figures import Figures, UnitReport
from views.common import scope_name
from views.figures import month_text
from views.i18n import Translate

FONT_FILE = "NotoSansCJKsc-Regular.otf"
CHART_UNITS = 15  # the units below drawn, by rank (the files have them all)
RATES = ("response", "resolution", "satisfaction")
COLOURS = ("#4C78A8", "#F58518", "#54A24B")


@cache
def font_path() -> str:
    """The CJK font's file, as installed with the mplfonts package."""
    return str(files("mplfonts") / "fonts" / FONT_FILE)


def _rates(figures: Figures) -> tuple[float | None, ...]:
    return (figures.response_rate, figures.resolution_rate, figures.satisfaction_rate)


def chart_texts(
    report: UnitReport, trend: list[tuple[int, Figures]], language: str, t: Translate
) -> dict[str, object]:
    """Every text the chart draws: its titles, the names of the units below (by rank), the
    rates' names and the months of the trend."""
    unit = report.unit.unit
    name = scope_name(language, unit.name_zh, unit.name_en)
    return {
        "title": t("stats.chart_title", unit=name, month=month_text(report.month)),
        "trend_title": t("stats.chart_trend", unit=name),
        "units": [
            scope_name(language, line.unit.name_zh, line.unit.name_en)
            for line in report.children[:CHART_UNITS]
        ],
        "rates": [t(f"stats.rate.{rate}") for rate in RATES],
        "months": [month_text(month) for month, _ in trend],
        "empty": t("stats.chart_empty"),
    }


def chart_png(
    report: UnitReport, trend: list[tuple[int, Figures]], language: str, t: Translate
) -> bytes:
    """The chart as PNG bytes (1080 px wide)."""
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties

    font = FontProperties(fname=font_path())
    texts = chart_texts(report, trend, language, t)
    lines = report.children[:CHART_UNITS]
    figure = Figure(figsize=(7.2, 4.0 + 0.45 * max(len(lines), 3)), dpi=150)
    bars, months = figure.subplots(2, 1, height_ratios=[max(len(lines), 3), 4])

    bars.set_title(texts["title"], fontproperties=font, fontsize=13)
    if lines:
        height = 0.26
        for index, (label, colour) in enumerate(zip(texts["rates"], COLOURS, strict=True)):
            values = [(_rates(line.figures)[index] or 0.0) * 100 for line in lines]
            positions = [row + (index - 1) * height for row in range(len(lines))]
            bars.barh(positions, values, height=height, color=colour, label=label)
        bars.set_yticks(range(len(lines)), texts["units"], fontproperties=font, fontsize=9)
        bars.invert_yaxis()  # the first by rank at the top
        bars.legend(prop=font, fontsize=8, loc="lower right")
    else:
        bars.set_yticks([])
        bars.text(50, 0.5, texts["empty"], fontproperties=font, ha="center", va="center")
    bars.set_xlim(0, 100)
    bars.set_xlabel("%")
    bars.grid(axis="x", alpha=0.3)

    months.set_title(texts["trend_title"], fontproperties=font, fontsize=11)
    x = list(range(len(trend)))
    for index, (label, colour) in enumerate(zip(texts["rates"], COLOURS, strict=True)):
        values = [_rates(figures)[index] for _, figures in trend]
        months.plot(
            x,
            [v * 100 if v is not None else float("nan") for v in values],
            marker="o",
            color=colour,
            label=label,
        )
    months.set_xticks(x, texts["months"], fontsize=9)
    months.set_ylim(0, 105)
    months.set_ylabel("%")
    months.grid(alpha=0.3)
    months.legend(prop=font, fontsize=8, loc="lower left")

    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
