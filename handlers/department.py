"""Department liaisons answering the street's whistle: Report in (报到/签收), Return (退单:
a reason, then a note), Finish (a note).

Every button calls the domain, which checks that the person is a liaison of the summoned
department (anyone else is refused, and the refusal audited) and that the department's part
is still in a state the button applies to (a stale button says where it stands now and
changes nothing). The card is edited only after the use case succeeded, so the buttons just
used disappear.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import tzinfo
from typing import Any

from aiogram import Bot, F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import Clock
from domain.deadlines import Timing
from domain.lookups import Lookups

# The summons' data and its checks live in the domain; the dialog asks the same questions
# before it asks for a note that the use case asks when it gets one.
from domain.summons import (
    check_summons,
    finish_summons,
    report_in,
    return_summons,
    summons_data,
)
from domain.tickets import DESCRIPTION_LIMIT, StaleAction, TicketContext, context_of
from handlers.filters import Has
from handlers.leader import cancel_dialog, edit_text, message_ref, not_a_note, set_buttons
from storage.enums import (
    ACTIVE_SUMMONS,
    SummonsReturnReason,
    SummonsStatus,
    TicketStatus,
)
from storage.models import Department, Person, Ticket, TicketSummons
from views.buttons import SummonsAction, SummonsOp, SummonsReturnWhy
from views.cards import LIAISON, summons_keyboard, summons_text
from views.common import scope_name
from views.i18n import Translate

ANSWER_LIMIT = 200  # Telegram's limit for the text a button press is answered with


def short(text: str) -> str:
    """A button's answer within Telegram's limit (long department names can pass it)."""
    return text if len(text) <= ANSWER_LIMIT else text[: ANSWER_LIMIT - 1] + "…"


class ReturnNote(StatesGroup):
    """After a return reason: the note for the street (data: summons_id, reason, card...)."""

    note = State()


class FinishNote(StatesGroup):
    """After Finish: what was done (data: summons_id, card...)."""

    note = State()


# -- the summons as its liaisons see it ------------------------------------------------------


async def summons_view(
    session: AsyncSession,
    clock: Clock,
    ctx: TicketContext,
    summons: TicketSummons,
) -> dict[str, Any]:
    """The summons card's data now (as the outbox would send it, without a reason)."""
    department = await Lookups(session).department(summons.department_id)
    data = summons_data(ctx, summons, department, clock.now())
    return data


def department_name(data: Mapping[str, Any], language: str) -> str:
    return scope_name(language, data["department_zh"], data["department_en"])


def stale_text(exc: StaleAction, t: Translate, language: str) -> str:
    """A stale summons button: where the department's part stands now."""
    params = exc.params
    return t(
        "summons.stale_now",
        number=params["number"],
        department=scope_name(language, str(params["department_zh"]), str(params["department_en"])),
        state=t(f"summons.status.{params['status']}"),
    )


async def answer_stale(query: CallbackQuery, exc: StaleAction, t: Translate, language: str) -> None:
    """Answer a stale summons button in the person's words; any other refusal goes on up."""
    if exc.key != "summons.stale":
        raise exc
    await query.answer(short(stale_text(exc, t, language)), show_alert=True)


async def _check(
    session: AsyncSession,
    clock: Clock,
    person: Person,
    summons_id: int,
    statuses: Collection[SummonsStatus],
) -> tuple[Ticket, TicketSummons, Department]:
    """Before a dialog: the person is the department's liaison and the summons still live."""
    return await check_summons(
        session=session,
        clock=clock,
        actor=person,
        summons_id=summons_id,
        statuses=frozenset(statuses),
    )


# -- buttons ---------------------------------------------------------------------------------


async def report(
    query: CallbackQuery,
    callback_data: SummonsAction,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    timing: Timing,
    person: Person,
    language: str,
    t: Translate,
    settings,
) -> None:
    """Report in (签收): the department's clock now runs on finishing; the street is told."""
    try:
        ctx, summons = await report_in(
            session=session, clock=clock, timing=timing, actor=person, summons_id=callback_data.id
        )
    except StaleAction as exc:
        await answer_stale(query, exc, t, language)
        return
    data = await summons_view(session, clock, ctx, summons)
    text = summons_text(data, t, language, audience=LIAISON, tz=settings.tz)
    await edit_text(bot, *message_ref(query), text, summons_keyboard(data, t, LIAISON))
    name = department_name(data, language)
    await query.answer(short(t("summons.reported_in", number=ctx.ticket.number, department=name)))


