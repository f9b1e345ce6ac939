"""Party members reporting for duty (党员报到): the /duty dialog, the secretary's decision, /me.

The /duty dialog: full name -> Party branch or work unit -> where they live (a shared
location, which gives the community and grid; or the community chosen by hand: streets then
communities, or part of its name typed) -> the kinds of service offered (toggle buttons) ->
skills (or Skip) -> phone (their own Telegram contact, or Skip) -> summary with Confirm /
Cancel. The FSM data holds plain JSON only, so a dialog survives a restart half-way. The
community secretary approves or rejects (with a reason) from the registration message the
outbox sends them; the domain checks who may decide and whether it is still pending.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardMarkup,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.attendance import service_between
from domain.calls import call_data, calls_ahead
from domain.clock import Clock
from domain.geo import valid_point
from domain.members import (
    BRANCH_LIMIT,
    NAME_LIMIT,
    SERVICE_KINDS,
    check_decide,
    communities_of_street,
    decide_member,
    member_of,
    register_member,
    registration_data,
    streets_with_communities,
)
from domain.places import get_community, search_communities
from domain.posts import posts_held
from domain.reference import Reference
from domain.text import clean_text
from handlers.filters import Has, Label
from storage.enums import MemberStatus, UnitKind
from storage.models import Person
from views.buttons import Button, DutyPlace, DutyPlaceOp, DutyService, MemberDecision
from views.calls import ahead_keyboard, call_when
from views.common import amount, hours, scope_name
from views.i18n import Translate
from views.member import registration_text

logger = logging.getLogger(__name__)


SKILLS_LIMIT = 10  # skills kept from the comma-separated list
SKILL_LIMIT = 50  # characters per skill
STREET_PAGE = 8
COMMUNITY_MATCHES = 8


class Register(StatesGroup):
    """The /duty dialog's steps (stored by name: renaming one strands open dialogs)."""

    name = State()
    branch = State()
    location = State()
    community = State()  # choosing the community by hand (inline buttons, or typing)
    services = State()
    skills = State()
    phone = State()
    summary = State()


class RejectReason(StatesGroup):
    """The secretary pressed Reject: waiting for the reason (data: member_id, chat, message)."""

    reason = State()


class RegisterStep(Button, prefix="mr"):
    """Confirm ("ok") or Cancel ("x") on the /duty summary."""

    step: str


EXPECTED = {
    Register.name.state: "member.expect.name",
    Register.branch.state: "member.expect.branch",
    Register.location.state: "member.expect.location",
    Register.community.state: "member.expect.community",
    Register.services.state: "member.expect.services",
    Register.skills.state: "member.expect.skills",
    Register.phone.state: "member.expect.phone",
    Register.summary.state: "member.expect.summary",
    RejectReason.reason.state: "member.expect.reason",
}


# -- /duty ---------------------------------------------------------------------------------


def _keyboard(*buttons: KeyboardButton) -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[[b] for b in buttons], resize_keyboard=True, one_time_keyboard=True
    )


def _state_text(member: Any, t: Translate) -> str:
    if member.status == MemberStatus.REJECTED:
        return t("member.state.rejected", reason=member.reject_reason or "")
    return t(f"member.state.{member.status.value}", name=member.full_name)


async def duty_command(
    message: Message, session: AsyncSession, person: Person, state: FSMContext, t: Translate
) -> None:
    """/duty: the state of the person's registration, or the registration dialog."""
    member = await member_of(session, person)
    if member is not None:
        await message.answer(_state_text(member, t))
        if member.status != MemberStatus.REJECTED:
            return
    await state.clear()
    await state.set_state(Register.name)
    await message.answer(t("member.ask_name", limit=NAME_LIMIT), reply_markup=ReplyKeyboardRemove())


def _text_problem(text: str, limit: int, key: str, t: Translate) -> str | None:
    """What is wrong with a cleaned, trimmed answer (a command, nothing, too long), if anything."""
    if text.startswith("/") or not text or len(text) > limit:
        return t(key, limit=limit)
    return None


