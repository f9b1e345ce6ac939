"""/stats end to end: the running bot against the fake Bot API, on SQLite and PostgreSQL, with
the sample city. Who sees what (a secretary their community, a street officer their street,
anyone else refused, a forged button refused and audited), another month or unit in place,
the overdue list, the chart, the Excel and CSV files."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import openpyxl
from sqlmodel import select

from domain.clock import FrozenClock
from domain.deadlines import Timing
from domain.reference import load_snapshot
from domain.tickets import accept_ticket, file_ticket
from storage.enums import Role, UnitKind
from storage.models import AuditEntry, Department, OrgUnit, Person, RoleAssignment
from tests.botkit import running_bot
from tests.test_member_bot import buttons, press, say, session_of
from views.buttons import StatsOp, StatsView, TicketAction, TicketOp
from views.figures import CSV_COLUMNS

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # 10:00 in the city
COMMUNITY = "EQ-JZJ-01"
SECRETARY, OFFICER, LEADER, RESIDENT, LIAISON = 4600, 4601, 4602, 4603, 4604
NOV, OCT = 202611, 202610


def view(op: StatsOp, unit: int, month: int = NOV) -> str:
    return StatsView(op=op, unit=unit, month=month).pack()


async def edited(fake, user: int, data: str, message_id: int) -> dict:
    """Press a button; the edit of the message it made (its parameters)."""
    mark = len(fake.calls)
    await press(fake, user, data, message_id)
    call = await fake.wait_for_call("editMessageText", lambda c: c.chat_id == user, after=mark)
    return call.params


async def world(url: str, clock: FrozenClock) -> dict:
    """The community's secretary, its street's officer, a grid leader and a resident; two
    tickets in the community's first grid: one accepted in time, one left waiting (overdue
    three days later)."""
    async with session_of(url) as session:
        community = (await session.exec(select(OrgUnit).where(OrgUnit.code == COMMUNITY))).one()
        street = await session.get(OrgUnit, community.parent_id)
        grids = (
            await session.exec(
                select(OrgUnit)
                .where(OrgUnit.parent_id == community.id, OrgUnit.kind == UnitKind.GRID)
                .order_by(OrgUnit.code)
            )
        ).all()
        department = (await session.exec(select(Department).order_by(Department.code))).first()
        liaison = Person(telegram_id=LIAISON, full_name="Liaison", language="en")
        session.add(liaison)
        await session.flush()
        session.add(
            RoleAssignment(
                person_id=liaison.id, role=Role.DEPARTMENT_LIAISON, department_id=department.id
            )
        )
        people = {}
        for telegram_id, role, unit in (
            (SECRETARY, Role.COMMUNITY_SECRETARY, community),
            (OFFICER, Role.STREET_OFFICER, street),
            (LEADER, Role.GRID_LEADER, grids[0]),
            (RESIDENT, None, None),
        ):
            person = Person(telegram_id=telegram_id, full_name=f"P{telegram_id}", language="en")
            session.add(person)
            await session.flush()
            if role is not None:
                session.add(RoleAssignment(person_id=person.id, role=role, unit_id=unit.id))
            people[telegram_id] = person
        await session.commit()
        org = await load_snapshot(session)
        timing = Timing.plain(TZ)
        filed = []
        for _ in range(2):
            ctx = await file_ticket(
                session=session,
                org=org,
                clock=clock,
                timing=timing,
                reporter=people[RESIDENT],
                category_id=org.active_categories[0].id,
                description="the light is out",
                grid_id=grids[0].id,
            )
            filed.append(ctx.ticket)
        await session.commit()
        clock.advance(timedelta(minutes=10))
        await accept_ticket(
            session=session,
            clock=clock,
            timing=timing,
            actor=people[LEADER],
            ticket_id=filed[0].id,
        )
        await session.commit()
        return {
            "community": community,
            "street": street,
            "grids": grids,
            "waiting": filed[1],
            "department": department,
        }


async def test_stats_for_those_who_cover_a_unit(db_url: str) -> None:
    clock = FrozenClock(T0)
    async with running_bot(db_url, clock=clock) as running:
        fake = running.fake
        w = await world(db_url, clock)
        community, street, grids = w["community"], w["street"], w["grids"]
        clock.advance(timedelta(days=3))  # the waiting ticket is long past its deadline

        # A resident has no figures to see.
        fake.push_message(RESIDENT, "/stats", language_code="en")
        # (Past the news of their tickets the outbox brings them.)
        await fake.wait_for_message(
            RESIDENT, lambda m: m["text"].startswith("/stats shows the three rates")
        )

        # The secretary: their community this month, its grids below, nothing above.
        shown = await say(fake, SECRETARY, "/stats")
        lines = shown["text"].splitlines()
        assert lines[0] == f"📊 {community.name_en} · 2026-11"
        assert lines[1] == "response 100.0% (1/1) · resolution — (0/0) · satisfaction — (0/0)"
        assert lines[2] == "1 overdue now"
        # Last month beside it, to read this month against.
        assert lines[3] == "2026-10: response — (0/0) · resolution — (0/0) · satisfaction — (0/0)"
        assert "Below, ranked:" in lines
        assert lines[lines.index("Below, ranked:") + 1] == f"1. {grids[0].name_en}: score 100.0"
        pressed = buttons(shown["reply_markup"])
        assert pressed[:5] == [
            ("◀ 2026-10", view(StatsOp.SHOW, community.id, OCT)),
            ("⏰ Overdue now (1)", view(StatsOp.OVERDUE, community.id)),
            ("📈 Chart", view(StatsOp.CHART, community.id)),
            ("Excel", view(StatsOp.XLSX, community.id)),
            ("CSV", view(StatsOp.CSV, community.id)),
        ]
        assert pressed[5:] == [
            (f"🔎 {grid.name_en}", view(StatsOp.SHOW, grid.id))
            for grid in [grids[0], *sorted(grids[1:], key=lambda g: g.code)]
        ]
        message_id = shown["message_id"]

        # Last month, in place: nothing to rate, and a way back to this month.
        edit = await edited(fake, SECRETARY, view(StatsOp.SHOW, community.id, OCT), message_id)
        assert edit["text"].splitlines()[:2] == [
            f"📊 {community.name_en} · 2026-10",
            "response — (0/0) · resolution — (0/0) · satisfaction — (0/0)",
        ]
        assert buttons(edit["reply_markup"])[:2] == [
            ("◀ 2026-09", view(StatsOp.SHOW, community.id, 202609)),
            ("2026-11 ▶", view(StatsOp.SHOW, community.id, NOV)),
        ]
        # Down to a grid, and back up to the community.
        edit = await edited(fake, SECRETARY, view(StatsOp.SHOW, grids[0].id), message_id)
        assert edit["text"].splitlines()[0] == f"📊 {grids[0].name_en} · 2026-11"
        assert buttons(edit["reply_markup"])[-1] == (
            f"⬆ {community.name_en}",
            view(StatsOp.SHOW, community.id),
        )

        # The overdue list opens each ticket's card.
        await press(fake, SECRETARY, view(StatsOp.OVERDUE, community.id), message_id)
        listed = await fake.wait_for_message(
            SECRETARY, lambda m: "Past their deadline" in m.get("text", "")
        )
        assert w["waiting"].number in listed["text"]
        assert buttons(listed["reply_markup"]) == [
            (w["waiting"].number, TicketAction(op=TicketOp.OPEN, id=w["waiting"].id).pack())
        ]

        # The chart, and the files.
        await press(fake, SECRETARY, view(StatsOp.CHART, community.id), message_id)
        photo = await fake.wait_for_call("sendPhoto", lambda c: c.chat_id == SECRETARY, timeout=30)
        assert photo.params["photo"]["content"].startswith(b"\x89PNG\r\n\x1a\n")
        assert (
            photo.params["caption"]
            == f"{community.name_en} · 2026-11: the three rates of the units below"
        )
        await press(fake, SECRETARY, view(StatsOp.XLSX, community.id), message_id)
        sent = await fake.wait_for_call("sendDocument", lambda c: c.chat_id == SECRETARY)
        assert sent.params["document"]["filename"] == f"{COMMUNITY}-2026-11.xlsx"
        sheet = openpyxl.load_workbook(io.BytesIO(sent.params["document"]["content"])).active
        rows = list(sheet.iter_rows(min_row=3, values_only=True))
        assert rows[0] == CSV_COLUMNS
        assert rows[1][1] == COMMUNITY and rows[1][5] == 1.0  # the response rate, as a number
        assert [row[0] for row in rows[2:]] == list(range(1, len(grids) + 1))
        await press(fake, SECRETARY, view(StatsOp.CSV, community.id), message_id)
        sent = await fake.wait_for_call(
            "sendDocument",
            lambda c: c.chat_id == SECRETARY and c.params["document"]["filename"].endswith(".csv"),
        )
        rows = list(csv.reader(io.StringIO(sent.params["document"]["content"].decode("utf-8-sig"))))
        assert tuple(rows[0]) == CSV_COLUMNS
        assert (rows[1][1], rows[1][5]) == (COMMUNITY, "1.0000")

        # A forged button for the street above: refused and audited; a month to come too.
        refused = await press(fake, SECRETARY, view(StatsOp.SHOW, street.id), message_id)
        assert refused.params["show_alert"] is True
        async with session_of(db_url) as session:
            audit = (await session.exec(select(AuditEntry))).all()
        assert ("access.denied", f"stats:{street.code}") in {
            (a.action, a.data.get("attempted")) for a in audit
        }
        early = await press(fake, SECRETARY, view(StatsOp.SHOW, community.id, 202701), message_id)
        assert early.params["text"] == "2027-01 has not begun yet."

        # The street officer: the street, the community below it, and back.
        shown = await say(fake, OFFICER, "/stats")
        assert shown["text"].splitlines()[0] == f"📊 {street.name_en} · 2026-11"
        assert (f"🔎 {community.name_en}", view(StatsOp.SHOW, community.id)) in buttons(
            shown["reply_markup"]
        )
        edit = await edited(fake, OFFICER, view(StatsOp.SHOW, community.id), shown["message_id"])
        assert buttons(edit["reply_markup"])[-1] == (
            f"⬆ {street.name_en}",
            view(StatsOp.SHOW, street.id),
        )

        # A department's liaison: their department's month, and the month before in place.
        department = w["department"]
        shown = await say(fake, LIAISON, "/stats")
        assert shown["text"].splitlines() == [
            f"📊 {department.name_en} · 2026-11",
            "reported in on time — (0/0) · finished on time — (0/0)",
        ]
        before = view(StatsOp.DEPARTMENT, department.id, OCT)
        assert buttons(shown["reply_markup"]) == [("◀ 2026-10", before)]
        edit = await edited(fake, LIAISON, before, shown["message_id"])
        assert edit["text"].splitlines()[0] == f"📊 {department.name_en} · 2026-10"
        assert buttons(edit["reply_markup"]) == [
            ("◀ 2026-09", view(StatsOp.DEPARTMENT, department.id, 202609)),
            ("2026-11 ▶", view(StatsOp.DEPARTMENT, department.id, NOV)),
        ]
