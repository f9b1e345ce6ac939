"""A community secretary or grid leader creating a call (社区吹哨): /call, and Turn into call
on a ticket card.

The dialog: (which community, for someone who organises in several) -> title -> description
(or Skip) -> place (a shared location or venue, or the ticket's place) -> start -> end ->
how many people -> which grids (the whole community by default; a grid leader picks among
their own) -> summary with Confirm / Cancel. Times are typed in the city's time zone. The FSM
data holds plain JSON only (ids, texts, ISO times), so a dialog survives a restart half-way.
The domain (domain.calls) decides who may call whom and checks everything again on Confirm.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from contextlib import suppress
from datetime import date, datetime, timedelta, tzinfo
from functools import partial
from typing import Any

from aiogram import F, Router
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

from domain.calls import CallScope, call_scope, call_scopes, create_call, ticket_for_call
from domain.clock import Clock
from domain.errors import DomainError
from domain.geo import valid_point
from domain.text import clean_text
from handlers.filters import Has, Label
from storage.models import Person
from views.buttons import CallCommunity, CallGrid, CallGridOp, CallStep, TicketToCall
from views.cards import local_time
from views.common import amount, refusal_text, scope_name
from views.i18n import Translate

logger = logging.getLogger(__name__)

Send = Callable[..., Awaitable[Any]]

TITLE_LIMIT = 200
DESCRIPTION_LIMIT = 1000
CAPACITY_LIMIT = 500
POINTS_LIMIT = 10  # points per confirmed hour, at most (the domain checks it again)
DEFAULT_POINTS = 1.0


class CallDialog(StatesGroup):
    """The /call dialog's steps (stored by name: renaming one strands open dialogs)."""

    community = State()
    title = State()
    description = State()
    place = State()
    starts = State()
    ends = State()
    capacity = State()
    grids = State()
    summary = State()
    points = State()  # from the summary: points per confirmed hour, then back to it


EXPECTED = {
    CallDialog.community.state: "call_create.expect.community",
    CallDialog.title.state: "call_create.expect.title",
    CallDialog.description.state: "call_create.expect.description",
    CallDialog.place.state: "call_create.expect.place",
    CallDialog.starts.state: "call_create.expect.starts",
    CallDialog.ends.state: "call_create.expect.ends",
    CallDialog.capacity.state: "call_create.expect.capacity",
    CallDialog.grids.state: "call_create.expect.grids",
    CallDialog.summary.state: "call_create.expect.summary",
    CallDialog.points.state: "call_create.expect.points",
}


# -- times typed in the city's time zone ------------------------------------------------------

_TIME = r"(?P<H>\d{1,2})[:：](?P<M>\d{2})"
_FORMS = (
    re.compile(rf"(?P<y>\d{{4}})[-/.年](?P<m>\d{{1,2}})[-/.月](?P<d>\d{{1,2}})日?(?:\s+|T){_TIME}"),
    re.compile(rf"(?P<m>\d{{1,2}})[-/月](?P<d>\d{{1,2}})日?\s+{_TIME}"),
    re.compile(rf"(?P<d>\d{{1,2}})\.(?P<m>\d{{1,2}})\.?\s+{_TIME}"),
    re.compile(_TIME),
)


def parse_local_time(text: str, *, day: date, tz: tzinfo) -> datetime | None:
    """ "2026-11-28 09:00", "11-28 09:00", "28.11 9:00" or "09:00" (on `day`), local to `tz`.

    Without a year, the date is this year's, or next year's when that is long past (typed in
    December for January). None when the text is none of these, or no real date or time.
    """
    text = " ".join(text.split())
    for form in _FORMS:
        match = form.fullmatch(text)
        if match is None:
            continue
        parts = match.groupdict()
        try:
            moment = datetime(
                int(parts["y"]) if parts.get("y") else day.year,
                int(parts["m"]) if parts.get("m") else day.month,
                int(parts["d"]) if parts.get("d") else day.day,
                int(parts["H"]),
                int(parts["M"]),
                tzinfo=tz,
            )
        except ValueError:
            return None
        if parts.get("m") and not parts.get("y") and (day - moment.date()).days > 180:
            with suppress(ValueError):
                moment = moment.replace(year=moment.year + 1)
        return moment
    return None


