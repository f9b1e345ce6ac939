"""Callback data shared by more than one router: ids and enums only, well under 64 bytes.

Anything in here can be forged by a modified client; the domain checks every action. Every
class derives from `Button`, which refuses numbers no database column holds.
"""

from __future__ import annotations

from enum import StrEnum

from aiogram.filters.callback_data import CallbackData
from pydantic import field_validator

# Every number a button carries is a row id, an offset, an index or a small count: a 4-byte
# integer, as the id columns are. A longer one cannot come from a button of ours.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


class Button(CallbackData, prefix="btn"):
    """The base of every button's data (never sent itself; each subclass has its own prefix).

    A number outside a 4-byte integer (a forged "t:a:123456789012345678901234567890") fails
    to unpack, so no handler's filter matches it: the press gets the catch-all's "this button
    no longer works" and never reaches the database, where PostgreSQL would refuse it
    ("integer out of range") and SQLite could not bind it.
    """

    @field_validator("*")
    @classmethod
    def fits_a_column(cls, value: object) -> object:
        if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
            raise ValueError(f"{value} is out of range for a button")
        return value


class TicketOp(StrEnum):
    OPEN = "o"  # show the card again
    ACCEPT = "a"
    RETURN = "rt"  # then asks for a reason (ReturnWhy)
    ESCALATE = "e"
    RESOLVE = "rs"  # then asks for a note and an optional photo
    REDISPATCH = "rd"  # community: then asks for a grid (Redispatch)
    CANCEL = "cx"  # community: close a returned ticket, then asks for a note
    WHISTLE = "w"  # street or district: summon departments (opens the picker, WhistlePick)


class TicketAction(Button, prefix="t"):
    """A button on a ticket card."""

    op: TicketOp
    id: int


class ReturnWhy(Button, prefix="tr"):
    """The reason for a return (退單): a storage.enums.ReturnReason value."""

    id: int
    reason: str


class Redispatch(Button, prefix="td"):
    """The grid a community secretary sends a returned ticket to."""

    id: int
    grid: int


class FollowUp(Button, prefix="f"):
    """The resident's answer to "is it solved?"."""

    id: int
    solved: bool


class Rating(Button, prefix="r"):
    """1-5 stars for a closed ticket."""

    id: int
    stars: int


class MeToo(Button, prefix="m"):
    """Join an open ticket nearby instead of filing a new one."""

    id: int


class Page(Button, prefix="p"):
    """Paging through a list: which list ("my" or "queue") and where it starts."""

    list: str
    offset: int


# -- the street's whistle (吹哨) and the departments reporting in (报到) ----------------------


class WhistleOp(StrEnum):
    TOGGLE = "t"  # choose or drop one department (`sel` is the selection after the press)
    SUMMON = "s"  # summon the departments in `sel`
    CANCEL = "x"  # put the message back as it was
    START = "o"  # open the picker (from a returned department's card: "summon others")


class WhistlePick(Button, prefix="w"):
    """The department picker on a ticket.

    `sel` is a hexadecimal bitmask over the departments offered, in the order the picker
    shows them (responsible first); `v` is a short fingerprint of that order, so a press on
    a picker whose list has changed since is refused rather than read against the new list.
    `src` is the summons whose "summon others" button opened it (0: the ticket card).
    """

    op: WhistleOp
    id: int
    sel: str = "0"
    v: str = ""
    src: int = 0


class SummonsOp(StrEnum):
    REPORT_IN = "in"  # the department accepts (报到/签收)
    RETURN = "rt"  # the department returns it (退单): then a reason, then a note
    FINISH = "f"  # the department's part is done: then a note
    BACK = "b"  # the department's buttons again (after the reasons were shown)
    INSIST = "is"  # the street: the department must take it after all
    RELEASE = "rl"  # the street: accept the department's return


class SummonsAction(Button, prefix="s"):
    """A button on a department's summons card (`id` is the summons)."""

    op: SummonsOp
    id: int


class SummonsReturnWhy(Button, prefix="sr"):
    """The department's reason for a return: a storage.enums.SummonsReturnReason value."""

    id: int
    reason: str


