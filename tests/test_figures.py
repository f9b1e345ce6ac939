"""The three rates (domain.figures): the definitions on hand-built events, then the real
ticket lifecycle on SQLite and PostgreSQL (accepted, late, escalated by the sweep, returned,
reopened, rated, closed after an unanswered follow-up), rolled up and read back exactly."""

from __future__ import annotations

import asyncio
import csv
import io
from collections import Counter
from datetime import UTC, datetime, time, timedelta
from itertools import accumulate
from pathlib import Path
from zoneinfo import ZoneInfo

import openpyxl
import pytest
import yaml
from sqlmodel import select
from typer.testing import CliRunner

from bot.cli import app
from domain.calls import answer_call
from domain.clock import FrozenClock, SystemClock
from domain.deadlines import Timing
from domain.errors import NotAllowed
from domain.figures import (
    DepartmentFigures,
    Figures,
    Weights,
    department_figures,
    department_report,
    duty_in,
    month_bounds,
    month_of,
    own_figures,
    roll_up,
    score,
    send_monthly_rankings,
    subtree_figures,
    tally,
    tally_departments,
    unit_report,
    weights_of,
)
from domain.reference import load_snapshot
from domain.summons import finish_summons, report_in, return_summons, whistle
from domain.tickets import (
    accept_ticket,
    confirm_ticket,
    file_ticket,
    rate_ticket,
    reopen_ticket,
    resolve_ticket,
    return_ticket,
)
from scheduler import jobs
from scheduler.sweep import sweep
from storage.db import make_engine, make_sessionmaker
from storage.enums import (
    MemberStatus,
    ReturnReason,
    Role,
    SummonsReturnReason,
    TicketStatus,
    UnitKind,
)
from storage.figures import (
    DutyCounts,
    EventFacts,
    current_mark,
    events_between,
    figures_of_month,
)
from storage.models import AuditEntry, CallClaim, Member, OutboxMessage, RoleAssignment
from storage.org_loader import apply_org, sample_path
from storage.orgfile import read_org_file, validate_org
from tests.factories import make_person
from tests.test_duty import _call
from tests.test_duty import _world as _duty_world
from tests.test_summons import _at_the_street
from tests.test_sweep import TIMING, _file, _world
from views.figures import CSV_COLUMNS, department_text, month_text, percent, report_text
from views.i18n import translator
from views.outbox import default_renderer

TZ = ZoneInfo("Asia/Shanghai")
S = TicketStatus
NOV = 202611
GRID, COMMUNITY = 5, 4


def _at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=TZ).astimezone(UTC)


def _step_end(kind: str, at: datetime, since: datetime, due: datetime | None, unit=GRID):
    data = {"unit": unit, "since": since.isoformat()}
    if due is not None:
        data["due"] = due.isoformat()
    return EventFacts(kind, at, S.NEW, data)


def test_a_step_is_responded_when_accepted_by_its_deadline_in_the_month_it_began() -> None:
    since = _at(30, 23, 0)  # the last hour of November, in the city's time
    due = since + timedelta(hours=2)
    events = [
        _step_end("accept", due, since, due),  # on the deadline: in time, and November's
        _step_end("accept", due + timedelta(seconds=1), since, due),  # late
        _step_end("escalate", due, since, due),  # passed up (here by hand, in time): not
        _step_end("whistle", _at(30, 23, 30), since, due),  # a street summoning departments
        _step_end("return", _at(30, 23, 10), since, due),  # not theirs: shown apart
        _step_end("accept", _at(1, 1, 0, month=12), _at(1, 0, 30, month=12), None),  # no due
    ]
    figures = tally(events, TZ)
    assert figures == {
        (NOV, GRID): Figures(dispatched=4, responded=2, returned=1),
        (202612, GRID): Figures(dispatched=1, responded=1),
    }
    assert figures[(NOV, GRID)].response_rate == 0.5


