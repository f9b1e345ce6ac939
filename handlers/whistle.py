"""The street's whistle (吹哨): the department picker on a ticket, and the street's answer to a
department that returned its summons (Insist / Release / Summon other departments).

The picker keeps its selection in the buttons themselves (a bitmask over the departments in
the order shown, with a fingerprint of that order), so several pickers may be open at once
and nothing is stored for them. Every press is checked by the domain: who may whistle on
this ticket (a forged button is refused and audited), whether the ticket still allows it.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import tzinfo

from aiogram import Bot, F, Router
from aiogram.types import CallbackQuery, InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import Clock
from domain.deadlines import Timing
from domain.queues import open_ticket
from domain.summons import (
    WHISTLE_LEVELS,
    insist,
    proposed_departments,
    release,
    summonses_of,
    whistle,
)
from domain.tickets import Action, StaleAction, TicketContext, check_move, context_of
from handlers.department import answer_stale, department_name, short, summons_view
from handlers.leader import _card, edit_text, message_ref, set_buttons
from storage.enums import ACTIVE_SUMMONS, SummonsStatus, TicketStatus
from storage.models import Department, Person, Ticket
from views.buttons import (
    SummonsAction,
    SummonsOp,
    TicketAction,
    TicketOp,
    WhistleOp,
    WhistlePick,
)
from views.cards import STREET, summons_keyboard, summons_text
from views.common import scope_name
from views.i18n import Translate

# Telegram takes at most 100 buttons on a message; a picker offers this many departments
# (responsible ones first), which also keeps the bitmask short in the callback data.
PICKER_LIMIT = 40


@dataclass(frozen=True)
class Choice:
    department: Department
    responsible: bool
    returned: bool  # it returned this ticket before: choosing it again insists


async def _choices(session: AsyncSession, ticket: Ticket) -> list[Choice]:
    """Departments the street may summon now: not those already on it or finished."""
    responsible, others = await proposed_departments(session, ticket)
    summonses = {s.department_id: s.status for s in await summonses_of(session, ticket.id)}
    busy = ACTIVE_SUMMONS | {SummonsStatus.FINISHED}
    first = {d.id for d in responsible}
    choices = [
        Choice(d, d.id in first, summonses.get(d.id) == SummonsStatus.RETURNED)
        for d in [*responsible, *others]
        if summonses.get(d.id) not in busy
    ]
    return choices[:PICKER_LIMIT]


def _fingerprint(choices: Sequence[Choice]) -> str:
    ids = ",".join(str(c.department.id) for c in choices)
    return f"{zlib.crc32(ids.encode()) & 0xFFFF:04x}"


def _mask(sel: str) -> int | None:
    try:
        mask = int(sel, 16)
    except ValueError:
        return None
    return mask if mask >= 0 else None


def _names(departments: Sequence[Department], language: str) -> str:
    separator = "、" if language == "zh-hans" else ", "
    return separator.join(scope_name(language, d.name_zh, d.name_en) for d in departments)


def _picker(
    ticket_id: int,
    choices: Sequence[Choice],
    mask: int,
    src: int,
    t: Translate,
    language: str,
) -> InlineKeyboardMarkup:
    """One toggle per department (✅ chosen, ★ responsible, ↩️ returned before), then
    Summon (n) and Cancel."""
    v = _fingerprint(choices)
    builder = InlineKeyboardBuilder()
    for index, choice in enumerate(choices):
        chosen = bool(mask >> index & 1)
        tags = ("★ " if choice.responsible else "") + ("↩️ " if choice.returned else "")
        name = scope_name(language, choice.department.name_zh, choice.department.name_en)
        builder.button(
            text=f"{'✅' if chosen else '▫️'} {tags}{name}",
            callback_data=WhistlePick(
                op=WhistleOp.TOGGLE, id=ticket_id, sel=f"{mask ^ (1 << index):x}", v=v, src=src
            ),
        )
    builder.button(
        text=t("whistle.button.summon", count=mask.bit_count()),
        callback_data=WhistlePick(op=WhistleOp.SUMMON, id=ticket_id, sel=f"{mask:x}", v=v, src=src),
    )
    builder.button(
        text=t("whistle.button.cancel"),
        callback_data=WhistlePick(op=WhistleOp.CANCEL, id=ticket_id, src=src),
    )
    builder.adjust(*([1] * len(choices)), 2)
    return builder.as_markup()


async def _whistle_check(
    session: AsyncSession, clock: Clock, person: Person, ticket_id: int
) -> Ticket:
    """The person may whistle on this ticket now (refused and audited, or stale, if not)."""
    ticket = await check_move(
        session=session, clock=clock, actor=person, ticket_id=ticket_id, action=Action.WHISTLE
    )
    if ticket.level not in WHISTLE_LEVELS:
        raise StaleAction("ticket.stale", status=ticket.status.value, number=ticket.number)
    return ticket


async def _origin(
    session: AsyncSession,
    clock: Clock,
    person: Person,
    ctx: TicketContext,
    src: int,
    t: Translate,
    language: str,
    tz: tzinfo,
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The message the picker was opened on, as it stands now: the ticket's card, or the
    returned department's card ("summon other departments") with the street's buttons."""
    if src:
        found = [s for s in await summonses_of(session, ctx.ticket.id) if s.id == src]
        if found:
            data = await summons_view(session, clock, ctx, found[0])
            text = summons_text(data, t, language, audience=STREET, tz=tz)
            return text, summons_keyboard(data, t, STREET)
    return await _card(session, clock, person, ctx, t, language, tz)


