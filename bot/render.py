"""Outbox renderers: a row's kind and data become text (and buttons) in the recipient's language."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import tzinfo
from functools import partial
from typing import Any

from aiogram.types import (
    ForceReply,
    InlineKeyboardMarkup,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.i18n import catalogs, text, translator
from handlers.callbacks import FollowUp
from handlers.cards import DEFAULT_TZ, card_keyboard, card_text, localized_name

ReplyMarkup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | ForceReply


CAPTION_LIMIT = 1024  # Telegram's limit for a photo caption
TEXT_LIMIT = 4096  # and for a message text
MEDIA_GROUP_LIMIT = 10


@dataclass(frozen=True, slots=True)
class Place:
    """A point on the map: a venue when it has a title and an address, else a plain location."""

    latitude: float
    longitude: float
    title: str | None = None
    address: str | None = None


@dataclass(frozen=True, slots=True)
class Rendered:
    """What the sender sends: one Telegram call per outbox row.

    - only `text`: sendMessage;
    - one photo: sendPhoto, `text` (may be empty) as its caption;
    - two or more photos: sendMediaGroup, `text` as the first photo's caption (no buttons:
      Telegram takes no reply_markup on a media group);
    - a `place`: sendVenue (with title and address) or sendLocation; `text` is not sent.
    """

    text: str = ""
    reply_markup: ReplyMarkup | None = None
    parse_mode: str | None = None  # None: the bot's default
    photos: tuple[str, ...] = ()  # Telegram file ids (or URLs)
    place: Place | None = None

    @property
    def method(self) -> str:
        """The Bot API method this is sent with."""
        if self.place is not None:
            return "sendVenue" if self.place.title and self.place.address else "sendLocation"
        if len(self.photos) == 1:
            return "sendPhoto"
        if self.photos:
            return "sendMediaGroup"
        return "sendMessage"


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
        _check(kind, result)
        return result


def _check(kind: str, result: Rendered) -> None:
    """Refuse what Telegram would refuse, before it costs a send."""
    if result.place is not None and result.photos:
        raise RenderError(f"{kind!r} rendered to both photos and a place")
    method = result.method
    if method == "sendMessage":
        if not result.text:
            raise RenderError(f"{kind!r} rendered to an empty text")
        if len(result.text) > TEXT_LIMIT:
            raise RenderError(f"{kind!r} text is longer than {TEXT_LIMIT} characters")
    elif method in ("sendPhoto", "sendMediaGroup"):
        if len(result.text) > CAPTION_LIMIT:
            raise RenderError(f"{kind!r} caption is longer than {CAPTION_LIMIT} characters")
        if len(result.photos) > MEDIA_GROUP_LIMIT:
            raise RenderError(f"{kind!r} has more than {MEDIA_GROUP_LIMIT} photos")
        if not all(isinstance(p, str) and p for p in result.photos):
            raise RenderError(f"{kind!r} has an empty photo reference")
        if method == "sendMediaGroup" and result.reply_markup is not None:
            raise RenderError(f"{kind!r}: a media group cannot carry buttons")


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
    scope = localized_name(data, "scope", language)
    role = localized(f"role.{data['role']}", language)
    return Rendered(
        localized(
            "outbox.invitation_used",
            language,
            {"person": data["person"], "role": role, "scope": scope},
        )
    )


# -- tickets -------------------------------------------------------------------------------

CARD_REASONS = frozenset({"new", "returned", "escalated", "reopened", "redispatched"})


def _status_params(data: Mapping[str, Any], language: str) -> dict[str, Any]:
    """Parameters every ticket notification text may use."""
    return {
        "number": data["number"],
        "category": localized_name(data, "category", language),
        "holder": localized_name(data, "holder", language),
        "level": localized(f"level.{data['level']}", language),
        "status": localized(f"status.{data['status']}", language),
        "note": data.get("note") or "",
        "rating": data.get("rating") or "",
    }


def render_ticket_card(data: Mapping[str, Any], language: str, *, tz: tzinfo) -> Rendered:
    """Kind "ticket_card": the card (handlers.cards) with a header saying why it came."""
    t = translator(language)
    body = card_text(data, t, language, tz=tz)
    reason = data.get("reason")
    if reason in CARD_REASONS:
        body = f"{localized(f'card.header.{reason}', language)}\n\n{body}"
    return Rendered(body, reply_markup=card_keyboard(data, t))


def render_ticket_photos(data: Mapping[str, Any], language: str) -> Rendered:
    """Kind "ticket_photos": the report's photos, one photo or an album of two or three."""
    photos = tuple(data.get("photos") or ())
    if not photos:
        raise RenderError("ticket_photos without photos")
    caption = localized("news.photos", language, {"number": data["number"]})
    return Rendered(caption, photos=photos)


def render_ticket_place(data: Mapping[str, Any], language: str) -> Rendered:
    """Kind "ticket_place": the reported spot as a venue named after its grid and ticket."""
    title = localized_name(data, "grid", language)
    place = Place(data["latitude"], data["longitude"], title=title, address=data["number"])
    return Rendered(place=place)


def render_ticket_status(data: Mapping[str, Any], language: str) -> Rendered:
    """Kind "ticket_status": a change of a ticket someone follows (or resolved)."""
    event = data.get("event")
    key = f"news.status.{event}"
    if key not in catalogs()["zh-hans"]:
        key = "news.status.other"
    return Rendered(localized(key, language, _status_params(data, language)))


def render_ticket_moved(data: Mapping[str, Any], language: str) -> Rendered:
    """Kind "ticket_moved": the holders below hear that a ticket went up the ladder."""
    return Rendered(localized("news.moved", language, _status_params(data, language)))


def render_ticket_followup(data: Mapping[str, Any], language: str) -> Rendered:
    """Kind "ticket_followup": the answer, and "is it solved?" with Yes / No buttons.

    With a photo of the result it is one photo whose caption carries the answer (the note is
    shortened if the caption would be too long for Telegram).
    """
    params = _status_params(data, language)
    body = localized("news.followup", language, params)
    builder = InlineKeyboardBuilder()
    builder.button(
        text=localized("news.followup_yes", language),
        callback_data=FollowUp(id=data["ticket_id"], solved=True),
    )
    builder.button(
        text=localized("news.followup_no", language),
        callback_data=FollowUp(id=data["ticket_id"], solved=False),
    )
    markup = builder.as_markup()
    photo = data.get("photo")
    if not photo:
        return Rendered(body, reply_markup=markup)
    if len(body) > CAPTION_LIMIT:
        over = len(body) - CAPTION_LIMIT + 1
        params["note"] = params["note"][: max(0, len(params["note"]) - over)] + "…"
        body = localized("news.followup", language, params)
    return Rendered(body, reply_markup=markup, photos=(photo,))


def default_renderer(*, tz: tzinfo | None = None) -> Renderer:
    """A renderer with every kind the bot sends through the outbox.

    `tz` is the city's time zone for the times on ticket cards (settings.tz).
    """
    renderer = Renderer()
    renderer.register("notice", render_notice)
    renderer.register("invitation_used", render_invitation_used)
    renderer.register("ticket_card", partial(render_ticket_card, tz=tz or DEFAULT_TZ))
    renderer.register("ticket_photos", render_ticket_photos)
    renderer.register("ticket_place", render_ticket_place)
    renderer.register("ticket_status", render_ticket_status)
    renderer.register("ticket_moved", render_ticket_moved)
    renderer.register("ticket_followup", render_ticket_followup)
    return renderer