async def name_given(message: Message, state: FSMContext, t: Translate) -> None:
    name = clean_text(message.text or "").strip()
    problem = _text_problem(name, NAME_LIMIT, "member.expect.name", t)
    if problem:
        await message.answer(problem)
        return
    await state.update_data(full_name=name)
    await state.set_state(Register.branch)
    await message.answer(t("member.ask_branch", limit=BRANCH_LIMIT))


async def branch_given(message: Message, state: FSMContext, t: Translate) -> None:
    branch = clean_text(message.text or "").strip()
    problem = _text_problem(branch, BRANCH_LIMIT, "member.expect.branch", t)
    if problem:
        await message.answer(problem)
        return
    await state.update_data(branch=branch)
    await _ask_location(message, state, t)


def _location_keyboard(t: Translate) -> ReplyKeyboardMarkup:
    return _keyboard(
        KeyboardButton(text=t("member.btn.share_location"), request_location=True),
        KeyboardButton(text=t("member.btn.by_hand")),
    )


async def _ask_location(message: Message, state: FSMContext, t: Translate) -> None:
    await state.set_state(Register.location)
    await message.answer(t("member.ask_location"), reply_markup=_location_keyboard(t))


async def location_given(
    message: Message,
    session: AsyncSession,
    reference: Reference,
    person: Person,
    state: FSMContext,
    t: Translate,
) -> None:
    assert message.location is not None
    lat, lon = message.location.latitude, message.location.longitude
    if not valid_point(lat, lon):
        await message.answer(t("place.invalid"), reply_markup=_location_keyboard(t))
        return
    org = await reference.get(session)
    place = org.place_of(lat, lon)
    community = next((u for u in place or [] if u.kind == UnitKind.COMMUNITY), None)
    if community is None:
        await state.set_state(Register.location)
        await message.answer(t("member.outside"), reply_markup=_location_keyboard(t))
        return
    grid = next((u for u in place or [] if u.kind == UnitKind.GRID), None)
    await state.update_data(
        community_id=community.id,
        community_zh=community.name_zh,
        community_en=community.name_en,
        grid_id=grid.id if grid else None,
        grid_zh=grid.name_zh if grid else "",
        grid_en=grid.name_en if grid else "",
    )
    await message.answer(t("member.place_found"), reply_markup=ReplyKeyboardRemove())
    await _ask_services(message, state, t)


# -- the community by hand: streets, then communities; or part of its name ----------------------


def _streets_view(
    streets: list, offset: int, language: str, t: Translate
) -> tuple[str, InlineKeyboardMarkup]:
    builder = InlineKeyboardBuilder()
    page = streets[offset : offset + STREET_PAGE]
    for street in page:
        builder.button(
            text=scope_name(language, street.name_zh, street.name_en),
            callback_data=DutyPlace(op=DutyPlaceOp.STREET, id=street.id),
        )
    widths = [1] * len(page)
    pager = 0
    if offset > 0:
        pager += 1
        builder.button(
            text=t("report.btn.prev"),
            callback_data=DutyPlace(op=DutyPlaceOp.STREETS, id=max(0, offset - STREET_PAGE)),
        )
    if offset + STREET_PAGE < len(streets):
        pager += 1
        builder.button(
            text=t("report.btn.next"),
            callback_data=DutyPlace(op=DutyPlaceOp.STREETS, id=offset + STREET_PAGE),
        )
    builder.adjust(*widths, *([pager] if pager else []))
    return t("member.ask_street"), builder.as_markup()


def _communities_markup(
    communities: list, language: str, t: Translate, *, with_street: bool
) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for choice in communities:
        unit = choice.community if with_street else choice
        name = scope_name(language, unit.name_zh, unit.name_en)
        if with_street and choice.street is not None:
            name += " · " + scope_name(language, choice.street.name_zh, choice.street.name_en)
        builder.button(text=name, callback_data=DutyPlace(op=DutyPlaceOp.COMMUNITY, id=unit.id))
    builder.button(
        text=t("member.btn.streets"), callback_data=DutyPlace(op=DutyPlaceOp.STREETS, id=0)
    )
    builder.adjust(1)
    return builder.as_markup()


async def _edit_or_send(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup) -> None:
    if not isinstance(query.message, Message):
        return
    with suppress(TelegramBadRequest):
        await query.message.edit_text(text, reply_markup=markup)
        return
    await query.message.answer(text, reply_markup=markup)