# -- the picker ------------------------------------------------------------------------------


async def _open_picker(
    query: CallbackQuery,
    ticket_id: int,
    src: int,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    language: str,
    t: Translate,
    tz: tzinfo,
) -> None:
    ticket = await _whistle_check(session, clock, person, ticket_id)
    choices = await _choices(session, ticket)
    ctx = await context_of(session, ticket)
    if not choices:
        text = t("whistle.none_available", number=ticket.number)
        await query.answer(short(text), show_alert=True)
        return
    text, _ = await _origin(session, clock, person, ctx, src, t, language, tz)
    category = scope_name(language, ctx.category.name_zh, ctx.category.name_en)
    prompt = t("whistle.pick", number=ticket.number, category=category)
    markup = _picker(ticket.id, choices, 0, src, t, language)
    await edit_text(bot, *message_ref(query), f"{prompt}\n\n{text}", markup)
    await query.answer()


async def whistle_button(
    query: CallbackQuery,
    callback_data: TicketAction,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    language: str,
    t: Translate,
    settings,
) -> None:
    """📣 Whistle on the ticket card: the card becomes the department picker."""
    await _open_picker(
        query, callback_data.id, 0, bot, session, clock, person, language, t, settings.tz
    )


async def summon_others(
    query: CallbackQuery,
    callback_data: WhistlePick,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    language: str,
    t: Translate,
    settings,
) -> None:
    """Summon other departments (on a returned department's card): the picker there."""
    await _open_picker(
        query,
        callback_data.id,
        callback_data.src,
        bot,
        session,
        clock,
        person,
        language,
        t,
        settings.tz,
    )


async def _current(
    query: CallbackQuery,
    callback_data: WhistlePick,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    language: str,
    t: Translate,
) -> tuple[Ticket, list[Choice], int] | None:
    """The ticket, the choices now and the press's selection; None (the person was told, and
    the picker redrawn) when the list changed since the picker was drawn."""
    ticket = await _whistle_check(session, clock, person, callback_data.id)
    choices = await _choices(session, ticket)
    mask = _mask(callback_data.sel)
    if mask is None or mask >> len(choices) or callback_data.v != _fingerprint(choices):
        if choices:
            markup = _picker(ticket.id, choices, 0, callback_data.src, t, language)
            await set_buttons(bot, query, markup)
        await query.answer(t("whistle.changed"), show_alert=True)
        return None
    return ticket, choices, mask


async def toggle(
    query: CallbackQuery,
    callback_data: WhistlePick,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    language: str,
    t: Translate,
) -> None:
    """Choose or drop one department: only the buttons change."""
    current = await _current(query, callback_data, bot, session, clock, person, language, t)
    if current is None:
        return
    ticket, choices, mask = current
    markup = _picker(ticket.id, choices, mask, callback_data.src, t, language)
    await set_buttons(bot, query, markup)
    await query.answer()


