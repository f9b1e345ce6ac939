"""Duties held by one process at a time: taken, renewed, lost, taken over, given up."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa

from bot.leadership import Duty
from domain.clock import FrozenClock
from storage.db import make_engine, make_sessionmaker
from storage.leases import holder_of, release, take_or_renew
from storage.models import Lease

TTL = timedelta(seconds=6)


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Work:
    """A duty's work: counts how often it started and whether it runs."""

    def __init__(self) -> None:
        self.starts = 0
        self.running = False

    async def start(self):
        self.starts += 1
        self.running = True

        async def stop() -> None:
            self.running = False

        return stop


async def test_of_two_processes_one_takes_the_lease(db_url: str, clock: FrozenClock) -> None:
    engine = make_engine(db_url)
    sessionmaker = make_sessionmaker(engine)
    try:
        assert await take_or_renew(sessionmaker, "send:1", "a", clock.now(), TTL)
        assert not await take_or_renew(sessionmaker, "send:1", "b", clock.now(), TTL)
        assert await take_or_renew(sessionmaker, "send:1", "a", clock.now(), TTL)  # renewed
        assert await holder_of(sessionmaker, "send:1", clock.now()) == "a"
        # Another duty is another lease.
        assert await take_or_renew(sessionmaker, "schedule:1", "b", clock.now(), TTL)
        # Not renewed: once it expired, b takes it over.
        clock.advance(TTL + timedelta(seconds=1))
        assert await holder_of(sessionmaker, "send:1", clock.now()) is None
        assert await take_or_renew(sessionmaker, "send:1", "b", clock.now(), TTL)
        assert not await take_or_renew(sessionmaker, "send:1", "a", clock.now(), TTL)
        # Given up on a clean stop: free at once.
        await release(sessionmaker, "send:1", "b")
        assert await take_or_renew(sessionmaker, "send:1", "a", clock.now(), TTL)
    finally:
        await engine.dispose()


async def test_two_processes_trying_at_once_one_wins(db_url: str, clock: FrozenClock) -> None:
    engines = [make_engine(db_url) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(
                take_or_renew(make_sessionmaker(e), "poll:1", f"p{i}", clock.now(), TTL)
                for i, e in enumerate(engines)
            )
        )
        assert sorted(results) == [False, False, False, True]
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_duty_runs_where_the_lease_is_and_moves_when_its_holder_dies(
    db_url: str, clock: FrozenClock
) -> None:
    engine = make_engine(db_url)
    sessionmaker = make_sessionmaker(engine)
    ticks = Ticks()
    first, second = Work(), Work()
    a = Duty(
        "send:9", first.start, sessionmaker=sessionmaker, clock=clock, holder="a", monotonic=ticks
    )
    b = Duty(
        "send:9", second.start, sessionmaker=sessionmaker, clock=clock, holder="b", monotonic=ticks
    )
    try:
        await a.step()
        await b.step()
        assert (first.running, second.running) == (True, False)
        # a renews every try; b keeps waiting.
        for _ in range(5):
            clock.advance(timedelta(seconds=2))
            ticks.now += 2
            await a.step()
            await b.step()
        assert (first.starts, second.starts) == (1, 0)
        # a dies (stops renewing): within the lease's time and one try, b does the work.
        clock.advance(timedelta(seconds=2))
        await b.step()
        assert not second.running
        clock.advance(TTL)
        await b.step()
        assert second.running and second.starts == 1
        # a comes back (it was only paused): it finds the lease taken and stops its work.
        await a.step()
        assert not first.running
    finally:
        await a._step_down("test over")  # noqa: SLF001 - the test's own cleanup
        await b._step_down("test over")  # noqa: SLF001
        await engine.dispose()


async def test_a_holder_that_cannot_renew_stops_before_its_lease_ends(
    db_url: str, clock: FrozenClock, tmp_path
) -> None:
    engine = make_engine(db_url)
    sessionmaker = make_sessionmaker(engine)
    ticks = Ticks()
    work = Work()
    duty = Duty(
        "schedule:9",
        work.start,
        sessionmaker=sessionmaker,
        clock=clock,
        holder="a",
        monotonic=ticks,
    )
    try:
        await duty.step()
        assert work.running

        # The database goes away: a file that cannot be opened stands in for it.
        dead = make_engine(f"sqlite:///{tmp_path / 'no such folder' / 'x.db'}")
        duty_sessionmaker = duty._sessionmaker  # noqa: SLF001 - swapped for a dead database
        duty._sessionmaker = make_sessionmaker(dead)  # noqa: SLF001
        ticks.now += 2
        await duty.step()
        assert work.running  # one failed renewal: the lease still holds
        ticks.now += 3  # 5 s after the last renewal: within a second of the lease's end
        await duty.step()
        assert not work.running
        duty._sessionmaker = duty_sessionmaker  # noqa: SLF001
        await dead.dispose()
    finally:
        await duty._step_down("test over")  # noqa: SLF001
        await engine.dispose()


async def test_a_clean_stop_gives_the_duty_up(db_url: str, clock: FrozenClock) -> None:
    engine = make_engine(db_url)
    sessionmaker = make_sessionmaker(engine)
    work = Work()
    duty = Duty("poll:9", work.start, sessionmaker=sessionmaker, clock=clock, holder="a")
    stop = asyncio.Event()
    task = asyncio.create_task(duty.run(stop))
    try:
        for _ in range(100):
            if work.running:
                break
            await asyncio.sleep(0.01)
        assert work.running
        stop.set()
        await asyncio.wait_for(task, 5)
        assert not work.running
        assert await holder_of(sessionmaker, "poll:9", clock.now()) is None
    finally:
        await engine.dispose()


async def test_a_process_does_only_its_roles(db_url: str) -> None:
    from tests.botkit import running_bot

    async with running_bot(db_url, roles="serve") as running:
        engine = make_engine(db_url)
        try:
            sessionmaker = make_sessionmaker(engine)
            async with sessionmaker() as session:
                rows = (await session.exec(sa.select(Lease.name))).all()
            # It polls (serving updates), but neither sends the outbox nor schedules.
            assert sorted(r[0] for r in rows) == [f"poll:{running.fake.token.split(':')[0]}"]
        finally:
            await engine.dispose()
