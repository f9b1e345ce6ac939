"""Outbox renderers: a row's kind and data become text (and buttons) in the recipient's language."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiogram.types import (
    ForceReply,
    InlineKeyboardMarkup,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)

from bot.i18n import catalogs, text

ReplyMarkup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | ForceReply


@dataclass(frozen=True, slots=True)
class Rendered:
    """What the sender passes to sendMessage."""

    text: str
    reply_markup: ReplyMarkup | None = None
    parse_mode: str | None = None  # None: the bot's default


RenderFn = Callable[[Mapping[str, Any], str], Rendered | str]


class RenderError(ValueError):
    """The row can't be rendered; retrying won't help."""


class UnknownKind(RenderError, LookupError):
    """No renderer is registered for the kind."""


class Renderer:
    """A registry of kind -> fn(data, language) returning Rendered (or a plain str)."""

    def __init__(self) -> None:
        self._fns: dict[str, RenderFn] = {}

    def register(self, kind: str, fn: RenderFn, *, replace: bool = False) -> None:
        if kind in self._fns and not replace:
            raise ValueError(f"renderer for {kind!r} already registered")
        self._fns[kind] = fn

    def kinds(self) -> frozenset[str]:
        return frozenset(self._fns)

    def render(self, kind: str, data: Mapping[str, Any], language: str) -> Rendered:
        fn = self._fns.get(kind)
        if fn is None:
            raise UnknownKind(f"no renderer for outbox kind {kind!r}")
        result = fn(data, language)
        if isinstance(result, str):
            result = Rendered(result)
        if not result.text:
            raise RenderError(f"{kind!r} rendered to an empty text")
        return result


def localized(key: str, language: str, params: Mapping[str, Any] | None = None) -> str:
    """Like i18n.text, but an unknown key or a missing parameter is an error, not a fallback."""
    if key not in catalogs()["zh-hans"]:
        raise RenderError(f"unknown locale key {key!r}")
    # Always formatted (i18n.text leaves a template as is when given no parameters).
    template = text(language, key)
    try:
        return template.format(**dict(params or {}))
    except (KeyError, IndexError) as exc:
        raise RenderError(f"locale key {key!r} needs parameter {exc}") from exc


def render_notice(data: Mapping[str, Any], language: str) -> Rendered:
    """Kind "notice": {"text": {lang: str} | str} or {"key": k, "params": {}}; "sender" signs."""
    if "key" in data:
        body = localized(data["key"], language, data.get("params"))
    else:
        texts = data.get("text")
        if isinstance(texts, Mapping):
            body = texts.get(language) or texts.get("zh-hans") or next(iter(texts.values()), "")
        else:
            body = texts or ""
        if not isinstance(body, str) or not body:
            raise RenderError("notice needs a non-empty text or a key")
    if sender := data.get("sender"):
        body = localized("outbox.signed", language, {"text": body, "sender": sender})
    return Rendered(body)


def render_invitation_used(data: Mapping[str, Any], language: str) -> Rendered:
    """Kind "invitation_used": tells the inviter who took up which role where."""
    scope = data["scope_zh"] if language == "zh-hans" else data["scope_en"]
    role = localized(f"role.{data['role']}", language)
    return Rendered(
        localized(
            "outbox.invitation_used",
            language,
            {"person": data["person"], "role": role, "scope": scope},
        )
    )


def default_renderer() -> Renderer:
    """A renderer with every kind the bot sends through the outbox."""
    renderer = Renderer()
    renderer.register("notice", render_notice)
    renderer.register("invitation_used", render_invitation_used)
    return renderer
