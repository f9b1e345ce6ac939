"""Callback data shared by more than one router: ids and enums only, well under 64 bytes.

Anything in here can be forged by a modified client; the domain checks every action.
"""

from __future__ import annotations

from enum import StrEnum

from aiogram.filters.callback_data import CallbackData


class TicketOp(StrEnum):
    OPEN = "o"  # show the card again
    ACCEPT = "a"
    RETURN = "rt"  # then asks for a reason (ReturnWhy)
    ESCALATE = "e"
    RESOLVE = "rs"  # then asks for a note and an optional photo
    REDISPATCH = "rd"  # community: then asks for a grid (Redispatch)
    CANCEL = "cx"  # community: close a returned ticket, then asks for a note


class TicketAction(CallbackData, prefix="t"):
    """A button on a ticket card."""

    op: TicketOp
    id: int


class ReturnWhy(CallbackData, prefix="tr"):
    """The reason for a return (退單): a storage.enums.ReturnReason value."""

    id: int
    reason: str


class Redispatch(CallbackData, prefix="td"):
    """The grid a community secretary sends a returned ticket to."""

    id: int
    grid: int


class FollowUp(CallbackData, prefix="f"):
    """The resident's answer to "is it solved?"."""

    id: int
    solved: bool


class Rating(CallbackData, prefix="r"):
    """1-5 stars for a closed ticket."""

    id: int
    stars: int


class MeToo(CallbackData, prefix="m"):
    """Join an open ticket nearby instead of filing a new one."""

    id: int


class Page(CallbackData, prefix="p"):
    """Paging through a list: which list ("my" or "queue") and where it starts."""

    list: str
    offset: int
