"""What many screens share: names in the reader's language, amounts as people read them, and a
domain refusal put in the person's words."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo

from domain.errors import DomainError
from views.i18n import Translate


@dataclass(frozen=True, slots=True)
class Place:
    """A point on the map: a venue when it has a title and an address, else a plain location."""

    latitude: float
    longitude: float
    title: str | None = None
    address: str | None = None


def scope_name(language: str, name_zh: str, name_en: str) -> str:
    return name_zh if language == "zh-hans" else name_en


def refusal_text(exc: DomainError, t: Translate, tz: tzinfo) -> str:
    """A domain refusal in the person's words: states and levels named, times in the city's."""
    params = dict(exc.params)
    for name in ("status", "level"):
        if name in params:
            params[name] = t(f"{name}.{params[name]}")
    for name, value in params.items():
        if isinstance(value, datetime):
            params[name] = f"{value.astimezone(tz):%Y-%m-%d %H:%M}"
    return t(exc.key, **params)


def amount(value: float) -> str:
    """Hours or points as people read them, the same everywhere: up to two decimals, no
    trailing zeros (1.25, 1.5, 2)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def hours(minutes: int) -> str:
    """Minutes of service as hours, written like `amount`."""
    return amount(minutes / 60)
