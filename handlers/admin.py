"""Administrators in chat: /invite issues a one-time link for a role in their part of the city."""

from __future__ import annotations

from datetime import timedelta

from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message
from aiogram.utils.deep_linking import create_deep_link
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import Clock
from domain.invitations import create_invitation
from domain.roles import powers
from domain.text import clean_text
from storage.enums import Role
from storage.models import Person
from views.common import scope_name
from views.i18n import Translate


async def invite_command(
    message: Message,
    command: CommandObject,
    bot: Bot,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    settings,
    t: Translate,
) -> None:
    """/invite ROLE CODE: a one-time invitation link (administrators of a covering unit only)."""
    args = clean_text(command.args or "").split()
    roles = ", ".join(r.value for r in Role)
    if len(args) != 2:
        await message.answer(t("admin.invite_usage", roles=roles))
        return
    role_name, code = args
    try:
        role = Role(role_name)
    except ValueError:
        await message.answer(t("admin.invite_bad_role", role=role_name, roles=roles))
        return
    issued = await create_invitation(
        session=session,
        clock=clock,
        role=role,
        unit_code=None if powers(role).department else code,
        department_code=code if powers(role).department else None,
        ttl=timedelta(days=settings.invite_ttl_days),
        created_by_id=person.id,
    )
    me = await bot.me()
    link = create_deep_link(me.username or "", "start", issued.code)
    scope = scope_name(person.language, issued.scope_name_zh, issued.scope_name_en)
    expires = issued.invitation.expires_at.astimezone(settings.tz)
    await message.answer(
        t(
            "admin.invite_link",
            role=t(f"role.{role.value}"),
            scope=scope,
            link=link,
            expires=f"{expires:%Y-%m-%d %H:%M}",
        )
    )


def router() -> Router:
    """A fresh router for administrators' commands (the domain checks the role)."""
    r = Router(name="admin")
    r.message.register(invite_command, Command("invite"))
    return r
