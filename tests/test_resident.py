"""Residents end to end: the real bot against the fake Bot API, on SQLite and PostgreSQL.

/report (location, by hand, outside the area, bad input, cancel, edit, anonymous, "me too",
a restart half-way), /my paging, and the answers to "is it solved?".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlmodel import func, select

from domain.clock import FrozenClock, SystemClock
from domain.deadlines import Timing
from domain.reference import load_snapshot
from domain.tickets import accept_ticket, events_of, file_ticket, resolve_ticket
from storage.db import make_engine, make_sessionmaker
from storage.enums import Role, TicketStatus, WatcherKind
from storage.models import (
    AuditEntry,
    Category,
    ConversationState,
    OrgUnit,
    Person,
    RoleAssignment,
    Ticket,
    TicketWatcher,
)
from tests.botkit import running_bot
from tests.fake_telegram import FakeTelegram
from views.buttons import FollowUp, MeToo

INSIDE = {"latitude": 34.742, "longitude": 113.632}  # in EQ-JZJ-01-G1 (Qingtong Grid 1)
NEARBY = {"latitude": 34.7423, "longitude": 113.6323}  # about 40 m away, same grid
OUTSIDE = {"latitude": 39.9, "longitude": 116.4}  # Beijing: in no grid
NUMBER = re.compile(r"ZZ-\d{8}-\d{4}")
TZ = ZoneInfo("Asia/Shanghai")
T = 5.0  # seconds to wait for one answer


def _photo(file_id: str, width: int) -> dict:
    return {
        "file_id": file_id,
        "file_unique_id": f"u-{file_id}",
        "width": width,
        "height": width * 3 // 4,
    }


STICKER = {
    "file_id": "st1",
    "file_unique_id": "ust1",
    "type": "regular",
    "width": 512,
    "height": 512,
    "is_animated": False,
    "is_video": False,
}
VOICE = {"file_id": "vo1", "file_unique_id": "uvo1", "duration": 3}
DOCUMENT = {"file_id": "do1", "file_unique_id": "udo1", "file_name": "photo.jpg"}


def buttons(message: dict) -> list[dict]:
    markup = message.get("reply_markup") or {}
    return [b for row in markup.get("inline_keyboard", []) for b in row]


class Resident:
    """One person chatting with the bot through the fake."""

    def __init__(self, fake: FakeTelegram, user_id: int, language: str = "en") -> None:
        self.fake, self.id, self.language = fake, user_id, language

    def say(self, text: str | None = None, **extra: object) -> None:
        self.fake.push_message(self.id, text, language_code=self.language, **extra)

    async def reply(self, predicate: Callable[[dict], bool] | None = None) -> dict:
        return await self.fake.wait_for_message(self.id, predicate, timeout=T)

    async def text(self, predicate: Callable[[dict], bool] | None = None) -> str:
        return (await self.reply(predicate))["text"]

    def press(self, message: dict, label: str) -> None:
        """Press the inline button whose text starts with `label`."""
        found = [b for b in buttons(message) if b["text"].startswith(label)]
        assert found, f"no button {label!r} in {[b['text'] for b in buttons(message)]}"
        self.press_data(found[0]["callback_data"], message["message_id"])

    def press_data(self, data: str, message_id: int = 1) -> None:
        self.fake.push_callback(self.id, data, message_id, language_code=self.language)

    async def alert(self, after: int) -> str:
        """The text of the next callback answer (from fake.calls[after:])."""
        call = await self.fake.wait_for_call(
            "answerCallbackQuery", lambda c: bool(c.params.get("text")), timeout=T, after=after
        )
        return call.params["text"]


# -- the database, from outside the bot ---------------------------------------------------


async def _query(db_url: str, fn):
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine)() as session:
            result = await fn(session)
            await session.commit()  # the caller of a use case owns its transaction
            return result
    finally:
        await engine.dispose()


async def _tickets(db_url: str) -> list[tuple[Ticket, str, str]]:
    """Every ticket with its grid's and category's codes, oldest first."""

    async def fn(session):
        rows = await session.exec(
            select(Ticket, OrgUnit.code, Category.code)
            .join(OrgUnit, Ticket.grid_id == OrgUnit.id)
            .join(Category, Ticket.category_id == Category.id)
            .order_by(Ticket.id)
        )
        return list(rows.all())

    return await _query(db_url, fn)


async def _count(db_url: str, statement) -> int:
    return await _query(db_url, lambda s: _one(s, statement))


async def _one(session, statement):
    return (await session.exec(statement)).one()


# -- dialog steps shared by the tests -------------------------------------------------------


async def start_report(r: Resident, category: str = "Garbage piling up") -> dict:
    """/report, a category: the description prompt."""
    r.say("/report")
    menu = await r.reply()
    assert menu["text"].startswith("What kind of problem")
    r.press(menu, category)
    prompt = await r.reply()
    assert prompt["text"].startswith(f"Category: {category}.")
    return prompt


async def to_location_step(r: Resident, description: str, photos: int = 0) -> dict:
    """From the description prompt: description, photos, Done: the place prompt."""
    r.say(description)
    ask = await r.reply()
    assert ask["text"].startswith("Photos help")
    for n in range(1, photos + 1):
        r.say(None, photo=[_photo(f"small{n}", 90), _photo(f"big{n}", 1280)])
        ask = await r.reply()
        assert ask["text"].startswith(f"Photo {n} of 3 received")
    r.press(ask, "Done" if photos else "Skip")
    where = await r.reply()
    assert where["text"].startswith("Where is the problem?")
    return where


async def confirm(r: Resident, summary: dict, label: str = "✅ Confirm") -> str:
    r.press(summary, label)
    return await r.text()


# -- the tests ------------------------------------------------------------------------------


async def test_full_report_with_photo_and_location(db_url: str) -> None:
    async with running_bot(db_url) as running:
        r = Resident(running.fake, 2001)
        await start_report(r)
        where = await to_location_step(r, "  Rubbish piled up by the east gate  ", photos=1)
        # A reply keyboard: share the location (Telegram asks the client), by hand, cancel.
        keyboard = where["reply_markup"]["keyboard"]
        assert keyboard[0][0] == {"text": "📍 Share my location", "request_location": True}
        assert [row[0]["text"] for row in keyboard[1:]] == [
            "Choose community by hand",
            "✖ Cancel",
        ]

        r.say(None, location=INSIDE)
        located = await r.reply()
        assert located["text"] == "📍 Qingtong Grid 1, Qingtong Community"
        assert located["reply_markup"] == {"remove_keyboard": True}
        summary = await r.reply()
        assert summary["text"].splitlines() == [
            "Please check your report:",
            "Category: Garbage piling up",
            "Description: Rubbish piled up by the east gate",
            "Photos: 1",
            "Place: Qingtong Grid 1, Qingtong Community (from your location)",
            "Anonymous: no",
        ]
        filed = await confirm(r, summary)

        # Pressing Confirm again files nothing: the dialog is over.
        after = len(running.fake.calls)
        r.press(summary, "✅ Confirm")
        assert await r.alert(after) == "This step is over: that button no longer applies."

    [(ticket, grid, category)] = await _tickets(db_url)
    assert NUMBER.fullmatch(ticket.number)
    assert (grid, category) == ("EQ-JZJ-01-G1", "GARBAGE")
    assert ticket.description == "Rubbish piled up by the east gate"
    assert ticket.photos == ["big1"]  # the largest size
    assert (ticket.latitude, ticket.longitude) == (INSIDE["latitude"], INSIDE["longitude"])
    assert ticket.anonymous is False
    assert ticket.status == TicketStatus.NEW
    deadline = ticket.next_deadline.astimezone(TZ)
    assert filed.splitlines()[:2] == [
        f"Thank you! Your report is ticket {ticket.number}.",
        "It went to Qingtong Grid 1 (Qingtong Community). "
        f"Expect it to be taken up by {deadline:%Y-%m-%d %H:%M}.",
    ]
    # The dialog left nothing behind.
    assert await _count(db_url, select(func.count()).select_from(ConversationState)) == 0


async def test_community_and_grid_chosen_by_hand_in_chinese(db_url: str) -> None:
    async with running_bot(db_url) as running:
        r = Resident(running.fake, 2002, language="zh-hans")
        r.say("/report")
        menu = await r.reply()
        assert menu["text"].startswith("您要反映哪一类问题")
        r.press(menu, "路灯故障")
        assert (await r.text()).startswith("类别：路灯故障。")
        r.say("小区门口的路灯不亮了")
        r.press(await r.reply(), "跳过")
        assert (await r.text()).startswith("问题在哪里？")

        r.say("手动选择社区")  # the reply keyboard's button
        by_hand = await r.reply()
        assert by_hand["reply_markup"] == {"remove_keyboard": True}
        ask = await r.reply()
        assert ask["text"].startswith("请输入社区名称中的几个字")

        r.say("没有这个")
        assert (await r.text()) == "没有名称包含“没有这个”的社区。请换几个字再试，或列出全部社区。"
        # Case does not matter, nor the language: one match goes straight to its grids.
        r.say("SONGFENG")
        grids = await r.reply()
        assert grids["text"] == "问题在松风社区的哪个网格？"
        assert [b["text"] for b in buttons(grids)][:4] == [
            f"松风社区第{i}网格" for i in range(1, 5)
        ]
        r.press(grids, "松风社区第3网格")
        summary = await r.reply()
        assert "地点：松风社区第3网格，松风社区\n" in summary["text"]
        filed = await confirm(r, summary, "✅ 确认提交")
        assert filed.startswith("感谢您的反映！工单编号：ZZ-")
        assert "已派给松风社区第3网格（松风社区）。预计在 " in filed

    [(ticket, grid, category)] = await _tickets(db_url)
    assert (grid, category) == ("EQ-JZJ-02-G3", "STREETLIGHT")
    assert (ticket.latitude, ticket.longitude, ticket.photos) == (None, None, [])
    assert ticket.number in filed


async def test_outside_the_area_then_the_list_of_communities(db_url: str) -> None:
    async with running_bot(db_url) as running:
        fake = running.fake
        r = Resident(fake, 2003)
        await start_report(r, "Damaged road")
        await to_location_step(r, "Pothole")
        r.say(None, location=OUTSIDE)
        outside = await r.reply()
        assert outside["text"].startswith("That place is outside the service area")
        assert outside["text"].endswith("or choose the community by hand.")
        assert outside["reply_markup"]["keyboard"][1][0]["text"] == "Choose community by hand"

        r.say("Choose community by hand")
        await r.reply()  # the reply keyboard goes
        r.press(await r.reply(), "List all communities")
        page = await r.reply()
        assert page["text"] == "Communities (1–6 of 8):"
        assert buttons(page)[0]["text"] == "Xinglin Community · Jiefanglu Subdistrict"
        after = len(fake.calls)
        r.press(page, "Next ▶")
        edited = await fake.wait_for_call("editMessageText", timeout=T, after=after)
        assert edited.params["text"] == "Communities (7–8 of 8):"
        second = {"message_id": page["message_id"], "reply_markup": edited.params["reply_markup"]}
        assert "◀ Previous" in [b["text"] for b in buttons(second)]
        r.press(second, "Guixiang Community")
        grids = await r.reply()
        assert grids["text"] == "Which grid of Guixiang Community is it in?"
        r.press(grids, "Guixiang Grid 2")
        summary = await r.reply()
        assert "Place: Guixiang Grid 2, Guixiang Community\n" in summary["text"]
        await confirm(r, summary)

    [(ticket, grid, category)] = await _tickets(db_url)
    assert (grid, category) == ("JS-JBL-02-G2", "ROAD")
    assert ticket.latitude is None  # the place outside was not kept


async def test_bad_input_is_refused_and_says_what_is_expected(db_url: str) -> None:
    async with running_bot(db_url) as running:
        r = Resident(running.fake, 2004)
        await start_report(r)

        r.say("x" * 1001)
        too_long = await r.text()
        assert too_long == (
            "That is 1001 characters; a description may have at most 1000. "
            "Please shorten it and send it again."
        )
        r.say("   ")
        assert await r.text() == "Please describe the problem in words."
        for extra in ({"sticker": STICKER}, {"voice": VOICE}, {"document": DOCUMENT}):
            r.say(None, **extra)
            assert (await r.text()).startswith(
                "At this step I need the description as text (at most 1000 characters)."
            )
        # Still at the description step: a good one moves on.
        r.say("y" * 1000)
        assert (await r.text()).startswith("Photos help")

        for extra in ({"sticker": STICKER}, {"voice": VOICE}, {"document": DOCUMENT}):
            r.say(None, **extra)
            assert (await r.text()).startswith(
                "At this step I need photos (up to 3), sent as photos, not as files."
            )
        # Three photos sent as one album arrive together and are handled at once: none is lost.
        for n in range(1, 4):
            r.say(None, photo=[_photo(f"p{n}", 800)], media_group_id="album1")
        received = sorted([(await r.text()).split(" Send")[0] for _ in range(3)])
        assert received == [f"Photo {n} of 3 received." for n in range(1, 4)]
        r.say(None, photo=[_photo("p4", 800)])
        refused = await r.reply()
        assert refused["text"].startswith("At most 3 photos per report: this one was not added.")
        r.press(refused, "Done")
        assert (await r.text()).startswith("Where is the problem?")
        r.say(None, sticker=STICKER)
        assert (await r.text()).startswith("At this step I need the place")

        r.say(None, location=INSIDE)
        await r.reply()
        await confirm(r, await r.reply())

    [(ticket, _, _)] = await _tickets(db_url)
    assert sorted(ticket.photos) == ["p1", "p2", "p3"]
    assert ticket.description == "y" * 1000


async def test_cancel_from_every_kind_of_step(db_url: str) -> None:
    async with running_bot(db_url) as running:
        fake = running.fake
        r = Resident(fake, 2005)
        r.say("/cancel")
        nothing = await r.reply()
        assert nothing["text"] == "There is nothing to cancel."

        # /cancel at the category step; then its buttons are over.
        r.say("/report")
        menu = await r.reply()
        r.say("/cancel")
        cancelled = await r.reply()
        assert cancelled["text"] == "Report cancelled; nothing was filed."
        assert cancelled["reply_markup"] == {"remove_keyboard": True}
        after = len(fake.calls)
        r.press(menu, "Garbage piling up")
        assert await r.alert(after) == "This step is over: that button no longer applies."

        # The Cancel button at the description step.
        prompt = await start_report(r)
        r.press(prompt, "✖ Cancel")
        assert await r.text() == "Report cancelled; nothing was filed."
        # The word alone, typed, does too.
        await start_report(r)
        r.say("Cancel")
        assert await r.text() == "Report cancelled; nothing was filed."
        r.say("Some text after the dialog")
        assert (await r.text()).startswith("Sorry, I did not understand that.")

        # The reply keyboard's Cancel at the place step: the keyboard goes with it.
        await start_report(r)
        await to_location_step(r, "Bins overflowing")
        r.say("✖ Cancel")
        cancelled = await r.reply()
        assert cancelled["text"] == "Report cancelled; nothing was filed."
        assert cancelled["reply_markup"] == {"remove_keyboard": True}

        # /cancel at the summary.
        await start_report(r)
        await to_location_step(r, "Bins overflowing again")
        r.say(None, location=OUTSIDE)
        await r.reply()
        r.say("Qingtong")  # typed at the place step: one match, its grids
        await r.reply()  # the reply keyboard goes
        r.press(await r.reply(), "Qingtong Grid 4")
        summary = await r.reply()
        assert summary["text"].startswith("Please check your report:")
        r.say("/cancel")
        assert await r.text() == "Report cancelled; nothing was filed."
        after = len(fake.calls)
        r.press(summary, "✅ Confirm")
        assert await r.alert(after) == "This step is over: that button no longer applies."

    assert await _count(db_url, select(func.count()).select_from(Ticket)) == 0


async def test_edit_the_description_and_file_anonymously(db_url: str) -> None:
    async with running_bot(db_url) as running:
        fake = running.fake
        r = Resident(fake, 2006)
        await start_report(r, "Noise nuisance")
        await to_location_step(r, "Loud music")
        r.say(None, location=INSIDE)
        await r.reply()
        summary = await r.reply()

        r.press(summary, "✏️ Edit")
        menu = await r.reply()
        assert menu["text"] == "What do you want to change?"
        assert [b["text"] for b in buttons(menu)] == [
            "Category",
            "Description",
            "Photos",
            "Place",
            "Back to the summary",
        ]
        r.press(menu, "Description")
        assert (await r.text()).startswith("Category: Noise nuisance.")
        r.say("Loud music every night after 23:00 from the bar on the corner")
        summary = await r.reply()
        assert (
            "Description: Loud music every night after 23:00 from the bar on the corner\n"
            in summary["text"]
        )
        assert "Anonymous: no" in summary["text"]

        after = len(fake.calls)
        r.press(summary, "👤 Anonymous: off")
        toggled = await fake.wait_for_call("editMessageText", timeout=T, after=after)
        assert toggled.params["text"].endswith(
            "Anonymous: yes — the grid leader will not see who sent it; you still get every update"
        )
        on = [b["text"] for row in toggled.params["reply_markup"]["inline_keyboard"] for b in row]
        assert on[0] == "🕶 Anonymous: on (tap to switch off)"
        filed = await confirm(r, summary)
        assert filed.startswith("Thank you! Your report is ticket ZZ-")

    [(ticket, _, category)] = await _tickets(db_url)
    assert category == "NOISE"
    assert ticket.anonymous is True
    assert ticket.description.startswith("Loud music every night")


async def test_a_second_report_nearby_offers_me_too(db_url: str) -> None:
    async with running_bot(db_url) as running:
        fake = running.fake
        first = Resident(fake, 2007)
        await start_report(first)
        await to_location_step(first, "Garbage at the corner")
        first.say(None, location=INSIDE)
        await first.reply()
        await confirm(first, await first.reply())

        second = Resident(fake, 2008)
        await start_report(second)
        await to_location_step(second, "So much garbage here")
        second.say(None, location=NEARBY)
        await second.reply()
        offer = await second.reply()
        [(ticket, _, _)] = await _tickets(db_url)
        assert offer["text"].startswith("Similar problems have already been reported nearby")
        assert f"• {ticket.number}: waiting to be accepted, 1 affected" in offer["text"]
        assert [b["text"] for b in buttons(offer)] == [
            f"Me too: {ticket.number}",
            "No, file a new report",
            "✖ Cancel",
        ]
        second.press(offer, "Me too")
        joined = await second.text()
        assert joined.startswith(f"You now follow ticket {ticket.number} (2 residents affected).")

    [(ticket_after, _, _)] = await _tickets(db_url)  # still one ticket
    assert ticket_after.affected == 2

    async def watchers(session):
        rows = await session.exec(
            select(Person.telegram_id, TicketWatcher.kind)
            .join(Person, Person.id == TicketWatcher.person_id)
            .order_by(Person.telegram_id)
        )
        return list(rows.all())

    assert await _query(db_url, watchers) == [
        (2007, WatcherKind.REPORTER),
        (2008, WatcherKind.ME_TOO),
    ]


async def test_the_dialog_survives_a_restart(db_url: str) -> None:
    async with running_bot(db_url) as running:
        r = Resident(running.fake, 2009)
        await start_report(r, "Water supply problem")
        await to_location_step(r, "No water since this morning", photos=2)
    # The bot stopped half-way; a new process (and a new fake Telegram) picks up.
    async with running_bot(db_url) as running:
        r = Resident(running.fake, 2009)
        r.say(None, location=INSIDE)
        assert (await r.text()) == "📍 Qingtong Grid 1, Qingtong Community"
        summary = await r.reply()
        assert "Description: No water since this morning\nPhotos: 2\n" in summary["text"]
        filed = await confirm(r, summary)
        assert filed.startswith("Thank you! Your report is ticket ZZ-")

    [(ticket, grid, category)] = await _tickets(db_url)
    assert (grid, category) == ("EQ-JZJ-01-G1", "WATER")
    assert ticket.photos == ["big1", "big2"]
    assert ticket.description == "No water since this morning"


# -- /my and the follow-up: tickets made through the domain ------------------------------------


async def _setup_people(db_url: str, resident_ids: list[int]) -> tuple[list[int], int]:
    """Residents (English) and a grid leader of EQ-JZJ-01-G1: their person ids, the grid id."""

    async def fn(session):
        grid = (await session.exec(select(OrgUnit).where(OrgUnit.code == "EQ-JZJ-01-G1"))).one()
        people = [Person(telegram_id=i, full_name=f"R{i}", language="en") for i in resident_ids]
        leader = Person(telegram_id=2999, full_name="Leader", language="en")
        session.add_all([*people, leader])
        await session.flush()
        session.add(RoleAssignment(person_id=leader.id, role=Role.GRID_LEADER, unit_id=grid.id))
        await session.commit()
        return [p.id for p in people], grid.id

    return await _query(db_url, fn)


async def _file(
    db_url: str, clock, person_telegram_id: int, description: str, *, resolve: bool
) -> tuple[int, str]:
    """A ticket filed by the resident (and accepted and resolved by the leader if asked)."""

    async def fn(session):
        timing = Timing.plain(TZ)
        reporter = (
            await session.exec(select(Person).where(Person.telegram_id == person_telegram_id))
        ).one()
        leader = (await session.exec(select(Person).where(Person.telegram_id == 2999))).one()
        grid = (await session.exec(select(OrgUnit).where(OrgUnit.code == "EQ-JZJ-01-G1"))).one()
        category = (await session.exec(select(Category).where(Category.code == "ROAD"))).one()
        ctx = await file_ticket(
            session=session,
            org=await load_snapshot(session),
            clock=clock,
            timing=timing,
            reporter=reporter,
            category_id=category.id,
            description=description,
            grid_id=grid.id,
        )
        ticket_id, number = ctx.ticket.id, ctx.ticket.number
        if resolve:
            await accept_ticket(
                session=session, clock=clock, timing=timing, actor=leader, ticket_id=ticket_id
            )
            await resolve_ticket(
                session=session,
                clock=clock,
                timing=timing,
                actor=leader,
                ticket_id=ticket_id,
                note="Filled in",
            )
        return ticket_id, number

    return await _query(db_url, fn)


async def test_my_lists_tickets_newest_first_five_a_page(db_url: str) -> None:
    async with running_bot(db_url) as running:
        fake = running.fake
        await _setup_people(db_url, [2010])
        clock = FrozenClock(datetime(2026, 11, 20, 1, 0, tzinfo=UTC))
        numbers = []
        for n in range(7):
            numbers.append((await _file(db_url, clock, 2010, f"Crack {n}", resolve=False))[1])
            clock.advance(timedelta(hours=20))
        r = Resident(fake, 2010)
        r.say("/my")
        page = await r.reply()
        lines = page["text"].split("\n\n")
        assert lines[0] == "Your reports (1–5 of 7), newest first:"
        assert [line.split(" · ")[0] for line in lines[1:]] == numbers[::-1][:5]
        # The newest was filed on 2026-11-25 01:00 UTC, 09:00 in Zhengzhou.
        # An open ticket says which level holds it now.
        assert lines[1] == (
            f"{numbers[6]} · Damaged road\nwaiting to be accepted · filed 2026-11-25\n"
            "Held by the grid: Qingtong Grid 1"
        )
        assert [b["text"] for b in buttons(page)] == ["Next ▶"]

        after = len(fake.calls)
        r.press(page, "Next ▶")
        edited = await fake.wait_for_call("editMessageText", timeout=T, after=after)
        second = edited.params["text"].split("\n\n")
        assert second[0] == "Your reports (6–7 of 7), newest first:"
        assert [line.split(" · ")[0] for line in second[1:]] == [numbers[1], numbers[0]]
        back = [b["text"] for row in edited.params["reply_markup"]["inline_keyboard"] for b in row]
        assert back == ["◀ Previous"]

        nobody = Resident(fake, 2011)
        nobody.say("/my")
        assert await nobody.text() == (
            "You have not reported anything yet. Send /report to report a problem around you."
        )


async def test_follow_up_yes_then_rating_and_no_with_a_reason(db_url: str) -> None:
    async with running_bot(db_url) as running:
        fake = running.fake
        await _setup_people(db_url, [2012])
        clock = SystemClock()
        solved_id, solved = await _file(db_url, clock, 2012, "Broken kerb", resolve=True)
        open_id, still = await _file(db_url, clock, 2012, "Broken bench", resolve=True)
        r = Resident(fake, 2012)

        # Yes: closed, then the rating.
        r.press_data(FollowUp(id=solved_id, solved=True).pack())
        rate = await r.reply(lambda m: (m.get("text") or "").startswith("Thank you for confirming"))
        assert rate["text"].startswith(f"Thank you for confirming: ticket {solved} is closed.")
        assert [b["text"] for b in buttons(rate)] == [f"{n} ⭐" for n in range(1, 6)]
        r.press(rate, "4 ⭐")
        rated = await r.text(lambda m: (m.get("text") or "").startswith("Thank you! You rated"))
        assert rated == f"Thank you! You rated ticket {solved}: ★★★★☆"
        # The same answer again: the ticket has moved on.
        after = len(fake.calls)
        r.press_data(FollowUp(id=solved_id, solved=True).pack())
        assert await r.alert(after) == (
            f"Ticket {solved} has moved on: it is now closed. "
            "This button no longer applies; nothing was changed."
        )

        # No: the reason (not a sticker), then reopened.
        r.press_data(FollowUp(id=open_id, solved=False).pack())
        ask = await r.text(lambda m: (m.get("text") or "").startswith("Sorry it is not solved"))
        assert f"What is still wrong with ticket {still}?" in ask
        r.say(None, sticker=STICKER)
        expect = await r.text(lambda m: (m.get("text") or "").startswith("Please write as text"))
        assert "at most 1000 characters" in expect
        r.say("The bench is still broken on the left side")
        reopened = await r.text(lambda m: (m.get("text") or "").startswith(f"Ticket {still}"))
        assert reopened.startswith(f"Ticket {still} is reopened and back with Qingtong Grid 1")

    [(closed, _, _), (back, _, _)] = await _tickets(db_url)
    assert (closed.status, closed.rating) == (TicketStatus.CLOSED, 4)
    assert (back.status, back.reopen_count) == (TicketStatus.REOPENED, 1)

    async def last_event(session):
        return (await events_of(session, back.id))[-1]

    event = await _query(db_url, last_event)
    assert (event.kind, event.note) == ("reopen", "The bench is still broken on the left side")


async def test_a_forged_follow_up_for_someone_elses_ticket(db_url: str) -> None:
    async with running_bot(db_url) as running:
        fake = running.fake
        await _setup_people(db_url, [2013, 2014])
        ticket_id, _ = await _file(db_url, SystemClock(), 2013, "Sinkhole", resolve=True)
        stranger = Resident(fake, 2014)
        for solved in (True, False):
            after = len(fake.calls)
            stranger.press_data(FollowUp(id=ticket_id, solved=solved).pack())
            assert await stranger.alert(after) == "You are not allowed to do that here."
        # No dialog was opened for the stranger: text is just text.
        stranger.say("It is not solved!")
        assert (await stranger.text()).startswith("Sorry, I did not understand that.")

    [(ticket, _, _)] = await _tickets(db_url)
    assert ticket.status == TicketStatus.RESOLVED
    assert ticket.rating is None and ticket.reopen_count == 0
    denied = select(func.count()).where(AuditEntry.action == "access.denied")
    assert await _count(db_url, denied) == 2


async def _file_elsewhere(db_url: str, grid_code: str, *, anonymous: bool) -> tuple[int, str]:
    """A garbage ticket filed (through the domain) in another grid: its id and number."""

    async def fn(session):
        reporter = Person(telegram_id=2990, full_name="Elsewhere", language="en")
        session.add(reporter)
        await session.commit()
        grid = (await session.exec(select(OrgUnit).where(OrgUnit.code == grid_code))).one()
        category = (await session.exec(select(Category).where(Category.code == "GARBAGE"))).one()
        ctx = await file_ticket(
            session=session,
            org=await load_snapshot(session),
            clock=SystemClock(),
            timing=Timing.plain(TZ),
            reporter=reporter,
            category_id=category.id,
            description="Garbage somewhere else",
            grid_id=grid.id,
            anonymous=anonymous,
        )
        return ctx.ticket.id, ctx.ticket.number

    return await _query(db_url, fn)


async def test_me_too_only_for_a_ticket_offered_in_the_dialog(db_url: str) -> None:
    async with running_bot(db_url) as running:
        fake = running.fake
        first = Resident(fake, 2020)
        await start_report(first)
        await to_location_step(first, "Garbage at the corner")
        first.say(None, location=INSIDE)
        await first.reply()
        await confirm(first, await first.reply())
        [(offered, _, _)] = await _tickets(db_url)
        # Another community's anonymous ticket: never offered to anyone here.
        other_id, other_number = await _file_elsewhere(db_url, "JS-JBL-02-G2", anonymous=True)

        second = Resident(fake, 2021)
        await start_report(second)
        await to_location_step(second, "So much garbage here")
        second.say(None, location=NEARBY)
        await second.reply()
        offer = await second.reply()
        assert [b["text"] for b in buttons(offer)][0] == f"Me too: {offered.number}"

        # Forged: the same button with another ticket's id, or one that does not exist.
        for forged in (MeToo(id=other_id), MeToo(id=999_999)):
            after = len(fake.calls)
            second.press_data(forged.pack(), offer["message_id"])
            assert await second.alert(after) == (
                "“Me too” works only for a ticket offered to you in this report; "
                "nothing was changed."
            )
        # The dialog is still at the offer: the genuine button works.
        second.press(offer, "Me too")
        joined = await second.text()
        assert joined.startswith(f"You now follow ticket {offered.number} (2 residents affected).")

    tickets = {ticket.id: ticket for ticket, _, _ in await _tickets(db_url)}
    assert (tickets[offered.id].affected, tickets[other_id].affected) == (2, 1)

    async def watchers(session):
        rows = await session.exec(
            select(TicketWatcher.ticket_id, TicketWatcher.kind)
            .join(Person, Person.id == TicketWatcher.person_id)
            .where(Person.telegram_id == 2021)
        )
        return list(rows.all())

    assert await _query(db_url, watchers) == [(offered.id, WatcherKind.ME_TOO)]

    async def refusals(session):
        rows = await session.exec(
            select(AuditEntry)
            .join(Person, Person.id == AuditEntry.actor_id)
            .where(Person.telegram_id == 2021)
            .order_by(AuditEntry.id)
        )
        return [(entry.action, entry.data) for entry in rows.all()]

    assert await _query(db_url, refusals) == [
        (
            "access.denied",
            {"attempted": f"ticket.join:{other_number}", "unit": "JS-JBL-02-G2", "roles": []},
        ),
        ("access.denied", {"attempted": "ticket.join:999999", "unit": None, "roles": []}),
    ]
