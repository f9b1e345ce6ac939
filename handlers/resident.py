"""Residents: /report (a dialog kept in durable FSM state), /my, and answers to follow-ups.

The /report dialog: category -> description -> photos -> place (a shared location, or a
community and grid chosen by hand) -> similar open tickets nearby ("me too") -> summary with
an anonymous toggle -> Confirm / Edit / Cancel. Everything kept in the FSM data is plain JSON
(ids, strings, numbers), so a dialog survives a restart of the bot half-way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message, ReplyKeyboardRemove
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import Clock
from domain.deadlines import Timing
from domain.errors import NotFound
from domain.geo import valid_point
from domain.places import get_community, grids_of, search_communities
from domain.reference import OrgSnapshot, Reference
from domain.text import clean_text
from domain.tickets import (
    DESCRIPTION_LIMIT,
    PHOTO_LIMIT,
    Action,
    TicketContext,
    check_move,
    confirm_ticket,
    context_of,
    file_ticket,
    find_duplicates,
    join_offered_ticket,
    rate_ticket,
    reopen_ticket,
    tickets_of,
)
from handlers.filters import Has, Label
from storage.enums import OPEN_STATUSES, UnitKind
from storage.models import Person
from views import report as kb
from views.buttons import FollowUp, MeToo, Page, Rating
from views.common import scope_name
from views.i18n import Translate
from views.report import PARTS, ReportButton, Step

logger = logging.getLogger(__name__)


MY_PAGE = 5  # tickets per /my page
COMMUNITY_PAGE = 6  # communities per page when choosing by hand
GRID_PAGE = 8  # grids per page


class Report(StatesGroup):
    """The /report dialog's steps (stored by name: renaming one strands open dialogs)."""

    category = State()
    description = State()
    photos = State()
    location = State()
    community = State()
    grid = State()
    duplicates = State()
    summary = State()
    edit = State()


class FollowUpReason(StatesGroup):
    """After "No, not solved": waiting for the resident's reason (data: ticket_id, number)."""

    reason = State()


# What each step expects, said to anything else sent there (a sticker, a voice note, a file...).
EXPECTED = {
    Report.category.state: "report.expect.category",
    Report.description.state: "report.expect.description",
    Report.photos.state: "report.expect.photos",
    Report.location.state: "report.expect.location",
    Report.community.state: "report.expect.community",
    Report.grid.state: "report.expect.grid",
    Report.duplicates.state: "report.expect.duplicates",
    Report.summary.state: "report.expect.summary",
    Report.edit.state: "report.expect.edit",
    FollowUpReason.reason.state: "followup.expect_reason",
}


async def _replace(query: CallbackQuery, text: str, markup: Any, *, edit: bool = True) -> None:
    """Show the next view in the message the button was on, or as a new one if that fails."""
    if edit and isinstance(query.message, Message):
        with suppress(TelegramBadRequest):
            await query.message.edit_text(text, reply_markup=markup)
            return
    await query.message.answer(text, reply_markup=markup)


# -- the steps ----------------------------------------------------------------------------------


async def _ask_category(
    out: Any, org: OrgSnapshot, language: str, t: Translate, state: FSMContext
) -> None:
    items = org.active_categories
    if not items:
        await state.clear()
        await out.answer(t("report.no_categories"))
        return
    await state.set_state(Report.category)
    await out.answer(t("report.ask_category"), reply_markup=kb.categories(items, language, t))


async def _ask_description(out: Any, t: Translate, state: FSMContext, category: str) -> None:
    await state.set_state(Report.description)
    await out.answer(
        t("report.ask_description", category=category, limit=DESCRIPTION_LIMIT),
        reply_markup=kb.only_cancel(t),
    )


async def _ask_photos(out: Any, t: Translate, state: FSMContext) -> None:
    await state.set_state(Report.photos)
    await out.answer(t("report.ask_photos", limit=PHOTO_LIMIT), reply_markup=kb.photos(0, t))


