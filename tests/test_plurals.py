"""A number and the words it counts agree: "1 member", "2 members" in English; Chinese words do
not change with the number."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from views.i18n import CatalogError, catalogs, load_catalog, plural_category, text


def en(key: str, **params: object) -> str:
    return text("en", key, **params)


# -- real texts, rendered with 0, 1 and 2 ---------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        (0, "📣 Call posted: “Clear the snow” was sent to 0 members."),
        (1, "📣 Call posted: “Clear the snow” was sent to 1 member."),
        (2, "📣 Call posted: “Clear the snow” was sent to 2 members."),
    ],
)
def test_a_call_is_sent_to_members(count: int, expected: str) -> None:
    assert en("call_create.posted", title="Clear the snow", count=count) == expected


def test_members_coming_to_a_call() -> None:
    call = {"title": "Patrol", "ends_at": "11:00"}
    due = "🕒 Patrol ended at 11:00. {} said they would come: please confirm who came."
    assert en("attendance.due", claims=1, **call) == due.format("1 member")
    assert en("attendance.due", claims=3, **call) == due.format("3 members")
    ask = "Cancel this call? {} coming will be told."
    assert en("attendance.cancel_ask", count=1) == ask.format("The member")
    assert en("attendance.cancel_ask", count=2) == ask.format("The 2 members")
    assert en("attendance.cancelled", count=0) == "Call cancelled; 0 members told."
    assert en("attendance.cancelled", count=1) == "Call cancelled; 1 member told."
    assert en("attendance.cancelled", count=2) == "Call cancelled; 2 members told."


def test_places_of_a_call_and_of_a_post() -> None:
    line = {"index": 1, "title": "Patrol", "starts_at": "09:00", "state": "open"}
    assert en("attendance.list_line", claimed=0, capacity=1, **line).endswith("0/1 place · open")
    assert en("attendance.list_line", claimed=1, capacity=2, **line).endswith("1/2 places · open")
    assert en("duty.call_full", capacity=1) == "Sorry, this call is full: its only place is taken."
    assert en("duty.call_full", capacity=3) == "Sorry, this call is full: all 3 places are taken."
    assert en("posts.line_full", name="Patrol", places=1) == "• Patrol: full (1 of 1 taken)"
    assert en("posts.line_full", name="Patrol", places=2) == "• Patrol: full (all 2 taken)"


def test_hours_and_points_written_as_text_count_like_numbers() -> None:
    # Hours and points come already written, with up to two decimals ("1", "1.5", "0").
    def month(calls: int, hours: str, points: str) -> str:
        return en(
            "attendance.month_member", month="2026-11", calls=calls, hours=hours, points=points
        )

    assert month(1, "1", "1") == (
        "📊 Your duty in 2026-11: 1 call, 1 hour confirmed, 1 point. Thank you!"
    )
    assert month(2, "1.5", "0") == (
        "📊 Your duty in 2026-11: 2 calls, 1.5 hours confirmed, 0 points. Thank you!"
    )
    assert month(0, "0", "2") == (
        "📊 Your duty in 2026-11: 0 calls, 0 hours confirmed, 2 points. Thank you!"
    )
    assert en("attendance.month_served_line", name="Li Ming", hours="1") == "• Li Ming: 1 hour"
    assert en("attendance.month_served_line", name="Li Ming", hours="2") == "• Li Ming: 2 hours"
    assert en("attendance.line.points", points="1") == " · 1 point"
    assert en("attendance.line.points", points="1.25") == " · 1.25 points"
    assert en("attendance.done", came=1, absent=0, points="1") == (
        "Attendance confirmed: 1 came, 0 did not; 1 point given."
    )
    me = en(
        "member.me_approved",
        name="Li Ming",
        month_hours="1",
        month_points="2",
        year_hours="0",
        year_points="1",
    )
    assert me.endswith(
        "This month: 1 hour confirmed, 2 points.\nThis year: 0 hours confirmed, 1 point."
    )


def test_durations_on_a_card() -> None:
    assert en("card.duration.minutes", minutes=0) == "0 minutes"
    assert en("card.duration.minutes", minutes=1) == "1 minute"
    assert en("card.duration.hours", hours=1) == "1 hour"
    assert en("card.duration.hours", hours=2) == "2 hours"
    assert en("card.duration.days", days=1) == "1 day"
    assert en("card.duration.days", days=3) == "3 days"
    assert en("calls.checked_out", minutes=1) == "Checked out: 1 minute counted. Thank you!"
    assert en("calls.checked_out", minutes=45) == "Checked out: 45 minutes counted. Thank you!"


def test_tickets_residents_stars_and_photos() -> None:
    queue = "Your queue: {}, most urgent first (1–1):"
    assert en("leader.queue_title", total=1, first=1, last=1) == queue.format("1 open ticket")
    assert en("leader.queue_title", total=2, first=1, last=1) == queue.format("2 open tickets")
    assert en("card.reopened", count=1) == "Reopened by residents once"
    assert en("card.reopened", count=2) == "Reopened by residents 2 times"
    assert "(1 resident affected)" in en("report.joined", number="T1", affected=1)
    assert "(2 residents affected)" in en("report.joined", number="T1", affected=2)
    assert en("ticket.already_rated", number="T1", rating=1).endswith("(1 star).")
    assert en("ticket.already_rated", number="T1", rating=5).endswith("(5 stars).")
    assert en("report.too_many_photos", limit=1) == "At most 1 photo."
    assert en("report.too_many_photos", limit=3) == "At most 3 photos."
    too_long = "That is too long: at most {}, please shorten it."
    assert en("report.description_too_long", limit=1) == too_long.format("1 character")
    assert en("report.description_too_long", limit=500) == too_long.format("500 characters")


def test_chinese_words_do_not_change_with_the_number() -> None:
    for count in (0, 1, 2):
        assert text("zh-hans", "call_create.posted", title="扫雪", count=count) == (
            f"📣 召集已发出：“扫雪”已发送给 {count} 名党员。"
        )
    assert text("zh-hans", "card.duration.hours", hours=1) == "1小时"


def test_the_english_plural_rule() -> None:
    # CLDR: "one" is exactly 1 with no decimals shown.
    one, other = [1, -1, "1"], [0, 2, 21, "1.0", "1.5", "0", "—"]
    assert {plural_category("en", n) for n in one} == {"one"}
    assert {plural_category("en", n) for n in other} == {"other"}
    assert plural_category("zh-hans", 1) == "other"


def test_a_template_asked_for_without_parameters_can_still_be_formatted() -> None:
    # A caller may format the template itself; a number then takes its "other" words.
    assert text("en", "card.duration.minutes") == "{minutes} minutes"
    assert text("en", "call_create.posted").format(title="T", count=3) == (
        "📣 Call posted: “T” was sent to 3 members."
    )


# -- no English text counts with a bare number ----------------------------------------------------

# A field straight before a noun (or unit abbreviation) that changes with the number, and any
# "(s)": a plural left to chance.
COUNTED = re.compile(
    r"\{\w+\}(?:/\{\w+\})? (?:open )?"
    r"(members?|residents?|photos?|tickets?|places?|points?|hours?|days?|minutes?|stars?|calls?|"
    r"posts?|updates?|characters?|times|people|reports?|departments?|grids?|communities|h|d|min)"
    r"\b|\w\(s\)"
)


def test_no_english_text_puts_a_bare_number_before_a_counted_noun() -> None:
    bare = {
        key: match.group(0)
        for key, template in catalogs()["en"].items()
        if (match := COUNTED.search(template))
    }
    assert not bare, bare


def test_every_counted_english_field_has_one_and_other() -> None:
    # A form list without "one" would say "1 members" again.
    for key, template in catalogs()["en"].items():
        for _, field, spec, _ in string.Formatter().parse(template):
            if spec and "=" in spec:
                names = {part.partition("=")[0] for part in spec.split("|")}
                assert names == {"one", "other"}, (key, field)


# -- malformed plural forms are refused when the texts are loaded ----------------------------------


def _catalog(tmp_path: Path, language: str, body: str) -> Path:
    path = tmp_path / "texts.yaml"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("language", "template", "complaint"),
    [
        ("en", "{count:one=# member} told", "plural forms lack 'other'"),
        ("en", "{count:one=# member|few=# members|other=# members}", "unknown plural form(s) few"),
        ("en", "{count:one|other=# members}", "plural form 'one' is not written name=words"),
        ("en", "{count:one=# member|one=#|other=# members}", "plural form 'one' is given twice"),
        ("zh-hans", "{count:one=#|other=#} 名", "unknown plural form(s) one (zh-hans has other)"),
        ("en", "{count:one=# member|other=# members told", "unmatched '{' in format spec"),
    ],
)
def test_a_malformed_plural_names_its_file_and_key(
    tmp_path: Path, language: str, template: str, complaint: str
) -> None:
    path = _catalog(tmp_path, language, f'fine: "ok"\nteam.told: "{template}"\n')
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path, language)
    message = str(caught.value)
    assert message.startswith(f"{path}: team.told: ")
    assert complaint in message


def test_a_text_must_be_a_string(tmp_path: Path) -> None:
    path = _catalog(tmp_path, "en", "team.told:\n  one: a member\n  other: members\n")
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path, "en")
    assert str(caught.value) == f"{path}: team.told: a template must be text, not dict"


def test_a_key_defined_in_two_files_is_still_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text('team.told: "{count:one=# member|other=# members}"\n')
    (tmp_path / "b.yaml").write_text('team.told: "again"\n')
    with pytest.raises(CatalogError, match="b.yaml: keys defined twice: team.told"):
        load_catalog(tmp_path, "en")


def test_a_key_defined_twice_in_one_file_is_refused_with_both_lines(tmp_path: Path) -> None:
    # YAML alone would keep the second and drop the first without a word.
    path = _catalog(
        tmp_path,
        "en",
        'calls.cancelled: "Check-in cancelled."\nx: "y"\n'
        'calls.cancelled: "The call was cancelled."\n',
    )
    with pytest.raises(CatalogError) as caught:
        load_catalog(tmp_path, "en")
    assert str(caught.value) == (
        f"{path}:3: calls.cancelled is defined twice in this file (first at line 1)"
    )


def test_well_formed_plurals_load(tmp_path: Path) -> None:
    _catalog(tmp_path, "en", 'team.told: "{count:one=# member|other=# members} told"\n')
    assert load_catalog(tmp_path, "en") == {
        "team.told": "{count:one=# member|other=# members} told"
    }