async def by_hand(
    message: Message, session: AsyncSession, language: str, state: FSMContext, t: Translate
) -> None:
    """ "Choose the community": the reply keyboard goes; the streets, or type a name."""
    streets = await streets_with_communities(session)
    await state.set_state(Register.community)
    await message.answer(t("member.by_hand"), reply_markup=ReplyKeyboardRemove())
    text, markup = _streets_view(streets, 0, language, t)
    await message.answer(text, reply_markup=markup)


async def community_typed(
    message: Message,
    session: AsyncSession,
    language: str,
    state: FSMContext,
    t: Translate,
    raw_state: str | None,
) -> None:
    """Part of a community's name: one match is taken, several are offered as buttons."""
    query = clean_text(message.text or "").strip()
    choices, total = await search_communities(session, query=query, limit=COMMUNITY_MATCHES)
    if raw_state == Register.location.state:
        await message.answer(t("member.by_hand"), reply_markup=ReplyKeyboardRemove())
    await state.set_state(Register.community)
    if total == 1:
        await _community_chosen(message, session, language, state, t, choices[0].community.id)
        return
    if total == 0:
        text = t("member.no_community", query=query)
    else:
        text = t("member.communities_matching", query=query, shown=len(choices), total=total)
    await message.answer(
        text, reply_markup=_communities_markup(choices, language, t, with_street=True)
    )


async def streets_page(
    query: CallbackQuery,
    callback_data: DutyPlace,
    session: AsyncSession,
    language: str,
    state: FSMContext,
    t: Translate,
) -> None:
    streets = await streets_with_communities(session)
    await state.set_state(Register.community)
    offset = max(0, min(callback_data.id, max(0, len(streets) - 1)))
    text, markup = _streets_view(streets, offset, language, t)
    await query.answer()
    await _edit_or_send(query, text, markup)


async def street_chosen(
    query: CallbackQuery,
    callback_data: DutyPlace,
    session: AsyncSession,
    language: str,
    t: Translate,
) -> None:
    street, communities = await communities_of_street(session, callback_data.id)
    text = t("member.ask_community", street=scope_name(language, street.name_zh, street.name_en))
    markup = _communities_markup(communities, language, t, with_street=False)
    await query.answer()
    await _edit_or_send(query, text, markup)


async def community_pressed(
    query: CallbackQuery,
    callback_data: DutyPlace,
    session: AsyncSession,
    language: str,
    state: FSMContext,
    t: Translate,
) -> None:
    await query.answer()
    if isinstance(query.message, Message):
        with suppress(TelegramBadRequest):
            await query.message.edit_reply_markup(reply_markup=None)
        await _community_chosen(query.message, session, language, state, t, callback_data.id)


async def _community_chosen(
    out: Message,
    session: AsyncSession,
    language: str,
    state: FSMContext,
    t: Translate,
    community_id: int,
) -> None:
    """A community chosen by hand: no grid (the secretary knows their grids)."""
    community = await get_community(session, community_id)  # NotFound for anything else
    name = scope_name(language, community.name_zh, community.name_en)
    await out.answer(t("member.community_chosen", community=name))
    await state.update_data(
        community_id=community.id,
        community_zh=community.name_zh,
        community_en=community.name_en,
        grid_id=None,
        grid_zh="",
        grid_en="",
    )
    await _ask_services(out, state, t)


# -- the kinds of service ------------------------------------------------------------------


def _services_markup(chosen: list[str], t: Translate) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for index, code in enumerate(SERVICE_KINDS):
        name = t(f"member.service.{code}")
        builder.button(
            text=f"✅ {name}" if code in chosen else name, callback_data=DutyService(i=index)
        )
    builder.button(text=t("member.btn.services_done"), callback_data=DutyService(i=-1))
    builder.adjust(2, 2, 2, 2, 1)
    return builder.as_markup()


async def _ask_services(out: Message, state: FSMContext, t: Translate) -> None:
    data = await state.get_data()
    await state.set_state(Register.services)
    services = [c for c in data.get("services") or [] if c in SERVICE_KINDS]
    await out.answer(t("member.ask_services"), reply_markup=_services_markup(services, t))


