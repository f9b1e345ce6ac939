"""What the bot remembers of the updates it handled: enough to recognise one sent again."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import Clock
from storage.inbox import prune_handled

# Telegram sends an unconfirmed update again for a day at most: two days of memory is enough.
REMEMBER_HANDLED = timedelta(days=2)


async def forget_old_updates(*, session: AsyncSession, clock: Clock) -> int:
    """Forget updates received and handled more than REMEMBER_HANDLED ago; how many."""
    return await prune_handled(session, before=clock.now() - REMEMBER_HANDLED)