def _example(now: datetime, tz: tzinfo) -> str:
    """Tomorrow 09:00 in the city, as the format to type."""
    tomorrow = (now.astimezone(tz) + timedelta(days=1)).date()
    return f"{tomorrow:%Y-%m-%d} 09:00"


# -- keyboards ----------------------------------------------------------------------------------


def _keyboard(t: Translate, *buttons: KeyboardButton) -> ReplyKeyboardMarkup:
    """The step's reply-keyboard buttons, and Cancel last."""
    rows = [[b] for b in buttons] + [[KeyboardButton(text=t("call_create.btn.cancel"))]]
    return ReplyKeyboardMarkup(keyboard=rows, resize_keyboard=True)


def _cancel_button(builder: InlineKeyboardBuilder, t: Translate) -> None:
    builder.button(text=t("call_create.btn.cancel"), callback_data=CallStep(step="x"))


def grid_keyboard(
    scope: CallScope, chosen: list[int], t: Translate, language: str
) -> InlineKeyboardMarkup:
    """Whole community (a secretary only) and the grids to toggle, then Next / Cancel."""
    builder = InlineKeyboardBuilder()
    if scope.whole:
        mark = "✅" if not chosen else "▫️"
        builder.button(
            text=f"{mark} {t('call_create.btn.whole')}",
            callback_data=CallGrid(op=CallGridOp.WHOLE),
        )
    for grid in scope.grids:
        mark = "✅" if grid.id in chosen else "▫️"
        builder.button(
            text=f"{mark} {scope_name(language, grid.name_zh, grid.name_en)}",
            callback_data=CallGrid(op=CallGridOp.TOGGLE, id=grid.id),
        )
    builder.button(text=t("call_create.btn.next"), callback_data=CallGrid(op=CallGridOp.DONE))
    _cancel_button(builder, t)
    builder.adjust(1)
    return builder.as_markup()


# -- starting the dialog ------------------------------------------------------------------------


async def call_command(
    message: Message,
    session: AsyncSession,
    person: Person,
    state: FSMContext,
    language: str,
    t: Translate,
) -> None:
    """/call: which community (if several), then the dialog; refused for anyone else."""
    scopes = await call_scopes(session, person)
    if not scopes:
        await message.answer(t("call_create.not_organiser"), reply_markup=ReplyKeyboardRemove())
        return
    await state.clear()
    if len(scopes) == 1:
        await _begin(message.answer, state, scopes[0], t, language)
        return
    await state.set_state(CallDialog.community)
    builder = InlineKeyboardBuilder()
    for scope in scopes:
        community = scope.community
        builder.button(
            text=scope_name(language, community.name_zh, community.name_en),
            callback_data=CallCommunity(id=community.id),
        )
    _cancel_button(builder, t)
    builder.adjust(1)
    await message.answer(t("call_create.ask_community"), reply_markup=builder.as_markup())


async def community_chosen(
    query: CallbackQuery,
    callback_data: CallCommunity,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    state: FSMContext,
    language: str,
    t: Translate,
) -> None:
    """A community button: checked again (a forged one is refused and audited)."""
    scope = await call_scope(
        session=session, clock=clock, person=person, community_id=callback_data.id
    )
    await query.answer()
    await _drop_buttons(query)
    await _begin(_sender(query), state, scope, t, language)


async def ticket_to_call(
    query: CallbackQuery,
    callback_data: TicketToCall,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    state: FSMContext,
    language: str,
    t: Translate,
) -> None:
    """Turn into call on a ticket card: the dialog, linked to the ticket, with proposals."""
    found = await ticket_for_call(
        session=session, clock=clock, person=person, ticket_id=callback_data.id
    )
    ticket, category = found.ticket, found.category
    await query.answer()
    await state.clear()
    title = t(
        "call_create.ticket_title",
        category=scope_name(language, category.name_zh, category.name_en),
        number=ticket.number,
    )[:TITLE_LIMIT]
    await _begin(
        _sender(query),
        state,
        found.scope,
        t,
        language,
        ticket={
            "ticket_id": ticket.id,
            "ticket_number": ticket.number,
            "ticket_lat": ticket.latitude,
            "ticket_lon": ticket.longitude,
            "proposed_title": title,
            "grids": [ticket.grid_id],
        },
    )