async def _ask_location(out: Any, t: Translate, state: FSMContext) -> None:
    await state.set_state(Report.location)
    await out.answer(t("report.ask_location"), reply_markup=kb.location(t))


async def _ask_community(out: Any, t: Translate, state: FSMContext) -> None:
    await state.set_state(Report.community)
    await out.answer(t("report.ask_community"), reply_markup=kb.list_or_cancel(t))


async def _communities_view(
    session: AsyncSession, language: str, t: Translate, query: str | None, offset: int
) -> tuple[str, Any, list]:
    choices, total = await search_communities(
        session, query=query, offset=offset, limit=COMMUNITY_PAGE
    )
    if not total:
        return t("report.no_community", query=query or ""), kb.list_or_cancel(t), choices
    key = "report.communities_matching" if query else "report.communities"
    text = t(key, query=query or "", first=offset + 1, last=offset + len(choices), total=total)
    markup = kb.communities(choices, language, t, offset=offset, size=COMMUNITY_PAGE, total=total)
    return text, markup, choices


async def _grids_view(
    session: AsyncSession, language: str, t: Translate, community_id: int, offset: int
) -> tuple[str, Any, list]:
    community = await get_community(session, community_id)
    items, total = await grids_of(
        session, community_id=community_id, offset=offset, limit=GRID_PAGE
    )
    name = scope_name(language, community.name_zh, community.name_en)
    text = t("report.ask_grid", community=name)
    return text, kb.grids(items, language, t, offset=offset, size=GRID_PAGE, total=total), items


async def _show_grids(
    out: Any,
    session: AsyncSession,
    org: OrgSnapshot,
    settings: Any,
    language: str,
    t: Translate,
    state: FSMContext,
    community_id: int,
) -> None:
    """The community's grids to pick from; a community of one grid picks it straight away."""
    text, markup, items = await _grids_view(session, language, t, community_id, 0)
    if len(items) == 1:
        await _place_chosen(out, session, org, settings, language, t, state, items[0].id)
        return
    await state.update_data(community_id=community_id)
    await state.set_state(Report.grid)
    await out.answer(text, reply_markup=markup)


async def _place_chosen(
    out: Any,
    session: AsyncSession,
    org: OrgSnapshot,
    settings: Any,
    language: str,
    t: Translate,
    state: FSMContext,
    grid_id: int,
) -> None:
    """A grid picked by hand: no coordinates (so no duplicate search), then the summary."""
    org.grid_place(grid_id)  # NotFound for anything but a grid
    await state.update_data(grid_id=grid_id, lat=None, lon=None)
    await _to_summary(out, session, org, settings, language, t, state)


def _category_name(org: OrgSnapshot, language: str, category_id: int | None) -> str:
    try:
        category = org.category(category_id)
    except NotFound:
        return "?"
    return scope_name(language, category.name_zh, category.name_en)


def _summary_text(org: OrgSnapshot, language: str, t: Translate, data: dict[str, Any]) -> str:
    place = org.grid_place(data["grid_id"])
    category = _category_name(org, language, data.get("category_id"))
    where = t(
        "report.place",
        grid=scope_name(language, place.grid.name_zh, place.grid.name_en),
        community=scope_name(language, place.community.name_zh, place.community.name_en),
    )
    if data.get("lat") is not None:
        where += " " + t("report.place_located")
    photos = len(data.get("photos") or [])
    return t(
        "report.summary",
        category=category,
        description=data.get("description", ""),
        photos=photos if photos else t("report.no_photos"),
        place=where,
        anonymous=t("report.anonymous_yes" if data.get("anonymous") else "report.anonymous_no"),
    )