async def service_toggled(
    query: CallbackQuery, callback_data: DutyService, state: FSMContext, t: Translate
) -> None:
    if not 0 <= callback_data.i < len(SERVICE_KINDS):
        await query.answer()
        return
    code = SERVICE_KINDS[callback_data.i]
    services = list((await state.get_data()).get("services") or [])
    services = [c for c in services if c != code] if code in services else [*services, code]
    # In the order of the list, whatever the order of the presses.
    services = [c for c in SERVICE_KINDS if c in services]
    await state.update_data(services=services)
    await query.answer()
    if isinstance(query.message, Message):
        with suppress(TelegramBadRequest):
            await query.message.edit_reply_markup(reply_markup=_services_markup(services, t))


async def services_done(query: CallbackQuery, state: FSMContext, t: Translate) -> None:
    await query.answer()
    if not isinstance(query.message, Message):
        return
    with suppress(TelegramBadRequest):
        await query.message.edit_reply_markup(reply_markup=None)
    await state.set_state(Register.skills)
    markup = _keyboard(KeyboardButton(text=t("member.btn.skip")))
    await query.message.answer(t("member.ask_skills"), reply_markup=markup)


async def skills_skipped(message: Message, state: FSMContext, t: Translate) -> None:
    await state.update_data(skills=[])
    await _ask_phone(message, state, t)


async def skills_given(message: Message, state: FSMContext, t: Translate) -> None:
    raw = clean_text(message.text or "").replace("，", ",").replace("、", ",")
    skills = [s.strip()[:SKILL_LIMIT] for s in raw.split(",") if s.strip()][:SKILLS_LIMIT]
    await state.update_data(skills=skills)
    await _ask_phone(message, state, t)


async def _ask_phone(message: Message, state: FSMContext, t: Translate) -> None:
    await state.set_state(Register.phone)
    markup = _keyboard(
        KeyboardButton(text=t("member.btn.share_phone"), request_contact=True),
        KeyboardButton(text=t("member.btn.skip")),
    )
    await message.answer(t("member.ask_phone"), reply_markup=markup)


async def contact_given(
    message: Message, person: Person, state: FSMContext, language: str, t: Translate
) -> None:
    assert message.contact is not None
    if message.from_user is None or message.contact.user_id != message.from_user.id:
        await message.answer(t("member.not_own_contact"))
        return
    await state.update_data(phone=clean_text(message.contact.phone_number).strip() or None)
    await _summary(message, state, language, t)


async def phone_skipped(message: Message, state: FSMContext, language: str, t: Translate) -> None:
    await state.update_data(phone=None)
    await _summary(message, state, language, t)


async def _summary(message: Message, state: FSMContext, language: str, t: Translate) -> None:
    data = await state.get_data()
    await state.set_state(Register.summary)
    place = scope_name(language, data["community_zh"], data["community_en"])
    grid = scope_name(language, data.get("grid_zh") or "", data.get("grid_en") or "")
    if grid:
        place = f"{place} › {grid}"
    none = t("member.none")
    services = [t(f"member.service.{c}") for c in data.get("services") or [] if c in SERVICE_KINDS]
    text = t(
        "member.summary",
        full_name=data["full_name"],
        branch=data["branch"],
        place=place,
        services=", ".join(services) or none,
        skills=", ".join(data.get("skills") or []) or none,
        phone=data.get("phone") or none,
    )
    builder = InlineKeyboardBuilder()
    builder.button(text=t("member.btn.confirm"), callback_data=RegisterStep(step="ok"))
    builder.button(text=t("member.btn.cancel"), callback_data=RegisterStep(step="x"))
    await message.answer(text, reply_markup=builder.as_markup())


async def confirmed(
    query: CallbackQuery,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    state: FSMContext,
    t: Translate,
) -> None:
    data = await state.get_data()
    await state.clear()
    await register_member(
        session=session,
        clock=clock,
        person=person,
        full_name=data["full_name"],
        branch=data["branch"],
        community_id=data["community_id"],
        grid_id=data.get("grid_id"),
        skills=data.get("skills") or (),
        services=[c for c in data.get("services") or [] if c in SERVICE_KINDS],
        phone=data.get("phone"),
    )
    await query.answer()
    if isinstance(query.message, Message):
        with suppress(TelegramBadRequest):
            await query.message.edit_reply_markup(reply_markup=None)
        await query.message.answer(t("member.submitted"), reply_markup=ReplyKeyboardRemove())


