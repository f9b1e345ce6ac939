"""Bot texts in Simplified Chinese (default) and English, read from bot/locales/<lang>/*.yaml."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import yaml

from bot.settings import LANGUAGES

LOCALES_DIR = Path(__file__).parent / "locales"

Translate = Callable[..., str]


@cache
def catalogs() -> dict[str, dict[str, str]]:
    """Every language's flat key -> template table, loaded once."""
    loaded: dict[str, dict[str, str]] = {}
    for language in LANGUAGES:
        table: dict[str, str] = {}
        for path in sorted((LOCALES_DIR / language).glob("*.yaml")):
            with open(path, encoding="utf-8") as fh:
                part = yaml.safe_load(fh) or {}
            clash = table.keys() & part.keys()
            if clash:
                raise ValueError(f"{path}: keys defined twice: {', '.join(sorted(clash))}")
            table.update(part)
        loaded[language] = table
    return loaded


def text(language: str, key: str, /, **params: object) -> str:
    """The text for `key` in `language`, formatted; falls back to Chinese, then to the key."""
    tables = catalogs()
    template = tables.get(language, {}).get(key) or tables["zh-hans"].get(key)
    if template is None:
        return key
    return template.format(**params) if params else template


@cache
def translator(language: str) -> Translate:
    """A `t(key, **params)` bound to one language, handed to handlers by the middleware.

    One function per language, so keyboards that depend only on it can be memoised by it.
    """

    def t(key: str, /, **params: object) -> str:
        return text(language, key, **params)

    return t