def test_follow_ups_and_ratings_count_where_and_when_they_ended() -> None:
    resolved = {"unit": COMMUNITY}
    events = [
        EventFacts("confirm", _at(3, 9), S.RESOLVED, resolved),
        EventFacts("expire", _at(4, 9), S.RESOLVED, resolved),  # unanswered: solved, apart
        EventFacts("reopen", _at(5, 9), S.RESOLVED, resolved),
        EventFacts("rate", _at(3, 10), S.CLOSED, resolved | {"rating": 5}),
        EventFacts("rate", _at(3, 11), S.CLOSED, resolved | {"rating": 3}),
        EventFacts("rate", _at(3, 12), S.CLOSED, resolved | {"rating": 4}),
        # Not counted: an event recorded before the figures were kept, a resolve (the
        # follow-up has not ended), an acceptance of a reopened ticket's second answer.
        EventFacts("confirm", _at(3, 9), S.RESOLVED, {}),
        EventFacts("resolve", _at(3, 9), S.ACCEPTED, resolved),
    ]
    [(key, figures)] = tally(events, TZ).items()
    assert key == (NOV, COMMUNITY)
    assert figures == Figures(
        followups=3, solved=1, unanswered=1, ratings=3, satisfied=2, rating_sum=12
    )
    assert figures.resolution_rate == 2 / 3
    assert figures.satisfaction_rate == 2 / 3
    assert figures.mean_rating == 4.0


def test_a_unit_with_nothing_has_no_rates_and_months_are_the_citys() -> None:
    empty = Figures()
    assert (empty.response_rate, empty.resolution_rate, empty.satisfaction_rate) == (None,) * 3
    assert empty.mean_rating is None
    assert month_of(datetime(2026, 11, 30, 16, 30, tzinfo=UTC), TZ) == 202612  # 00:30 local
    assert month_bounds(202612, TZ) == (
        datetime(2026, 12, 1, tzinfo=TZ),
        datetime(2027, 1, 1, tzinfo=TZ),
    )


