"""The community's calls (社区吹哨) as a member sees them: I'll come / Can't, Withdraw,
Check in (a shared location) and Check out, and a call shown again from /me.

The call and its reminder come through the outbox (views.calls renders them); the domain
(domain.calls) decides everything: places, the check-in window and distance, the minutes
counted. Check in is checked before the location is asked for
(domain.calls.check_in_allowed, the same rules as check_in), so a refusal comes at once. The
check-in step keeps only the call id in the FSM data.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import timedelta
from typing import Any

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import (
    CallbackQuery,
    KeyboardButton,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.calls import (
    answer_call,
    call_data,
    check_in,
    check_in_allowed,
    check_out,
    coming_call,
    withdraw,
)
from domain.clock import Clock
from domain.errors import DomainError
from handlers.filters import Has
from storage.models import Person
from views.buttons import CallAction, CallOp
from views.calls import call_place, coming_keyboard, coming_text
from views.common import refusal_text
from views.i18n import Translate

# The member may move closer, or share a real location, and share again.
RETRY_KEYS = frozenset({"duty.too_far", "duty.bad_location"})


class CheckIn(StatesGroup):
    """Check in pressed: waiting for the location (data: call_id)."""

    location = State()


# -- the buttons ---------------------------------------------------------------------------


async def _drop_buttons(query: CallbackQuery) -> None:
    if isinstance(query.message, Message):
        with suppress(TelegramBadRequest):
            await query.message.edit_reply_markup(reply_markup=None)


async def come(
    query: CallbackQuery,
    callback_data: CallAction,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    t: Translate,
) -> None:
    """I'll come: a place (a full or started call is refused with the domain's text)."""
    await answer_call(session=session, clock=clock, person=person, call_id=callback_data.id)
    await query.answer(t("calls.in_short"))
    await _drop_buttons(query)
    if isinstance(query.message, Message):
        keyboard = coming_keyboard(callback_data.id, t, check_in=False, withdraw=True)
        await query.message.answer(t("calls.in"), reply_markup=keyboard)


async def show_pressed(
    query: CallbackQuery,
    callback_data: CallAction,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    t: Translate,
    settings: Any,
) -> None:
    """A call from /me: its place, what and when, with what may be pressed now (Check in
    while check-in is open, Withdraw before the start)."""
    coming = await coming_call(
        session=session,
        clock=clock,
        person=person,
        call_id=callback_data.id,
        early=timedelta(minutes=settings.check_in_early_minutes),
    )
    await query.answer()
    if not isinstance(query.message, Message):
        return
    data = call_data(coming.call)
    place = call_place(data, settings.tz)
    await query.message.answer_venue(
        latitude=place.latitude,
        longitude=place.longitude,
        title=place.title or "",
        address=place.address or "",
    )
    keyboard = coming_keyboard(
        coming.call.id, t, check_in=coming.check_in_open, withdraw=coming.may_withdraw
    )
    await query.message.answer(coming_text(data, t, settings.tz), reply_markup=keyboard)


async def cant(query: CallbackQuery, t: Translate) -> None:
    """Can't: thanks; nothing is stored."""
    await query.answer(t("calls.cant_thanks"))
    await _drop_buttons(query)


async def withdraw_pressed(
    query: CallbackQuery,
    callback_data: CallAction,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    t: Translate,
) -> None:
    await withdraw(session=session, clock=clock, person=person, call_id=callback_data.id)
    await query.answer(t("calls.withdrawn"))
    await _drop_buttons(query)


async def ask_location(
    query: CallbackQuery,
    callback_data: CallAction,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    state: FSMContext,
    t: Translate,
    settings: Any,
) -> None:
    """Check in: refused at once when it cannot work (no claim, not open yet, over, done);
    otherwise the location is asked for, and check_in decides with it."""
    await check_in_allowed(
        session=session,
        clock=clock,
        person=person,
        call_id=callback_data.id,
        early=timedelta(minutes=settings.check_in_early_minutes),
    )
    await state.set_state(CheckIn.location)
    await state.set_data({"call_id": callback_data.id})
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.answer(t("calls.ask_location"), reply_markup=_location_keyboard(t))


def _location_keyboard(t: Translate) -> ReplyKeyboardMarkup:
    button = KeyboardButton(text=t("calls.btn.share_location"), request_location=True)
    return ReplyKeyboardMarkup(keyboard=[[button]], resize_keyboard=True, one_time_keyboard=True)


async def location_given(
    message: Message,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    state: FSMContext,
    t: Translate,
    settings,
) -> None:
    assert message.location is not None
    data = await state.get_data()
    try:
        await check_in(
            session=session,
            clock=clock,
            person=person,
            call_id=int(data["call_id"]),
            latitude=message.location.latitude,
            longitude=message.location.longitude,
            radius_m=settings.check_in_radius_m,
            early=timedelta(minutes=settings.check_in_early_minutes),
        )
    except DomainError as exc:
        reply = refusal_text(exc, t, settings.tz)
        if exc.key in RETRY_KEYS:
            await message.answer(reply, reply_markup=_location_keyboard(t))
            return
        await state.clear()
        await message.answer(reply, reply_markup=ReplyKeyboardRemove())
        return
    await state.clear()
    await message.answer(t("calls.checked_in"), reply_markup=ReplyKeyboardRemove())


async def cancel_command(message: Message, state: FSMContext, t: Translate) -> None:
    await state.clear()
    await message.answer(t("calls.check_in_cancelled"), reply_markup=ReplyKeyboardRemove())


async def unexpected(message: Message, t: Translate) -> None:
    await message.answer(t("calls.expect_location"), reply_markup=_location_keyboard(t))


async def check_out_pressed(
    query: CallbackQuery,
    callback_data: CallAction,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    t: Translate,
) -> None:
    claim = await check_out(session=session, clock=clock, person=person, call_id=callback_data.id)
    text = t("calls.checked_out", minutes=claim.minutes)
    await query.answer(text)
    if isinstance(query.message, Message):
        await query.message.answer(text)


def router() -> Router:
    """A fresh router for members answering the community's calls."""
    r = Router(name="calls")
    msg, cb = r.message, r.callback_query

    msg.register(cancel_command, Command("cancel"), StateFilter(CheckIn))
    msg.register(location_given, StateFilter(CheckIn.location), Has(F.location))
    msg.register(unexpected, StateFilter(CheckIn))

    cb.register(come, CallAction.filter(F.op == CallOp.COME))
    cb.register(cant, CallAction.filter(F.op == CallOp.CANT))
    cb.register(show_pressed, CallAction.filter(F.op == CallOp.SHOW))
    cb.register(withdraw_pressed, CallAction.filter(F.op == CallOp.WITHDRAW))
    cb.register(ask_location, CallAction.filter(F.op == CallOp.CHECK_IN))
    cb.register(check_out_pressed, CallAction.filter(F.op == CallOp.CHECK_OUT))
    return r
