"""The sweep job: every batch domain.sweep finds due, each committed on its own."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from sqlmodel.ext.asyncio.session import AsyncSession

from domain.clock import Clock
from domain.deadlines import Timing
from domain.sweep import SweepReport, summons_batch, ticket_batch, workers

logger = logging.getLogger(__name__)


async def sweep(
    *,
    session: AsyncSession,
    clock: Clock,
    timing: Timing,
    batch: int = 500,
    max_batches: int = 1000,
    also: Sequence[AsyncSession] = (),
) -> SweepReport:
    """Everything due by now, batch after batch, each its own transaction: a batch's claim,
    its changes and its messages commit together, and a scheduler stopped midway loses no
    batch it committed. Where the database allows it (domain.sweep.workers), the sessions in
    `also` claim batches at the same time as `session`."""
    report = SweepReport()
    for step in (ticket_batch, summons_batch):

        async def work(worker: AsyncSession, step=step) -> SweepReport:
            done = SweepReport()
            for _ in range(max_batches):
                part, taken = await step(worker, clock, timing, batch)
                await worker.commit()
                done.add(part)
                if taken < batch:
                    break
            return done

        for part in await asyncio.gather(*(work(w) for w in workers(session, also))):
            report.add(part)
    if report.total:
        logger.info("sweep: %s", report)
    return report