async def _to_summary(
    out: Any,
    session: AsyncSession,
    org: OrgSnapshot,
    settings: Any,
    language: str,
    t: Translate,
    state: FSMContext,
) -> None:
    """The summary; first, once per (category, point), similar open tickets nearby."""
    data = await state.get_data()
    data["editing"] = False
    lat, lon, category_id = data.get("lat"), data.get("lon"), data.get("category_id")
    if lat is not None and lon is not None and data.get("dup_checked") != [category_id, lat, lon]:
        data["dup_checked"] = [category_id, lat, lon]
        found = await find_duplicates(
            session,
            category_id=category_id,
            latitude=lat,
            longitude=lon,
            radius_m=settings.duplicate_radius_m,
            exclude_person_id=data.get("person_id"),
        )
        # What "me too" may join in this dialog: exactly the tickets shown now.
        data["offered"] = [ticket.id for ticket in found]
        if found:
            await state.set_data(data)
            await state.set_state(Report.duplicates)
            lines = [
                t(
                    "report.duplicate_line",
                    number=ticket.number,
                    status=t(f"status.{ticket.status.value}"),
                    affected=ticket.affected,
                )
                for ticket in found
            ]
            await out.answer(
                t("report.duplicates", tickets="\n".join(lines)),
                reply_markup=kb.duplicates(found, t),
            )
            return
    await state.set_data(data)
    await state.set_state(Report.summary)
    await out.answer(
        _summary_text(org, language, t, data),
        reply_markup=kb.summary(bool(data.get("anonymous")), t),
    )


async def _next_or_summary(
    out: Any,
    session: AsyncSession,
    reference: Reference,
    settings: Any,
    language: str,
    t: Translate,
    state: FSMContext,
    data: dict[str, Any],
    ask_next: Callable[[], Any],
) -> None:
    """Back to the summary when editing one part, else on to the next step."""
    if data.get("editing"):
        org = await reference.get(session)
        await _to_summary(out, session, org, settings, language, t, state)
    else:
        await ask_next()


# -- /report --------------------------------------------------------------------------------


async def report_command(
    message: Message,
    session: AsyncSession,
    reference: Reference,
    person: Person,
    language: str,
    t: Translate,
    state: FSMContext,
    raw_state: str | None,
) -> None:
    """/report: a new report from the first step (a dialog half-way is dropped)."""
    if raw_state == Report.location.state:
        # The place step's reply keyboard is still up: take it away first.
        await message.answer(t("report.restarted"), reply_markup=ReplyKeyboardRemove())
    # The reporter's id rides along so that their own tickets are not offered as duplicates.
    await state.set_data({"photos": [], "anonymous": False, "person_id": person.id})
    await _ask_category(message, await reference.get(session), language, t, state)


async def category_chosen(
    query: CallbackQuery,
    callback_data: ReportButton,
    session: AsyncSession,
    reference: Reference,
    settings: Any,
    language: str,
    t: Translate,
    state: FSMContext,
) -> None:
    category = (await reference.get(session)).category(callback_data.value)
    data = await state.update_data(category_id=category.id)
    await query.answer()
    name = scope_name(language, category.name_zh, category.name_en)
    await _next_or_summary(
        query.message,
        session,
        reference,
        settings,
        language,
        t,
        state,
        data,
        lambda: _ask_description(query.message, t, state, name),
    )


async def description_given(
    message: Message,
    session: AsyncSession,
    reference: Reference,
    settings: Any,
    language: str,
    t: Translate,
    state: FSMContext,
) -> None:
    text = clean_text(message.text or "").strip()
    if not text:
        await message.answer(t("report.description_empty"))
        return
    if len(text) > DESCRIPTION_LIMIT:
        await message.answer(
            t("report.description_over", length=len(text), limit=DESCRIPTION_LIMIT),
            reply_markup=kb.only_cancel(t),
        )
        return
    data = await state.update_data(description=text)
    await _next_or_summary(
        message,
        session,
        reference,
        settings,
        language,
        t,
        state,
        data,
        lambda: _ask_photos(message, t, state),
    )