async def test_the_rates_of_a_month_of_real_tickets(sessionmaker, clock) -> None:
    """Five tickets through the real use cases and the sweep; the figures read before and
    after the roll-up are the same, a second roll-up adds nothing, and the monthly rows equal
    a tally of every event (nothing drifts)."""
    async with sessionmaker() as session:
        tree, category, people = await _world(session)
        leader, secretary, resident = people["leader"], people["secretary"], people["resident"]

        async def through(ticket_id: int, actor, rating: int | None = None) -> None:
            await resolve_ticket(
                session=session,
                clock=clock,
                timing=TIMING,
                actor=actor,
                ticket_id=ticket_id,
                note="done",
            )
            if rating is not None:
                await confirm_ticket(
                    session=session, clock=clock, actor=resident, ticket_id=ticket_id
                )
                await rate_ticket(
                    session=session, clock=clock, actor=resident, ticket_id=ticket_id, rating=rating
                )

        async def accept(ticket_id: int, actor) -> None:
            await accept_ticket(
                session=session, clock=clock, timing=TIMING, actor=actor, ticket_id=ticket_id
            )

        # 1. Accepted in time, answered, and nobody answers the follow-up for three days.
        unanswered = (await _file(session, clock, tree, category, people)).id
        clock.advance(timedelta(minutes=10))
        await accept(unanswered, leader)
        await through(unanswered, leader)
        clock.advance(timedelta(days=3))
        assert (await sweep(session=session, clock=clock, timing=TIMING)).closed_unrated == 1
        # 2-3. Accepted in time, confirmed solved, rated 5 and 3.
        for rating in (5, 3):
            ticket_id = (await _file(session, clock, tree, category, people)).id
            await accept(ticket_id, leader)
            await through(ticket_id, leader, rating)
        # 4. The grid misses the accept deadline: the sweep passes it to the community, whose
        # secretary accepts in time, answers, and the resident reopens it.
        moved = (await _file(session, clock, tree, category, people)).id
        clock.advance(timedelta(minutes=31))
        assert (await sweep(session=session, clock=clock, timing=TIMING)).escalated == 1
        clock.advance(timedelta(minutes=5))
        await accept(moved, secretary)
        await through(moved, secretary)
        await reopen_ticket(
            session=session,
            clock=clock,
            timing=TIMING,
            actor=resident,
            ticket_id=moved,
            reason="still broken",
        )
        # 5. Returned by the grid: not theirs.
        returned = (await _file(session, clock, tree, category, people)).id
        await return_ticket(
            session=session,
            clock=clock,
            timing=TIMING,
            actor=leader,
            ticket_id=returned,
            reason=ReturnReason.NOT_MY_GRID,
        )
        await session.commit()

        grid = Figures(
            dispatched=4,
            responded=3,
            returned=1,
            followups=3,
            solved=2,
            unanswered=1,
            ratings=2,
            satisfied=1,
            rating_sum=8,
        )
        community = Figures(dispatched=1, responded=1, followups=1)
        expected = {tree.grid.id: grid, tree.community.id: community}
        assert await own_figures(session, TZ, NOV) == expected

        org = await load_snapshot(session)
        totals = subtree_figures(org, await own_figures(session, TZ, NOV))
        for unit in (tree.community, tree.street, tree.city):
            assert (
                totals[unit.id].response_rate,
                totals[unit.id].resolution_rate,
                totals[unit.id].satisfaction_rate,
                totals[unit.id].mean_rating,
            ) == (4 / 5, 3 / 4, 1 / 2, 4.0)
        assert totals[tree.grid.id] == grid
        assert tree.other_grid.id not in totals  # nothing there: no rates at all

        # Rolled up once the events settled: the same figures; again: nothing more.
        clock.advance(timedelta(minutes=6))
        assert await roll_up(session=session, clock=clock, tz=TZ) > 0
        await session.commit()
        assert await own_figures(session, TZ, NOV) == expected
        assert await roll_up(session=session, clock=clock, tz=TZ) == 0
        await session.commit()
        assert await own_figures(session, TZ, NOV) == expected
        # The monthly rows are a tally of the events, whenever it is made.
        everything = tally(await events_between(session, None, None), TZ)
        assert {unit: f for (month, unit), f in everything.items() if month == NOV} == expected
        assert await own_figures(session, TZ, 202612) == {}
        # December's report reads November beside it.
        december = await unit_report(
            session=session, org=org, clock=clock, tz=TZ, unit=tree.community, month=202612
        )
        assert december.unit.figures == Figures()
        assert december.previous == totals[tree.community.id]

        # Events after the mark are read too: a rating given now counts at once.
        await rate_ticket(
            session=session, clock=clock, actor=resident, ticket_id=unanswered, rating=4
        )
        await session.commit()
        now = await own_figures(session, TZ, NOV)
        assert (now[tree.grid.id].ratings, now[tree.grid.id].satisfied) == (3, 2)