async def _dialog_scope(
    session: AsyncSession, clock: Clock, person: Person, state: FSMContext
) -> tuple[dict[str, Any], CallScope]:
    """The dialog's data and where the person may call, checked again (roles may change)."""
    data = await state.get_data()
    scope = await call_scope(
        session=session, clock=clock, person=person, community_id=data["community_id"]
    )
    return data, scope


def _sender(query: CallbackQuery) -> Send:
    """Where the dialog's next message goes: the chat the button was pressed in."""
    if isinstance(query.message, Message):
        return query.message.answer
    assert query.bot is not None
    return partial(query.bot.send_message, query.from_user.id)


async def _begin(
    send: Send,
    state: FSMContext,
    scope: CallScope,
    t: Translate,
    language: str,
    *,
    ticket: dict[str, Any] | None = None,
) -> None:
    allowed = [g.id for g in scope.grids]
    # A secretary calls the whole community unless they pick grids; a leader of one grid
    # calls that grid; a leader of several picks at least one.
    chosen: list[int] = [] if scope.whole or len(allowed) != 1 else allowed
    data: dict[str, Any] = {
        "community_id": scope.community.id,
        "community_zh": scope.community.name_zh,
        "community_en": scope.community.name_en,
        "whole": scope.whole,
        "grids": chosen,
    }
    if ticket is not None:
        data.update(ticket)
        data["grids"] = [g for g in ticket["grids"] if g in allowed]
    await state.set_data(data)
    await state.set_state(CallDialog.title)
    community = scope_name(language, scope.community.name_zh, scope.community.name_en)
    buttons = []
    if ticket is not None:
        buttons.append(KeyboardButton(text=ticket["proposed_title"]))
        text = t(
            "call_create.ask_title_ticket",
            community=community,
            number=ticket["ticket_number"],
            limit=TITLE_LIMIT,
        )
    else:
        text = t("call_create.ask_title", community=community, limit=TITLE_LIMIT)
    await send(text, reply_markup=_keyboard(t, *buttons))


# -- the steps ----------------------------------------------------------------------------------


def _text_of(message: Message, limit: int) -> str | None:
    """The message's text, cleaned and stripped, if it is a plain answer within `limit`
    characters."""
    text = clean_text(message.text or "").strip()
    if not text or text.startswith("/") or len(text) > limit:
        return None
    return text


async def title_given(message: Message, state: FSMContext, t: Translate) -> None:
    title = _text_of(message, TITLE_LIMIT)
    if title is None:
        await message.answer(t("call_create.expect.title", limit=TITLE_LIMIT))
        return
    await state.update_data(title=title)
    await state.set_state(CallDialog.description)
    markup = _keyboard(t, KeyboardButton(text=t("call_create.btn.skip")))
    await message.answer(
        t("call_create.ask_description", limit=DESCRIPTION_LIMIT), reply_markup=markup
    )


async def description_skipped(message: Message, state: FSMContext, t: Translate) -> None:
    await state.update_data(description="")
    await _ask_place(message, state, t)


async def description_given(message: Message, state: FSMContext, t: Translate) -> None:
    description = _text_of(message, DESCRIPTION_LIMIT)
    if description is None:
        await message.answer(t("call_create.expect.description", limit=DESCRIPTION_LIMIT))
        return
    await state.update_data(description=description)
    await _ask_place(message, state, t)


def _place_keyboard(data: dict[str, Any], t: Translate) -> ReplyKeyboardMarkup:
    buttons = [KeyboardButton(text=t("call_create.btn.share_location"), request_location=True)]
    if data.get("ticket_lat") is not None:
        buttons.append(KeyboardButton(text=t("call_create.btn.ticket_place")))
    return _keyboard(t, *buttons)


async def _ask_place(message: Message, state: FSMContext, t: Translate) -> None:
    await state.set_state(CallDialog.place)
    data = await state.get_data()
    await message.answer(t("call_create.ask_place"), reply_markup=_place_keyboard(data, t))


async def location_given(
    message: Message, clock: Clock, state: FSMContext, t: Translate, settings: Any
) -> None:
    """A shared location, or a venue (which carries one)."""
    assert message.location is not None
    lat, lon = message.location.latitude, message.location.longitude
    if not valid_point(lat, lon):
        data = await state.get_data()
        await message.answer(t("place.invalid"), reply_markup=_place_keyboard(data, t))
        return
    await state.update_data(latitude=lat, longitude=lon, place="shared")
    await _ask_start(message, clock, state, t, settings.tz)