async def photo_given(message: Message, t: Translate, state: FSMContext) -> None:
    """One photo (the largest size); the fourth is refused."""
    assert message.photo and message.from_user
    largest = max(message.photo, key=lambda size: (size.width * size.height, size.file_size or 0))
    data = await state.get_data()
    photos = list(data.get("photos") or [])
    if len(photos) >= PHOTO_LIMIT:
        refused = True
    else:
        refused = False
        photos.append(largest.file_id)
        await state.set_data({**data, "photos": photos})
    if refused:
        await message.answer(
            t("report.photo_refused", limit=PHOTO_LIMIT), reply_markup=kb.photos(len(photos), t)
        )
        return
    await message.answer(
        t("report.photo_received", count=len(photos), limit=PHOTO_LIMIT),
        reply_markup=kb.photos(len(photos), t),
    )


async def photos_done(
    query: CallbackQuery,
    session: AsyncSession,
    reference: Reference,
    settings: Any,
    language: str,
    t: Translate,
    state: FSMContext,
) -> None:
    data = await state.get_data()
    await query.answer()
    await _next_or_summary(
        query.message,
        session,
        reference,
        settings,
        language,
        t,
        state,
        data,
        lambda: _ask_location(query.message, t, state),
    )


async def location_given(
    message: Message,
    session: AsyncSession,
    reference: Reference,
    settings: Any,
    language: str,
    t: Translate,
    state: FSMContext,
) -> None:
    """A shared location: its grid, or "outside the service area" and the choice by hand."""
    assert message.location is not None
    lat, lon = message.location.latitude, message.location.longitude
    if not valid_point(lat, lon):
        await message.answer(t("place.invalid"), reply_markup=kb.location(t))
        return
    org = await reference.get(session)
    place = org.place_of(lat, lon)
    grid = next((u for u in place or () if u.kind == UnitKind.GRID), None)
    community = next((u for u in place or () if u.kind == UnitKind.COMMUNITY), None)
    if grid is None or community is None:
        await message.answer(t("report.outside"), reply_markup=kb.location(t))
        return
    await state.update_data(grid_id=grid.id, lat=lat, lon=lon)
    await message.answer(
        t(
            "report.located",
            grid=scope_name(language, grid.name_zh, grid.name_en),
            community=scope_name(language, community.name_zh, community.name_en),
        ),
        reply_markup=ReplyKeyboardRemove(),
    )
    await _to_summary(message, session, org, settings, language, t, state)


async def by_hand(message: Message, t: Translate, state: FSMContext) -> None:
    """ "Choose community by hand": the reply keyboard goes, the search begins."""
    await message.answer(t("report.by_hand"), reply_markup=ReplyKeyboardRemove())
    await _ask_community(message, t, state)


async def community_typed(
    message: Message,
    session: AsyncSession,
    reference: Reference,
    settings: Any,
    language: str,
    t: Translate,
    state: FSMContext,
    raw_state: str | None,
) -> None:
    """Part of a community's name: the matches (one match goes straight to its grids)."""
    query = clean_text(message.text or "").strip()
    if raw_state == Report.location.state:
        await message.answer(t("report.by_hand"), reply_markup=ReplyKeyboardRemove())
    await state.update_data(search=query)
    await state.set_state(Report.community)
    text, markup, choices = await _communities_view(session, language, t, query, 0)
    if len(choices) == 1 and len(query) > 0:
        org = await reference.get(session)
        community_id = choices[0].community.id
        await _show_grids(message, session, org, settings, language, t, state, community_id)
        return
    await message.answer(text, reply_markup=markup)


async def community_list(
    query: CallbackQuery,
    callback_data: ReportButton,
    session: AsyncSession,
    language: str,
    t: Translate,
    state: FSMContext,
) -> None:
    """ "List all communities" (a new message) or another page of the list (edited in place)."""
    if callback_data.step == Step.LIST:
        search, offset = None, 0
        await state.update_data(search=None)
    else:
        search, offset = (await state.get_data()).get("search"), max(0, callback_data.value)
    await state.set_state(Report.community)
    text, markup, _ = await _communities_view(session, language, t, search, offset)
    await query.answer()
    await _replace(query, text, markup, edit=callback_data.step == Step.COMMUNITIES)