async def test_a_long_history_is_rolled_up_in_slices(sessionmaker, clock, monkeypatch) -> None:
    """The roll-up takes the settled events a slice at a time, never splitting one moment's
    events (a moment with more than a slice is taken whole); the slices add up to a tally of
    every event. The scheduler's run takes a few slices, the next run goes on from there."""
    async with sessionmaker() as session:
        tree, category, people = await _world(session)
        # Tickets filed and accepted, each this many minutes after the one before.
        for advance in (0, 0, 1, 1, 0, 0, 1, 2, 1, 1, 1, 1):
            clock.advance(timedelta(minutes=advance))
            ticket = await _file(session, clock, tree, category, people)
            await accept_ticket(
                session=session,
                clock=clock,
                timing=TIMING,
                actor=people["leader"],
                ticket_id=ticket.id,
            )
            await session.commit()
        events = await events_between(session, None, None)
        moments = Counter(event.at for event in events)
        assert max(moments.values()) > 3  # a moment larger than a slice
        await session.commit()  # the runs below take the connection (SQLite has one)
        clock.advance(timedelta(minutes=6))

        # Two runs of the scheduler, two slices of 3 events each (a moment whole): not yet all.
        monkeypatch.setattr(jobs, "ROLL_UP_SLICE", 3)
        monkeypatch.setattr(jobs, "ROLL_UP_SLICES_PER_RUN", 2)
        ctx = jobs.JobContext(sessionmaker, clock, TIMING, time(8, 30))
        await jobs.run_jobs(ctx)
        upto = clock.now() - timedelta(minutes=5)
        times = sorted(event.at for event in events)

        def slice_after(mark: datetime | None) -> datetime:
            """Where a slice of 3 from `mark` ends: at the 4th event's moment, or the next
            moment if that is the slice's first."""
            rest = [at for at in times if mark is None or at >= mark]
            if len(rest) <= 3:
                return upto
            start = rest[0] if mark is None else mark
            return rest[3] if rest[3] > start else min(at for at in rest if at > rest[3])

        first_run = await current_mark(session)
        # Two slices; the first moment, larger than a slice, went whole in the first.
        assert first_run == slice_after(slice_after(None))
        assert min(moments) < slice_after(None) < first_run < max(moments)
        await session.commit()
        await jobs.run_jobs(ctx)
        second_run = await current_mark(session)
        assert second_run == slice_after(slice_after(first_run)) < max(moments)
        await session.commit()

        # The rest, slice by slice: each a run of whole moments.
        slices = []
        while rolled := await roll_up(session=session, clock=clock, tz=TZ, size=3):
            await session.commit()
            slices.append(rolled)
        await session.commit()
        assert len(slices) > 1
        rolled_before = sum(n for at, n in moments.items() if at < second_run)
        assert rolled_before + sum(slices) == len(events)
        ends = set(accumulate(moments[at] for at in sorted(moments)))
        assert {rolled_before + n for n in accumulate(slices)} <= ends
        assert all(n <= 3 or n in moments.values() for n in slices)
        assert await current_mark(session) == upto

        everything = tally(events, TZ)
        expected = {unit: f for (month, unit), f in everything.items() if month == NOV}
        assert expected[tree.grid.id].dispatched == 12
        rows = await figures_of_month(session, "unit", NOV)
        assert {unit: Figures(**counts) for unit, counts in rows.items()} == expected