async def summon(
    query: CallbackQuery,
    callback_data: WhistlePick,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    timing: Timing,
    person: Person,
    language: str,
    t: Translate,
    settings,
) -> None:
    """Summon the chosen departments; the message says who was summoned.

    Nothing chosen: the domain refuses (whistle.no_departments) and the picker stays.
    """
    current = await _current(query, callback_data, bot, session, clock, person, language, t)
    if current is None:
        return
    ticket, choices, mask = current
    chosen = [c.department for i, c in enumerate(choices) if mask >> i & 1]
    ctx, summoned = await whistle(
        session=session,
        clock=clock,
        timing=timing,
        actor=person,
        ticket_id=ticket.id,
        department_ids=[d.id for d in chosen],
    )
    by_id = {d.id: d for d in chosen}
    names = _names([by_id[s.department_id] for s in summoned], language)
    text, markup = await _origin(
        session, clock, person, ctx, callback_data.src, t, language, settings.tz
    )
    await edit_text(
        bot, *message_ref(query), f"{t('whistle.done', departments=names)}\n\n{text}", markup
    )
    await query.answer(short(t("whistle.summoned", number=ctx.ticket.number, departments=names)))


async def cancel(
    query: CallbackQuery,
    callback_data: WhistlePick,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    language: str,
    t: Translate,
    settings,
) -> None:
    """Cancel: the message as it was (the ticket's card or the returned department's)."""
    ticket, _ = await open_ticket(
        session=session, clock=clock, person=person, ticket_id=callback_data.id
    )
    ctx = await context_of(session, ticket)
    text, markup = await _origin(
        session, clock, person, ctx, callback_data.src, t, language, settings.tz
    )
    await edit_text(bot, *message_ref(query), text, markup)
    await query.answer(t("whistle.cancelled"))


# -- the street's answer to a returned summons -----------------------------------------------


async def _after_arbitration(
    query: CallbackQuery,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    ctx: TicketContext,
    data: dict,
    language: str,
    t: Translate,
    tz: tzinfo,
) -> None:
    """The returned card now: the department's part as it stands, the ticket's own buttons."""
    text = summons_text(data, t, language, audience=STREET, tz=tz)
    _, markup = await _card(session, clock, person, ctx, t, language, tz)
    await edit_text(bot, *message_ref(query), text, markup)


async def insist_button(
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
    """Insist: the department must take it after all (summoned again, with a new deadline)."""
    try:
        ctx, summoned = await insist(
            session=session, clock=clock, timing=timing, actor=person, summons_id=callback_data.id
        )
    except StaleAction as exc:
        await answer_stale(query, exc, t, language)
        return
    data = await summons_view(session, clock, ctx, summoned[0])
    await _after_arbitration(
        query, bot, session, clock, person, ctx, data, language, t, settings.tz
    )
    name = department_name(data, language)
    await query.answer(short(t("summons.insisted", number=ctx.ticket.number, department=name)))


async def release_button(
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
    """Release: the return is accepted. If every other department has finished the ticket is
    answered; if none is left on it, it is back in the street's hands."""
    try:
        ctx, summons = await release(
            session=session, clock=clock, timing=timing, actor=person, summons_id=callback_data.id
        )
    except StaleAction as exc:
        await answer_stale(query, exc, t, language)
        return
    data = await summons_view(session, clock, ctx, summons)
    await _after_arbitration(
        query, bot, session, clock, person, ctx, data, language, t, settings.tz
    )
    key = {
        TicketStatus.RESOLVED: "summons.released_resolved",
        TicketStatus.ACCEPTED: "summons.released_recalled",
    }.get(ctx.ticket.status, "summons.released")
    name = department_name(data, language)
    await query.answer(short(t(key, number=ctx.ticket.number, department=name)))


def router() -> Router:
    """A fresh router for the street's whistle (the domain checks every role and move)."""
    r = Router(name="whistle")
    r.callback_query.register(whistle_button, TicketAction.filter(F.op == TicketOp.WHISTLE))
    r.callback_query.register(summon_others, WhistlePick.filter(F.op == WhistleOp.START))
    r.callback_query.register(toggle, WhistlePick.filter(F.op == WhistleOp.TOGGLE))
    r.callback_query.register(summon, WhistlePick.filter(F.op == WhistleOp.SUMMON))
    r.callback_query.register(cancel, WhistlePick.filter(F.op == WhistleOp.CANCEL))
    r.callback_query.register(insist_button, SummonsAction.filter(F.op == SummonsOp.INSIST))
    r.callback_query.register(release_button, SummonsAction.filter(F.op == SummonsOp.RELEASE))
    return r