async def community_chosen(
    query: CallbackQuery,
    callback_data: ReportButton,
    session: AsyncSession,
    reference: Reference,
    settings: Any,
    language: str,
    t: Translate,
    state: FSMContext,
) -> None:
    org = await reference.get(session)
    await query.answer()
    await _show_grids(
        query.message, session, org, settings, language, t, state, callback_data.value
    )


async def grid_page(
    query: CallbackQuery,
    callback_data: ReportButton,
    session: AsyncSession,
    language: str,
    t: Translate,
    state: FSMContext,
) -> None:
    community_id = (await state.get_data()).get("community_id")
    text, markup, _ = await _grids_view(
        session, language, t, community_id, max(0, callback_data.value)
    )
    await query.answer()
    await _replace(query, text, markup)


async def grid_chosen(
    query: CallbackQuery,
    callback_data: ReportButton,
    session: AsyncSession,
    reference: Reference,
    settings: Any,
    language: str,
    t: Translate,
    state: FSMContext,
) -> None:
    org = await reference.get(session)
    await query.answer()
    await _place_chosen(
        query.message, session, org, settings, language, t, state, callback_data.value
    )


async def search_again(query: CallbackQuery, t: Translate, state: FSMContext) -> None:
    await query.answer()
    await _ask_community(query.message, t, state)


async def me_too(
    query: CallbackQuery,
    callback_data: MeToo,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    t: Translate,
    state: FSMContext,
) -> None:
    """ "Me too": follow the open ticket nearby instead of filing a new one; the dialog ends.

    Only a ticket this dialog offered (kept in its data by _to_summary) is joined; the domain
    refuses and audits any other id.
    """
    offered = (await state.get_data()).get("offered") or []
    ctx = await join_offered_ticket(
        session=session,
        clock=clock,
        person=person,
        ticket_id=callback_data.id,
        offered=offered,
    )
    await state.clear()
    await query.answer()
    await query.message.answer(
        t("report.joined", number=ctx.ticket.number, affected=ctx.ticket.affected)
    )


async def not_a_duplicate(
    query: CallbackQuery,
    session: AsyncSession,
    reference: Reference,
    settings: Any,
    language: str,
    t: Translate,
    state: FSMContext,
) -> None:
    org = await reference.get(session)
    await query.answer()
    await _to_summary(query.message, session, org, settings, language, t, state)


async def anonymous_toggled(
    query: CallbackQuery,
    session: AsyncSession,
    reference: Reference,
    language: str,
    t: Translate,
    state: FSMContext,
) -> None:
    org = await reference.get(session)
    data = await state.get_data()
    data["anonymous"] = not data.get("anonymous")
    await state.set_data(data)
    text = _summary_text(org, language, t, data)
    markup = kb.summary(data["anonymous"], t)
    await query.answer(
        t("report.anonymous_set_on" if data["anonymous"] else "report.anonymous_set_off")
    )
    await _replace(query, text, markup)


async def confirmed(
    query: CallbackQuery,
    session: AsyncSession,
    reference: Reference,
    clock: Clock,
    timing: Timing,
    person: Person,
    settings: Any,
    language: str,
    t: Translate,
    state: FSMContext,
) -> None:
    """Confirm: file the ticket; its number, its grid, and when to expect an answer."""
    # A second tap of Confirm finds the dialog over and files nothing.
    if await state.get_state() != Report.summary.state:
        await query.answer(t("report.step_over"), show_alert=True)
        return
    data = await state.get_data()
    ctx = await file_ticket(
        session=session,
        org=await reference.get(session),
        clock=clock,
        timing=timing,
        reporter=person,
        category_id=data["category_id"],
        description=data["description"],
        photos=list(data.get("photos") or []),
        grid_id=data["grid_id"],
        latitude=data.get("lat"),
        longitude=data.get("lon"),
        anonymous=bool(data.get("anonymous")),
    )
    await state.clear()
    ticket = ctx.ticket
    if ticket.next_deadline is not None:
        deadline = ticket.next_deadline.astimezone(settings.tz)
        expect = t("report.expect_by", deadline=f"{deadline:%Y-%m-%d %H:%M}")
    else:
        expect = t("report.expect_asap")
    await query.answer()
    await query.message.answer(
        t(
            "report.filed",
            number=ticket.number,
            grid=scope_name(language, ctx.grid.name_zh, ctx.grid.name_en),
            community=scope_name(language, ctx.community.name_zh, ctx.community.name_en),
            expect=expect,
        )
    )


