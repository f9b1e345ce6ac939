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
    whistle,
)


def routers() -> list[Router]:
    """Fresh routers, in the order the dispatcher must try them."""
    return [
        common.router(),
        admin.router(),
        leader.router(),
        whistle.router(),
        # Before the resident's: its /cancel must not end a /duty dialog unseen.
        member.router(),
        # Before the resident's: its /cancel must not end a check-in unseen.
        calls.router(),
        # Before the resident's, for the same reason: each has a dialog with its own /cancel.
        call_create.router(),
        attendance.router(),
        posts.router(),
        # Before the resident's: its /cancel must not end a department's dialog unseen.
        department.router(),
        resident.router(),
        # Last: it answers whatever no other router took, so it must not shadow them.
        fallback.router(),
    ]