async def _sample_city_with_two_tickets(url: str) -> tuple[str, str]:
    """The bundled sample city, and two tickets in one grid filed now (real time: the command
    reads this month): one accepted at once. The city's code and the grid's community's."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            await apply_org(session=session, org=read_org_file(sample_path()), clock=SystemClock())
            org = await load_snapshot(session)
            grid = min(
                (u for u in org.units.values() if u.kind == UnitKind.GRID), key=lambda u: u.code
            )
            community = org.ancestor(grid, UnitKind.COMMUNITY)
            resident = await make_person(session, 7001, "Resident")
            leader = await make_person(session, 7002, "Leader")
            session.add(RoleAssignment(person_id=leader.id, role=Role.GRID_LEADER, unit_id=grid.id))
            await session.commit()
            timing = Timing.plain(TZ)
            for n in range(2):
                ctx = await file_ticket(
                    session=session,
                    org=org,
                    clock=SystemClock(),
                    timing=timing,
                    reporter=resident,
                    category_id=org.active_categories[0].id,
                    description=f"ticket {n}",
                    grid_id=grid.id,
                )
                if n == 0:
                    await accept_ticket(
                        session=session,
                        clock=SystemClock(),
                        timing=timing,
                        actor=leader,
                        ticket_id=ctx.ticket.id,
                    )
            await session.commit()
            city = next(u for u in org.units.values() if u.parent_id is None)
            return city.code, community.code
    finally:
        await engine.dispose()


def test_gridbot_stats_prints_the_table_and_the_csv(db_url: str, monkeypatch, tmp_path) -> None:
    """`gridbot stats`: the city by default, this month; a unit by code; CSV with a header,
    the unit, then its children by rank; bad input is one line and exit 2."""
    city, community = asyncio.run(_sample_city_with_two_tickets(db_url))
    monkeypatch.setenv("GRIDBOT_DATABASE_URL", db_url)
    monkeypatch.setenv("GRIDBOT_DEFAULT_LANGUAGE", "en")
    runner = CliRunner()

    # One step ended (accepted in time); the other still waits, so it is not counted yet.
    shown = runner.invoke(app, ["stats"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    this_month = month_text(month_of(datetime.now(UTC), TZ))
    assert lines[0].startswith("📊 ") and lines[0].endswith(this_month)
    assert lines[1] == ("response 100.0% (1/1) · resolution — (0/0) · satisfaction — (0/0)")
    assert "Below, ranked:" in lines
    zh = runner.invoke(app, ["stats", "--unit", community, "--language", "zh-hans"])
    assert zh.exit_code == 0, zh.output
    assert zh.output.splitlines()[1] == "响应率 100.0%（1/1） · 解决率 —（0/0） · 满意率 —（0/0）"

    table = runner.invoke(app, ["stats", "--unit", community, "--format", "csv"])
    assert table.exit_code == 0, table.output
    rows = list(csv.reader(io.StringIO(table.output)))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert (rows[1][0], rows[1][1], rows[1][3], rows[1][4], rows[1][5]) == (
        "",
        community,
        "1",
        "1",
        "1.0000",
    )
    assert [row[0] for row in rows[2:]] == [str(n) for n in range(1, len(rows) - 1)]
    assert rows[2][5] == "1.0000"  # the grid with the ticket ranks first

    # The Excel file and the chart are written to a file.
    target = tmp_path / "city.xlsx"
    wrote = runner.invoke(app, ["stats", "--format", "xlsx", "--output", str(target)])
    assert wrote.exit_code == 0, wrote.output
    assert wrote.output.strip() == f"wrote {target}"
    sheet = openpyxl.load_workbook(target).active
    assert [cell.value for cell in sheet[3]] == list(CSV_COLUMNS)
    assert sheet.cell(row=4, column=2).value == city
    monkeypatch.chdir(tmp_path)
    drawn = runner.invoke(app, ["stats", "--unit", community, "--format", "png"])
    assert drawn.exit_code == 0, drawn.output
    png = tmp_path / f"{community}-{this_month}.png"
    assert drawn.output.strip() == f"wrote {png.name}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    for args, line in (
        (
            ["--format", "csv", "--output", "x.csv"],
            "gridbot: --output goes with --format xlsx or png (table and csv are printed)",
        ),
        (
            ["--format", "xlsx", "--output", str(tmp_path / "missing" / "x.xlsx")],
            f"gridbot: cannot write {tmp_path / 'missing' / 'x.xlsx'}: No such file or directory",
        ),
        (
            ["--month", "2026-13"],
            "gridbot: “2026-13” is not a month: write it as YYYY-MM, e.g. 2026-11.",
        ),
        (["--unit", "NOPE"], "gridbot: There is no unit with code NOPE."),
        (["--language", "fr"], "gridbot: --language 'fr': use one of zh-hans, en"),
    ):
        refused = runner.invoke(app, ["stats", *args])
        assert refused.exit_code == 2
        assert refused.output.strip() == line


def test_the_readmes_example_holds() -> None:
    """The README's worked example, figure by figure."""
    grid = Figures(
        dispatched=5,
        responded=3,
        returned=1,
        followups=4,
        solved=2,
        unanswered=1,
        ratings=2,
        satisfied=1,
        rating_sum=8,
    )
    community = Figures(dispatched=1, responded=1)
    subtree = Figures()
    subtree.add(grid)
    subtree.add(community)
    assert percent(grid.response_rate) == "60.0%"
    assert percent(subtree.response_rate) == "66.7%"
    assert percent(grid.resolution_rate) == "75.0%"
    assert percent(grid.satisfaction_rate) == "50.0%"
    assert f"{grid.mean_rating:.2f}" == "4.00"
    assert score(grid, Weights()) == 0.10 * 0.6 + 0.45 * 0.75 + 0.45 * 0.5
    assert f"{score(grid, Weights()) * 100:.1f}" == "62.3"
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for said in ("3/5 = 60.0%", "4/6 = 66.7%", "(2 + 1)/4 = 75.0%", "1/2 = 50.0%, mean 4.00"):
        assert said in readme.replace("\n", " ")
    # A rate with nothing to rate leaves its weight out; nothing at all, no score.
    assert score(Figures(dispatched=2, responded=1), Weights()) == 0.5
    assert score(Figures(), Weights()) is None