async def edit_menu(query: CallbackQuery, t: Translate, state: FSMContext) -> None:
    await state.set_state(Report.edit)
    await query.answer()
    await query.message.answer(t("report.ask_edit"), reply_markup=kb.edit_menu(t))


async def edit_part(
    query: CallbackQuery,
    callback_data: ReportButton,
    session: AsyncSession,
    reference: Reference,
    language: str,
    t: Translate,
    state: FSMContext,
) -> None:
    """One part to change; its step comes back, and then the summary again."""
    if not 0 <= callback_data.value < len(PARTS):
        await query.answer(t("report.step_over"), show_alert=True)
        return
    part = PARTS[callback_data.value]
    changes: dict[str, Any] = {"editing": True}
    if part == "photos":
        changes["photos"] = []  # the new ones replace the old
    data = await state.update_data(**changes)
    await query.answer()
    out = query.message
    if part == "category":
        await _ask_category(out, await reference.get(session), language, t, state)
    elif part == "description":
        name = _category_name(await reference.get(session), language, data.get("category_id"))
        await _ask_description(out, t, state, name)
    elif part == "photos":
        await _ask_photos(out, t, state)
    else:
        await _ask_location(out, t, state)


async def back_to_summary(
    query: CallbackQuery,
    session: AsyncSession,
    reference: Reference,
    settings: Any,
    language: str,
    t: Translate,
    state: FSMContext,
) -> None:
    org = await reference.get(session)
    await query.answer()
    await _to_summary(query.message, session, org, settings, language, t, state)


# -- cancelling, and everything a step does not expect ----------------------------------------


async def _cancel(out: Any, t: Translate, state: FSMContext, raw_state: str | None) -> None:
    if raw_state is None:
        key = "dialog.nothing_to_cancel"
    elif raw_state in Report:
        key = "report.cancelled"
    else:
        key = "dialog.cancelled"
    await state.clear()
    # Any reply keyboard (the place step's) goes too.
    await out.answer(t(key), reply_markup=ReplyKeyboardRemove())


async def cancel_command(
    message: Message, t: Translate, state: FSMContext, raw_state: str | None
) -> None:
    """/cancel: ends whatever dialog the person is in."""
    await _cancel(message, t, state, raw_state)


async def cancel_button(
    query: CallbackQuery, t: Translate, state: FSMContext, raw_state: str | None
) -> None:
    await query.answer()
    await _cancel(query.message, t, state, raw_state)


async def cancel_text(
    message: Message, t: Translate, state: FSMContext, raw_state: str | None
) -> None:
    await _cancel(message, t, state, raw_state)


async def unexpected(message: Message, t: Translate, raw_state: str | None) -> None:
    """A sticker, voice note, file... where the step expects something else: say what."""
    key = EXPECTED.get(raw_state or "", "report.expect.summary")
    await message.answer(t(key, limit=DESCRIPTION_LIMIT, photos=PHOTO_LIMIT))


async def step_over(query: CallbackQuery, t: Translate) -> None:
    """A button of a dialog step that is over (or of a dialog that ended)."""
    await query.answer(t("report.step_over"), show_alert=True)


# -- /my ------------------------------------------------------------------------------------


