"""For everyone: /start (with invitation codes), /help, /lang, and "where is this place?"."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart, StateFilter
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import Clock
from domain.geo import valid_point
from domain.invitations import redeem_invitation
from domain.languages import LANGUAGES
from domain.people import roles_of, set_language
from domain.reference import Reference
from domain.roles import powers
from domain.text import clean_text
from handlers.filters import Has
from storage.models import Person
from views.buttons import Button
from views.common import scope_name
from views.i18n import Translate

logger = logging.getLogger(__name__)


LANGUAGE_LABELS = {"zh-hans": "简体中文", "en": "English"}


class LanguageChoice(Button, prefix="lang"):
    code: str


def language_keyboard() -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for code in LANGUAGES:
        builder.button(text=LANGUAGE_LABELS[code], callback_data=LanguageChoice(code=code))
    return builder.as_markup()


def role_lines(person: Person, assignments: list, t: Translate) -> list[str]:
    """One line per active role: "grid leader: 金水区…"."""
    lines = []
    for assignment, unit, department in assignments:
        scope = unit or department
        name = scope_name(person.language, scope.name_zh, scope.name_en) if scope else ""
        lines.append(f"• {t('role.' + assignment.role.value)}: {name}")
    return lines


async def start_with_code(
    message: Message,
    command: CommandObject,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    t: Translate,
) -> None:
    """/start <code>: redeem an invitation and bind this account to its role."""
    redeemed = await redeem_invitation(
        session=session, clock=clock, person=person, code=clean_text(command.args or "").strip()
    )
    key = "invite.already" if redeemed.already_had else "invite.accepted"
    await message.answer(
        t(
            key,
            role=t("role." + redeemed.role.value),
            scope=scope_name(person.language, redeemed.scope_name_zh, redeemed.scope_name_en),
        )
    )


async def start(message: Message, session: AsyncSession, person: Person, t: Translate) -> None:
    """/start: greet, and say which roles the person holds."""
    lines = [t("start.welcome", name=person.full_name or "")]
    assignments = await roles_of(session=session, person_id=person.id)
    roles = role_lines(person, assignments, t)
    lines.append("\n".join([t("start.roles"), *roles]) if roles else t("start.no_roles"))
    await message.answer("\n\n".join(lines))


async def help_command(
    message: Message, session: AsyncSession, person: Person, t: Translate
) -> None:
    """/help: the commands, and the person's roles."""
    parts = [t("help.text")]
    assignments = await roles_of(session=session, person_id=person.id)
    if any(powers(a.role).sees_figures for a, _, _ in assignments):
        parts[0] += "\n" + t("help.stats")
    if any(powers(a.role).invites for a, _, _ in assignments):
        parts[0] += "\n" + t("help.admin")
    roles = role_lines(person, assignments, t)
    if roles:
        parts.append("\n".join([t("help.roles"), *roles]))
    await message.answer("\n\n".join(parts))


async def lang_command(message: Message, t: Translate) -> None:
    """/lang: offer the languages as buttons."""
    await message.answer(t("lang.choose"), reply_markup=language_keyboard())


async def lang_chosen(
    query: CallbackQuery,
    callback_data: LanguageChoice,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    translator: Callable[[str], Translate],
) -> None:
    """A language button: remember the choice and confirm in the new language."""
    await set_language(
        session=session, clock=clock, person_id=person.id, language=callback_data.code
    )
    t = translator(callback_data.code)
    await query.answer()
    if query.message is not None:
        await query.message.answer(t("lang.set"))


async def location_shared(
    message: Message,
    session: AsyncSession,
    reference: Reference,
    person: Person,
    t: Translate,
) -> None:
    """A location outside any dialog: say which grid it belongs to, or that it is outside."""
    assert message.location is not None
    lat, lon = message.location.latitude, message.location.longitude
    if not valid_point(lat, lon):
        await message.answer(t("place.invalid"))
        return
    org = await reference.get(session)
    place = org.place_of(lat, lon)
    if place is None:
        await message.answer(t("place.outside"))
        return
    names = " › ".join(scope_name(person.language, u.name_zh, u.name_en) for u in place)
    await message.answer(t("place.inside", place=names))


def router() -> Router:
    """A fresh router (each dispatcher needs its own) for the commands everyone may use."""
    r = Router(name="common")
    r.message.register(start_with_code, CommandStart(deep_link=True))
    r.message.register(start, CommandStart())
    r.message.register(help_command, Command("help"))
    r.message.register(lang_command, Command("lang"))
    # Outside any dialog only: a dialog that asks for a place takes the location itself.
    r.message.register(location_shared, Has(F.location), StateFilter(None))
    r.callback_query.register(lang_chosen, LanguageChoice.filter(F.code.in_(LANGUAGES)))
    return r