async def cancel_button(query: CallbackQuery, state: FSMContext, t: Translate) -> None:
    await state.clear()
    await query.answer()
    if isinstance(query.message, Message):
        with suppress(TelegramBadRequest):
            await query.message.edit_reply_markup(reply_markup=None)
        await query.message.answer(t("member.cancelled"), reply_markup=ReplyKeyboardRemove())


async def cancel_command(message: Message, state: FSMContext, t: Translate) -> None:
    """/cancel inside the /duty dialog or the reason for a rejection: nothing is changed."""
    await state.clear()
    await message.answer(t("member.cancelled"), reply_markup=ReplyKeyboardRemove())


async def unexpected(message: Message, t: Translate, raw_state: str | None) -> None:
    """A sticker, voice note, file... where the step expects something else: say what."""
    key = EXPECTED.get(raw_state or "", "member.expect.summary")
    await message.answer(t(key, limit=NAME_LIMIT if key == "member.expect.name" else BRANCH_LIMIT))


async def step_over(query: CallbackQuery, t: Translate) -> None:
    await query.answer(t("member.step_over"), show_alert=True)


# -- the secretary's decision --------------------------------------------------------------


def _message_ref(query: CallbackQuery) -> tuple[int | None, int | None]:
    if not isinstance(query.message, Message):
        return None, None
    return query.message.chat.id, query.message.message_id


async def _show_outcome(
    bot: Bot,
    session: AsyncSession,
    chat_id: int | None,
    message_id: int | None,
    member: Any,
    language: str,
    t: Translate,
) -> None:
    """The registration message, now with its outcome and without buttons."""
    if chat_id is None or message_id is None:
        return
    data = await registration_data(session, member)
    if member.status == MemberStatus.APPROVED:
        outcome = t("member.outcome.approved")
    else:
        outcome = t("member.outcome.rejected", reason=member.reject_reason or "")
    with suppress(TelegramBadRequest):
        await bot.edit_message_text(
            text=f"{registration_text(data, language, t)}\n\n{outcome}",
            chat_id=chat_id,
            message_id=message_id,
            reply_markup=None,
        )


async def approve(
    query: CallbackQuery,
    callback_data: MemberDecision,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    language: str,
    t: Translate,
) -> None:
    member = await decide_member(
        session=session, clock=clock, actor=person, member_id=callback_data.id, approve=True
    )
    await _show_outcome(bot, session, *_message_ref(query), member, language, t)
    await query.answer(t("member.approved_done", name=member.full_name))


async def ask_reason(
    query: CallbackQuery,
    callback_data: MemberDecision,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    state: FSMContext,
    t: Translate,
) -> None:
    """Reject: checked first (who, still pending), then the reason is asked for."""
    await check_decide(session=session, clock=clock, actor=person, member_id=callback_data.id)
    chat_id, message_id = _message_ref(query)
    await state.set_state(RejectReason.reason)
    await state.set_data({"member_id": callback_data.id, "chat": chat_id, "message": message_id})
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.answer(t("member.ask_reason"))


async def reason_given(
    message: Message,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    state: FSMContext,
    language: str,
    t: Translate,
) -> None:
    data = await state.get_data()
    await state.clear()
    member = await decide_member(
        session=session,
        clock=clock,
        actor=person,
        member_id=data["member_id"],
        approve=False,
        reason=message.text or "",
    )
    await _show_outcome(bot, session, data.get("chat"), data.get("message"), member, language, t)
    await message.answer(t("member.rejected_done", name=member.full_name))


# -- /me -----------------------------------------------------------------------------------


def _bounds(now: datetime, tz: Any) -> tuple[datetime, datetime, datetime, datetime]:
    """This month's and this year's [start, end) in the city's time zone, as UTC."""
    local = now.astimezone(tz)
    month = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if month.month == 12:
        next_month = month.replace(year=month.year + 1, month=1)
    else:
        next_month = month.replace(month=month.month + 1)
    year = month.replace(month=1)
    next_year = year.replace(year=year.year + 1)
    return tuple(d.astimezone(UTC) for d in (month, next_month, year, next_year))  # type: ignore[return-value]