async def test_the_monthly_ranking_goes_once_on_the_first_working_day(sessionmaker) -> None:
    """Last month's ranking reaches each official who sees figures (not a grid leader), from
    the digest time of the month's first working day, also after downtime, and once."""
    clock = FrozenClock(_at(25, 10))
    async with sessionmaker() as session:
        tree, category, people = await _world(session)
        for _ in range(2):
            ticket_id = (await _file(session, clock, tree, category, people)).id
            await accept_ticket(
                session=session,
                clock=clock,
                timing=TIMING,
                actor=people["leader"],
                ticket_id=ticket_id,
            )
        await session.commit()
        org = await load_snapshot(session)

        async def send() -> int | None:
            sent = await send_monthly_rankings(
                session=session, org=org, clock=clock, timing=TIMING, at=time(9, 0)
            )
            await session.commit()
            return sent

        # November: October's ranking, nothing in it (sent to nobody), and only once.
        assert await send() == 0
        assert await send() is None
        # 1 December (a Tuesday, a working day) before nine.
        clock.set(_at(1, 8, 59, month=12))
        assert await send() is None
        # Down at nine: the first sweep after sends it, once.
        clock.set(_at(2, 14, 0, month=12))
        assert await send() == 3  # the community's secretary, the street's officer, the admin
        assert await send() is None
        rows = (
            await session.exec(select(OutboxMessage).where(OutboxMessage.kind == "monthly_ranking"))
        ).all()
        by_chat = {row.chat_id: row.data for row in rows}
        assert set(by_chat) == {300, 400, 500}
        community = by_chat[300]
        assert (community["month"], community["unit_id"]) == (NOV, tree.community.id)
        assert [c["name_en"] for c in community["children"]] == [
            tree.grid.name_en,
            tree.other_grid.name_en,
        ]
        assert community["children"][0]["figures"]["responded"] == 2
        assert community["children"][1]["score"] is None
        text = default_renderer().render("monthly_ranking", community, "en")
        assert text.text.splitlines()[:2] == [
            f"🏆 {tree.community.name_en}: the ranking for 2026-11",
            "response 100.0% (2/2) · resolution — (0/0) · satisfaction — (0/0)",
        ]
        assert text.text.splitlines()[3] == f"1. {tree.grid.name_en}: score 100.0"
        assert text.text.splitlines()[-1] == f"2. {tree.other_grid.name_en}: nothing to rate"
        zh = default_renderer().render("monthly_ranking", community, "zh-hans").text
        assert zh.splitlines()[0] == f"🏆 {tree.community.name_zh}：2026-11 月度排名"


