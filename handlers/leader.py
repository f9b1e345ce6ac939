"""Holders of tickets (grid leaders, community secretaries, street officers, administrators):
the buttons on a ticket card, the resolve and close dialogs, and /queue.

Every button calls the domain, which checks who may do what (a forged button is refused and
audited) and whether the move still applies (a stale button says what state the ticket is in
now). A message is edited only after the use case succeeded.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from datetime import tzinfo

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import Clock
from domain.deadlines import Timing
from domain.errors import DomainError
from domain.queues import grids_for_redispatch, last_reopen_reason, open_ticket
from domain.text import clean_text
from domain.tickets import (
    DESCRIPTION_LIMIT,
    Action,
    TicketContext,
    accept_ticket,
    can_act,
    cancel_ticket,
    card_data,
    check_move,
    context_of,
    escalate_ticket,
    queue_of,
    redispatch_ticket,
    resolve_ticket,
    return_ticket,
)
from handlers.filters import Has
from storage.enums import ReturnReason, TicketStatus
from storage.models import Person, Ticket
from views.buttons import Button, Page, Redispatch, ReturnWhy, TicketAction, TicketOp
from views.cards import card_keyboard, card_text, duration, local_time
from views.common import scope_name
from views.i18n import Translate

logger = logging.getLogger(__name__)


PAGE_SIZE = 5
QUEUE = "queue"


class ResolveDialog(StatesGroup):
    note = State()
    photo = State()


class CloseDialog(StatesGroup):
    note = State()


class SkipPhoto(Button, prefix="tsk"):
    """Resolve without a photo (only inside the resolve dialog)."""

    id: int


class CardBack(Button, prefix="tb"):
    """Put the card's own buttons back (after the reason or grid choice was shown)."""

    id: int


# -- the card ------------------------------------------------------------------------------


