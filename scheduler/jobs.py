"""The scheduler's jobs: module-level async functions with no arguments and fixed ids.

APScheduler only triggers them; what they need (sessions, clock, timing) is handed over once
by `configure` when the bot starts, so no ORM object or closure is ever a job argument. Each
job opens its own session and calls a domain use case. Tests call them directly with a
frozen clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import time, timedelta

from sqlalchemy.ext.asyncio import async_sessionmaker

from domain.attendance import ask_attendance, send_monthly_summaries
from domain.calls import close_forgotten, remind_calls
from domain.clock import Clock
from domain.deadlines import Timing
from domain.digests import send_digests
from domain.figures import ROLL_UP_SLICE, roll_up, send_monthly_rankings
from domain.reference import Reference
from domain.sweep import SweepReport
from domain.updates import forget_old_updates
from scheduler.sweep import sweep

logger = logging.getLogger(__name__)

SWEEP_JOB_ID = "gridbot.sweep"
# Slices of the figures' roll-up (domain.figures.ROLL_UP_SLICE) a run takes at most, a few
# seconds' work: a history of 10 million events is rolled up within the hour of an upgrade
# at the default sweep interval, and no run holds up the next sweep for long.
ROLL_UP_SLICES_PER_RUN = 20


@dataclass
class JobContext:
    sessionmaker: async_sessionmaker
    clock: Clock
    timing: Timing
    digest_time: time
    on_queued: Callable[[], None] | None = None
    call_reminder: timedelta = timedelta(hours=1)
    # The organisation's snapshot (the handlers' own, where this process serves updates too).
    reference: Reference = field(default_factory=Reference)
    # Held while a job runs, so a stopping bot can wait for it before closing the database.
    # One per context: a lock belongs to the event loop it was first waited on in.
    running: asyncio.Lock = field(default_factory=asyncio.Lock)


_context: JobContext | None = None


def configure(context: JobContext | None) -> None:
    """Hand the jobs what they need (None when the bot stops)."""
    global _context
    _context = context


def _require() -> JobContext:
    if _context is None:
        raise RuntimeError("scheduler jobs used before scheduler.jobs.configure()")
    return _context


async def sweep_job() -> SweepReport:
    """Re-read the calendar and ladder, sweep what is due, remind members of calls ahead,
    close check-outs they forgot, ask organisers of calls just over for attendance, send
    the digest, last month's summaries and last month's ranking when due, and roll the
    settled ticket events up into the monthly figures."""
    return await run_jobs(_require())


async def run_jobs(ctx: JobContext) -> SweepReport:
    """What sweep_job does, with this context (a test runs two, as two processes would).

    Each job is safe with any number of schedulers on one PostgreSQL database: rows are
    claimed by the transaction that does their work (FOR UPDATE SKIP LOCKED, a conditional
    UPDATE, or a JobRun key), so a second scheduler skips or finds done what the first took.
    """
    async with ctx.running, ctx.sessionmaker() as session, ctx.sessionmaker() as second:
        await ctx.timing.refresh(session)
        await session.commit()
        # A second worker on PostgreSQL (ignored on SQLite): see domain.sweep.workers.
        report = await sweep(session=session, clock=ctx.clock, timing=ctx.timing, also=[second])
        # Each job below is one transaction: what it claimed commits with what it did.
        reminded = await remind_calls(session=session, clock=ctx.clock, before=ctx.call_reminder)
        await session.commit()
        await close_forgotten(session=session, clock=ctx.clock)
        await session.commit()
        # After close_forgotten: the sheet the organiser is sent to must be complete.
        asked = await ask_attendance(session=session, clock=ctx.clock)
        await session.commit()
        summaries = await send_monthly_summaries(
            session=session, clock=ctx.clock, tz=ctx.timing.calendar.tz
        )
        await session.commit()
        digests = await send_digests(
            session=session, clock=ctx.clock, timing=ctx.timing, at=ctx.digest_time
        )
        await session.commit()
        rankings = await send_monthly_rankings(
            session=session,
            org=await ctx.reference.get(session),
            clock=ctx.clock,
            timing=ctx.timing,
            at=ctx.digest_time,
        )
        await session.commit()
        await forget_old_updates(session=session, clock=ctx.clock)
        await session.commit()
        # A long history (a city upgraded to the figures) is rolled up a few slices a run,
        # each its own transaction: the next run's sweep is not held up behind all of it.
        for _ in range(ROLL_UP_SLICES_PER_RUN):
            rolled = await roll_up(
                session=session, clock=ctx.clock, tz=ctx.timing.calendar.tz, size=ROLL_UP_SLICE
            )
            await session.commit()
            if rolled < ROLL_UP_SLICE:
                break
    queued = report.total or digests or reminded or asked or summaries or rankings
    if queued and ctx.on_queued is not None:
        ctx.on_queued()
    return report


async def wait_idle() -> None:
    """Return once no job is running."""
    if _context is not None:
        async with _context.running:
            pass