async def ticket_place(
    message: Message, clock: Clock, state: FSMContext, t: Translate, settings: Any
) -> None:
    data = await state.get_data()
    if data.get("ticket_lat") is None:
        await unexpected(message, t, state, await state.get_state())
        return
    await state.update_data(
        latitude=data["ticket_lat"], longitude=data["ticket_lon"], place="ticket"
    )
    await _ask_start(message, clock, state, t, settings.tz)


async def _ask_start(
    message: Message, clock: Clock, state: FSMContext, t: Translate, tz: tzinfo
) -> None:
    await state.set_state(CallDialog.starts)
    await message.answer(
        t("call_create.ask_starts", example=_example(clock.now(), tz)), reply_markup=_keyboard(t)
    )


async def starts_given(
    message: Message, clock: Clock, state: FSMContext, t: Translate, settings: Any
) -> None:
    tz, now = settings.tz, clock.now()
    starts = parse_local_time(message.text or "", day=now.astimezone(tz).date(), tz=tz)
    if starts is None:
        await message.answer(t("call_create.bad_time", example=_example(now, tz)))
        return
    if starts <= now:
        await message.answer(
            t("call_create.start_past", now=local_time(now, tz), example=_example(now, tz))
        )
        return
    await state.update_data(starts=starts.isoformat())
    await state.set_state(CallDialog.ends)
    await message.answer(
        t("call_create.ask_ends", starts=local_time(starts, tz)), reply_markup=_keyboard(t)
    )


async def ends_given(message: Message, state: FSMContext, t: Translate, settings: Any) -> None:
    tz = settings.tz
    starts = datetime.fromisoformat((await state.get_data())["starts"])
    ends = parse_local_time(message.text or "", day=starts.astimezone(tz).date(), tz=tz)
    if ends is None:
        await message.answer(t("call_create.bad_end_time", starts=local_time(starts, tz)))
        return
    if ends <= starts:
        await message.answer(
            t(
                "call_create.end_before_start",
                starts=local_time(starts, tz),
                ends=local_time(ends, tz),
            )
        )
        return
    await state.update_data(ends=ends.isoformat())
    await state.set_state(CallDialog.capacity)
    await message.answer(
        t("call_create.ask_capacity", limit=CAPACITY_LIMIT), reply_markup=_keyboard(t)
    )


async def capacity_given(
    message: Message,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    state: FSMContext,
    language: str,
    t: Translate,
) -> None:
    text = (message.text or "").strip()
    if not text.isdecimal() or not 1 <= int(text) <= CAPACITY_LIMIT:
        await message.answer(t("call_create.bad_capacity", limit=CAPACITY_LIMIT))
        return
    await state.update_data(capacity=int(text))
    data, scope = await _dialog_scope(session, clock, person, state)
    await state.set_state(CallDialog.grids)
    key = "call_create.ask_grids" if scope.whole else "call_create.ask_grids_leader"
    await message.answer(t(key), reply_markup=grid_keyboard(scope, data["grids"], t, language))


async def grid_pressed(
    query: CallbackQuery,
    callback_data: CallGrid,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    state: FSMContext,
    language: str,
    t: Translate,
    settings: Any,
) -> None:
    """Toggle a grid, choose the whole community, or go on to the summary."""
    data, scope = await _dialog_scope(session, clock, person, state)
    chosen: list[int] = list(data.get("grids") or [])
    allowed = [g.id for g in scope.grids]
    if callback_data.op == CallGridOp.DONE:
        if not scope.whole and not chosen:
            await query.answer(t("call_create.pick_a_grid"), show_alert=True)
            return
        await query.answer()
        await _drop_buttons(query)
        await _summary(_sender(query), state, scope, t, language, settings.tz)
        return
    if callback_data.op == CallGridOp.WHOLE:
        if not scope.whole:
            await query.answer(t("call_create.whole_not_yours"), show_alert=True)
            return
        chosen = []
    elif callback_data.id not in allowed:
        await query.answer(t("call_create.grid_not_yours"), show_alert=True)
        return
    elif callback_data.id in chosen:
        chosen.remove(callback_data.id)
    else:
        chosen = [g for g in allowed if g in {*chosen, callback_data.id}]
    await state.update_data(grids=chosen)
    if isinstance(query.message, Message):
        with suppress(TelegramBadRequest):
            await query.message.edit_reply_markup(
                reply_markup=grid_keyboard(scope, chosen, t, language)
            )
    await query.answer()


