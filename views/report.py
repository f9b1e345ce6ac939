"""Buttons of the resident's dialogs: the /report steps, /my paging, the follow-up rating."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import StrEnum
from functools import lru_cache

from aiogram.filters.callback_data import CallbackData
from aiogram.types import (
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
)
from aiogram.utils.keyboard import InlineKeyboardBuilder

from domain.tickets import Nearby
from storage.models import Category, OrgUnit
from views.buttons import Button, MeToo, Page, Rating
from views.common import scope_name
from views.i18n import Translate


class Step(StrEnum):
    """What a dialog button does; each is valid only at its own step."""

    CATEGORY = "c"  # value: category id
    DONE = "d"  # photos: done (or skip)
    LIST = "l"  # list every community (forget the search)
    COMMUNITIES = "q"  # a page of the current search or list (value: offset)
    COMMUNITY = "m"  # value: community id
    GRIDS = "g"  # page of the chosen community's grids (value: offset)
    GRID = "r"  # value: grid id
    SEARCH_AGAIN = "s"  # from the grids back to the community search
    NEW = "n"  # no, not one of the duplicates: file a new report
    ANONYMOUS = "a"  # toggle
    CONFIRM = "y"
    EDIT = "e"  # open the edit menu
    PART = "p"  # value: index into PARTS
    SUMMARY = "b"  # back to the summary
    CANCEL = "x"


class ReportButton(Button, prefix="rp"):
    """A button of the /report dialog (or the follow-up's Cancel)."""

    step: Step
    value: int = 0


# What the edit menu offers, in order; the index is the button's value.
PARTS = ("category", "description", "photos", "place")


def cancel_row(builder: InlineKeyboardBuilder, t: Translate) -> None:
    builder.button(text=t("report.btn.cancel"), callback_data=ReportButton(step=Step.CANCEL))


# Keyboards that depend only on the language (`t` is one function per language) and a few
# plain values are built once: building one costs more than the rest of a dialog step.


@lru_cache(maxsize=64)
def only_cancel(t: Translate) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    cancel_row(builder, t)
    return builder.as_markup()


def categories(items: Sequence[Category], language: str, t: Translate) -> InlineKeyboardMarkup:
    names = tuple((c.id, scope_name(language, c.name_zh, c.name_en)) for c in items)
    return _categories(names, t)


@lru_cache(maxsize=256)
def _categories(names: tuple[tuple[int, str], ...], t: Translate) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for category_id, name in names:
        builder.button(text=name, callback_data=ReportButton(step=Step.CATEGORY, value=category_id))
    cancel_row(builder, t)
    builder.adjust(2)
    return builder.as_markup()


@lru_cache(maxsize=64)
def photos(count: int, t: Translate) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    label = "report.btn.done" if count else "report.btn.skip"
    builder.button(text=t(label), callback_data=ReportButton(step=Step.DONE))
    cancel_row(builder, t)
    return builder.as_markup()


@lru_cache(maxsize=64)
def location(t: Translate) -> ReplyKeyboardMarkup:
    """The reply keyboard of the place step: share the location, choose by hand, cancel."""
    return ReplyKeyboardMarkup(
        keyboard=[
            [KeyboardButton(text=t("report.btn.share"), request_location=True)],
            [KeyboardButton(text=t("report.btn.by_hand"))],
            [KeyboardButton(text=t("report.btn.cancel"))],
        ],
        resize_keyboard=True,
        is_persistent=True,
        input_field_placeholder=t("report.placeholder.place"),
    )


def _pager(
    builder: InlineKeyboardBuilder,
    t: Translate,
    offset: int,
    size: int,
    total: int,
    make: Callable[[int], CallbackData],
) -> list[int]:
    """Previous/Next buttons as needed; the row width (for adjust)."""
    row = 0
    if offset > 0:
        builder.button(text=t("report.btn.prev"), callback_data=make(max(0, offset - size)))
        row += 1
    if offset + size < total:
        builder.button(text=t("report.btn.next"), callback_data=make(offset + size))
        row += 1
    return [row] if row else []


def communities(
    choices: Sequence, language: str, t: Translate, *, offset: int, size: int, total: int
) -> InlineKeyboardMarkup:
    """One button per community (with its street), paging, "list all" and Cancel."""
    builder = InlineKeyboardBuilder()
    for choice in choices:
        name = scope_name(language, choice.community.name_zh, choice.community.name_en)
        if choice.street is not None:
            name += " · " + scope_name(language, choice.street.name_zh, choice.street.name_en)
        builder.button(
            text=name, callback_data=ReportButton(step=Step.COMMUNITY, value=choice.community.id)
        )
    widths = [1] * len(choices)
    widths += _pager(
        builder, t, offset, size, total, lambda o: ReportButton(step=Step.COMMUNITIES, value=o)
    )
    builder.button(text=t("report.btn.list"), callback_data=ReportButton(step=Step.LIST))
    cancel_row(builder, t)
    builder.adjust(*widths, 1, 1)
    return builder.as_markup()


@lru_cache(maxsize=64)
def list_or_cancel(t: Translate) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=t("report.btn.list"), callback_data=ReportButton(step=Step.LIST))
    cancel_row(builder, t)
    builder.adjust(1)
    return builder.as_markup()


