"""Deadlines and the sweep's schedule: when a holder is reminded, and when the ticket climbs.

Each ticket (and each summoned department) carries its own list of alerts, computed when
someone new holds it: reminders at fractions of the allowed time, the deadline itself
("overdue": escalate, or at the top of the ladder remind again, a bounded number of times),
or the end of the follow-up visit. The sweep only reads rows whose first alert is due.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlmodel.ext.asyncio.session import AsyncSession

from domain.calendar import WorkCalendar
from storage.deadlines import deadline_policies, settings
from storage.enums import AlertKind, Level, Urgency
from storage.models import DeadlinePolicy

CALENDAR_KEY = "calendar"
LADDER_KEY = "ladder"


@dataclass(frozen=True)
class Ladder:
    """Organisation-wide timing that is not per level: the top's repeats, the follow-up's end."""

    top_repeat_minutes: int = 4 * 60
    top_repeat_times: int = 3
    followup_close_minutes: int = 3 * 24 * 60

    @classmethod
    def from_setting(cls, value: dict) -> Ladder:
        known = {k: int(v) for k, v in value.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def calendar_from_setting(tz: ZoneInfo, value: dict) -> WorkCalendar:
    """The working calendar the organisation file describes (holidays, make-up days, hours)."""
    hours = [
        (time.fromisoformat(start), time.fromisoformat(end))
        for start, end in value.get("working_hours", [])
    ]
    return WorkCalendar(
        tz,
        extra_holidays=[date.fromisoformat(d) for d in value.get("holidays", [])],
        extra_workdays=[date.fromisoformat(d) for d in value.get("workdays", [])],
        working_hours=hours,
    )


@dataclass
class Timing:
    """The calendar and the ladder's timing, read from the organisation's settings.

    One object lives as long as the process; `refresh` re-reads the settings (the scheduler
    does it before every sweep), so a newly loaded organisation file takes effect without a
    restart.
    """

    calendar: WorkCalendar
    ladder: Ladder = field(default_factory=Ladder)
    # phase_alerts' answers: a sweep hands thousands of tickets over at the same moment.
    memo: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def plain(cls, tz: ZoneInfo) -> Timing:
        """Whole days, no extra holidays, default ladder (before any settings are read)."""
        return cls(WorkCalendar(tz))

    async def refresh(self, session: AsyncSession) -> None:
        rows = await settings(session, [CALENDAR_KEY, LADDER_KEY])
        self.calendar = calendar_from_setting(self.calendar.tz, rows.get(CALENDAR_KEY, {}))
        self.ladder = Ladder.from_setting(rows.get(LADDER_KEY, {}))
        self.memo.clear()


async def load_timing(session: AsyncSession, tz: ZoneInfo) -> Timing:
    timing = Timing.plain(tz)
    await timing.refresh(session)
    return timing


class Policies:
    """Deadline policies by (urgency, category, level), read once per use (or per sweep)."""

    def __init__(self, rows: list[DeadlinePolicy]) -> None:
        self._by_key = {(p.urgency, p.category_id, p.level): p for p in rows}

    @classmethod
    async def load(cls, session: AsyncSession) -> Policies:
        return cls(await deadline_policies(session))

    def find(
        self, urgency: Urgency, category_id: int | None, level: Level
    ) -> DeadlinePolicy | None:
        # A category's own policy wins over the urgency-wide one.
        return self._by_key.get((urgency, category_id, level)) or self._by_key.get(
            (urgency, None, level)
        )


def _alert(at: datetime, kind: AlertKind, deadline: datetime) -> dict:
    return {"at": at.isoformat(), "kind": kind.value, "deadline": deadline.isoformat()}


def phase_alerts(
    timing: Timing,
    policy: DeadlinePolicy,
    *,
    start: datetime,
    minutes: int,
    now: datetime,
    top: bool,
) -> tuple[datetime, list[dict]]:
    """The deadline `minutes` after `start` under the policy, and the alerts leading to it.

    Reminders already past when the phase begins are dropped (the holder has just got it);
    the deadline itself is kept even when past, so a late start still escalates. At the top
    of the ladder the deadline repeats as reminders at the ladder's interval.
    """
    reminders = tuple(sorted(float(f) for f in policy.reminders or []))
    key = (policy.working_time, reminders, start, minutes, now, top)
    found = timing.memo.get(key)
    if found is None:
        if len(timing.memo) > 4096:
            timing.memo.clear()
        found = timing.memo[key] = _phase_alerts(
            timing, policy.working_time, reminders, start=start, minutes=minutes, now=now, top=top
        )
    deadline, alerts = found
    return deadline, list(alerts)


def _phase_alerts(
    timing: Timing,
    working_time: bool,
    reminders: tuple[float, ...],
    *,
    start: datetime,
    minutes: int,
    now: datetime,
    top: bool,
) -> tuple[datetime, list[dict]]:
    calendar = timing.calendar
    deadline = calendar.add(start, minutes, working_time=working_time)
    alerts = []
    for fraction in reminders:
        if not 0 < fraction < 1:
            continue
        at = calendar.add(start, minutes, working_time=working_time, fraction=fraction)
        if now <= at < deadline:
            alerts.append(_alert(at, AlertKind.REMIND, deadline))
    alerts.append(_alert(deadline, AlertKind.OVERDUE, deadline))
    if top:
        every = timedelta(minutes=timing.ladder.top_repeat_minutes)
        for k in range(1, timing.ladder.top_repeat_times + 1):
            alerts.append(_alert(deadline + k * every, AlertKind.OVERDUE, deadline))
    return deadline, alerts


def followup_alerts(timing: Timing, resolved_at: datetime) -> tuple[datetime, list[dict]]:
    """The follow-up visit ends after a set time on the clock: then the ticket closes, unrated."""
    end = resolved_at + timedelta(minutes=timing.ladder.followup_close_minutes)
    return end, [_alert(end, AlertKind.FOLLOWUP_TIMEOUT, end)]


def first_at(alerts: list[dict]) -> datetime | None:
    return datetime.fromisoformat(alerts[0]["at"]) if alerts else None


def due(alerts: list[dict], now: datetime) -> tuple[list[dict], list[dict]]:
    """The alerts due by `now` (in order) and those still ahead."""
    cut = 0
    while cut < len(alerts) and datetime.fromisoformat(alerts[cut]["at"]) <= now:
        cut += 1
    return alerts[:cut], alerts[cut:]
