"""The `gridbot run` process's garbage collector: off while start-up builds what lives as long
as the process, then settled once the bot serves."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# The collector's default first threshold (700 allocations) runs a collection every few updates
# of a busy bot, and the full collections that follow walk every object the process holds:
# pauses of hundreds of milliseconds under load. So what exists once the bot is set up (modules,
# routers, caches) is frozen out of the collector's sight, and the youngest generation is
# collected every GC_THRESHOLDS[0] allocations (the inbound benchmark: p99 at 200 updates/s
# from about 400 ms to under 100 ms).
GC_THRESHOLDS = (50_000, 20, 20)


@contextmanager
def collector_off() -> Iterator[None]:
    """The garbage collector off for the block, as it was afterwards.

    Start-up builds hundreds of thousands of objects that live as long as the process (aiogram's
    types above all) and almost no garbage; the collections their allocations trigger walk them
    again and again for nothing: about half a second of `gridbot run`'s start-up. The bot turns
    the collector back on once it serves (settle_memory collects what start-up left).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def settle_memory() -> None:
    """Collect once, freeze what survives, and space out later collections; the collector is
    on afterwards (`gridbot run` starts with it off)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    gc.enable()
