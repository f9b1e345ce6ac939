"""The `gridbot run` process's garbage collector: off through start-up, settled once the bot is
set up."""

from __future__ import annotations

import asyncio
import gc

import pytest

from bot.memory import GC_THRESHOLDS, collector_off, settle_memory
from bot.runtime import serve
from tests.botkit import TOKEN, bot_settings
from tests.fake_telegram import FakeTelegram


def test_settle_memory_freezes_what_exists_and_spaces_out_collections() -> None:
    before = gc.get_threshold()
    survivor = [["made before settling"]]
    try:
        settle_memory()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
        # What existed is out of the collector's sight: no longer tracked in any generation.
        assert not any(obj is survivor for obj in gc.get_objects())
        assert gc.is_tracked(survivor)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert any(obj is survivor for obj in gc.get_objects())


def test_collector_off_restores_the_collector_as_it_was() -> None:
    assert gc.isenabled()
    with collector_off():
        assert not gc.isenabled()
        with collector_off():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner block found it off and leaves it off
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_off():
        raise RuntimeError("start-up failed")
    assert gc.isenabled()


def _unsettle(before: tuple[int, int, int]) -> None:
    gc.unfreeze()
    gc.set_threshold(*before)
    gc.enable()


def test_settle_memory_turns_the_collector_back_on() -> None:
    before = gc.get_threshold()
    gc.disable()
    try:
        settle_memory()
        assert gc.isenabled()
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        _unsettle(before)


async def test_a_bot_that_tunes_its_memory_turns_the_collector_on_once_serving(db_url) -> None:
    """`gridbot run` starts with the collector off (bot.memory.collector_off); serving turns it on
    (after its first answers), whatever started it."""
    before = gc.get_threshold()
    gc.disable()
    try:
        async with FakeTelegram(tokens=[TOKEN]) as fake:
            stop = asyncio.Event()
            settings = bot_settings(fake.base_url, db_url)
            task = asyncio.create_task(serve(settings, stop=stop, tune_memory=True))
            try:
                fake.push_message(501, "/start", language_code="en")
                await fake.wait_for_message(501, timeout=30)
                for _ in range(200):
                    if gc.isenabled() or task.done():
                        break
                    await asyncio.sleep(0.05)
                assert gc.isenabled()
                assert gc.get_threshold() == GC_THRESHOLDS
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
    finally:
        _unsettle(before)
