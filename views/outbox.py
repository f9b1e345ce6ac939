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

from views import attendance, calls, figures, member
from views.buttons import FollowUp, TicketAction, TicketOp
from views.cards import (
    AUDIENCES,
    DEFAULT_TZ,
    card_keyboard,
    card_text,
    local_time,
    localized_name,
    summons_keyboard,
    summons_text,
)
from views.common import Place
from views.i18n import catalogs, text, translator

ReplyMarkup = InlineKeyboardMarkup | ReplyKeyboardMarkup | ReplyKeyboardRemove | ForceReply


CAPTION_LIMIT = 1024  # Telegram's limit for a photo caption
TEXT_LIMIT = 4096  # and for a message text
MEDIA_GROUP_LIMIT = 10


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
    try:
        body = text(language, key, **dict(params or {}))
        # Given no parameters, i18n.text leaves the template as it is: formatting it here
        # finds a field that needed one.
        return body if params else body.format()
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

CARD_REASONS = frozenset(
    {"new", "returned", "escalated", "reopened", "redispatched", "reminder", "overdue"}
)


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
        "departments": localized_name(data, "departments", language),
    }


def _when(data: Mapping[str, Any], key: str, tz: tzinfo) -> str:
    """data[key] (an ISO time) in the city's time zone, or "" when there is none."""
    value = data.get(key)
    return local_time(value, tz) if value else ""


def render_ticket_card(data: Mapping[str, Any], language: str, *, tz: tzinfo) -> Rendered:
    """Kind "ticket_card": the card (views.cards) with a header saying why it came."""
    t = translator(language)
    body = card_text(data, t, language, tz=tz)
    reason = data.get("reason")
    if reason in CARD_REASONS:
        # Reminders say which deadline they are about ("deadline": when the alert was set).
        params = {"number": data["number"], "when": _when(data, "deadline", tz)}
        body = f"{localized(f'card.header.{reason}', language, params)}\n\n{body}"
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


# -- the street's whistle: departments summoned to a ticket ----------------------------------


def render_summons_card(data: Mapping[str, Any], language: str, *, tz: tzinfo) -> Rendered:
    """Kind "summons_card": why it came, the ticket's card, the department's part, buttons.

    Summoned, reminded or overdue: to the department's liaisons (Report in / Return, then
    Finish / Return); department_returned: to the street (Insist / Release / Summon other
    departments); department_silent: to the district's administrators (Open the ticket).
    """
    reason = data.get("reason")
    audience = AUDIENCES.get(reason or "")
    if audience is None:
        raise RenderError(f"summons_card with an unknown reason {reason!r}")
    t = translator(language)
    params = {
        "number": data["number"],
        "department": localized_name(data, "department", language),
        "when": _when(data, "deadline", tz) or _when(data, "summons_deadline", tz),
        "reason": localized(f"summons.return_reason.{data['return_reason']}", language)
        if data.get("return_reason")
        else "",
    }
    header = localized(f"summons.header.{reason}", language, params)
    body = summons_text(data, t, language, audience=audience, tz=tz)
    return Rendered(f"{header}\n\n{body}", reply_markup=summons_keyboard(data, t, audience))


def render_summons_status(data: Mapping[str, Any], language: str) -> Rendered:
    """Kind "summons_status": to the street, a department reported in or finished its part."""
    event = data.get("event")
    key = f"summons.news.{event}"
    if key not in catalogs()["zh-hans"]:
        raise RenderError(f"summons_status with an unknown event {event!r}")
    params = {
        "number": data["number"],
        "category": localized_name(data, "category", language),
        "department": localized_name(data, "department", language),
        "note": data.get("finish_note") or "",
    }
    return Rendered(localized(key, language, params))


# -- the daily digest --------------------------------------------------------------------------


def render_digest(data: Mapping[str, Any], language: str, *, tz: tzinfo) -> Rendered:
    """Kind "digest": a holder's open, overdue and due-today counts, and the most urgent
    tickets as buttons that open their cards; a short line when nothing is open."""
    params = {
        "date": data["date"],
        "unit": localized_name(data, "unit", language),
        "role": localized(f"role.{data['role']}", language),
        "open": data.get("open", 0),
        "overdue": data.get("overdue", 0),
        "due_today": data.get("due_today", 0),
    }
    if not params["open"]:
        return Rendered(localized("digest.empty", language, params))
    lines = [localized("digest.title", language, params)]
    lines.append(localized("digest.counts", language, params))
    tickets = list(data.get("tickets") or ())
    if not tickets:
        return Rendered("\n".join(lines))
    lines.append(localized("digest.most_urgent", language))
    builder = InlineKeyboardBuilder()
    for ticket in tickets:
        deadline = _when(ticket, "next_deadline", tz) or localized("digest.no_deadline", language)
        key = "digest.button_overdue" if ticket.get("overdue") else "digest.button"
        label = localized(
            key,
            language,
            {
                "number": ticket["number"],
                "category": localized_name(ticket, "category", language),
                "when": deadline,
            },
        )
        builder.button(
            text=label, callback_data=TicketAction(op=TicketOp.OPEN, id=ticket["ticket_id"])
        )
    builder.adjust(1)
    return Rendered("\n".join(lines), reply_markup=builder.as_markup())


