"""The `gridbot run` process settles its garbage collector once the bot is set up."""

from __future__ import annotations

import gc

from bot.runtime import GC_THRESHOLDS, settle_memory


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