async def _my_view(
    session: AsyncSession,
    person: Person,
    settings: Any,
    language: str,
    t: Translate,
    offset: int,
) -> tuple[str, Any]:
    offset = max(0, offset)
    tickets, total = await tickets_of(session, person_id=person.id, offset=offset, limit=MY_PAGE)
    if total and not tickets:
        # A page past the end (tickets went away): show the last one.
        offset = (total - 1) // MY_PAGE * MY_PAGE
        tickets, total = await tickets_of(
            session, person_id=person.id, offset=offset, limit=MY_PAGE
        )
    if not total:
        return t("my.empty"), None
    parts = [t("my.header", first=offset + 1, last=offset + len(tickets), total=total)]
    for ticket in tickets:
        ctx = await context_of(session, ticket)
        parts.append(
            t(
                "my.line",
                number=ticket.number,
                category=scope_name(language, ctx.category.name_zh, ctx.category.name_en),
                status=t(f"status.{ticket.status.value}"),
                date=f"{ticket.created_at.astimezone(settings.tz):%Y-%m-%d}",
                holder=_held_by(ctx, t, language),
            ).rstrip()
        )
    return "\n\n".join(parts), kb.my_pager(offset, MY_PAGE, total, t)


def _held_by(ctx: TicketContext, t: Translate, language: str) -> str:
    """Which level holds an open ticket now (nothing for a closed one)."""
    if ctx.holder is None or ctx.ticket.status not in OPEN_STATUSES:
        return ""
    return t(
        "my.held_by",
        level=t(f"level.{ctx.ticket.level.value}"),
        holder=scope_name(language, ctx.holder.name_zh, ctx.holder.name_en),
    )


async def my_command(
    message: Message,
    session: AsyncSession,
    person: Person,
    settings: Any,
    language: str,
    t: Translate,
) -> None:
    """/my: the person's tickets (reported or joined), newest first."""
    text, markup = await _my_view(session, person, settings, language, t, 0)
    await message.answer(text, reply_markup=markup)


async def my_page(
    query: CallbackQuery,
    callback_data: Page,
    session: AsyncSession,
    person: Person,
    settings: Any,
    language: str,
    t: Translate,
) -> None:
    text, markup = await _my_view(session, person, settings, language, t, callback_data.offset)
    await query.answer()
    await _replace(query, text, markup)


# -- the follow-up: "is it solved?" ---------------------------------------------------------


async def follow_up(
    query: CallbackQuery,
    callback_data: FollowUp,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    t: Translate,
    state: FSMContext,
) -> None:
    """Yes: the ticket closes, then a 1-5 rating. No: the reason, then it is reopened."""
    if callback_data.solved:
        ctx = await confirm_ticket(
            session=session, clock=clock, actor=person, ticket_id=callback_data.id
        )
        await query.answer()
        await query.message.answer(
            t("followup.closed", number=ctx.ticket.number), reply_markup=kb.rating(ctx.ticket.id)
        )
        return
    ticket = await check_move(
        session=session, clock=clock, actor=person, ticket_id=callback_data.id, action=Action.REOPEN
    )
    await state.set_state(FollowUpReason.reason)
    await state.set_data({"ticket_id": ticket.id, "number": ticket.number})
    await query.answer()
    await query.message.answer(
        t("followup.ask_reason", number=ticket.number, limit=DESCRIPTION_LIMIT),
        reply_markup=kb.only_cancel(t),
    )


async def reason_given(
    message: Message,
    session: AsyncSession,
    clock: Clock,
    timing: Timing,
    person: Person,
    language: str,
    t: Translate,
    state: FSMContext,
) -> None:
    text = clean_text(message.text or "").strip()
    if len(text) > DESCRIPTION_LIMIT:
        await message.answer(
            t("report.description_over", length=len(text), limit=DESCRIPTION_LIMIT),
            reply_markup=kb.only_cancel(t),
        )
        return
    data = await state.get_data()
    ctx = await reopen_ticket(
        session=session,
        clock=clock,
        timing=timing,
        actor=person,
        ticket_id=data["ticket_id"],
        reason=text,
    )
    await state.clear()
    holder = ctx.holder or ctx.grid
    await message.answer(
        t(
            "followup.reopened",
            number=ctx.ticket.number,
            holder=scope_name(language, holder.name_zh, holder.name_en),
        )
    )