async def _card(
    session: AsyncSession,
    clock: Clock,
    person: Person,
    ctx: TicketContext,
    t: Translate,
    language: str,
    tz: tzinfo,
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The card as this person sees it now: buttons only if they may act on it."""
    data = card_data(ctx, clock.now())
    if ctx.ticket.status == TicketStatus.REOPENED:
        data["reopen_reason"] = await last_reopen_reason(session, ctx.ticket.id)
    may_act = await can_act(session, person_id=person.id, ticket=ctx.ticket)
    markup = card_keyboard(data, t) if may_act else None
    return card_text(data, t, language, tz=tz), markup


async def edit_text(
    bot: Bot,
    chat_id: int | None,
    message_id: int | None,
    text: str,
    markup: InlineKeyboardMarkup | None,
) -> None:
    """Show the card's new state in place; a message that is gone or unchanged is no error."""
    if chat_id is None or message_id is None:
        return
    with suppress(TelegramBadRequest):
        await bot.edit_message_text(
            text=text, chat_id=chat_id, message_id=message_id, reply_markup=markup
        )


def message_ref(query: CallbackQuery) -> tuple[int | None, int | None]:
    message = query.message
    if not isinstance(message, Message):  # too old to edit (InaccessibleMessage) or none
        return None, None
    return message.chat.id, message.message_id


async def _refresh_card(
    query: CallbackQuery,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    ctx: TicketContext,
    t: Translate,
    language: str,
    tz: tzinfo,
) -> None:
    text, markup = await _card(session, clock, person, ctx, t, language, tz)
    await edit_text(bot, *message_ref(query), text, markup)


async def set_buttons(bot: Bot, query: CallbackQuery, markup: InlineKeyboardMarkup) -> None:
    chat_id, message_id = message_ref(query)
    if chat_id is None:
        return
    with suppress(TelegramBadRequest):
        await bot.edit_message_reply_markup(
            chat_id=chat_id, message_id=message_id, reply_markup=markup
        )


# -- buttons on the card -------------------------------------------------------------------


async def open_card(
    query: CallbackQuery,
    callback_data: TicketAction,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    language: str,
    t: Translate,
    settings,
) -> None:
    """Show the card again (from /queue): to its holders, and to holder roles above its grid."""
    ticket, _ = await open_ticket(
        session=session, clock=clock, person=person, ticket_id=callback_data.id
    )
    ctx = await context_of(session, ticket)
    text, markup = await _card(session, clock, person, ctx, t, language, settings.tz)
    await query.answer()
    if query.message is not None:
        await query.message.answer(text, reply_markup=markup)


async def back_to_card(
    query: CallbackQuery,
    callback_data: CardBack,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    language: str,
    t: Translate,
    settings,
) -> None:
    """« Back: the card as it stands now, in place."""
    ticket, _ = await open_ticket(
        session=session, clock=clock, person=person, ticket_id=callback_data.id
    )
    ctx = await context_of(session, ticket)
    await _refresh_card(query, bot, session, clock, person, ctx, t, language, settings.tz)
    await query.answer()


async def accept(
    query: CallbackQuery,
    callback_data: TicketAction,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    language: str,
    t: Translate,
    settings,
    timing: Timing,
) -> None:
    """Accept (簽收): who and when are recorded; the card now offers Resolve / Escalate."""
    ctx = await accept_ticket(
        session=session, clock=clock, timing=timing, actor=person, ticket_id=callback_data.id
    )
    await _refresh_card(query, bot, session, clock, person, ctx, t, language, settings.tz)
    await query.answer(t("leader.accepted", number=ctx.ticket.number))


async def ask_return_reason(
    query: CallbackQuery,
    callback_data: TicketAction,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    t: Translate,
) -> None:
    """Return (退單): the card's buttons become the four reasons (and « Back)."""
    ticket = await check_move(
        session=session, clock=clock, actor=person, ticket_id=callback_data.id, action=Action.RETURN
    )
    builder = InlineKeyboardBuilder()
    for reason in ReturnReason:
        builder.button(
            text=t(f"return_reason.{reason.value}"),
            callback_data=ReturnWhy(id=ticket.id, reason=reason.value),
        )
    builder.button(text=t("leader.back"), callback_data=CardBack(id=ticket.id))
    builder.adjust(2, 2, 1)
    await set_buttons(bot, query, builder.as_markup())
    await query.answer(t("leader.return_ask", number=ticket.number))


async def return_with_reason(
    query: CallbackQuery,
    callback_data: ReturnWhy,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    timing: Timing,
    person: Person,
    language: str,
    t: Translate,
    settings,
) -> None:
    """A reason was chosen: the ticket goes to the community secretary."""
    reason = ReturnReason(callback_data.reason)
    ctx = await return_ticket(
        session=session,
        clock=clock,
        timing=timing,
        actor=person,
        ticket_id=callback_data.id,
        reason=reason,
    )
    await _refresh_card(query, bot, session, clock, person, ctx, t, language, settings.tz)
    await query.answer(
        t(
            "leader.returned",
            number=ctx.ticket.number,
            reason=t(f"return_reason.{reason.value}"),
        )
    )


async def escalate(
    query: CallbackQuery,
    callback_data: TicketAction,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    timing: Timing,
    person: Person,
    language: str,
    t: Translate,
    settings,
) -> None:
    """Escalate one level up now (the same use case the deadline ladder uses)."""
    ctx = await escalate_ticket(
        session=session, clock=clock, timing=timing, actor=person, ticket_id=callback_data.id
    )
    await _refresh_card(query, bot, session, clock, person, ctx, t, language, settings.tz)
    holder = ""
    if ctx.holder is not None:
        holder = scope_name(language, ctx.holder.name_zh, ctx.holder.name_en)
    await query.answer(t("leader.escalated", number=ctx.ticket.number, holder=holder))


async def ask_grid(
    query: CallbackQuery,
    callback_data: TicketAction,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    language: str,
    t: Translate,
) -> None:
    """Re-dispatch (community): the card's buttons become the community's grids."""
    ticket = await check_move(
        session=session,
        clock=clock,
        actor=person,
        ticket_id=callback_data.id,
        action=Action.REDISPATCH,
    )
    grids = await grids_for_redispatch(session, ticket)
    builder = InlineKeyboardBuilder()
    for grid in grids:
        name = scope_name(language, grid.name_zh, grid.name_en)
        builder.button(text=name, callback_data=Redispatch(id=ticket.id, grid=grid.id))
    builder.button(text=t("leader.back"), callback_data=CardBack(id=ticket.id))
    builder.adjust(*([2] * (len(grids) // 2)), 1)
    await set_buttons(bot, query, builder.as_markup())
    await query.answer(t("leader.redispatch_ask", number=ticket.number))


async def redispatch(
    query: CallbackQuery,
    callback_data: Redispatch,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    timing: Timing,
    person: Person,
    language: str,
    t: Translate,
    settings,
) -> None:
    """A grid was chosen: the ticket goes to its leader as a new one."""
    ctx = await redispatch_ticket(
        session=session,
        clock=clock,
        timing=timing,
        actor=person,
        ticket_id=callback_data.id,
        grid_id=callback_data.grid,
    )
    await _refresh_card(query, bot, session, clock, person, ctx, t, language, settings.tz)
    grid = scope_name(language, ctx.grid.name_zh, ctx.grid.name_en)
    await query.answer(t("leader.redispatched", number=ctx.ticket.number, grid=grid))


async def _start_dialog(
    query: CallbackQuery, state: FSMContext, ticket: Ticket, dialog: State, prompt: str
) -> None:
    chat_id, message_id = message_ref(query)
    await state.set_state(dialog)
    await state.set_data(
        {"ticket_id": ticket.id, "number": ticket.number, "chat": chat_id, "card": message_id}
    )
    await query.answer()
    if query.message is not None:
        await query.message.answer(prompt)


# The buttons that open a dialog: the move they lead to, the question, the first step.
DIALOGS: dict[TicketOp, tuple[Action, str, State]] = {
    TicketOp.RESOLVE: (Action.RESOLVE, "leader.resolve_ask_note", ResolveDialog.note),
    TicketOp.CANCEL: (Action.CANCEL, "leader.close_ask", CloseDialog.note),
}


async def start_dialog(
    query: CallbackQuery,
    callback_data: TicketAction,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    state: FSMContext,
    t: Translate,
) -> None:
    """Resolve (a note, then an optional photo) or Close (why): checked before asking."""
    action, question, first_step = DIALOGS[callback_data.op]
    ticket = await check_move(
        session=session, clock=clock, actor=person, ticket_id=callback_data.id, action=action
    )
    prompt = t(question, number=ticket.number, limit=DESCRIPTION_LIMIT)
    await _start_dialog(query, state, ticket, first_step, prompt)


# -- the dialogs ---------------------------------------------------------------------------


def _note_problem(text: str | None, empty_key: str, t: Translate) -> str | None:
    """Why this text (cleaned: domain.text) can't be the note, or None if it can."""
    if text is None or text.startswith("/"):
        return t("leader.need_text", limit=DESCRIPTION_LIMIT)
    if not text.strip():
        return t(empty_key)
    if len(text.strip()) > DESCRIPTION_LIMIT:
        return t("report.description_too_long", limit=DESCRIPTION_LIMIT)
    return None


async def cancel_dialog(message: Message, state: FSMContext, t: Translate) -> None:
    """/cancel inside the resolve or close dialog: nothing is changed."""
    await state.clear()
    await message.answer(t("leader.dialog_cancelled"))


async def resolve_note(message: Message, state: FSMContext, t: Translate) -> None:
    """The note: checked here (empty, too long), then the photo is asked for."""
    # Cleaned before it is kept: the dialog's data may be jsonb, which cannot hold NUL.
    note = clean_text(message.text or "")
    problem = _note_problem(note, "resolve.note_empty", t)
    if problem:
        await message.answer(problem)
        return
    data = await state.get_data()
    await state.update_data(note=note.strip())
    await state.set_state(ResolveDialog.photo)
    builder = InlineKeyboardBuilder()
    builder.button(text=t("leader.skip_photo"), callback_data=SkipPhoto(id=data["ticket_id"]))
    await message.answer(t("leader.resolve_ask_photo"), reply_markup=builder.as_markup())


async def not_a_note(message: Message, t: Translate) -> None:
    """A sticker, photo, voice note... where the note is expected."""
    await message.answer(t("leader.need_text", limit=DESCRIPTION_LIMIT))


async def not_a_photo(message: Message, t: Translate) -> None:
    """Text, a sticker or a file where the photo is expected."""
    await message.answer(t("leader.need_photo"))


async def _resolve(
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    timing: Timing,
    person: Person,
    state: FSMContext,
    language: str,
    t: Translate,
    tz: tzinfo,
    photo: str | None,
) -> str:
    """Resolve with the dialog's note; the dialog ends either way. The reply text."""
    data = await state.get_data()
    try:
        ctx = await resolve_ticket(
            session=session,
            clock=clock,
            timing=timing,
            actor=person,
            ticket_id=data["ticket_id"],
            note=data["note"],
            photo=photo,
        )
    except DomainError:
        await state.clear()
        raise
    await state.clear()
    text, markup = await _card(session, clock, person, ctx, t, language, tz)
    await edit_text(bot, data.get("chat"), data.get("card"), text, markup)
    return t("leader.resolved", number=ctx.ticket.number)


async def resolve_photo(
    message: Message,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    state: FSMContext,
    language: str,
    t: Translate,
    settings,
    timing: Timing,
) -> None:
    """The photo of the result: resolve."""
    assert message.photo
    reply = await _resolve(
        bot,
        session,
        clock,
        timing,
        person,
        state,
        language,
        t,
        settings.tz,
        message.photo[-1].file_id,
    )
    await message.answer(reply)


async def skip_photo(
    query: CallbackQuery,
    callback_data: SkipPhoto,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    state: FSMContext,
    language: str,
    t: Translate,
    settings,
    timing: Timing,
) -> None:
    """Skip: resolve without a photo."""
    data = await state.get_data()
    if data.get("ticket_id") != callback_data.id:
        await query.answer(t("fallback.button"), show_alert=True)
        return
    reply = await _resolve(
        bot, session, clock, timing, person, state, language, t, settings.tz, None
    )
    chat_id, message_id = message_ref(query)
    await edit_text(bot, chat_id, message_id, reply, None)
    await query.answer()


async def close_note(
    message: Message,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    state: FSMContext,
    language: str,
    t: Translate,
    settings,
) -> None:
    """Why the returned ticket is closed: cancel it; the resident is told."""
    note = clean_text(message.text or "")
    problem = _note_problem(note, "cancel.note_empty", t)
    if problem:
        await message.answer(problem)
        return
    data = await state.get_data()
    try:
        ctx = await cancel_ticket(
            session=session,
            clock=clock,
            actor=person,
            ticket_id=data["ticket_id"],
            note=note.strip(),
        )
    except DomainError:
        await state.clear()
        raise
    await state.clear()
    text, markup = await _card(session, clock, person, ctx, t, language, settings.tz)
    await edit_text(bot, data.get("chat"), data.get("card"), text, markup)
    await message.answer(t("leader.closed", number=ctx.ticket.number))


# -- /queue --------------------------------------------------------------------------------


async def _queue_page(
    session: AsyncSession,
    clock: Clock,
    person: Person,
    offset: int,
    language: str,
    t: Translate,
    tz: tzinfo,
) -> tuple[str, InlineKeyboardMarkup | None]:
    offset = max(0, offset)
    tickets, total = await queue_of(session, person_id=person.id, offset=offset, limit=PAGE_SIZE)
    if not tickets and total:
        # Past the end (the queue shrank meanwhile): the last page.
        offset = (total - 1) // PAGE_SIZE * PAGE_SIZE
        tickets, total = await queue_of(
            session, person_id=person.id, offset=offset, limit=PAGE_SIZE
        )
    if not tickets:
        return t("leader.queue_empty"), None
    now = clock.now()
    lines = [t("leader.queue_title", total=total, first=offset + 1, last=offset + len(tickets))]
    builder = InlineKeyboardBuilder()
    for index, ticket in enumerate(tickets, start=offset + 1):
        ctx = await context_of(session, ticket)
        category = scope_name(language, ctx.category.name_zh, ctx.category.name_en)
        lines.append(
            t(
                "leader.queue_line",
                index=index,
                number=ticket.number,
                category=category,
                status=t(f"card.status.{ticket.status.value}"),
            )
        )
        if ticket.next_deadline is not None:
            when = local_time(ticket.next_deadline, tz)
            if ticket.next_deadline < now:
                late = duration(now - ticket.next_deadline, t)
                lines.append(t("leader.queue_overdue", when=when, late=late))
            else:
                lines.append(t("leader.queue_deadline", when=when))
        builder.button(
            text=t("leader.queue_open", number=ticket.number),
            callback_data=TicketAction(op=TicketOp.OPEN, id=ticket.id),
        )
    builder.adjust(1)
    paging = []
    if offset > 0:
        paging.append((t("leader.queue_prev"), Page(list=QUEUE, offset=max(0, offset - PAGE_SIZE))))
    if offset + len(tickets) < total:
        paging.append((t("leader.queue_next"), Page(list=QUEUE, offset=offset + PAGE_SIZE)))
    if paging:
        row = InlineKeyboardBuilder()
        for label, page in paging:
            row.button(text=label, callback_data=page)
        builder.attach(row)
    return "\n".join(lines), builder.as_markup()


async def queue_command(
    message: Message,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    language: str,
    t: Translate,
    settings,
) -> None:
    """/queue: the open tickets the person holds now, most urgent deadline first."""
    text, markup = await _queue_page(session, clock, person, 0, language, t, settings.tz)
    await message.answer(text, reply_markup=markup)


async def queue_page(
    query: CallbackQuery,
    callback_data: Page,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    language: str,
    t: Translate,
    settings,
) -> None:
    """« Previous / Next »: the page, in place."""
    text, markup = await _queue_page(
        session, clock, person, callback_data.offset, language, t, settings.tz
    )
    await edit_text(bot, *message_ref(query), text, markup)
    await query.answer()


def router() -> Router:
    """A fresh router for ticket holders (the domain checks every role and move)."""
    r = Router(name="leader")
    dialogs = StateFilter(ResolveDialog, CloseDialog)
    r.message.register(cancel_dialog, Command("cancel"), dialogs)
    r.message.register(queue_command, Command("queue"))
    r.message.register(resolve_note, StateFilter(ResolveDialog.note), Has(F.text))
    r.message.register(not_a_note, StateFilter(ResolveDialog.note))
    r.message.register(resolve_photo, StateFilter(ResolveDialog.photo), Has(F.photo))
    r.message.register(not_a_photo, StateFilter(ResolveDialog.photo))
    r.message.register(close_note, StateFilter(CloseDialog.note), Has(F.text))
    r.message.register(not_a_note, StateFilter(CloseDialog.note))

    ops = {
        TicketOp.OPEN: open_card,
        TicketOp.ACCEPT: accept,
        TicketOp.RETURN: ask_return_reason,
        TicketOp.ESCALATE: escalate,
        TicketOp.RESOLVE: start_dialog,
        TicketOp.REDISPATCH: ask_grid,
        TicketOp.CANCEL: start_dialog,
    }
    for op, handler in ops.items():
        r.callback_query.register(handler, TicketAction.filter(F.op == op))
    r.callback_query.register(
        return_with_reason, ReturnWhy.filter(F.reason.in_([why.value for why in ReturnReason]))
    )
    r.callback_query.register(redispatch, Redispatch.filter())
    r.callback_query.register(back_to_card, CardBack.filter())
    r.callback_query.register(skip_photo, SkipPhoto.filter(), StateFilter(ResolveDialog.photo))
    r.callback_query.register(queue_page, Page.filter(F.list == QUEUE))
    return r
