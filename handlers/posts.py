"""Service posts (认岗) as a member sees them: /posts lists the community's posts, claim
and leave.

The posts come from the organisation file (storage/orgfile.py, `posts:`); places are taken by
the domain's conditional UPDATE (domain.posts.claim_post), so a full post refuses however many
press at once. After a press the list is shown again as it is now, also when the press was
refused (a post filled up since the list was sent).
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import Clock
from domain.errors import DomainError
from domain.members import member_of
from domain.places import get_community
from domain.posts import PostView, claim_post, leave_post, posts_of_member
from storage.enums import MemberStatus
from storage.models import Person
from views.buttons import PostAction, PostOp
from views.common import refusal_text, scope_name
from views.i18n import Translate


def _name(language: str, view: PostView) -> str:
    return scope_name(language, view.post.name_zh, view.post.name_en)


def posts_text(community: str, views: list[PostView], language: str, t: Translate) -> str:
    if not views:
        return t("posts.none")
    lines = [t("posts.title", community=community)]
    for view in views:
        post = view.post
        free = max(0, post.places - post.held)
        if view.mine:
            key = "posts.line_mine"
        elif free == 0:
            key = "posts.line_full"
        else:
            key = "posts.line"
        lines.append(t(key, name=_name(language, view), free=free, places=post.places))
    lines += ["", t("posts.hint")]
    return "\n".join(lines)


def posts_keyboard(views: list[PostView], language: str, t: Translate) -> InlineKeyboardMarkup:
    """One button a post: Leave for those held, Claim for the others (a full one refuses)."""
    builder = InlineKeyboardBuilder()
    for view in views:
        name = _name(language, view)
        if view.mine:
            builder.button(
                text=t("posts.btn.leave", name=name),
                callback_data=PostAction(op=PostOp.LEAVE, id=view.post.id),
            )
        else:
            builder.button(
                text=t("posts.btn.claim", name=name),
                callback_data=PostAction(op=PostOp.CLAIM, id=view.post.id),
            )
    builder.adjust(1)
    return builder.as_markup()


async def _view(
    session: AsyncSession, person: Person, language: str, t: Translate
) -> tuple[str, InlineKeyboardMarkup | None, list[PostView]]:
    """The list as it is now (text, buttons, posts); for someone not approved, what to do."""
    member = await member_of(session, person)
    if member is None or member.status != MemberStatus.APPROVED:
        if member is None:
            return t("posts.not_member"), None, []
        return t(f"posts.{member.status.value}"), None, []
    views = await posts_of_member(session=session, person=person)
    community = await get_community(session, member.community_id)
    name = scope_name(language, community.name_zh, community.name_en)
    markup = posts_keyboard(views, language, t) if views else None
    return posts_text(name, views, language, t), markup, views


async def posts_command(
    message: Message, session: AsyncSession, person: Person, language: str, t: Translate
) -> None:
    """/posts: the community's posts, places free and those held, with Claim / Leave."""
    text, markup, _ = await _view(session, person, language, t)
    await message.answer(text, reply_markup=markup)


async def post_pressed(
    query: CallbackQuery,
    callback_data: PostAction,
    session: AsyncSession,
    clock: Clock,
    person: Person,
    language: str,
    t: Translate,
    settings: Any,
) -> None:
    """Claim or Leave; either way the list is shown again as it is now."""
    refusal = None
    try:
        if callback_data.op == PostOp.CLAIM:
            await claim_post(session=session, clock=clock, person=person, post_id=callback_data.id)
        else:
            await leave_post(session=session, person=person, post_id=callback_data.id)
    except DomainError as exc:
        refusal = refusal_text(exc, t, settings.tz)
    text, markup, views = await _view(session, person, language, t)
    if refusal is not None:
        await query.answer(refusal, show_alert=True)
    else:
        name = next((_name(language, v) for v in views if v.post.id == callback_data.id), "")
        key = "posts.claimed" if callback_data.op == PostOp.CLAIM else "posts.left"
        await query.answer(t(key, name=name))
    if isinstance(query.message, Message):
        with suppress(TelegramBadRequest):
            await query.message.edit_text(text, reply_markup=markup)


def router() -> Router:
    """A fresh router for members and their service posts."""
    r = Router(name="posts")
    r.message.register(posts_command, Command("posts"))
    r.callback_query.register(post_pressed, PostAction.filter(F.op.in_(list(PostOp))))
    return r