async def ask_reason(
    query: CallbackQuery,
    callback_data: SummonsAction,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    language: str,
    t: Translate,
) -> None:
    """Return (退单): the card's buttons become the two reasons (and « Back)."""
    try:
        ticket, summons, department = await _check(
            session, clock, person, callback_data.id, ACTIVE_SUMMONS
        )
    except StaleAction as exc:
        await answer_stale(query, exc, t, language)
        return
    builder = InlineKeyboardBuilder()
    for reason in SummonsReturnReason:
        builder.button(
            text=t(f"summons.return_reason.{reason.value}"),
            callback_data=SummonsReturnWhy(id=summons.id, reason=reason.value),
        )
    builder.button(
        text=t("leader.back"), callback_data=SummonsAction(op=SummonsOp.BACK, id=summons.id)
    )
    builder.adjust(2, 1)
    await set_buttons(bot, query, builder.as_markup())
    name = scope_name(language, department.name_zh, department.name_en)
    await query.answer(short(t("summons.return_ask", number=ticket.number, department=name)))


async def back(
    query: CallbackQuery,
    callback_data: SummonsAction,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    language: str,
    t: Translate,
    settings,
) -> None:
    """« Back: the card as the department's part stands now, in place."""
    try:
        ticket, summons, _ = await _check(
            session, clock, person, callback_data.id, frozenset(SummonsStatus)
        )
    except StaleAction as exc:
        await answer_stale(query, exc, t, language)
        return
    ctx = await context_of(session, ticket)
    data = await summons_view(session, clock, ctx, summons)
    text = summons_text(data, t, language, audience=LIAISON, tz=settings.tz)
    await edit_text(bot, *message_ref(query), text, summons_keyboard(data, t, LIAISON))
    await query.answer()


async def _start_note(
    query: CallbackQuery,
    state: FSMContext,
    dialog: State,
    prompt: str,
    **data: Any,
) -> None:
    chat_id, message_id = message_ref(query)
    await state.set_state(dialog)
    await state.set_data({**data, "chat": chat_id, "card": message_id})
    await query.answer()
    if query.message is not None:
        await query.message.answer(prompt)


async def ask_return_note(
    query: CallbackQuery,
    callback_data: SummonsReturnWhy,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    state: FSMContext,
    language: str,
    t: Translate,
) -> None:
    """A reason was chosen: now the note for the street."""
    try:
        ticket, summons, _ = await _check(session, clock, person, callback_data.id, ACTIVE_SUMMONS)
    except StaleAction as exc:
        await answer_stale(query, exc, t, language)
        return
    reason = t(f"summons.return_reason.{callback_data.reason}")
    prompt = t(
        "summons.return_ask_note", number=ticket.number, reason=reason, limit=DESCRIPTION_LIMIT
    )
    await _start_note(
        query, state, ReturnNote.note, prompt, summons_id=summons.id, reason=callback_data.reason
    )


async def ask_finish_note(
    query: CallbackQuery,
    callback_data: SummonsAction,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    state: FSMContext,
    language: str,
    t: Translate,
) -> None:
    """Finish: what was done, for the street and the resident."""
    try:
        ticket, summons, department = await _check(
            session, clock, person, callback_data.id, {SummonsStatus.ACCEPTED}
        )
    except StaleAction as exc:
        await answer_stale(query, exc, t, language)
        return
    name = scope_name(language, department.name_zh, department.name_en)
    prompt = t(
        "summons.finish_ask_note", number=ticket.number, department=name, limit=DESCRIPTION_LIMIT
    )
    await _start_note(query, state, FinishNote.note, prompt, summons_id=summons.id)


# -- the note dialogs ------------------------------------------------------------------------