async def _summary(
    send: Send,
    state: FSMContext,
    scope: CallScope,
    t: Translate,
    language: str,
    tz: tzinfo,
) -> None:
    data = await state.get_data()
    await state.set_state(CallDialog.summary)
    chosen = set(data.get("grids") or [])
    if chosen:
        grids = ", ".join(
            scope_name(language, g.name_zh, g.name_en) for g in scope.grids if g.id in chosen
        )
    else:
        grids = t("call_create.btn.whole")
    place_key = (
        "call_create.place_ticket" if data.get("place") == "ticket" else "call_create.place_shared"
    )
    lines = [
        t(
            "call_create.summary",
            community=scope_name(language, data["community_zh"], data["community_en"]),
            title=data["title"],
            description=data.get("description") or t("call_create.none"),
            place=t(
                place_key, latitude=f"{data['latitude']:.5f}", longitude=f"{data['longitude']:.5f}"
            ),
            starts=local_time(data["starts"], tz),
            ends=local_time(data["ends"], tz),
            capacity=data["capacity"],
            grids=grids,
        )
    ]
    if data.get("ticket_number"):
        lines.append(t("call_create.summary_ticket", number=data["ticket_number"]))
    lines.append(t("call_create.summary_points", points=amount(_points(data))))
    builder = InlineKeyboardBuilder()
    builder.button(text=t("call_create.btn.confirm"), callback_data=CallStep(step="ok"))
    builder.button(text=t("call_create.btn.points"), callback_data=CallStep(step="pts"))
    _cancel_button(builder, t)
    builder.adjust(1)
    await send("\n".join(lines), reply_markup=builder.as_markup())


def _points(data: dict[str, Any]) -> float:
    return float(data.get("points", DEFAULT_POINTS))


async def ask_points(query: CallbackQuery, state: FSMContext, t: Translate) -> None:
    """The summary's "Points per hour": asked for as a number, then the summary again."""
    await state.set_state(CallDialog.points)
    await query.answer()
    await _drop_buttons(query)
    await _sender(query)(t("call_create.ask_points", limit=POINTS_LIMIT), reply_markup=_keyboard(t))


def parse_points(text: str) -> float | None:
    """A number of points from 0 to POINTS_LIMIT, with at most two decimals ("1,5" too)."""
    text = text.strip().replace(",", ".")
    if not re.fullmatch(r"\d{1,2}(\.\d{1,2})?", text):
        return None
    value = float(text)
    return value if value <= POINTS_LIMIT else None


async def points_given(
    message: Message,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    state: FSMContext,
    language: str,
    t: Translate,
    settings: Any,
) -> None:
    points = parse_points(message.text or "")
    if points is None:
        await message.answer(t("call_create.bad_points", limit=POINTS_LIMIT))
        return
    await state.update_data(points=points)
    data, scope = await _dialog_scope(session, clock, person, state)
    await message.answer(
        t("call_create.points_set", points=amount(points)), reply_markup=ReplyKeyboardRemove()
    )
    await _summary(message.answer, state, scope, t, language, settings.tz)


async def confirmed(
    query: CallbackQuery,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    state: FSMContext,
    t: Translate,
    settings: Any,
) -> None:
    """Confirm: the domain posts the call (checking everything again) and says to how many."""
    data = await state.get_data()
    await state.clear()
    await _drop_buttons(query)
    send = _sender(query)
    try:
        call, sent = await create_call(
            session=session,
            clock=clock,
            actor=person,
            community_id=data["community_id"],
            title=data["title"],
            description=data.get("description") or "",
            latitude=data["latitude"],
            longitude=data["longitude"],
            starts_at=datetime.fromisoformat(data["starts"]),
            ends_at=datetime.fromisoformat(data["ends"]),
            capacity=data["capacity"],
            grid_ids=data.get("grids") or (),
            ticket_id=data.get("ticket_id"),
            points_per_hour=_points(data),
        )
    except DomainError as exc:
        await query.answer()
        reply = refusal_text(exc, t, settings.tz)
        await send(f"{reply}\n{t('call_create.start_again')}", reply_markup=ReplyKeyboardRemove())
        return
    logger.info("person %s posted call %s to %s members", person.id, call.id, sent)
    await query.answer()
    await send(
        t("call_create.posted", title=call.title, count=sent), reply_markup=ReplyKeyboardRemove()
    )


