"""The organiser's side of calls: /calls lists the calls a person organised, and attendance
is confirmed after the end.
"""

from __future__ import annotations

from aiogram import Router


def router() -> Router:
    """A fresh router (filled in by the work on issue 5)."""
    return Router(name="attendance")