def _note_problem(text: str | None, empty_key: str, t: Translate) -> str | None:
    """Why this text can't be the note, or None if it can."""
    if text is None or text.startswith("/"):
        return t("leader.need_text", limit=DESCRIPTION_LIMIT)
    if not text.strip():
        return t(empty_key)
    if len(text.strip()) > DESCRIPTION_LIMIT:
        return t("report.description_too_long", limit=DESCRIPTION_LIMIT)
    return None


async def _show_card(
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    dialog: Mapping[str, Any],
    ctx: TicketContext,
    summons: TicketSummons,
    language: str,
    t: Translate,
    tz: tzinfo,
) -> dict[str, Any]:
    """The card the dialog started from, as it stands now; the summons' data."""
    data = await summons_view(session, clock, ctx, summons)
    text = summons_text(data, t, language, audience=LIAISON, tz=tz)
    await edit_text(
        bot, dialog.get("chat"), dialog.get("card"), text, summons_keyboard(data, t, LIAISON)
    )
    return data


async def return_note(
    message: Message,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    timing: Timing,
    person: Person,
    state: FSMContext,
    language: str,
    t: Translate,
    settings,
) -> None:
    """The note: return the summons to the street with the reason chosen."""
    problem = _note_problem(message.text, "summons.note_empty", t)
    if problem:
        await message.answer(problem)
        return
    dialog = await state.get_data()
    await state.clear()
    reason = SummonsReturnReason(dialog["reason"])
    try:
        ctx, summons = await return_summons(
            session=session,
            clock=clock,
            timing=timing,
            actor=person,
            summons_id=dialog["summons_id"],
            reason=reason,
            note=(message.text or "").strip(),
        )
    except StaleAction as exc:
        if exc.key != "summons.stale":
            raise
        await message.answer(stale_text(exc, t, language))
        return
    await _show_card(bot, session, clock, dialog, ctx, summons, language, t, settings.tz)
    await message.answer(
        t(
            "summons.returned",
            number=ctx.ticket.number,
            reason=t(f"summons.return_reason.{reason.value}"),
        )
    )


async def finish_note(
    message: Message,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    timing: Timing,
    person: Person,
    state: FSMContext,
    language: str,
    t: Translate,
    settings,
) -> None:
    """The note: the department's part is done (the last one to finish resolves the ticket)."""
    problem = _note_problem(message.text, "resolve.note_empty", t)
    if problem:
        await message.answer(problem)
        return
    dialog = await state.get_data()
    await state.clear()
    try:
        ctx, summons = await finish_summons(
            session=session,
            clock=clock,
            timing=timing,
            actor=person,
            summons_id=dialog["summons_id"],
            note=(message.text or "").strip(),
        )
    except StaleAction as exc:
        if exc.key != "summons.stale":
            raise
        await message.answer(stale_text(exc, t, language))
        return
    data = await _show_card(bot, session, clock, dialog, ctx, summons, language, t, settings.tz)
    key = (
        "summons.finished_resolved"
        if data["status"] == TicketStatus.RESOLVED
        else "summons.finished"
    )
    await message.answer(
        t(key, number=ctx.ticket.number, department=department_name(data, language))
    )


def router() -> Router:
    """A fresh router for department liaisons (the domain checks who is whose liaison)."""
    r = Router(name="department")
    dialogs = StateFilter(ReturnNote, FinishNote)
    r.message.register(cancel_dialog, Command("cancel"), dialogs)
    r.message.register(return_note, StateFilter(ReturnNote.note), Has(F.text))
    r.message.register(finish_note, StateFilter(FinishNote.note), Has(F.text))
    r.message.register(not_a_note, dialogs)

    ops = {
        SummonsOp.REPORT_IN: report,
        SummonsOp.RETURN: ask_reason,
        SummonsOp.FINISH: ask_finish_note,
        SummonsOp.BACK: back,
    }
    for op, handler in ops.items():
        r.callback_query.register(handler, SummonsAction.filter(F.op == op))
    r.callback_query.register(
        ask_return_note,
        SummonsReturnWhy.filter(F.reason.in_([why.value for why in SummonsReturnReason])),
    )
    return r
