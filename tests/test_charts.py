"""The chart: every character it draws is in its font (Chinese unit names come out as
characters, not boxes), matplotlib reports no missing glyph, and the PNG is phone-sized. And
a long ranking cut to one message."""

from __future__ import annotations

import struct
import warnings

from fontTools.ttLib import TTFont

from domain.figures import Figures, Line, UnitReport, ranking_data
from storage.enums import UnitKind
from storage.models import OrgUnit
from views.charts import chart_png, chart_texts, font_path
from views.figures import TEXT_LIMIT, report_text
from views.i18n import translator
from views.outbox import default_renderer

STREET = OrgUnit(
    id=1,
    kind=UnitKind.STREET,
    code="ZZ-EQ-01",
    name_zh="建中街街道",
    name_en="Jianzhongjie Street",
    path="/1/",
)
NAMES = ["青桐社区", "淞风社区", "郑州市二七区嵩山路街道长江路社区", "陇海西路社区", "齐礼阎乡"]


def _report() -> tuple[UnitReport, list[tuple[int, Figures]]]:
    children = [
        Line(
            OrgUnit(
                id=n + 2,
                kind=UnitKind.COMMUNITY,
                code=f"C{n}",
                name_zh=name,
                name_en=f"Community {n}",
                parent_id=1,
                path=f"/1/{n + 2}/",
            ),
            Figures(
                dispatched=10,
                responded=10 - n,
                followups=8,
                solved=7 - n,
                ratings=5,
                satisfied=5 - n,
                rating_sum=20,
            ),
            n,
            0.9 - n / 10,
        )
        for n, name in enumerate(NAMES)
    ]
    children.append(
        Line(
            OrgUnit(
                id=9,
                kind=UnitKind.COMMUNITY,
                code="C9",
                name_zh="无工单社区",
                name_en="Quiet",
                parent_id=1,
                path="/1/9/",
            ),
            Figures(),
            0,
            None,
        )
    )
    total = Figures()
    for line in children:
        total.add(line.figures)
    trend = [(202606 + m, total if m % 2 else Figures()) for m in range(6)]
    return UnitReport(202611, Line(STREET, total, 0, 0.8), children), trend


def _covered(text: str, cmap: dict[int, str]) -> set[str]:
    return {ch for ch in text if not ch.isspace() and ord(ch) not in cmap}


def test_every_character_the_chart_draws_is_in_its_font() -> None:
    report, trend = _report()
    cmap = TTFont(font_path(), lazy=True).getBestCmap()
    for language in ("zh-hans", "en"):
        texts = chart_texts(report, trend, language, translator(language))
        drawn = [
            texts["title"],
            texts["trend_title"],
            texts["empty"],
            *texts["units"],
            *texts["rates"],
            *texts["months"],
        ]
        assert "建中街街道" in texts["title"] or language == "en"
        missing = set().union(*(_covered(text, cmap) for text in drawn))
        assert not missing, f"not in {font_path()}: {sorted(missing)}"
    # The font is a CJK one: a name made of characters only a CJK font has is covered.
    assert not _covered("郑州二七嵩山淞齐阎乡", cmap)


def test_the_chart_is_a_phone_sized_png_without_missing_glyphs() -> None:
    report, trend = _report()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        png = chart_png(report, trend, "zh-hans", translator("zh-hans"))
    assert not [w for w in caught if "missing from font" in str(w.message)]
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width == 1080 and 1000 < height < 3000


def test_a_long_ranking_is_cut_to_one_message_saying_how_many_are_left_out() -> None:
    """Text and monthly ranking alike: as many units as fit in Telegram's 4,096 characters,
    then how many more there are (the Excel file has them all)."""
    report, _ = _report()
    line = report.children[0]
    many = [
        Line(
            OrgUnit(
                id=100 + n,
                kind=UnitKind.COMMUNITY,
                code=f"M{n}",
                name_zh="长" * 60,
                name_en="Long " * 12,
                parent_id=1,
                path=f"/1/{100 + n}/",
            ),
            line.figures,
            0,
            line.score,
        )
        for n in range(80)
    ]
    long = UnitReport(report.month, report.unit, many)
    t = translator("en")
    text = report_text(long, "en", t, limit=TEXT_LIMIT)
    assert len(text) <= TEXT_LIMIT
    shown = sum(1 for row in text.splitlines() if row.split(". ", 1)[0].isdigit())
    assert 0 < shown < 80
    assert text.splitlines()[-1] == f"… {80 - shown} more units: the Excel file has them all."
    assert "… " not in report_text(long, "en", t)  # no limit: every unit
    ranking = default_renderer().render("monthly_ranking", ranking_data(long), "en").text
    assert len(ranking) <= TEXT_LIMIT
    assert ranking.splitlines()[-1].endswith("more units: the Excel file has them all.")
