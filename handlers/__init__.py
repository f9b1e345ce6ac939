"""aiogram routers, one module per role; thin: read the update, call a use case, render."""

from __future__ import annotations

from aiogram import Router

from handlers import (
    admin,
    attendance,
    call_create,
    calls,
    common,
    department,
    fallback,
    leader,
    member,
    posts,
    resident,
    stats,
    whistle,
)


def routers() -> list[Router]:
    """Fresh routers, in the order the dispatcher must try them."""
    return [
        common.router(),
        duties(),
        resident.router(),
        # Last: it answers whatever no other router took, so it must not shadow them.
        fallback.router(),
    ]


def duties() -> Router:
    """The routers of those who act on tickets and of Party members, nested under one, so a
    resident's update passes them all with one check (bot.routing gives each router the
    union of its nested routers' gates). All before the resident's: each has a dialog with its
    own /cancel, which the resident's /cancel must not end unseen."""
    r = Router(name="duties")
    r.include_routers(
        admin.router(),
        leader.router(),
        whistle.router(),
        member.router(),
        calls.router(),
        call_create.router(),
        attendance.router(),
        posts.router(),
        department.router(),
        stats.router(),
    )
    return r
