"""The organiser's side of calls: /calls lists the calls a person organised, and attendance
is confirmed after the end.

/calls: the calls the person organised, and every call of the communities where they are the
secretary, latest start first, five a page, each with places taken and its state. A button
opens a call's card; once the call is over the card carries the attendance sheet: a line per
member who said "I'll come" (checked-in and -out times, minutes counted, a mark for those
closed automatically), a Came / Did not come toggle each, and Confirm attendance. The marks
live in the buttons' callback data (a bitmask, views.buttons.Sheet), so the message
shows exactly what a press confirms; the domain (domain.attendance) decides who may see and
confirm a sheet, and when. The "attendance waits" message and the monthly summaries come
through the outbox, rendered by views.attendance.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo

from aiogram import Bot, F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.attendance import (
    SHEET_LIMIT,
    AttendanceSheet,
    OrganisedCall,
    SheetLine,
    attendance_sheet,
    calls_organised,
    confirm_sheet,
)
from domain.calls import cancel_call
from domain.clock import Clock
from handlers.leader import edit_text, message_ref
from storage.enums import CallStatus
from storage.models import DutyCall, Person
from views.buttons import Page, Sheet, SheetOp
from views.cards import local_time
from views.common import amount
from views.i18n import Translate

CALLS = "calls"  # Page.list of /calls
PAGE_SIZE = 5
BUTTON_TITLE = 30  # characters of a title on a button
BUTTON_NAME = 20  # and of a member's name


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clock_time(value: datetime | None, tz: tzinfo) -> str:
    return f"{value.astimezone(tz):%H:%M}" if value else ""


def state_text(call: DutyCall, claims: int, unconfirmed: int, now: datetime, t: Translate) -> str:
    """open, full, under way, over: N to confirm, confirmed (or cancelled, or nobody came)."""
    if call.status == CallStatus.CANCELLED:
        return t("attendance.state.cancelled")
    if now < call.starts_at:
        return t(
            "attendance.state.full" if call.status == CallStatus.FULL else "attendance.state.open"
        )
    if now < call.ends_at:
        return t("attendance.state.under_way")
    if not claims:
        return t("attendance.state.over_empty")
    if unconfirmed:
        return t("attendance.state.over", count=unconfirmed)
    return t("attendance.state.confirmed")


# -- /calls ----------------------------------------------------------------------------------


async def _list_page(
    session: AsyncSession, clock: Clock, person: Person, offset: int, t: Translate, tz: tzinfo
) -> tuple[str, InlineKeyboardMarkup | None]:
    offset = max(0, offset)
    calls, total = await calls_organised(session, person=person, offset=offset, limit=PAGE_SIZE)
    if not calls and total:
        # Past the end (a page from an old message): the last page.
        offset = (total - 1) // PAGE_SIZE * PAGE_SIZE
        calls, total = await calls_organised(session, person=person, offset=offset, limit=PAGE_SIZE)
    if not calls:
        return t("attendance.list_empty"), None
    now = clock.now()
    lines = [t("attendance.list_title", first=offset + 1, last=offset + len(calls), total=total)]
    builder = InlineKeyboardBuilder()
    for index, item in enumerate(calls, start=offset + 1):
        lines.append(_list_line(index, item, now, t, tz))
        builder.button(
            text=t("attendance.btn.open", index=index, title=_short(item.call.title, BUTTON_TITLE)),
            callback_data=Sheet(op=SheetOp.OPEN, id=item.call.id),
        )
    builder.adjust(1)
    paging = InlineKeyboardBuilder()
    if offset > 0:
        paging.button(
            text=t("attendance.btn.prev"),
            callback_data=Page(list=CALLS, offset=max(0, offset - PAGE_SIZE)),
        )
    if offset + len(calls) < total:
        paging.button(
            text=t("attendance.btn.next"), callback_data=Page(list=CALLS, offset=offset + PAGE_SIZE)
        )
    if offset > 0 or offset + len(calls) < total:
        builder.attach(paging)
    return "\n".join(lines), builder.as_markup()


def _list_line(index: int, item: OrganisedCall, now: datetime, t: Translate, tz: tzinfo) -> str:
    call = item.call
    return t(
        "attendance.list_line",
        index=index,
        title=call.title,
        starts_at=local_time(call.starts_at, tz),
        claimed=call.claimed,
        capacity=call.capacity,
        state=state_text(call, item.claims, item.unconfirmed, now, t),
    )


async def calls_command(
    message: Message, session: AsyncSession, clock: Clock, person: Person, t: Translate, settings
) -> None:
    """/calls: the calls the person organised (or their community's), latest first."""
    text, markup = await _list_page(session, clock, person, 0, t, settings.tz)
    await message.answer(text, reply_markup=markup)


async def calls_page(
    query: CallbackQuery,
    callback_data: Page,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    t: Translate,
    settings,
) -> None:
    """« Previous / Next »: the page, in place."""
    text, markup = await _list_page(session, clock, person, callback_data.offset, t, settings.tz)
    await edit_text(bot, *message_ref(query), text, markup)
    await query.answer()


# -- a call's card and its attendance sheet ---------------------------------------------------


def _default_marks(lines: Sequence[SheetLine]) -> list[bool]:
    return [line.came_by_default for line in lines]


def _encode(marks: Sequence[bool]) -> str:
    return f"{sum(1 << i for i, came in enumerate(marks) if came):x}"


def _decode(data: Sheet, sheet: AttendanceSheet) -> list[bool] | None:
    """The marks a press carries, over all lines (those past SHEET_LIMIT as by default);
    None when they were made on other lines than the sheet has now, or are not a bitmask."""
    shown = min(len(sheet.lines), SHEET_LIMIT)
    if data.n != shown:
        return None
    try:
        mask = int(data.sel or "0", 16)
    except ValueError:
        return None
    if mask < 0 or mask >> shown:
        return None
    marks = _default_marks(sheet.lines)
    for i in range(shown):
        marks[i] = bool(mask >> i & 1)
    return marks


def _line_text(index: int, line: SheetLine, came: bool, t: Translate, tz: tzinfo) -> str:
    claim = line.claim
    params = {
        "index": index,
        "mark": "✅" if came else "❌",
        "name": line.name,
        "checked_in": _clock_time(claim.checked_in_at, tz),
        "checked_out": _clock_time(claim.checked_out_at, tz),
        "minutes": claim.minutes,
    }
    if claim.checked_in_at is None:
        key = "attendance.line.absent"
    elif claim.checked_out_at is None:
        key = "attendance.line.in_only"
    elif claim.auto_closed:
        key = "attendance.line.auto"
    else:
        key = "attendance.line.in_out"
    text = t(key, **params)
    if claim.confirmed:
        text += t("attendance.line.points", points=amount(claim.points))
    return text


def card(
    sheet: AttendanceSheet, marks: Sequence[bool] | None, now: datetime, t: Translate, tz: tzinfo
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The call's card for its organiser: details, then who is coming or the sheet."""
    call, lines = sheet.call, sheet.lines
    unconfirmed = sum(1 for line in lines if line.claim.confirmed is None)
    parts = [
        t(
            "attendance.card",
            title=call.title,
            starts_at=local_time(call.starts_at, tz),
            ends_at=local_time(call.ends_at, tz),
            claimed=call.claimed,
            capacity=call.capacity,
            state=state_text(call, len(lines), unconfirmed, now, t),
        )
    ]
    if call.description:
        parts.append(call.description)
    if not sheet.over:
        names = ", ".join(line.name for line in lines)
        parts.append(t("attendance.coming", names=names) if names else t("attendance.coming_none"))
        if call.status == CallStatus.CANCELLED:
            return "\n\n".join(parts), None
        parts.append(t("attendance.after_end", ends_at=local_time(call.ends_at, tz)))
        if now >= call.starts_at:
            return "\n\n".join(parts), None
        builder = InlineKeyboardBuilder()
        builder.button(
            text=t("attendance.btn.cancel"), callback_data=Sheet(op=SheetOp.CANCEL, id=call.id)
        )
        return "\n\n".join(parts), builder.as_markup()
    if not lines:
        parts.append(t("attendance.nobody"))
        return "\n\n".join(parts), None
    marks = list(marks) if marks is not None else _default_marks(lines)
    editable = not sheet.final
    shown = min(len(lines), SHEET_LIMIT)
    sheet_lines = [t("attendance.sheet_title" if editable else "attendance.sheet_title_final")]
    sheet_lines += [
        _line_text(i + 1, line, marks[i], t, tz) for i, line in enumerate(lines[:shown])
    ]
    if len(lines) > shown:
        sheet_lines.append(t("attendance.more", count=len(lines) - shown))
    parts.append("\n".join(sheet_lines))
    if sheet.final:
        parts.append(t("attendance.final_note"))
    elif sheet.confirmed:
        parts.append(t("attendance.confirmed_note"))
    if not editable:
        return "\n\n".join(parts), None
    builder = InlineKeyboardBuilder()
    for i, line in enumerate(lines[:shown]):
        flipped = list(marks[:shown])
        flipped[i] = not flipped[i]
        builder.button(
            text=t(
                "attendance.btn.came" if marks[i] else "attendance.btn.absent",
                index=i + 1,
                name=_short(line.name, BUTTON_NAME),
            ),
            callback_data=Sheet(op=SheetOp.TOGGLE, id=call.id, sel=_encode(flipped), n=shown),
        )
    builder.button(
        text=t("attendance.btn.confirm"),
        callback_data=Sheet(op=SheetOp.CONFIRM, id=call.id, sel=_encode(marks[:shown]), n=shown),
    )
    builder.adjust(1)
    return "\n\n".join(parts), builder.as_markup()


async def open_call(
    query: CallbackQuery,
    callback_data: Sheet,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    t: Translate,
    settings,
) -> None:
    """A call from /calls or from "attendance waits": its card, as a new message."""
    sheet = await attendance_sheet(
        session=session, clock=clock, actor=person, call_id=callback_data.id, tz=settings.tz
    )
    text, markup = card(sheet, None, clock.now(), t, settings.tz)
    await query.answer()
    if isinstance(query.message, Message):
        await query.message.answer(text, reply_markup=markup)


async def toggle(
    query: CallbackQuery,
    callback_data: Sheet,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    t: Translate,
    settings,
) -> None:
    """Came / Did not come on one line: the sheet again with the marks the button carries."""
    tz = settings.tz
    sheet = await attendance_sheet(
        session=session, clock=clock, actor=person, call_id=callback_data.id, tz=tz
    )
    marks = _decode(callback_data, sheet)
    if not sheet.over or sheet.final or marks is None:
        # Not a sheet yet, final, or other lines than shown: the card as it is now.
        await _show(query, bot, sheet, clock.now(), t, tz)
        await query.answer(_stale_reason(sheet, t, tz), show_alert=True)
        return
    await _show(query, bot, sheet, clock.now(), t, tz, marks)
    await query.answer()


async def _show(
    query: CallbackQuery,
    bot: Bot,
    sheet: AttendanceSheet,
    now: datetime,
    t: Translate,
    tz: tzinfo,
    marks: Sequence[bool] | None = None,
) -> None:
    """The call's card in place of the pressed message."""
    text, markup = card(sheet, marks, now, t, tz)
    await edit_text(bot, *message_ref(query), text, markup)


def _stale_reason(sheet: AttendanceSheet, t: Translate, tz: tzinfo) -> str:
    if not sheet.over:
        return t("attendance.not_over", ends=local_time(sheet.call.ends_at, tz))
    if sheet.final:
        return t("attendance.final")
    return t("attendance.changed")


async def confirm(
    query: CallbackQuery,
    callback_data: Sheet,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    t: Translate,
    settings,
) -> None:
    """Confirm attendance: the marks shown become the members' confirmed hours and points."""
    tz = settings.tz
    sheet = await attendance_sheet(
        session=session, clock=clock, actor=person, call_id=callback_data.id, tz=tz
    )
    marks = _decode(callback_data, sheet) if sheet.over else _default_marks(sheet.lines)
    if marks is None:
        await _show(query, bot, sheet, clock.now(), t, tz)
        await query.answer(t("attendance.changed"), show_alert=True)
        return
    # Before the end or once final, the domain refuses (and says why); nothing is changed.
    claims = await confirm_sheet(
        session=session,
        clock=clock,
        actor=person,
        call_id=callback_data.id,
        attended={line.member_id: came for line, came in zip(sheet.lines, marks, strict=True)},
        tz=tz,
    )
    came = sum(1 for claim in claims if claim.confirmed)
    given = sum(claim.points for claim in claims)
    sheet = await attendance_sheet(
        session=session, clock=clock, actor=person, call_id=callback_data.id, tz=tz
    )
    await _show(query, bot, sheet, clock.now(), t, tz)
    await query.answer(
        t("attendance.done", came=came, absent=len(claims) - came, points=amount(given)),
        show_alert=True,
    )


async def cancel_asked(
    query: CallbackQuery,
    callback_data: Sheet,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    t: Translate,
    settings,
) -> None:
    """Cancel the call: asked once more, under the card, since those coming will be told."""
    sheet = await attendance_sheet(
        session=session, clock=clock, actor=person, call_id=callback_data.id, tz=settings.tz
    )
    text, _ = card(sheet, None, clock.now(), t, settings.tz)
    builder = InlineKeyboardBuilder()
    builder.button(
        text=t("attendance.btn.cancel_yes"),
        callback_data=Sheet(op=SheetOp.CANCEL_YES, id=callback_data.id),
    )
    builder.button(
        text=t("attendance.btn.keep"), callback_data=Sheet(op=SheetOp.KEEP, id=callback_data.id)
    )
    builder.adjust(1)
    coming = len(sheet.lines)
    await edit_text(
        bot,
        *message_ref(query),
        f"{text}\n\n{t('attendance.cancel_ask', count=coming)}",
        builder.as_markup(),
    )
    await query.answer()


async def cancel_confirmed(
    query: CallbackQuery,
    callback_data: Sheet,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    t: Translate,
    settings,
) -> None:
    """Yes: the domain calls it off (refusing once it started) and tells those coming."""
    _, told = await cancel_call(
        session=session, clock=clock, actor=person, call_id=callback_data.id
    )
    sheet = await attendance_sheet(
        session=session, clock=clock, actor=person, call_id=callback_data.id, tz=settings.tz
    )
    await _show(query, bot, sheet, clock.now(), t, settings.tz)
    await query.answer(t("attendance.cancelled", count=told), show_alert=True)


async def keep(
    query: CallbackQuery,
    callback_data: Sheet,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    t: Translate,
    settings,
) -> None:
    """No: the card as it is."""
    sheet = await attendance_sheet(
        session=session, clock=clock, actor=person, call_id=callback_data.id, tz=settings.tz
    )
    await _show(query, bot, sheet, clock.now(), t, settings.tz)
    await query.answer()


def router() -> Router:
    """A fresh router for organisers of calls (the domain checks who may see and confirm)."""
    r = Router(name="attendance")
    r.message.register(calls_command, Command("calls"))
    r.callback_query.register(calls_page, Page.filter(F.list == CALLS))
    r.callback_query.register(open_call, Sheet.filter(F.op == SheetOp.OPEN))
    r.callback_query.register(toggle, Sheet.filter(F.op == SheetOp.TOGGLE))
    r.callback_query.register(confirm, Sheet.filter(F.op == SheetOp.CONFIRM))
    r.callback_query.register(cancel_asked, Sheet.filter(F.op == SheetOp.CANCEL))
    r.callback_query.register(cancel_confirmed, Sheet.filter(F.op == SheetOp.CANCEL_YES))
    r.callback_query.register(keep, Sheet.filter(F.op == SheetOp.KEEP))
    return r