async def _drop_buttons(query: CallbackQuery) -> None:
    if isinstance(query.message, Message):
        with suppress(TelegramBadRequest):
            await query.message.edit_reply_markup(reply_markup=None)


async def cancel_button(query: CallbackQuery, state: FSMContext, t: Translate) -> None:
    await state.clear()
    await query.answer()
    await _drop_buttons(query)
    await _sender(query)(t("call_create.cancelled"), reply_markup=ReplyKeyboardRemove())


async def cancel_command(message: Message, state: FSMContext, t: Translate) -> None:
    """/cancel (or the Cancel key) anywhere in the /call dialog: nothing is posted."""
    await state.clear()
    await message.answer(t("call_create.cancelled"), reply_markup=ReplyKeyboardRemove())


async def unexpected(
    message: Message, t: Translate, state: FSMContext, raw_state: str | None
) -> None:
    """A sticker, photo, file... where the step expects something else: say what."""
    key = EXPECTED.get(raw_state or "", "call_create.expect.summary")
    limits = {
        "call_create.expect.title": TITLE_LIMIT,
        "call_create.expect.description": DESCRIPTION_LIMIT,
        "call_create.expect.capacity": CAPACITY_LIMIT,
        "call_create.expect.points": POINTS_LIMIT,
    }
    markup = None
    if raw_state == CallDialog.place.state:
        markup = _place_keyboard(await state.get_data(), t)
    await message.answer(t(key, limit=limits.get(key, 0)), reply_markup=markup)


async def step_over(query: CallbackQuery, t: Translate) -> None:
    """A dialog button from a dialog that is over (or another step): nothing is changed."""
    await query.answer(t("call_create.step_over"), show_alert=True)


def router() -> Router:
    """A fresh router for community secretaries and grid leaders calling members."""
    r = Router(name="call_create")
    msg, cb = r.message, r.callback_query
    dialog = StateFilter(CallDialog)
    text = Has(F.text & ~F.text.startswith("/"))

    msg.register(cancel_command, Command("cancel"), dialog)
    msg.register(cancel_command, dialog, Label("call_create.btn.cancel"))
    msg.register(call_command, Command("call"))

    msg.register(title_given, StateFilter(CallDialog.title), text)
    msg.register(
        description_skipped, StateFilter(CallDialog.description), Label("call_create.btn.skip")
    )
    msg.register(description_given, StateFilter(CallDialog.description), text)
    msg.register(location_given, StateFilter(CallDialog.place), Has(F.location))
    msg.register(ticket_place, StateFilter(CallDialog.place), Label("call_create.btn.ticket_place"))
    msg.register(starts_given, StateFilter(CallDialog.starts), text)
    msg.register(ends_given, StateFilter(CallDialog.ends), text)
    msg.register(capacity_given, StateFilter(CallDialog.capacity), text)
    msg.register(points_given, StateFilter(CallDialog.points), text)

    cb.register(community_chosen, StateFilter(CallDialog.community), CallCommunity.filter())
    cb.register(grid_pressed, StateFilter(CallDialog.grids), CallGrid.filter())
    cb.register(confirmed, StateFilter(CallDialog.summary), CallStep.filter(F.step == "ok"))
    cb.register(ask_points, StateFilter(CallDialog.summary), CallStep.filter(F.step == "pts"))
    cb.register(cancel_button, dialog, CallStep.filter(F.step == "x"))
    cb.register(ticket_to_call, TicketToCall.filter())

    # Last: whatever a step does not expect, and dialog buttons of a step that is over.
    msg.register(unexpected, dialog)
    cb.register(step_over, CallStep.filter())
    cb.register(step_over, CallGrid.filter())
    cb.register(step_over, CallCommunity.filter())
    return r
