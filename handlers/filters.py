"""Filters the handlers share."""

from __future__ import annotations

from typing import Any

from aiogram.filters import Filter
from aiogram.utils.magic_filter import MagicFilter


class Has(Filter):
    """A magic filter (F.text, F.photo...) checked on the event loop.

    aiogram hands a filter that is a plain callable, as a magic filter is, to a worker thread:
    a round trip per filter per update, where the check reads one attribute of the update.
    """

    def __init__(self, magic: MagicFilter) -> None:
        self.magic = magic

    async def __call__(self, event: Any) -> Any:
        return self.magic.resolve(event)
