"""The three rates a unit is judged by, per month (12345's 响应率 / 解决率 / 满意率), tallied
from the ticket events, the record of truth.

Every ticket event says which unit held the ticket when it happened (domain.changes). A
month is a calendar month in the city's time. A unit's figures include its whole subtree.

- **Response (响应率)**: each time a ticket comes into a unit's hands to be accepted (filed to
  its grid, escalated to it, dispatched again to a grid) is a step. A step counts when it
  ends, in the month it began: accepted (签收; for a street, summoning departments) by its
  accept deadline is responded; passed up the ladder, by hand or on the missed deadline, is
  not. A step the unit returned (退单) is not counted either way, only shown: it was not
  theirs, and the level above decides it. Steps still waiting are not counted yet.
  Response rate = responded / steps ended.
- **Resolution (解决率)**: each answer (答复) the resident was asked about counts once, in
  the month its follow-up ended, for the unit that answered it: confirmed solved, closed as
  solved after the follow-up went unanswered (shown apart), or reopened (not solved).
  Resolution rate = (confirmed + unanswered) / follow-ups ended.
- **Satisfaction (满意率)**: each rating counts in the month it was given, for the unit that
  answered: 4 or 5 stars is satisfied. Satisfaction rate = ratings of 4-5 / ratings; the mean
  rating beside it.

Beside each rate its count, so a rate on 3 tickets is not read as one on 3,000. Events
recorded before the figures were kept carry no unit and are not counted.

The scheduler rolls the events up into monthly rows per unit (roll_up); a read adds the
events after the roll-up's mark, so what it shows is exact at the moment of reading.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime, time, timedelta, tzinfo
from typing import Self, TypeVar

from sqlmodel.ext.asyncio.session import AsyncSession

from domain.access import require_role
from domain.clock import Clock
from domain.deadlines import Timing
from domain.errors import DomainError, NotAllowed, NotFound
from domain.outbox import Outgoing, enqueue_many
from domain.reference import OrgSnapshot
from domain.roles import department_roles, figure_roles
from storage.digests import digest_holders
from storage.enums import Lane, TicketStatus, UnitKind
from storage.figures import (
    DutyCounts,
    EventFacts,
    OverdueTicket,
    add_figures,
    all_departments,
    current_mark,
    duty_by_community,
    events_between,
    figures_of_month,
    mark_for_update,
    overdue_by_holder,
    overdue_tickets,
    set_mark,
    slice_end,
)
from storage.models import Department, OrgUnit, Person
from storage.once import claim_once
from storage.people import active_assignments_of
from storage.summons import answers_for_department

S = TicketStatus
C = TypeVar("C", bound="_Counts")
# A step in a unit's hands ends with one of these, from NEW (the ticket waiting to be taken).
RESPONDED = frozenset({"accept", "whistle"})
NOT_RESPONDED = frozenset({"escalate"})
RETURNED = "return"
# A follow-up visit ends with one of these, from RESOLVED.
FOLLOWUP_ENDS = {"confirm": "solved", "expire": "unanswered", "reopen": None}
RATE = "rate"
SATISFIED_FROM = 4
# Events are rolled up once this old: every transaction that wrote earlier events has ended.
SETTLE = timedelta(minutes=5)
# Events rolled up in one transaction, which holds the mark's row (and, on SQLite, the write
# lock, so updates wait for it): a city upgraded with a long history rolls it up slice by
# slice. Measured (benchmarks/stats.py, SQLite, 935,234 events over 2,000 grids, on a slow
# day): 94 slices of 10,000 took 30.3 s in all, the longest 0.51 s; 47 of 20,000, 24.8 s and
# 0.69 s (each slice also writes the month's row of nearly every unit).
ROLL_UP_SLICE = 10_000
# Being worked on: a ticket in one of these past its deadline is overdue in its holder's hands.
WORKED_ON = frozenset({S.NEW, S.ACCEPTED, S.REOPENED, S.RETURNED, S.SUMMONED})


@dataclass
class _Counts:
    """Counts that add up: a month's of a unit, of its subtree, of a department."""

    def add(self, other: Self) -> None:
        for each in fields(self):
            setattr(self, each.name, getattr(self, each.name) + getattr(other, each.name))