# -- Party members reporting for duty (党员报到) --------------------------------------------


class MemberDecision(Button, prefix="md"):
    """The community secretary's Approve (ok) / Reject on a member's registration."""

    id: int
    ok: bool


# -- the community's calls (社区吹哨) to Party members ----------------------------------------


class CallOp(StrEnum):
    COME = "y"  # "I'll come"
    CANT = "n"  # "Can't": nothing is stored
    WITHDRAW = "w"  # before the start: the place is free again
    CHECK_IN = "i"  # then asks for the location
    CHECK_OUT = "o"
    SHOW = "s"  # from /me: the call's place and times, and what may be pressed now


class CallAction(Button, prefix="dc"):
    """A button on a call to a member, its reminder, the "you're in" message or /me (`id`:
    call)."""

    op: CallOp
    id: int


# -- creating a call (/call, or Turn into call on a ticket card) ------------------------------


class CallCommunity(Button, prefix="ncc"):
    """The community a /call is for, when the person organises in several (`id`: unit)."""

    id: int


class CallGridOp(StrEnum):
    TOGGLE = "t"  # choose or drop the grid `id`
    WHOLE = "a"  # the whole community (drops the grids chosen)
    DONE = "d"  # on to the summary


class CallGrid(Button, prefix="ncg"):
    """The grid picker of the /call dialog (the selection is kept in the dialog's data)."""

    op: CallGridOp
    id: int = 0


class CallStep(Button, prefix="ncs"):
    """Confirm ("ok") or Cancel ("x") in the /call dialog."""

    step: str


class TicketToCall(Button, prefix="ntc"):
    """Turn into call, on a grid's ticket card (`id`: ticket)."""

    id: int


# -- the organiser after a call: its card and attendance sheet (/calls) ----------------------


class SheetOp(StrEnum):
    OPEN = "o"  # the call's card (with its sheet once over), as a new message
    TOGGLE = "t"  # one line between came and did not come (`sel`: the marks after the press)
    CONFIRM = "c"  # confirm the marks in `sel`
    CANCEL = "x"  # before the start: asks whether to call the call off
    CANCEL_YES = "y"  # ... yes: cancelled, those coming are told
    KEEP = "k"  # ... no: the card as it was


class Sheet(Button, prefix="as"):
    """A button on the organiser's card of a call (`id`: the call).

    `sel` is a hexadecimal bitmask over the sheet's lines in claim order (set: came): the
    marks after the press for TOGGLE, the marks shown for CONFIRM; `n` is how many lines it
    covers, so a press on a sheet whose lines differ from the database's is shown the sheet
    again instead of being read against other lines.
    """

    op: SheetOp
    id: int
    sel: str = ""
    n: int = 0


# -- service posts (认岗) and the member's /duty choices ---------------------------------------


class PostOp(StrEnum):
    CLAIM = "c"
    LEAVE = "l"


class PostAction(Button, prefix="pp"):
    """Claim / Leave on the /posts list (`id`: the service post)."""

    op: PostOp
    id: int


class DutyPlaceOp(StrEnum):
    STREETS = "s"  # the list of streets again
    STREET = "t"  # a street's communities (`id`: street)
    COMMUNITY = "c"  # this community (`id`: community)


class DutyPlace(Button, prefix="mp"):
    """Choosing the community by hand in the /duty dialog."""

    op: DutyPlaceOp
    id: int = 0


class DutyService(Button, prefix="ms"):
    """The kinds of service in the /duty dialog: toggle one (`i`: its index), or done (-1)."""

    i: int


# -- the three rates (/stats) ------------------------------------------------------------------


class StatsOp(StrEnum):
    SHOW = "v"  # the unit's month (another unit, another month)
    OVERDUE = "o"  # its tickets past their deadline now
    CHART = "c"  # the PNG
    XLSX = "x"
    CSV = "t"
    DEPARTMENT = "d"  # a department's month (`unit`: the department's id)


class StatsView(Button, prefix="st"):
    """A unit's figures for a month (`month` as 202611)."""

    op: StatsOp
    unit: int
    month: int
