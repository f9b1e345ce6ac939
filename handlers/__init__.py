"""aiogram routers, one module per role; thin: read the update, call a use case, render."""

from __future__ import annotations

from aiogram import Router

from handlers import (
    admin,
    calls,
    common,
    department,
    fallback,
    leader,
    member,
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
        # Before the resident's: its /cancel must not end a department's dialog unseen.
        department.router(),
        resident.router(),
        # Last: it answers whatever no other router took, so it must not shadow them.
        fallback.router(),
    ]
