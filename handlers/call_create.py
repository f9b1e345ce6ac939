"""A community secretary or grid leader creating a call (社区吹哨): /call, and Turn into call
on a ticket card.
"""

from __future__ import annotations

from aiogram import Router


def router() -> Router:
    """A fresh router (filled in by the work on issue 5)."""
    return Router(name="call_create")
