"""The daily digest: each grid leader, community secretary and street officer hears what their
unit holds (open, overdue, due today) with the most urgent tickets to open.

Sent once per working day, at a set local time or at the first sweep after it (so a bot that
was down at that hour still sends it); the day is claimed by inserting a JobRun row in the
transaction that queues the digests, so two schedulers never send it twice (the second waits
for the first's commit, then finds the day taken; if the first rolls back, the second sends).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, time, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import Clock
from domain.deadlines import Timing
from domain.outbox import Outgoing, enqueue_many
from domain.roles import digest_roles, powers
from storage.digests import digest_holders, held_counts, most_urgent
from storage.enums import OPEN_STATUSES, Lane, Role, TicketStatus
from storage.once import claim_once

logger = logging.getLogger(__name__)

LISTED = 10
# Waiting on the holder (a resolved ticket waits on the resident).
HELD = [s.value for s in OPEN_STATUSES if s != TicketStatus.RESOLVED]


async def _most_urgent(
    session: AsyncSession, keys: list[tuple[int, str]], now: datetime
) -> dict[tuple[int, str], list[dict]]:
    """Up to LISTED tickets per (unit, level), soonest deadline first."""
    listed: dict[tuple[int, str], list[dict]] = defaultdict(list)
    for ticket in await most_urgent(session, keys, HELD, per=LISTED):
        deadline = ticket.next_deadline
        listed[(ticket.holder_unit_id, ticket.level)].append(
            {
                "ticket_id": ticket.id,
                "number": ticket.number,
                "category_zh": ticket.category_zh,
                "category_en": ticket.category_en,
                "next_deadline": deadline.isoformat() if deadline else None,
                "overdue": bool(deadline and deadline < now),
            }
        )
    return listed


async def send_digests(
    *, session: AsyncSession, clock: Clock, timing: Timing, at: time
) -> int | None:
    """Queue today's digests if it is a working day, `at` has passed and nobody sent them yet.

    Returns how many were queued, or None when it was not the time (or already done).
    """
    now = clock.now()
    local = now.astimezone(timing.calendar.tz)
    today = local.date()
    if local.time() < at or not timing.calendar.is_working_day(today):
        return None
    if not await claim_once(session, f"digest:{today.isoformat()}", now):
        return None
    holders = await digest_holders(session, digest_roles())
    end_of_day = (
        datetime.combine(today + timedelta(days=1), time(), timing.calendar.tz)
    ).astimezone(now.tzinfo)
    unit_ids = sorted({unit.id for _, _, unit in holders})
    figures = await held_counts(session, unit_ids, HELD, now=now, end_of_day=end_of_day)
    wanted = [k for k, v in figures.items() if v.open]
    listed = await _most_urgent(session, wanted, now)
    messages = []
    seen = set()
    for role, chat_id, unit in holders:
        if (role, chat_id, unit.id) in seen:
            continue  # the same role twice in one unit (two active rows): one digest
        seen.add((role, chat_id, unit.id))
        # The rung at which the unit holds the tickets this role hears about.
        level = powers(Role(role)).digest.value
        counts = figures.get((unit.id, level))
        if counts is None:
            continue  # nothing open: no message (a quiet day is not news)
        messages.append(
            Outgoing(
                chat_id,
                "digest",
                {
                    "date": today.isoformat(),
                    "unit_zh": unit.name_zh,
                    "unit_en": unit.name_en,
                    "role": Role(role).value,
                    **counts._asdict(),
                    "tickets": listed.get((unit.id, level), []),
                },
                Lane.BULK,
            )
        )
    sent = await enqueue_many(session, messages, clock=clock)
    await session.flush()
    logger.info("digest for %s: %d messages", today, sent)
    return sent