async def test_the_organisation_file_sets_the_weights(sessionmaker, clock) -> None:
    """The file's figures section reaches the ranking (a load moves the snapshot); without
    it, 12345's weights."""
    data = yaml.safe_load(sample_path().read_text(encoding="utf-8"))
    data["figures"] = {"weights": {"response": 1, "resolution": 0, "satisfaction": 0}}
    async with sessionmaker() as session:
        await apply_org(session=session, org=validate_org(data), clock=clock)
        org = await load_snapshot(session)
    assert weights_of(org) == Weights(response=1.0, resolution=0.0, satisfaction=0.0)
    # Response alone counts: a unit that answers every step in time scores 100.
    assert score(Figures(dispatched=4, responded=4, ratings=2, satisfied=0), weights_of(org)) == 1.0
    del data["figures"]
    async with sessionmaker() as session:
        await apply_org(session=session, org=validate_org(data), clock=clock)
        assert weights_of(await load_snapshot(session)) == Weights()


async def test_party_members_on_duty_in_a_units_view(sessionmaker, clock) -> None:
    """For a community and above: registered and approved members, the month's calls posted
    and filled, hours served (confirmed) and no-shows (only of calls over); none for a grid."""
    async with sessionmaker() as session:
        tree, _, secretary, _, people = await _duty_world(session, members=3)
        pending = await make_person(session, 2000, "Pending")
        session.add(
            Member(
                person_id=pending.id,
                full_name="Pending",
                branch="b",
                community_id=tree.community.id,
                status=MemberStatus.PENDING,
            )
        )
        await session.commit()
        call, _ = await _call(session, clock, tree, secretary, capacity=2)
        for person in people[:2]:
            await answer_call(session=session, clock=clock, person=person, call_id=call.id)
        await session.commit()
        org = await load_snapshot(session)
        month = month_of(clock.now(), TZ)

        before = await duty_in(session, org, clock, TZ, tree.community, month)
        assert before == DutyCounts(registered=4, approved=3, calls=1, filled=1)

        # The call is over: one served an hour (confirmed), the other never came.
        claims = (await session.exec(select(CallClaim).order_by(CallClaim.id))).all()
        came = claims[0]
        came.checked_in_at = call.starts_at
        came.minutes, came.confirmed = 60, True
        session.add(came)
        await session.commit()
        clock.set(call.ends_at)
        after = DutyCounts(registered=4, approved=3, calls=1, filled=1, minutes=60, no_shows=1)
        assert await duty_in(session, org, clock, TZ, tree.community, month) == after
        assert await duty_in(session, org, clock, TZ, tree.city, month) == after
        assert await duty_in(session, org, clock, TZ, tree.grid, month) is None
        # Another month: the members, but no calls.
        assert await duty_in(session, org, clock, TZ, tree.community, 202610) == DutyCounts(4, 3)
        report = await unit_report(
            session=session, org=org, clock=clock, tz=TZ, unit=tree.community, month=month
        )
        text = report_text(report, "en", translator("en"))
        assert (
            "Party members: 4 registered, 3 approved · calls: 1 posted, 1 filled · "
            "1 hour served · 1 no-show"
        ) in text.splitlines()


def test_a_departments_steps_count_in_time_or_late() -> None:
    urban = {"department_id": 7}
    due = _at(3, 10)
    events = [
        EventFacts("department_accepted", due, S.SUMMONED, urban | {"due": due.isoformat()}),
        EventFacts(
            "department_accepted",
            due + timedelta(minutes=1),
            S.SUMMONED,
            urban | {"due": due.isoformat()},
        ),
        EventFacts(
            "department_finished", _at(4, 9), S.SUMMONED, urban | {"due": _at(4, 10).isoformat()}
        ),
        EventFacts("department_returned", _at(4, 9), S.SUMMONED, urban),
        EventFacts("department_escalated", _at(4, 9), S.SUMMONED, urban | {"phase": "report_in"}),
        EventFacts("department_accepted", _at(4, 9), S.SUMMONED, {}),  # before figures were kept
    ]
    assert tally_departments(events, TZ) == {
        (NOV, 7): DepartmentFigures(
            reported_in=2, reported_in_time=1, finished=1, finished_in_time=1, returned=1, silent=1
        )
    }
    figures = tally_departments(events, TZ)[(NOV, 7)]
    assert (figures.report_in_rate, figures.finish_rate) == (0.5, 1.0)
    assert DepartmentFigures().report_in_rate is None