async def rated(
    query: CallbackQuery,
    callback_data: Rating,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    t: Translate,
) -> None:
    ctx = await rate_ticket(
        session=session,
        clock=clock,
        actor=person,
        ticket_id=callback_data.id,
        rating=callback_data.stars,
    )
    await query.answer()
    stars = ctx.ticket.rating or 0
    await query.message.answer(
        t("followup.rated", number=ctx.ticket.number, stars="★" * stars + "☆" * (5 - stars))
    )


# -- the router -----------------------------------------------------------------------------


def router() -> Router:
    """A fresh router for residents: /report, /my, /cancel and the follow-up answers."""
    r = Router(name="resident")
    msg, cb = r.message, r.callback_query
    button = ReportButton.filter
    text = Has(F.text & ~F.text.startswith("/"))

    msg.register(report_command, Command("report"))
    msg.register(my_command, Command("my"))
    msg.register(cancel_command, Command("cancel"))
    msg.register(
        cancel_text,
        StateFilter(Report, FollowUpReason),
        Label("report.btn.cancel", "report.word.cancel"),
    )
    cb.register(cancel_button, StateFilter(Report, FollowUpReason), button(F.step == Step.CANCEL))

    # The steps, each taking only what it expects.
    cb.register(category_chosen, StateFilter(Report.category), button(F.step == Step.CATEGORY))
    msg.register(description_given, StateFilter(Report.description), text)
    msg.register(photo_given, StateFilter(Report.photos), Has(F.photo))
    cb.register(photos_done, StateFilter(Report.photos), button(F.step == Step.DONE))
    msg.register(location_given, StateFilter(Report.location), Has(F.location))
    msg.register(by_hand, StateFilter(Report.location), Label("report.btn.by_hand"))
    # The share button's label typed (or sent by a client that cannot share a location).
    msg.register(unexpected, StateFilter(Report.location), Label("report.btn.share"))
    msg.register(community_typed, StateFilter(Report.location, Report.community, Report.grid), text)
    cb.register(
        community_list,
        StateFilter(Report.community, Report.grid),
        button(F.step.in_({Step.LIST, Step.COMMUNITIES})),
    )
    cb.register(community_chosen, StateFilter(Report.community), button(F.step == Step.COMMUNITY))
    cb.register(grid_page, StateFilter(Report.grid), button(F.step == Step.GRIDS))
    cb.register(grid_chosen, StateFilter(Report.grid), button(F.step == Step.GRID))
    cb.register(search_again, StateFilter(Report.grid), button(F.step == Step.SEARCH_AGAIN))
    cb.register(me_too, StateFilter(Report.duplicates), MeToo.filter())
    cb.register(not_a_duplicate, StateFilter(Report.duplicates), button(F.step == Step.NEW))
    cb.register(anonymous_toggled, StateFilter(Report.summary), button(F.step == Step.ANONYMOUS))
    cb.register(confirmed, StateFilter(Report.summary), button(F.step == Step.CONFIRM))
    cb.register(edit_menu, StateFilter(Report.summary), button(F.step == Step.EDIT))
    cb.register(edit_part, StateFilter(Report.edit), button(F.step == Step.PART))
    cb.register(back_to_summary, StateFilter(Report.edit), button(F.step == Step.SUMMARY))

    # /my, and the answers to "is it solved?" (any time: they name their ticket).
    cb.register(my_page, Page.filter(F.list == "my"))
    cb.register(follow_up, FollowUp.filter())
    cb.register(rated, Rating.filter())
    msg.register(reason_given, StateFilter(FollowUpReason.reason), text)

    # Last: whatever a step does not expect, and buttons of steps that are over.
    msg.register(unexpected, StateFilter(Report, FollowUpReason))
    cb.register(step_over, ReportButton.filter())
    cb.register(step_over, MeToo.filter())
    return r
