"""Service posts and the member's side, end to end: /posts with Claim / Leave (a full post
refuses, a second claim is told so, the unapproved are sent to /duty), /me with the posts held
and the calls ahead, and /duty with the community chosen by hand and the services picked.

The running bot against the fake Bot API, on SQLite and PostgreSQL; the bot loads the sample
city, whose four posts every community gets (Qingtong has a single policy explainer).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import select

from domain.clock import FrozenClock
from domain.members import SERVICE_KINDS
from handlers.member import RegisterStep
from storage.enums import ClaimStatus, MemberStatus
from storage.models import CallClaim, DutyCall, Member, OrgUnit, Person, PostHolder, ServicePost
from tests.botkit import running_bot
from tests.test_member_bot import buttons, keys, press, reply, say, session_of
from views.buttons import DutyPlace, DutyPlaceOp, DutyService, PostAction, PostOp

T0 = datetime(2026, 11, 25, 2, 0, tzinfo=UTC)  # 10:00 in the city
QINGTONG, SONGFENG = "EQ-JZJ-01", "EQ-JZJ-02"
ALICE, BOB, PENDING, REJECTED, STRANGER, ELSEWHERE = 4201, 4202, 4203, 4204, 4205, 4206
NEWCOMER = 4207


async def people(url: str) -> None:
    """Approved Alice and Bob in Qingtong, one pending, one rejected, one approved elsewhere."""
    async with session_of(url) as session:
        units = {u.code: u.id for u in (await session.exec(select(OrgUnit))).all()}
        for telegram_id, status, community in (
            (ALICE, MemberStatus.APPROVED, QINGTONG),
            (BOB, MemberStatus.APPROVED, QINGTONG),
            (PENDING, MemberStatus.PENDING, QINGTONG),
            (REJECTED, MemberStatus.REJECTED, QINGTONG),
            (ELSEWHERE, MemberStatus.APPROVED, SONGFENG),
        ):
            person = Person(telegram_id=telegram_id, full_name=f"P{telegram_id}", language="en")
            session.add(person)
            await session.flush()
            session.add(
                Member(
                    person_id=person.id,
                    full_name=f"Member {telegram_id}",
                    branch="Qingtong Party branch",
                    community_id=units[community],
                    status=status,
                    reject_reason="Wrong community" if status == MemberStatus.REJECTED else None,
                )
            )
        await session.commit()


async def posts(url: str, community: str = QINGTONG) -> dict[str, ServicePost]:
    async with session_of(url) as session:
        rows = await session.exec(
            select(ServicePost)
            .join(OrgUnit, OrgUnit.id == ServicePost.community_id)
            .where(OrgUnit.code == community)
        )
        return {p.code: p for p in rows.all()}


async def holders(url: str, post_id: int) -> list[int]:
    """The Telegram ids of those holding the post."""
    async with session_of(url) as session:
        rows = await session.exec(
            select(Person.telegram_id)
            .join(Member, Member.person_id == Person.id)
            .join(PostHolder, PostHolder.member_id == Member.id)
            .where(PostHolder.post_id == post_id)
            .order_by(Person.telegram_id)
        )
        return list(rows.all())


def action(op: PostOp, post: ServicePost) -> str:
    return PostAction(op=op, id=post.id).pack()


async def press_edit(
    fake, user: int, data: str, message_id: int, method: str = "editMessageText"
) -> tuple[dict, dict]:
    """Press a button; its answer and the edit of the message that follows (their params)."""
    after = len(fake.calls)
    answer = await press(fake, user, data, message_id)
    edit = await fake.wait_for_call(
        method,
        lambda c: c.chat_id == user and c.params.get("message_id") == message_id,
        timeout=10,
        after=after,
    )
    return answer.params, edit.params


LIST = (
    "Service posts in Qingtong Community:\n"
    "• Building helper: 6 of 6 free\n"
    "• Safety patrol: 8 of 8 free\n"
    "• Environment watch: 4 of 4 free\n"
    "{policy}\n"
    "\n"
    "Press a post to claim it, or to leave one you hold."
)


async def test_claim_leave_and_a_full_post(db_url: str) -> None:
    async with running_bot(db_url, clock=FrozenClock(T0)) as running:
        fake = running.fake
        await people(db_url)
        post = await posts(db_url)
        policy = post["POLICY"]
        claim, leave = action(PostOp.CLAIM, policy), action(PostOp.LEAVE, policy)

        # Alice sees the four posts with places free, and a Claim button each.
        shown = await say(fake, ALICE, "/posts")
        assert shown["text"] == LIST.format(policy="• Policy explainer: 1 of 1 free")
        assert buttons(shown["reply_markup"]) == [
            ("Claim: Building helper", action(PostOp.CLAIM, post["BUILDING"])),
            ("Claim: Safety patrol", action(PostOp.CLAIM, post["PATROL"])),
            ("Claim: Environment watch", action(PostOp.CLAIM, post["ENVIRONMENT"])),
            ("Claim: Policy explainer", claim),
        ]
        bobs = await say(fake, BOB, "/posts")  # Bob's list, before Alice claims

        # Alice claims the single place: told, and the list now shows it held, with Leave.
        answer, now = await press_edit(fake, ALICE, claim, shown["message_id"])
        assert answer["text"] == "You now hold the post “Policy explainer”. Thank you!"
        assert now["text"] == LIST.format(policy="• ✅ Policy explainer: you hold it (0 of 1 free)")
        assert buttons(now["reply_markup"])[-1] == ("Leave: Policy explainer", leave)
        assert await holders(db_url, policy.id) == [ALICE]
        assert (await posts(db_url))["POLICY"].held == 1

        # Claiming twice is told so; nothing changes.
        twice = await press(fake, ALICE, claim, shown["message_id"])
        assert twice.params["text"] == "You already hold this post."
        assert twice.params["show_alert"] is True
        assert (await posts(db_url))["POLICY"].held == 1

        # Bob presses Claim on his older list: the post is full; his list shows it now.
        full, now = await press_edit(fake, BOB, claim, bobs["message_id"])
        assert full["text"] == "This post has no place left (it has 1)."
        assert full["show_alert"] is True
        assert now["text"] == LIST.format(policy="• Policy explainer: full (1 of 1 taken)")
        assert await holders(db_url, policy.id) == [ALICE]
        # Leaving a post he does not hold is refused too.
        not_held = await press(fake, BOB, leave, bobs["message_id"])
        assert not_held.params["text"] == "You do not hold this post."

        # Alice leaves: the place is free, and Bob gets it.
        left = await press(fake, ALICE, leave, shown["message_id"])
        assert left.params["text"] == "You have left the post “Policy explainer”."
        assert await holders(db_url, policy.id) == []
        taken = await press(fake, BOB, claim, bobs["message_id"])
        assert taken.params["text"] == "You now hold the post “Policy explainer”. Thank you!"
        assert await holders(db_url, policy.id) == [BOB]
        assert (await posts(db_url))["POLICY"].held == 1


async def test_only_approved_members_of_the_community_claim(db_url: str) -> None:
    async with running_bot(db_url, clock=FrozenClock(T0)) as running:
        fake = running.fake
        await people(db_url)
        policy = (await posts(db_url))["POLICY"]
        claim = action(PostOp.CLAIM, policy)

        told = await say(fake, STRANGER, "/posts")
        assert told["text"] == (
            "Service posts are for Party members approved by their community. "
            "Report for duty first with /duty."
        )
        assert told.get("reply_markup") is None
        told = await say(fake, PENDING, "/posts")
        assert told["text"].startswith("Your registration is waiting for your community secretary")
        told = await say(fake, REJECTED, "/posts")
        assert told["text"].startswith("Your registration was rejected; register again with /duty")

        # A press anyway (an old or forged button) is refused and changes nothing.
        for user in (STRANGER, PENDING):
            refused = await press(fake, user, claim, 1)
            assert refused.params["text"] == (
                "This is for Party members approved by their community: "
                "report for duty first with /duty."
            )
        # A member of another community cannot take Qingtong's post.
        other = await press(fake, ELSEWHERE, claim, 1)
        assert other.params["text"] == "There is no such post in your community."
        assert await holders(db_url, policy.id) == []
        # ... and sees their own community's posts.
        theirs = await say(fake, ELSEWHERE, "/posts")
        assert theirs["text"].startswith("Service posts in Songfeng Community:")
        assert "• Policy explainer: 2 of 2 free" in theirs["text"]


async def test_me_lists_the_posts_held_and_the_calls_ahead(db_url: str) -> None:
    clock = FrozenClock(T0)
    async with running_bot(db_url, clock=clock) as running:
        fake = running.fake
        await people(db_url)
        post = await posts(db_url)
        shown = await say(fake, ALICE, "/posts")
        for code in ("PATROL", "BUILDING"):
            await press(fake, ALICE, action(PostOp.CLAIM, post[code]), shown["message_id"])
        async with session_of(db_url) as session:
            alice = (
                await session.exec(
                    select(Member)
                    .join(Person, Person.id == Member.person_id)
                    .where(Person.telegram_id == ALICE)
                )
            ).one()
            calls = []
            for title, start, hours in (
                ("Flood watch", T0 + timedelta(days=1), 3),
                ("Clear the stairwell", T0 + timedelta(hours=2), 2),
                ("Withdrawn from", T0 + timedelta(hours=3), 1),
                ("Not answered", T0 + timedelta(hours=3), 1),
            ):
                call = DutyCall(
                    community_id=alice.community_id,
                    organiser_id=alice.person_id,
                    title=title,
                    latitude=34.742,
                    longitude=113.632,
                    starts_at=start,
                    ends_at=start + timedelta(hours=hours),
                    capacity=5,
                    claimed=1,
                )
                session.add(call)
                calls.append(call)
            await session.flush()
            for call, status in zip(
                calls[:3],
                (ClaimStatus.CLAIMED, ClaimStatus.CLAIMED, ClaimStatus.WITHDRAWN),
                strict=True,
            ):
                session.add(CallClaim(call_id=call.id, member_id=alice.id, status=status))
            await session.commit()

        me = await say(fake, ALICE, "/me")
        assert me["text"] == (
            "Member 4201: approved, on duty with your community.\n"
            "This month: 0 hours confirmed, 0 points.\n"
            "This year: 0 hours confirmed, 0 points.\n"
            "\n"
            "Posts you hold: Building helper, Safety patrol\n"
            "Calls ahead:\n"
            "• Clear the stairwell: 2026-11-25 12:00–14:00\n"
            "• Flood watch: 2026-11-26 10:00–13:00"
        )

        # Under way still counts as ahead; once it has ended, it is gone.
        clock.set(T0 + timedelta(hours=3))
        me = await say(fake, ALICE, "/me")
        assert me["text"].endswith(
            "Calls ahead:\n• Clear the stairwell: 2026-11-25 12:00–14:00\n"
            "• Flood watch: 2026-11-26 10:00–13:00"
        )
        clock.set(T0 + timedelta(hours=4))
        me = await say(fake, ALICE, "/me")
        assert me["text"].endswith("Calls ahead:\n• Flood watch: 2026-11-26 10:00–13:00")

        # Bob holds nothing and has no call ahead.
        me = await say(fake, BOB, "/me")
        assert me["text"].endswith(
            "\n\nYou hold no service post yet (/posts lists them).\nNo calls ahead."
        )


async def _to_place_step(fake, user: int) -> dict:
    await say(fake, user, "/duty")
    await say(fake, user, "Li Na")
    asked = await say(fake, user, "Songfeng Party branch")
    assert keys(asked["reply_markup"]) == [
        {"text": "📍 Share location", "request_location": True},
        {"text": "🏘 Choose the community"},
    ]
    return asked


def service(name: str) -> str:
    return DutyService(i=SERVICE_KINDS.index(name)).pack()


async def test_duty_with_the_community_chosen_by_hand_and_services(db_url: str) -> None:
    async with running_bot(db_url, clock=FrozenClock(T0)) as running:
        fake = running.fake
        async with session_of(db_url) as session:
            units = {u.code: u.id for u in (await session.exec(select(OrgUnit))).all()}
        await _to_place_step(fake, NEWCOMER)

        # Choose the community: the keyboard goes, the streets come as buttons (by code).
        told = await say(fake, NEWCOMER, "🏘 Choose the community")
        assert told["text"].startswith("Let's choose your community by hand.")
        assert told["reply_markup"] == {"remove_keyboard": True}
        streets = await reply(fake, NEWCOMER)
        assert streets["text"].startswith("Which street (sub-district) do you live in?")
        street = lambda code: DutyPlace(op=DutyPlaceOp.STREET, id=units[code]).pack()  # noqa: E731
        assert buttons(streets["reply_markup"]) == [
            ("Jiefanglu Subdistrict", street("EQ-JFL")),
            ("Jianzhongjie Subdistrict", street("EQ-JZJ")),
            ("Huayuanlu Subdistrict", street("JS-HYL")),
            ("Jingbalu Subdistrict", street("JS-JBL")),
        ]

        # A street: its communities, in the same message.
        _, shown = await press_edit(fake, NEWCOMER, street("EQ-JZJ"), streets["message_id"])
        assert shown["text"] == "Communities of Jianzhongjie Subdistrict:"
        community = lambda code: DutyPlace(  # noqa: E731
            op=DutyPlaceOp.COMMUNITY, id=units[code]
        ).pack()
        back = DutyPlace(op=DutyPlaceOp.STREETS, id=0).pack()
        assert buttons(shown["reply_markup"]) == [
            ("Qingtong Community", community(QINGTONG)),
            ("Songfeng Community", community(SONGFENG)),
            ("Browse by street", back),
        ]
        await press(fake, NEWCOMER, community(SONGFENG), streets["message_id"])
        chosen = await reply(fake, NEWCOMER)
        assert chosen["text"] == "Community: Songfeng Community"

        # The kinds of service: toggles, in the list's order; then Done.
        asked = await reply(fake, NEWCOMER)
        assert asked["text"].startswith("What kinds of service can you offer?")
        assert buttons(asked["reply_markup"])[:2] == [
            ("Building helper", service("building")),
            ("Safety patrol", service("patrol")),
        ]
        told = await say(fake, NEWCOMER, "patrol")
        assert told["text"].startswith("Please press the kinds of service you offer above")
        for name in ("elderly", "patrol", "policy", "patrol"):
            _, edit = await press_edit(
                fake, NEWCOMER, service(name), asked["message_id"], "editMessageReplyMarkup"
            )
        markup = edit["reply_markup"]
        labels = [text for text, _ in buttons(markup)]
        assert labels[:5] == [
            "Building helper",
            "Safety patrol",
            "Environment watch",
            "✅ Policy explainer",
            "✅ Helping the elderly",
        ]
        await press(fake, NEWCOMER, DutyService(i=-1).pack(), asked["message_id"])
        asked = await reply(fake, NEWCOMER)
        assert asked["text"].startswith("Your skills")
        await say(fake, NEWCOMER, "first aid")
        summary = await say(fake, NEWCOMER, "Skip")
        assert summary["text"] == (
            "Please check your registration:\n"
            "Name: Li Na\n"
            "Branch / work unit: Songfeng Party branch\n"
            "Community: Songfeng Community\n"
            "Services: Policy explainer, Helping the elderly\n"
            "Skills: first aid\n"
            "Phone: —"
        )
        await press(fake, NEWCOMER, RegisterStep(step="ok").pack(), summary["message_id"])
        done = await reply(fake, NEWCOMER)
        assert done["text"].startswith("Thank you! Your registration has been sent")

        async with session_of(db_url) as session:
            member = (
                await session.exec(
                    select(Member)
                    .join(Person, Person.id == Member.person_id)
                    .where(Person.telegram_id == NEWCOMER)
                )
            ).one()
        assert (member.community_id, member.grid_id) == (units[SONGFENG], None)
        assert (member.services, member.skills) == (["policy", "elderly"], ["first aid"])
        assert member.status == MemberStatus.PENDING

        # A button of the finished dialog changes nothing.
        stale = await press(fake, NEWCOMER, service("patrol"), asked["message_id"])
        assert stale.params["text"] == "This step is over; send /duty to start again."


async def test_duty_community_typed_by_name(db_url: str) -> None:
    async with running_bot(db_url, clock=FrozenClock(T0)) as running:
        fake = running.fake
        async with session_of(db_url) as session:
            units = {u.code: u.id for u in (await session.exec(select(OrgUnit))).all()}
        await _to_place_step(fake, NEWCOMER)

        # Several matches: buttons by code (with the street), and a way to browse instead.
        told = await say(fake, NEWCOMER, "community")
        assert told["text"].startswith("Let's choose your community by hand.")
        matches = await reply(fake, NEWCOMER)
        assert matches["text"] == "Communities matching “community” (8 of 8 shown):"
        listed = buttons(matches["reply_markup"])
        assert listed[0] == (
            "Xinglin Community · Jiefanglu Subdistrict",
            DutyPlace(op=DutyPlaceOp.COMMUNITY, id=units["EQ-JFL-01"]).pack(),
        )
        assert listed[-1] == ("Browse by street", DutyPlace(op=DutyPlaceOp.STREETS, id=0).pack())

        # Nothing matches: said so.
        told = await say(fake, NEWCOMER, "Atlantis")
        assert told["text"].startswith("No community's name contains “Atlantis”.")

        # One match (Chinese name, part of it): taken at once.
        told = await say(fake, NEWCOMER, "梧桐")
        assert told["text"] == "Community: Wutong Community"
        asked = await reply(fake, NEWCOMER)
        assert asked["text"].startswith("What kinds of service can you offer?")