# -- Party members reporting for duty ----------------------------------------------------------


def render_member_registration(data: Mapping[str, Any], language: str) -> Rendered:
    """Kind "member_registration": to the community secretary, with Approve / Reject."""
    t = translator(language)
    return Rendered(
        member.registration_text(data, language, t),
        reply_markup=member.registration_keyboard(int(data["member_id"]), t),
    )


def render_member_decision(data: Mapping[str, Any], language: str) -> Rendered:
    """Kind "member_decision": the secretary's decision, to the member."""
    return Rendered(member.decision_text(data, translator(language)))


# -- the community's calls to Party members ---------------------------------------------------


def render_duty_call(data: Mapping[str, Any], language: str, *, tz: tzinfo) -> Rendered:
    """Kind "duty_call": a call to a member, with I'll come / Can't."""
    t = translator(language)
    return Rendered(
        calls.call_text(data, t, tz), reply_markup=calls.call_keyboard(int(data["call_id"]), t)
    )


def render_duty_call_place(data: Mapping[str, Any], language: str, *, tz: tzinfo) -> Rendered:
    """Kind "duty_call_place": where a call is, as a venue (sent just before the call or its
    reminder, whose text points to it)."""
    return Rendered(place=calls.call_place(data, tz))


def render_duty_call_cancelled(data: Mapping[str, Any], language: str, *, tz: tzinfo) -> Rendered:
    """Kind "duty_call_cancelled": to those who said they would come."""
    t = translator(language)
    return Rendered(
        t("calls.cancelled", title=data["title"], starts_at=local_time(data["starts_at"], tz))
    )


def render_duty_call_reminder(data: Mapping[str, Any], language: str, *, tz: tzinfo) -> Rendered:
    """Kind "duty_call_reminder": to those coming, with Check in / Check out."""
    t = translator(language)
    return Rendered(
        calls.reminder_text(data, t, tz),
        reply_markup=calls.reminder_keyboard(int(data["call_id"]), t),
    )


# -- the organiser after a call, and the monthly summaries ------------------------------------


def render_duty_attendance_due(data: Mapping[str, Any], language: str, *, tz: tzinfo) -> Rendered:
    """Kind "duty_attendance_due": to the organiser at a call's end, with the sheet's button."""
    t = translator(language)
    return Rendered(
        attendance.due_text(data, t, tz),
        reply_markup=attendance.due_keyboard(int(data["call_id"]), t),
    )


def render_duty_month_member(data: Mapping[str, Any], language: str) -> Rendered:
    """Kind "duty_month_member": last month's confirmed hours, points and calls, to a member."""
    return Rendered(attendance.month_member_text(data, translator(language)))


def render_duty_month_secretary(data: Mapping[str, Any], language: str) -> Rendered:
    """Kind "duty_month_secretary": who served last month, unfilled calls and no-shows."""
    return Rendered(attendance.month_secretary_text(data, translator(language)))


# -- the three rates ---------------------------------------------------------------------------


def render_monthly_ranking(data: Mapping[str, Any], language: str) -> Rendered:
    """Kind "monthly_ranking": last month's ranking of the units below, to an official."""
    t = translator(language)
    return Rendered(
        figures.ranking_text(dict(data), language, t),
        reply_markup=figures.ranking_keyboard(dict(data), t),
    )


def default_renderer(*, tz: tzinfo | None = None) -> Renderer:
    """A renderer with every kind the bot sends through the outbox.

    `tz` is the city's time zone for the times on ticket cards (settings.tz).
    """
    zone = tz or DEFAULT_TZ
    renderer = Renderer()
    renderer.register("notice", render_notice)
    renderer.register("invitation_used", render_invitation_used)
    renderer.register("ticket_card", partial(render_ticket_card, tz=zone))
    renderer.register("ticket_photos", render_ticket_photos)
    renderer.register("ticket_place", render_ticket_place)
    renderer.register("ticket_status", render_ticket_status)
    renderer.register("ticket_moved", render_ticket_moved)
    renderer.register("ticket_followup", render_ticket_followup)
    renderer.register("summons_card", partial(render_summons_card, tz=zone))
    renderer.register("summons_status", render_summons_status)
    renderer.register("digest", partial(render_digest, tz=zone))
    renderer.register("member_registration", render_member_registration)
    renderer.register("member_decision", render_member_decision)
    renderer.register("duty_call", partial(render_duty_call, tz=zone))
    renderer.register("duty_call_place", partial(render_duty_call_place, tz=zone))
    renderer.register("duty_call_reminder", partial(render_duty_call_reminder, tz=zone))
    renderer.register("duty_call_cancelled", partial(render_duty_call_cancelled, tz=zone))
    renderer.register("duty_attendance_due", partial(render_duty_attendance_due, tz=zone))
    renderer.register("duty_month_member", render_duty_month_member)
    renderer.register("duty_month_secretary", render_duty_month_secretary)
    renderer.register("monthly_ranking", render_monthly_ranking)
    return renderer
