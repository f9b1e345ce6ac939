"""The whole report loop through chat only, as people would live it (SQLite and PostgreSQL).

An administrator's invitation makes a grid leader; a resident files a report with a photo and
a location; the leader accepts and resolves it; the resident says it is not solved; the leader
resolves it again; the resident says yes and rates it 4. The ticket is closed and its history
complete.
"""

from __future__ import annotations

from sqlmodel import select

from domain.tickets import events_of
from storage.enums import Role, TicketStatus
from storage.models import Ticket
from tests.test_e2e_bot import _invite
from tests.test_leader import buttons, press
from tests.test_resident import INSIDE, Resident, _query, start_report, to_location_step
from views.buttons import TicketAction, TicketOp

LEADER = 7001
RESIDENT = 7002
GRID = "EQ-JZJ-01-G1"


def is_card(message: dict) -> bool:
    return message["method"] == "sendMessage" and "📋" in message.get("text", "")


async def leader_says(fake, text: str | None = None, **extra: object) -> str:
    fake.push_message(LEADER, text, language_code="en", **extra)
    reply = await fake.wait_for_message(LEADER, lambda m: not is_card(m), timeout=10)
    return reply["text"]


async def resolve_from_card(fake, card: dict, ticket_id: int, note: str) -> None:
    """The leader presses Resolve on a card, writes the note and skips the photo."""
    resolve = TicketAction(op=TicketOp.RESOLVE, id=ticket_id).pack()
    assert resolve in [data for _, data in buttons(card["reply_markup"])]
    await press(fake, LEADER, resolve, card["message_id"])
    await fake.wait_for_message(
        LEADER, lambda m: m.get("text", "").startswith("Resolving ticket"), timeout=10
    )
    fake.push_message(LEADER, note, language_code="en")
    ask_photo = await fake.wait_for_message(
        LEADER, lambda m: m.get("text", "").startswith("Now send a photo"), timeout=10
    )
    skip = [data for text, data in buttons(ask_photo["reply_markup"]) if text.startswith("Skip")]
    await press(fake, LEADER, skip[0], ask_photo["message_id"])
    done = fake.calls_to("editMessageText", LEADER)[-1].params["text"]
    assert done.endswith("the resident has been asked whether it is solved.")


async def test_the_whole_story_in_chat(db_url: str) -> None:
    from tests.botkit import running_bot

    async with running_bot(db_url) as running:
        fake = running.fake
        code = await _invite(db_url, Role.GRID_LEADER, GRID)
        reply = await leader_says(fake, f"/start {code}")
        assert reply.startswith("Invitation accepted: you are now grid leader of Qingtong Grid 1")

        # The resident files a report with a photo and a location.
        resident = Resident(fake, RESIDENT)
        await start_report(resident)
        await to_location_step(resident, "The street light at gate 2 is out", photos=1)
        resident.say(None, location=INSIDE)
        await resident.reply()  # the place found
        summary = await resident.reply()
        resident.press(summary, "✅ Confirm")
        filed = await resident.text()
        number = filed.split("ticket ", 1)[1].split(".", 1)[0]

        # The leader gets the photo, the place and the card.
        photo = await fake.wait_for_message(LEADER, timeout=10)
        assert (photo["method"], photo["photo"][0]["file_id"]) == ("sendPhoto", "big1")
        venue = await fake.wait_for_message(LEADER, timeout=10)
        assert venue["method"] == "sendVenue" and venue["location"] == INSIDE
        card = await fake.wait_for_message(LEADER, is_card, timeout=10)
        assert f"📋 Ticket {number}" in card["text"]
        ticket_id = int(
            [d for t, d in buttons(card["reply_markup"]) if t.endswith("Accept")][0].split(":")[-1]
        )

        # Accept, then resolve.
        accepted = await press(
            fake, LEADER, TicketAction(op=TicketOp.ACCEPT, id=ticket_id).pack(), card["message_id"]
        )
        assert accepted.params["text"].startswith(f"Ticket {number} accepted")
        assert "accepted by Qingtong Grid 1" in await resident.text()
        await resolve_from_card(
            fake,
            card | fake.calls_to("editMessageText", LEADER)[-1].params,
            ticket_id,
            "Replaced the bulb.",
        )

        # The resident: not solved, with the reason.
        followup = await resident.reply()
        assert followup["text"].endswith("Is the problem solved?")
        resident.press(followup, "❌ No")
        assert (await resident.text()).startswith("Sorry it is not solved. What is still wrong")
        resident.say("It still flickers and goes out at night.")
        assert (await resident.text()).startswith(f"Ticket {number} is reopened")

        # Back with the leader as a card that says why; resolved again.
        reopened = await fake.wait_for_message(LEADER, is_card, timeout=10)
        assert reopened["text"].startswith("🔁 Reopened")
        assert "It still flickers and goes out at night." in reopened["text"]
        await resolve_from_card(fake, reopened, ticket_id, "Replaced the whole lamp head.")

        # Solved this time, and rated 4.
        followup = await resident.reply()
        assert "Replaced the whole lamp head." in followup["text"]
        resident.press(followup, "✅ Yes")
        rate = await resident.reply()
        assert rate["text"].startswith(f"Thank you for confirming: ticket {number} is closed.")
        four = [b for row in rate["reply_markup"]["inline_keyboard"] for b in row][3]
        resident.press_data(four["callback_data"], rate["message_id"])
        assert (await resident.text()).startswith(f"Thank you! You rated ticket {number}")
        # The leader hears how it ended.
        closed = await fake.wait_for_message(
            LEADER, lambda m: "confirmed" in m.get("text", ""), timeout=10
        )
        assert number in closed["text"]
        rated = await fake.wait_for_message(LEADER, lambda m: "rated" in m.get("text", ""), 10)
        assert "4" in rated["text"]

    async def final_state(session):
        ticket = (await session.exec(select(Ticket).where(Ticket.number == number))).one()
        return ticket, await events_of(session, ticket.id)

    ticket, events = await _query(db_url, final_state)
    assert (ticket.status, ticket.rating, ticket.reopen_count) == (TicketStatus.CLOSED, 4, 1)
    assert ticket.resolution_note == "Replaced the whole lamp head."
    assert ticket.photos == ["big1"]
    assert [(e.kind, e.from_status, e.to_status) for e in events] == [
        ("file", None, "new"),
        ("accept", "new", "accepted"),
        ("resolve", "accepted", "resolved"),
        ("reopen", "resolved", "reopened"),
        ("resolve", "reopened", "resolved"),
        ("confirm", "resolved", "closed"),
        ("rate", "closed", "closed"),
    ]
    assert events[3].note == "It still flickers and goes out at night."
    actors = {e.kind: e.actor_id for e in events}
    assert actors["accept"] == actors["resolve"] != actors["file"] == actors["confirm"]
    assert all(e.at is not None for e in events)
