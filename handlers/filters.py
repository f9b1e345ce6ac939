"""Filters the handlers share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiogram.filters import Filter
from aiogram.types import Message
from aiogram.utils.magic_filter import MagicFilter

from domain.languages import LANGUAGES
from views.i18n import Translate


class Has(Filter):
    """A magic filter (F.text, F.photo...) checked on the event loop.

    aiogram hands a filter that is a plain callable, as a magic filter is, to a worker thread:
    a round trip per filter per update, where the check reads one attribute of the update.
    """

    def __init__(self, magic: MagicFilter) -> None:
        self.magic = magic

    async def __call__(self, event: Any) -> Any:
        return self.magic.resolve(event)


class Label(Filter):
    """A text that is one of these labels (a reply-keyboard button) in any language."""

    def __init__(self, *keys: str) -> None:
        self.keys = keys
        self._labels: frozenset[str] | None = None  # the labels, casefolded, once read

    async def __call__(self, message: Message, translator: Callable[[str], Translate]) -> bool:
        if not message.text:
            return False
        if self._labels is None:
            self._labels = frozenset(
                translator(language)(key).casefold() for language in LANGUAGES for key in self.keys
            )
        return message.text.strip().casefold() in self._labels