async def test_summoned_departments_figures_and_who_sees_them(sessionmaker, clock) -> None:
    """A whistle to two departments: one reports in on time and finishes late, the other
    returns it. The liaison sees their department, an official over its unit sees it in the
    unit's figures too; another department's liaison is refused and audited."""
    async with sessionmaker() as session:
        tree, police, people, ticket_id = await _at_the_street(session, clock)
        _, summoned = await whistle(
            session=session,
            clock=clock,
            timing=TIMING,
            actor=people["officer"],
            ticket_id=ticket_id,
            department_ids=[tree.department.id, police.id],
        )
        urban_id, police_id = (
            next(s.id for s in summoned if s.department_id == d)
            for d in (tree.department.id, police.id)
        )
        clock.advance(timedelta(minutes=10))
        await report_in(
            session=session, clock=clock, timing=TIMING, actor=people["urban"], summons_id=urban_id
        )
        await return_summons(
            session=session,
            clock=clock,
            timing=TIMING,
            actor=people["police"],
            summons_id=police_id,
            reason=SummonsReturnReason.NOT_OUR_REMIT,
            note="not ours",
        )
        clock.advance(timedelta(hours=5))  # past the four hours to finish
        await finish_summons(
            session=session,
            clock=clock,
            timing=TIMING,
            actor=people["urban"],
            summons_id=urban_id,
            note="cleared",
        )
        await session.commit()

        urban = DepartmentFigures(reported_in=1, reported_in_time=1, finished=1)
        mine = await department_report(
            session=session,
            clock=clock,
            tz=TZ,
            person=people["urban"],
            department_id=None,
            month=None,
        )
        assert (mine.department.id, mine.figures) == (tree.department.id, urban)
        assert department_text(mine, "en", translator("en")).splitlines()[1] == (
            "reported in on time 100.0% (1/1) · finished on time 0.0% (0/1)"
        )
        # Rolled up, the same.
        clock.advance(timedelta(minutes=6))
        await roll_up(session=session, clock=clock, tz=TZ)
        await session.commit()
        assert (await department_figures(session, TZ, NOV))[tree.department.id] == urban
        assert (await department_figures(session, TZ, NOV))[police.id] == DepartmentFigures(
            returned=1
        )
        # The street's figures show the police (at the street); the district's show both.
        org = await load_snapshot(session)
        for unit, expected in (
            (tree.street, {"PS": DepartmentFigures(returned=1)}),
            (tree.district, {"PS": DepartmentFigures(returned=1), tree.department.code: urban}),
        ):
            report = await unit_report(
                session=session, org=org, clock=clock, tz=TZ, unit=unit, month=NOV
            )
            assert {d.code: f for d, f in report.departments} == expected
        text = report_text(report, "en", translator("en"))
        assert (
            f"• {tree.department.name_en}: reported in on time 100.0% (1/1) · "
            "finished on time 0.0% (0/1)"
        ) in text.splitlines()
        # An official over the police's unit sees it alone too.
        seen = await department_report(
            session=session,
            clock=clock,
            tz=TZ,
            person=people["officer"],
            department_id=police.id,
            month=NOV,
        )
        assert seen.figures == DepartmentFigures(returned=1)
        # Another department's liaison: refused, and audited.
        with pytest.raises(NotAllowed):
            await department_report(
                session=session,
                clock=clock,
                tz=TZ,
                person=people["police"],
                department_id=tree.department.id,
                month=NOV,
            )
        audit = (await session.exec(select(AuditEntry))).all()
        assert f"stats.department:{tree.department.code}" in {
            a.data.get("attempted") for a in audit
        }
