"""End to end: the real bot (`serve`) against the fake Bot API over loopback HTTP."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from sqlmodel import func, select

from domain.clock import SystemClock
from domain.invitations import create_invitation
from storage.db import make_engine, make_sessionmaker
from storage.enums import Role, UnitKind
from storage.models import AuditEntry, OrgUnit, Person, RoleAssignment
from tests.botkit import running_bot

GRID = "EQ-JZJ-01-G1"


async def _invite(db_url: str, role: Role, unit: str) -> str:
    engine = make_engine(db_url)
    async with make_sessionmaker(engine)() as session:
        issued = await create_invitation(
            session=session, clock=SystemClock(), role=role, unit_code=unit
        )
        await session.commit()
    await engine.dispose()
    return issued.code


async def _count(db_url: str, statement) -> int:
    engine = make_engine(db_url)
    async with make_sessionmaker(engine)() as session:
        value = (await session.exec(statement)).one()
    await engine.dispose()
    return value


async def test_start_with_an_invitation_binds_the_role(db_url: str) -> None:
    async with running_bot(db_url) as running:
        fake = running.fake
        # An empty database got the sample city on start-up.
        assert await _count(db_url, select(func.count()).where(OrgUnit.kind == UnitKind.GRID)) >= 32
        code = await _invite(db_url, Role.GRID_LEADER, GRID)

        fake.push_message(501, f"/start {code}", first_name="Wang", language_code="en")
        reply = await fake.wait_for_message(501, timeout=10)
        assert reply["text"].startswith("Invitation accepted: you are now grid leader of")

        # The same link opened by someone else is refused, in their (Chinese) language.
        fake.push_message(502, f"/start {code}", first_name="Zhao", language_code="zh-CN")
        refused = await fake.wait_for_message(502, timeout=10)
        assert refused["text"].startswith("这个邀请码已经被使用过了")

        fake.push_message(503, "/start not-a-real-code-at-all", language_code="en")
        unknown = await fake.wait_for_message(503, timeout=10)
        assert unknown["text"].startswith("This invitation code is not valid")

        # /start without a code now lists the role.
        fake.push_message(501, "/start", first_name="Wang", language_code="en")
        greeting = await fake.wait_for_message(501, timeout=10)
        assert "grid leader" in greeting["text"]

        commands = fake.calls_to("setMyCommands")
        assert {c.params.get("language_code") for c in commands} == {None, "en"}

    assert await _count(db_url, select(func.count()).select_from(RoleAssignment)) == 1
    assert (
        await _count(db_url, select(func.count()).where(AuditEntry.action == "invitation.refused"))
        == 2
    )


async def test_lang_switch_is_remembered(db_url: str) -> None:
    async with running_bot(db_url) as running:
        fake = running.fake
        fake.push_message(601, "/lang", language_code="zh-hans")
        menu = await fake.wait_for_message(601, timeout=10)
        buttons = [b for row in menu["reply_markup"]["inline_keyboard"] for b in row]
        english = next(b for b in buttons if b["text"] == "English")
        fake.push_callback(601, english["callback_data"], menu["message_id"])
        confirmed = await fake.wait_for_message(601, timeout=10)
        assert confirmed["text"] == "Language set to English."
        # A Chinese client, but the choice sticks.
        fake.push_message(601, "/help", language_code="zh-hans")
        help_text = await fake.wait_for_message(601, timeout=10)
        assert help_text["text"].startswith("Commands:")
    assert await _count(db_url, select(Person.language).where(Person.telegram_id == 601)) == "en"


async def test_nonsense_and_stale_buttons_get_help(db_url: str) -> None:
    async with running_bot(db_url) as running:
        fake = running.fake
        fake.push_message(701, "asdfgh", language_code="en")
        reply = await fake.wait_for_message(701, timeout=10)
        assert "/help" in reply["text"]
        fake.push_message(
            701,
            None,
            language_code="en",
            sticker={
                "file_id": "s1",
                "file_unique_id": "u1",
                "type": "regular",
                "width": 512,
                "height": 512,
                "is_animated": False,
                "is_video": False,
            },
        )
        sticker = await fake.wait_for_message(701, timeout=10)
        assert "/help" in sticker["text"]
        fake.push_callback(701, "tkt:accept:999", message_id=1)
        answer = await fake.wait_for_call("answerCallbackQuery", timeout=10)
        assert answer.params["text"] == "This button no longer works."


async def test_webhook_mode_checks_the_secret(db_url: str, unused_tcp_port: int) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}/telegram/hook"
    async with running_bot(
        db_url,
        webhook_url=url,
        webhook_secret="s3cret",
        webhook_listen_host="127.0.0.1",
        webhook_listen_port=unused_tcp_port,
        wait_for="setWebhook",
    ) as running:
        fake = running.fake
        hook = fake.calls_to("setWebhook")[-1]
        assert hook.params["url"] == url
        assert hook.params["secret_token"] == "s3cret"
        update = {
            "update_id": 1,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": 801, "type": "private"},
                "from": {"id": 801, "is_bot": False, "first_name": "Hook", "language_code": "en"},
                "text": "/help",
                "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
            },
        }
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=update) as response:
                assert response.status == 401
            async with http.post(
                url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}
            ) as response:
                assert response.status == 401
            async with http.post(
                url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret"}
            ) as response:
                assert response.status == 200
        reply = await fake.wait_for_message(801, timeout=10)
        assert reply["text"].startswith("Commands:")
        assert len(fake.sent(801)) == 1
        assert fake.calls_to("getUpdates") == []


@pytest.fixture
def unused_tcp_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_stop_waits_for_updates_in_flight(db_url: str) -> None:
    async with running_bot(db_url) as running:
        fake = running.fake
        # Telegram is slow to accept the reply: the update is still being handled at stop.
        fake.set_latency(1.0, methods=["sendMessage"])
        fake.push_message(901, "/help", language_code="en")
        while fake.pending_updates:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        assert fake.sent(901) == []
    # Stopping returned only after the reply went out.
    assert [m["text"][:9] for m in fake.sent(901)] == ["Commands:"]


async def test_admin_invites_in_chat_and_hears_when_it_is_used(db_url: str) -> None:
    async with running_bot(db_url) as running:
        fake = running.fake
        admin_code = await _invite(db_url, Role.ADMIN, "EQ")
        fake.push_message(1001, f"/start {admin_code}", first_name="Admin", language_code="en")
        assert "administrator of Erqi District" in (await fake.wait_for_message(1001))["text"]

        fake.push_message(1001, "/help", language_code="en")
        assert "/invite ROLE CODE" in (await fake.wait_for_message(1001))["text"]

        fake.push_message(1001, "/invite", language_code="en")
        assert (await fake.wait_for_message(1001))["text"].startswith("Usage: /invite ROLE CODE")
        fake.push_message(1001, "/invite mayor EQ-JZJ", language_code="en")
        assert 'There is no role "mayor"' in (await fake.wait_for_message(1001))["text"]

        fake.push_message(1001, f"/invite grid_leader {GRID}", language_code="en")
        reply = (await fake.wait_for_message(1001))["text"]
        assert reply.startswith("Invitation for grid leader of")
        link = next(word for word in reply.split() if word.startswith("https://t.me/"))
        assert link.startswith(f"https://t.me/{fake.username}?start=")
        code = link.split("start=", 1)[1]

        fake.push_message(1002, f"/start {code}", first_name="Leader", language_code="zh-CN")
        accepted = await fake.wait_for_message(1002)
        assert accepted["text"].startswith("邀请码有效")
        # The admin hears of it through the outbox, in English.
        notice = await fake.wait_for_message(1001, timeout=10)
        assert notice["text"].startswith("Leader accepted your invitation and is now grid leader")

        # Outside the admin's district (金水区 is JS), and for a non-admin: refused.
        fake.push_message(1001, "/invite street_officer JS-JBL", language_code="en")
        assert (await fake.wait_for_message(1001))["text"] == "You are not allowed to do that here."
        fake.push_message(1002, f"/invite grid_leader {GRID}", language_code="zh-CN")
        assert (await fake.wait_for_message(1002))["text"] == "您没有在这里执行此操作的权限。"

    assert (
        await _count(db_url, select(func.count()).where(AuditEntry.action == "access.denied")) == 2
    )


async def test_a_shared_location_names_its_grid_or_says_outside(db_url: str) -> None:
    async with running_bot(db_url) as running:
        fake = running.fake
        # Inside EQ-JZJ-01-G1 (113.63..113.635 E, 34.74..34.745 N) of the sample city.
        fake.push_message(
            1101, None, language_code="en", location={"latitude": 34.742, "longitude": 113.632}
        )
        inside = (await fake.wait_for_message(1101))["text"]
        assert inside.startswith("This place belongs to: Zhengzhou › Erqi District ›")
        assert inside.endswith("Qingtong Grid 1")
        fake.push_message(
            1101, None, language_code="en", location={"latitude": 39.9, "longitude": 116.4}
        )
        outside = (await fake.wait_for_message(1101))["text"]
        assert outside == "This place is outside the service area (it is in no grid)."