@dataclass
class Figures(_Counts):
    """A unit's counts for a month, and the rates made of them (None: nothing to rate)."""

    dispatched: int = 0
    responded: int = 0
    returned: int = 0
    followups: int = 0
    solved: int = 0
    unanswered: int = 0
    ratings: int = 0
    satisfied: int = 0
    rating_sum: int = 0

    @property
    def response_rate(self) -> float | None:
        return self.responded / self.dispatched if self.dispatched else None

    @property
    def resolution_rate(self) -> float | None:
        return (self.solved + self.unanswered) / self.followups if self.followups else None

    @property
    def satisfaction_rate(self) -> float | None:
        return self.satisfied / self.ratings if self.ratings else None

    @property
    def mean_rating(self) -> float | None:
        return self.rating_sum / self.ratings if self.ratings else None


def month_of(moment: datetime, tz: tzinfo) -> int:
    """The month a moment falls in, in the city's time: 202611."""
    local = moment.astimezone(tz)
    return local.year * 100 + local.month


def month_bounds(month: int, tz: tzinfo) -> tuple[datetime, datetime]:
    """The month's [start, end) in the city's time."""
    year, number = divmod(month, 100)
    start = datetime(year, number, 1, tzinfo=tz)
    end = datetime(year + number // 12, number % 12 + 1, 1, tzinfo=tz)
    return start, end


def _moment(value: str | datetime) -> datetime:
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def tally(events: Iterable[EventFacts], tz: tzinfo) -> dict[tuple[int, int], Figures]:
    """The counts the events add, by (month, unit): the definitions above, in one place."""
    out: dict[tuple[int, int], Figures] = defaultdict(Figures)
    for event in events:
        unit = event.data.get("unit")
        if unit is None:
            continue
        kind = event.kind
        if event.from_status == S.NEW and (
            kind in RESPONDED or kind in NOT_RESPONDED or kind == RETURNED
        ):
            since = event.data.get("since")
            if since is None:
                continue
            figures = out[(month_of(_moment(since), tz), unit)]
            if kind == RETURNED:
                figures.returned += 1
                continue
            figures.dispatched += 1
            due = event.data.get("due")
            if kind in RESPONDED and (due is None or event.at <= _moment(due)):
                figures.responded += 1
        elif event.from_status == S.RESOLVED and kind in FOLLOWUP_ENDS:
            figures = out[(month_of(event.at, tz), unit)]
            figures.followups += 1
            outcome = FOLLOWUP_ENDS[kind]
            if outcome is not None:
                setattr(figures, outcome, getattr(figures, outcome) + 1)
        elif kind == RATE and isinstance(event.data.get("rating"), int):
            rating = event.data["rating"]
            figures = out[(month_of(event.at, tz), unit)]
            figures.ratings += 1
            figures.rating_sum += rating
            figures.satisfied += rating >= SATISFIED_FROM
    return dict(out)


@dataclass
class DepartmentFigures(_Counts):
    """A department's month as the whistle summoned it: reported in (报到) and finished on
    time, each over those done; returned and silent (reported to the district) apart."""

    reported_in: int = 0
    reported_in_time: int = 0
    finished: int = 0
    finished_in_time: int = 0
    returned: int = 0
    silent: int = 0

    @property
    def report_in_rate(self) -> float | None:
        return self.reported_in_time / self.reported_in if self.reported_in else None

    @property
    def finish_rate(self) -> float | None:
        return self.finished_in_time / self.finished if self.finished else None


# A summoned department's step: what it counts as, and the in-time count it may add to.
DEPARTMENT_STEPS = {
    "department_accepted": ("reported_in", "reported_in_time"),
    "department_finished": ("finished", "finished_in_time"),
    "department_returned": ("returned", None),
    "department_escalated": ("silent", None),
}


def tally_departments(
    events: Iterable[EventFacts], tz: tzinfo
) -> dict[tuple[int, int], DepartmentFigures]:
    """The counts the events add, by (month, department), in the month of the step: reported
    in or finished by the step's deadline is in time; silent is a summons past a deadline."""
    out: dict[tuple[int, int], DepartmentFigures] = defaultdict(DepartmentFigures)
    for event in events:
        step = DEPARTMENT_STEPS.get(event.kind)
        department = event.data.get("department_id")
        if step is None or department is None:
            continue
        figures = out[(month_of(event.at, tz), department)]
        done, in_time = step
        setattr(figures, done, getattr(figures, done) + 1)
        due = event.data.get("due")
        if in_time is not None and (due is None or event.at <= _moment(due)):
            setattr(figures, in_time, getattr(figures, in_time) + 1)
    return dict(out)


async def roll_up(
    *, session: AsyncSession, clock: Clock, tz: tzinfo, size: int = ROLL_UP_SLICE
) -> int:
    """Add the next slice of the events that have settled since the mark (at most `size`,
    never splitting one moment's events) to the monthly rows, the units' and the
    departments', and move the mark past them: once, however many schedulers run it (the
    mark's row is held by the transaction that rolls, and the next one starts where it
    stopped). How many events were rolled: 0 once every settled event is rolled up; fewer
    than `size` mostly means the same, but a slice cut short before a moment's events may
    leave those for the next call."""
    mark = await mark_for_update(session)
    upto = clock.now() - SETTLE
    if mark is not None and upto <= mark:
        return 0
    upto = await slice_end(session, mark, upto, size)
    events = await events_between(session, mark, upto)
    for whose, counts in (
        ("unit", tally(events, tz)),
        ("department", tally_departments(events, tz)),
    ):
        await add_figures(session, whose, {key: vars(value) for key, value in counts.items()})
    await set_mark(session, upto)
    return len(events)


async def _tail(session: AsyncSession, tz: tzinfo, month: int) -> list[EventFacts]:
    """The events after the roll-up's mark that may count in the month (a step that began in
    it may have ended since; nothing before the month's start counts in it)."""
    start, _ = month_bounds(month, tz)
    mark = await current_mark(session)
    return await events_between(session, start if mark is None else max(mark, start), None)


async def _exact(
    session: AsyncSession,
    tz: tzinfo,
    month: int,
    tail: list[EventFacts] | None,
    whose: str,
    make: Callable[..., C],
    tally_of: Callable[[list[EventFacts], tzinfo], dict[tuple[int, int], C]],
) -> dict[int, C]:
    """A month's counts by unit or department, exact now: the rolled-up rows, and what the
    events after the roll-up's mark add to the month (`tail`: those events, read once for
    several months by a caller that needs them; None: read here)."""
    rolled = await figures_of_month(session, whose, month)
    own = {key: make(**counts) for key, counts in rolled.items()}
    if tail is None:
        tail = await _tail(session, tz, month)
    for (event_month, key), counts in tally_of(tail, tz).items():
        if event_month == month:
            own.setdefault(key, make()).add(counts)
    return own


async def own_figures(
    session: AsyncSession, tz: tzinfo, month: int, tail: list[EventFacts] | None = None
) -> dict[int, Figures]:
    """Each unit's own figures for the month (not its subtree's), exact now."""
    return await _exact(session, tz, month, tail, "unit", Figures, tally)


async def department_figures(
    session: AsyncSession, tz: tzinfo, month: int, tail: list[EventFacts] | None = None
) -> dict[int, DepartmentFigures]:
    """Each department's figures for the month, exact now."""
    return await _exact(
        session, tz, month, tail, "department", DepartmentFigures, tally_departments
    )


def _counted_in(org: OrgSnapshot, unit_id: int) -> list[OrgUnit]:
    """The units whose subtree holds the unit: itself and those above (none if unknown)."""
    unit = org.units.get(unit_id)
    return org.chain(unit) if unit is not None else []


def subtree_figures(org: OrgSnapshot, own: dict[int, Figures]) -> dict[int, Figures]:
    """Every unit's figures with its subtree's: each unit's own added to it and those above."""
    totals: dict[int, Figures] = defaultdict(Figures)
    for unit_id, figures in own.items():
        for above in _counted_in(org, unit_id):
            totals[above.id].add(figures)
    return dict(totals)


async def overdue_now(session: AsyncSession, clock: Clock, org: OrgSnapshot) -> dict[int, int]:
    """Tickets being worked on past their deadline now, by unit, subtrees included."""
    totals: dict[int, int] = defaultdict(int)
    for unit_id, count in (await overdue_by_holder(session, clock.now(), WORKED_ON)).items():
        for above in _counted_in(org, unit_id):
            totals[above.id] += count
    return dict(totals)


# -- a unit's report: its figures and its children ranked --------------------------------------


@dataclass(frozen=True)
class Weights:
    """How the three rates make one score for ranking (Beijing's 12345 weighs response 10%,
    resolution 45%, satisfaction 45%)."""

    response: float = 0.10
    resolution: float = 0.45
    satisfaction: float = 0.45


def weights_of(org: OrgSnapshot) -> Weights:
    """The weights the organisation file gives (its figures section), else 12345's."""
    given = org.figures.get("weights") or {}
    rates = ("response", "resolution", "satisfaction")
    return Weights(**{name: float(given[name]) for name in rates if name in given})


def score(figures: Figures, weights: Weights) -> float | None:
    """The weighted mean of the rates the unit has (a rate with nothing to rate leaves its
    weight out); None when it has none."""
    parts = [
        (rate, weight)
        for rate, weight in (
            (figures.response_rate, weights.response),
            (figures.resolution_rate, weights.resolution),
            (figures.satisfaction_rate, weights.satisfaction),
        )
        if rate is not None and weight > 0
    ]
    total = sum(weight for _, weight in parts)
    return sum(rate * weight for rate, weight in parts) / total if total else None


@dataclass(frozen=True)
class Line:
    """One unit in a report: its figures (subtree included), its overdue tickets now, its
    score."""

    unit: OrgUnit
    figures: Figures
    overdue: int
    score: float | None


@dataclass(frozen=True)
class UnitReport:
    """A unit's month: its own line, and its children's ranked by score (those with nothing
    to rate last, by code); for a community and above, its Party members on duty."""

    month: int
    unit: Line
    children: list[Line]
    duty: DutyCounts | None = None
    # The departments at the unit or below that a whistle summoned this month.
    departments: list[tuple[Department, DepartmentFigures]] = field(default_factory=list)
    # The unit's figures the month before, to read this month's against.
    previous: Figures | None = None


async def duty_in(
    session: AsyncSession,
    org: OrgSnapshot,
    clock: Clock,
    tz: tzinfo,
    unit: OrgUnit,
    month: int,
) -> DutyCounts | None:
    """The Party members on duty in the unit's communities: registered and approved now; the
    month's calls posted and filled, hours served and no-shows. None below a community."""
    if unit.kind == UnitKind.GRID:
        return None
    start, end = month_bounds(month, tz)
    totals = [0] * len(DutyCounts._fields)
    for community_id, counts in (await duty_by_community(session, start, end, clock.now())).items():
        community = org.units.get(community_id)
        if community is not None and community.path.startswith(unit.path):
            totals = [a + b for a, b in zip(totals, counts, strict=True)]
    return DutyCounts(*totals)


async def unit_report(
    *,
    session: AsyncSession,
    org: OrgSnapshot,
    clock: Clock,
    tz: tzinfo,
    unit: OrgUnit,
    month: int,
    weights: Weights | None = None,
) -> UnitReport:
    """The figures of `unit` and of each unit right below it for `month`, and what is overdue
    in each now."""
    weights = weights or weights_of(org)
    before = previous_month(month)
    # The events after the mark, read once: they may count in this month or the one before.
    tail = await _tail(session, tz, before)
    totals = subtree_figures(org, await own_figures(session, tz, month, tail))
    overdue = await overdue_now(session, clock, org)
    report = _ranked(org, unit, month, totals, overdue, weights)
    duty = await duty_in(session, org, clock, tz, unit, month)
    figures = await department_figures(session, tz, month, tail)
    departments = [
        (department, figures[department.id])
        for department in await all_departments(session)
        if department.id in figures
        and org.units.get(department.unit_id) is not None
        and org.units[department.unit_id].path.startswith(unit.path)
    ]
    previous = subtree_figures(org, await own_figures(session, tz, before, tail))
    return UnitReport(
        report.month,
        report.unit,
        report.children,
        duty,
        departments,
        previous.get(unit.id, Figures()),
    )


def _ranked(
    org: OrgSnapshot,
    unit: OrgUnit,
    month: int,
    totals: dict[int, Figures],
    overdue: dict[int, int],
    weights: Weights,
) -> UnitReport:
    """The unit's line and its children's, ranked by score (nothing to rate: last, by code)."""

    def line(of: OrgUnit) -> Line:
        figures = totals.get(of.id, Figures())
        return Line(of, figures, overdue.get(of.id, 0), score(figures, weights))

    children = [line(child) for child in org.units.values() if child.parent_id == unit.id]
    children.sort(key=lambda c: (c.score is None, -(c.score or 0.0), c.unit.code))
    return UnitReport(month, line(unit), children)


def parse_month(text: str) -> int:
    """ "2026-11" as 202611; a DomainError naming the form otherwise."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if match is None or not 1 <= int(match[2]) <= 12 or int(match[1]) < 2000:
        raise DomainError("stats.bad_month", given=text)
    return int(match[1]) * 100 + int(match[2])


# -- /stats: who sees which unit's figures ------------------------------------------------------


async def figures_home(session: AsyncSession, person: Person) -> OrgUnit | None:
    """The highest unit whose figures the person sees (their own unit as a secretary, street
    officer or administrator; the first such when they hold several at one height); None:
    they see none."""
    seeing = figure_roles()
    units = [
        held.unit
        for held in await active_assignments_of(session, person.id)
        if held.unit is not None and held.assignment.role in seeing
    ]
    return min(units, key=lambda u: u.path.count("/"), default=None)


def _month_asked(clock: Clock, tz: tzinfo, month: int | None) -> int:
    """The month a reader asks for (None: this one); one after this month is refused."""
    this_month = month_of(clock.now(), tz)
    if month is None:
        return this_month
    if month > this_month:
        raise DomainError("stats.future_month", month=f"{month // 100}-{month % 100:02d}")
    return month


async def figures_of(
    *,
    session: AsyncSession,
    org: OrgSnapshot,
    clock: Clock,
    tz: tzinfo,
    person: Person,
    unit_id: int,
    month: int | None,
    weights: Weights | None = None,
) -> UnitReport:
    """/stats: the report of `unit_id` for `month` (default: this month), if the person sees
    that unit's figures; NotAllowed (audited) otherwise. A month after this one is refused."""
    month = _month_asked(clock, tz, month)
    unit = org.units.get(unit_id)
    if unit is None:
        raise NotFound("unit.unknown", code=str(unit_id))
    await require_role(
        session,
        clock=clock,
        person_id=person.id,
        roles=figure_roles(),
        unit=unit,
        action=f"stats:{unit.code}",
    )
    return await unit_report(
        session=session,
        org=org,
        clock=clock,
        tz=tz,
        unit=unit,
        month=month,
        weights=weights,
    )


def previous_month(month: int) -> int:
    year, number = divmod(month, 100)
    return (year - 1) * 100 + 12 if number == 1 else month - 1


def next_month(month: int) -> int:
    year, number = divmod(month, 100)
    return (year + 1) * 100 + 1 if number == 12 else month + 1


async def trend(
    session: AsyncSession, org: OrgSnapshot, tz: tzinfo, unit: OrgUnit, month: int, months: int = 6
) -> list[tuple[int, Figures]]:
    """The unit's figures (its subtree's) for the `months` months up to `month`, oldest first."""
    wanted = [month]
    while len(wanted) < months:
        wanted.append(previous_month(wanted[-1]))
    out = []
    tail = await _tail(session, tz, wanted[-1])  # read once, from the oldest month on
    for each in reversed(wanted):
        totals = subtree_figures(org, await own_figures(session, tz, each, tail))
        out.append((each, totals.get(unit.id, Figures())))
    return out


async def overdue_in(
    *,
    session: AsyncSession,
    org: OrgSnapshot,
    clock: Clock,
    person: Person,
    unit_id: int,
    limit: int = 20,
) -> tuple[OrgUnit, list[OverdueTicket]]:
    """The tickets being worked on past their deadline now in the unit's subtree, the most
    overdue first, for one who sees its figures (NotAllowed, audited, otherwise)."""
    unit = org.units.get(unit_id)
    if unit is None:
        raise NotFound("unit.unknown", code=str(unit_id))
    await require_role(
        session,
        clock=clock,
        person_id=person.id,
        roles=figure_roles(),
        unit=unit,
        action=f"stats.overdue:{unit.code}",
    )
    below = None  # the city: every unit
    if unit.parent_id is not None:
        below = [u.id for u in org.units.values() if u.path.startswith(unit.path)]
    return unit, await overdue_tickets(session, clock.now(), below, WORKED_ON, limit)


# -- the monthly ranking (月度排名) --------------------------------------------------------------


def _figures_data(figures: Figures) -> dict[str, object]:
    return {
        "dispatched": figures.dispatched,
        "responded": figures.responded,
        "followups": figures.followups,
        "solved": figures.solved + figures.unanswered,
        "ratings": figures.ratings,
        "satisfied": figures.satisfied,
    }


def ranking_data(report: UnitReport) -> dict[str, object]:
    """What the monthly ranking message says (an outbox row's data): the unit, the month,
    and its children by rank with their counts and scores."""
    unit = report.unit
    return {
        "month": report.month,
        "unit_id": unit.unit.id,
        "unit_zh": unit.unit.name_zh,
        "unit_en": unit.unit.name_en,
        "figures": _figures_data(unit.figures),
        "score": unit.score,
        "children": [
            {
                "name_zh": line.unit.name_zh,
                "name_en": line.unit.name_en,
                "figures": _figures_data(line.figures),
                "score": line.score,
            }
            for line in report.children
        ],
    }


async def send_monthly_rankings(
    *,
    session: AsyncSession,
    org: OrgSnapshot,
    clock: Clock,
    timing: Timing,
    at: time,
    weights: Weights | None = None,
) -> int | None:
    """On the first working day of a month, from `at` (or at the first sweep after, so a bot
    that was down then still sends it), every official who sees figures gets last month's
    ranking of the units below their own: once, however many schedulers run it (the month
    is claimed with a JobRun row in the transaction that queues the messages). How many were
    queued, or None when it was not the time or already done."""
    tz = timing.calendar.tz
    now = clock.now()
    local = now.astimezone(tz)
    first = local.date().replace(day=1)
    while not timing.calendar.is_working_day(first):
        first += timedelta(days=1)
    if local.date() < first or (local.date() == first and local.time() < at):
        return None
    month = previous_month(month_of(now, tz))
    if not await claim_once(session, f"ranking:{month}", now):
        return None
    totals = subtree_figures(org, await own_figures(session, tz, month))
    weights = weights or weights_of(org)
    messages = []
    seen: set[tuple[int, int]] = set()
    for _, chat_id, unit in await digest_holders(session, figure_roles()):
        if (chat_id, unit.id) in seen or unit.id not in org.units:
            continue
        seen.add((chat_id, unit.id))
        report = _ranked(org, org.units[unit.id], month, totals, {}, weights)
        # A month with nothing to rate below is not news.
        if report.children and report.unit.figures != Figures():
            data = ranking_data(report)
            messages.append(Outgoing(chat_id, "monthly_ranking", data, Lane.BULK))
    sent = await enqueue_many(session, messages, clock=clock)
    await session.flush()
    return sent


# -- a department's own figures (/stats for its liaisons) -------------------------------------


@dataclass(frozen=True)
class DepartmentReport:
    month: int
    department: Department
    figures: DepartmentFigures


async def department_home(session: AsyncSession, person: Person) -> Department | None:
    """The department the person answers for (the first, if several); None: none."""
    answering = department_roles()
    for held in await active_assignments_of(session, person.id):
        if held.department is not None and held.assignment.role in answering:
            return held.department
    return None


async def department_report(
    *,
    session: AsyncSession,
    clock: Clock,
    tz: tzinfo,
    person: Person,
    department_id: int | None,
    month: int | None,
) -> DepartmentReport:
    """A department's month, for its liaisons and for the officials over its unit (anyone
    else: NotAllowed, audited). Default: the person's own department, this month."""
    month = _month_asked(clock, tz, month)
    department = (
        await department_home(session, person)
        if department_id is None
        else await session.get(Department, department_id)
    )
    if department is None:
        raise (
            NotAllowed("stats.not_allowed")
            if department_id is None
            else NotFound("department.unknown", code=str(department_id))
        )
    if not await answers_for_department(
        session, person_id=person.id, roles=department_roles(), department_id=department.id
    ):
        unit = await session.get(OrgUnit, department.unit_id)
        assert unit is not None
        await require_role(
            session,
            clock=clock,
            person_id=person.id,
            roles=figure_roles(),
            unit=unit,
            action=f"stats.department:{department.code}",
        )
    figures = (await department_figures(session, tz, month)).get(department.id)
    return DepartmentReport(month, department, figures or DepartmentFigures())