async def me_command(
    message: Message,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    language: str,
    t: Translate,
    settings: Any,
) -> None:
    """/me: the registration's state; for an approved member, the confirmed service, the
    posts held and the calls ahead (said "I'll come", not ended; start in the city's time)."""
    member = await member_of(session, person)
    if member is None:
        await message.answer(t("member.me_none"))
        return
    if member.status != MemberStatus.APPROVED:
        await message.answer(_state_text(member, t))
        return
    month_start, month_end, year_start, year_end = _bounds(clock.now(), settings.tz)
    month = await service_between(session, member, month_start, month_end)
    year = await service_between(session, member, year_start, year_end)
    held = await posts_held(session, member)
    ahead = await calls_ahead(session, clock, member)
    lines = [
        t(
            "member.me_approved",
            name=member.full_name,
            month_hours=hours(month.minutes),
            month_points=amount(month.points),
            year_hours=hours(year.minutes),
            year_points=amount(year.points),
        ),
        "",
    ]
    if held:
        names = "、" if language == "zh-hans" else ", "
        posts = names.join(scope_name(language, p.name_zh, p.name_en) for p in held)
        lines.append(t("member.me_posts", posts=posts))
    else:
        lines.append(t("member.me_no_posts"))
    if ahead:
        lines.append(t("member.me_calls"))
        lines += [
            t("member.me_call", title=c.title, when=call_when(call_data(c), settings.tz))
            for c in ahead
        ]
    else:
        lines.append(t("member.me_no_calls"))
    await message.answer("\n".join(lines), reply_markup=ahead_keyboard(ahead, t))


def router() -> Router:
    """A fresh router for Party members and their community secretaries."""
    r = Router(name="member")
    msg, cb = r.message, r.callback_query
    text = Has(F.text & ~F.text.startswith("/"))

    msg.register(cancel_command, Command("cancel"), StateFilter(Register, RejectReason))
    msg.register(duty_command, Command("duty"))
    msg.register(me_command, Command("me"))

    msg.register(name_given, StateFilter(Register.name), text)
    msg.register(branch_given, StateFilter(Register.branch), text)
    msg.register(
        location_given, StateFilter(Register.location, Register.community), Has(F.location)
    )
    msg.register(
        by_hand, StateFilter(Register.location, Register.community), Label("member.btn.by_hand")
    )
    msg.register(community_typed, StateFilter(Register.location, Register.community), text)
    in_place = StateFilter(Register.location, Register.community)
    cb.register(streets_page, in_place, DutyPlace.filter(F.op == DutyPlaceOp.STREETS))
    cb.register(street_chosen, in_place, DutyPlace.filter(F.op == DutyPlaceOp.STREET))
    cb.register(community_pressed, in_place, DutyPlace.filter(F.op == DutyPlaceOp.COMMUNITY))
    cb.register(services_done, StateFilter(Register.services), DutyService.filter(F.i == -1))
    cb.register(service_toggled, StateFilter(Register.services), DutyService.filter())
    msg.register(skills_skipped, StateFilter(Register.skills), Label("member.btn.skip"))
    msg.register(skills_given, StateFilter(Register.skills), text)
    msg.register(contact_given, StateFilter(Register.phone), Has(F.contact))
    msg.register(phone_skipped, StateFilter(Register.phone), Label("member.btn.skip"))
    cb.register(confirmed, StateFilter(Register.summary), RegisterStep.filter(F.step == "ok"))
    cb.register(cancel_button, StateFilter(Register), RegisterStep.filter(F.step == "x"))
    msg.register(reason_given, StateFilter(RejectReason.reason), text)

    cb.register(approve, MemberDecision.filter(F.ok))
    cb.register(ask_reason, MemberDecision.filter(~F.ok))

    # Last: whatever a step does not expect, and summary buttons of a dialog that is over.
    msg.register(unexpected, StateFilter(Register, RejectReason))
    cb.register(step_over, RegisterStep.filter())
    cb.register(step_over, DutyPlace.filter())
    cb.register(step_over, DutyService.filter())
    return r