def grids(
    items: Sequence[OrgUnit], language: str, t: Translate, *, offset: int, size: int, total: int
) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for grid in items:
        builder.button(
            text=scope_name(language, grid.name_zh, grid.name_en),
            callback_data=ReportButton(step=Step.GRID, value=grid.id),
        )
    widths = [2] * (len(items) // 2) + [1] * (len(items) % 2)
    widths += _pager(
        builder, t, offset, size, total, lambda o: ReportButton(step=Step.GRIDS, value=o)
    )
    builder.button(
        text=t("report.btn.search_again"), callback_data=ReportButton(step=Step.SEARCH_AGAIN)
    )
    cancel_row(builder, t)
    builder.adjust(*widths, 1, 1)
    return builder.as_markup()


def duplicates(items: Sequence[Nearby], t: Translate) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for ticket in items:
        builder.button(
            text=t("report.btn.me_too", number=ticket.number), callback_data=MeToo(id=ticket.id)
        )
    builder.button(text=t("report.btn.new"), callback_data=ReportButton(step=Step.NEW))
    cancel_row(builder, t)
    builder.adjust(1)
    return builder.as_markup()


@lru_cache(maxsize=64)
def summary(anonymous: bool, t: Translate) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(
        text=t("report.btn.anonymous_on" if anonymous else "report.btn.anonymous_off"),
        callback_data=ReportButton(step=Step.ANONYMOUS),
    )
    builder.button(text=t("report.btn.confirm"), callback_data=ReportButton(step=Step.CONFIRM))
    builder.button(text=t("report.btn.edit"), callback_data=ReportButton(step=Step.EDIT))
    cancel_row(builder, t)
    builder.adjust(1, 2, 1)
    return builder.as_markup()


@lru_cache(maxsize=64)
def edit_menu(t: Translate) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for index, part in enumerate(PARTS):
        builder.button(
            text=t(f"report.part.{part}"), callback_data=ReportButton(step=Step.PART, value=index)
        )
    builder.button(text=t("report.btn.back"), callback_data=ReportButton(step=Step.SUMMARY))
    builder.adjust(2, 2, 1)
    return builder.as_markup()


def my_pager(offset: int, size: int, total: int, t: Translate) -> InlineKeyboardMarkup | None:
    builder = InlineKeyboardBuilder()
    widths = _pager(builder, t, offset, size, total, lambda o: Page(list="my", offset=o))
    return builder.as_markup() if widths else None


def rating(ticket_id: int) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for stars in range(1, 6):
        builder.button(text=f"{stars} ⭐", callback_data=Rating(id=ticket_id, stars=stars))
    builder.adjust(5)
    return builder.as_markup()
