"""Service posts (认岗) as a member sees them: /posts lists the community's posts, claim
and leave.
"""

from __future__ import annotations

from aiogram import Router


def router() -> Router:
    """A fresh router (filled in by the work on issue 5)."""
    return Router(name="posts")
