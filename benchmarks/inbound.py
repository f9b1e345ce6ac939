"""Inbound throughput and latency: residents filing whole /report dialogs through `gridbot run`,
with the production send limits, against a fake Bot API that enforces Telegram's.

    .venv/bin/python benchmarks/inbound.py [--seconds 15] [--residents 200] [--rate 100]
                                           [--call-members 5000] [--call-window 150]
                                           [--database-url postgresql://postgres@127.0.0.1/test]

The fake Bot API (tests/fake_telegram.py) serves loopback HTTP in this process, the driver's,
with Telegram's limits on: per chat a burst of 3 then one message a second, 30 a second
overall for messages to chats that did not write within a minute, 429 with retry_after over
either. The bots run as subprocesses polling it, with their production settings: nothing
(GRIDBOT_OUTBOX_RATE, GRIDBOT_CHAT_INTERVAL, GRIDBOT_CHAT_BURST, GRIDBOT_FLOOD_*) is set.

Residents behave as people: each pushes an update, waits for the step's last answer, reads
for `--think` seconds (jittered by +-25%) and never writes twice within a second (two, after
a step answered with two messages). So no chat is held by its limit (gridbot's per-chat
bucket would otherwise make a reply wait for its chat's next token), and a bot's throughput
is what its capacity allows once enough residents write. Phases, one after the other on the
same fake:

1. Capacity of the bare aiogram echo bot (benchmarks/bare_bot.py), of the same echo bot
   keeping each chat's state durable (one write per message through gridbot's FSM storage,
   on a database of the same kind: the "durable echo", the baseline the target is set
   against), and of gridbot (`python -m bot run` on a fresh database). Residents are added
   (5% every quarter second) until the median latency of the last second's steps passes
   `--saturated-ms`: from there on updates wait in the bot's queue, so its capacity, not the
   residents, sets the rate. The window opens `--warmup` s later.
2. gridbot with `--residents` residents (200, the issue's figure), people as above.
3. gridbot at `--rate` updates/s offered (each of `--rate` x `--pace` residents one update
   every `--pace` s, 1.25 by default, on a fixed schedule, never before its last step was
   answered: a step takes 1.13 messages on average, so a resident writing every second
   would outrun its chat's one message a second) WHILE a call to
   `--call-members` Party members is being delivered: members seeded as
   benchmarks/fanout.py does (bulk inserts into gridbot's database, one community, an
   approved secretary), the call posted with the real `domain.calls.create_call`, and sent
   by the running bot's outbox through its bulk lane at 29/s. The window (`--call-window`
   s) lies inside the delivery; then the driver waits for the call's last message.

An update's latency runs from pushing it into the fake to the bot's first call for that
chat (sendMessage, answerCallbackQuery...); updates/s counts steps whose last answer came in
the window. The CPU of each bot and of this process (fake and residents) is printed, so a
reader can see whether the fake was the limit; the fake counts the 429s it answered, by
kind. At the end the tickets in the database are counted against the dialogs that got their
"filed" answer.

Targets: gridbot's updates/s >= 0.60 x the durable echo's; p99 < 150 ms at 100 updates/s
offered while the call is delivered; no 429 for gridbot. The last line printed is JSON.

`--profile /tmp/gridbot.svg` records gridbot's capacity window with py-spy
(`.venv/bin/pip install py-spy`; `--profile-format raw` for collapsed stacks,
`--profile-args=--gil` for the thread holding the GIL only); `--gridbot-command` runs another
command line in gridbot's place (a variant under test) with the same environment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from sqlmodel import select  # noqa: E402

from benchmarks.common import database  # noqa: E402
from domain.calls import create_call  # noqa: E402
from domain.clock import SystemClock  # noqa: E402
from storage.db import make_engine, make_sessionmaker, sync_url  # noqa: E402
from storage.enums import MemberStatus, Role, UnitKind  # noqa: E402
from storage.models import Member, OrgUnit, OutboxMessage, Person, RoleAssignment  # noqa: E402
from storage.org_loader import sample_path  # noqa: E402
from storage.orgfile import read_org_file  # noqa: E402
from tests.fake_telegram import REJECTION_KINDS, FakeTelegram  # noqa: E402
from views.i18n import text as i18n_text  # noqa: E402

GRIDBOT_TOKEN = "123456:GRIDBOT-BENCH"
BARE_TOKEN = "654321:BARE-BENCH"
STATE_TOKEN = "765432:STATE-BENCH"
LANGUAGE = "en"  # the residents' client language: the bot answers in English
CLK_TCK = os.sysconf("SC_CLK_TCK")
FIRST_RESIDENT = 10_000_000
FIRST_MEMBER = 50_000_000  # Party members' chats: a call's messages, never a resident's
TARGET_RATIO = 0.60  # gridbot / durable echo
TARGET_P99_MS = 150.0  # at --rate offered while a call is delivered
OUTBOX_RATE = 29.0  # the production default of GRIDBOT_OUTBOX_RATE: the call's baseline
CHUNK = 1000


def _prefix(key: str) -> str:
    """The fixed start of an English text (up to its first placeholder)."""
    return i18n_text(LANGUAGE, key).split("{", 1)[0]


# What each step of the dialog answers last (its "done"), and what may come before it.
ASK_CATEGORY = _prefix("report.ask_category")
RESTARTED = _prefix("report.restarted")
ASK_DESCRIPTION = _prefix("report.ask_description")
ASK_PHOTOS = _prefix("report.ask_photos")
PHOTO_RECEIVED = _prefix("report.photo_received")
ASK_LOCATION = _prefix("report.ask_location")
LOCATED = _prefix("report.located")
DUPLICATES = _prefix("report.duplicates")
SUMMARY = _prefix("report.summary")
FILED = _prefix("report.filed")
SLOW_DOWN = _prefix("flood.slow_down")
CANCEL_LABEL = i18n_text(LANGUAGE, "report.btn.cancel")
DONE_LABEL = i18n_text(LANGUAGE, "report.btn.done")
NEW_LABEL = i18n_text(LANGUAGE, "report.btn.new")
CONFIRM_LABEL = i18n_text(LANGUAGE, "report.btn.confirm")

STEPS = ("report", "category", "description", "photo", "done", "location", "new", "confirm")
DIALOG_STEPS = 7  # without "new", which only comes when similar tickets are offered


class PhaseOver(Exception):
    """The phase is over: the resident stops before its next step."""


class DialogFailed(Exception):
    """A step timed out or got an unexpected answer: the resident starts over as a new user."""


# -- the fake, with a cheap per-chat hook ------------------------------------------------------


class Chat:
    """What the bot did in one chat since the resident's last push."""

    __slots__ = ("pushed_at", "first_at", "messages", "problem", "waiter", "rejected")

    def __init__(self) -> None:
        self.pushed_at: float | None = None
        self.first_at: float | None = None
        self.messages: list[dict] = []
        self.problem: str | None = None
        self.waiter: asyncio.Future[None] | None = None
        self.rejected = 0  # calls for this chat answered 429

    def begin(self) -> None:
        self.pushed_at = time.perf_counter()
        self.first_at = None
        self.messages.clear()
        self.problem = None

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class BenchFake(FakeTelegram):
    """FakeTelegram that hands each call and message to its chat at once (no scans), and
    notes when each message to a Party member (a call's fan-out) was delivered."""

    def __init__(self, **kwargs: Any) -> None:
        self.chats: dict[int, Chat] = {}
        self.callback_chats: dict[str, int] = {}
        self.polling: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.bulk_times: list[float] = []  # perf_counter of each message to a member
        self.bulk_paid = 0
        # Messages to each member by method: a call is its venue, then its text.
        self.bulk_chats: Counter[tuple[int, str]] = Counter()
        self.rejected_at: list[tuple[float, str]] = []  # (perf_counter, kind) of each 429
        super().__init__(**kwargs)

    async def _m_getUpdates(self, params: dict, token: str) -> list[dict]:
        # Polling has begun when the request arrives (a long poll is recorded when it ends).
        self.polling[token].set()
        return await super()._m_getUpdates(params, token)

    def drop_pending(self) -> None:
        """Forget updates no bot will confirm (the previous bot stopped before it could)."""
        self._updates.clear()

    def _reject(self, kind: str, wait: float) -> NoReturn:
        self.rejected_at.append((time.perf_counter(), kind))
        super()._reject(kind, wait)

    def rejections(self) -> Counter[str]:
        """429s answered so far, by kind."""
        return Counter(self.rejected_by_kind)

    def _deliver(self, method: str, params: dict[str, Any], **content: Any) -> dict:
        message = super()._deliver(method, params, **content)
        chat_id = params.get("chat_id")
        if isinstance(chat_id, int) and chat_id >= FIRST_MEMBER:
            self.bulk_times.append(time.perf_counter())
            self.bulk_paid += bool(params.get("allow_paid_broadcast"))
            self.bulk_chats[(chat_id, method)] += 1
            return message
        chat = self.chats.get(chat_id)  # type: ignore[arg-type]
        if chat is not None:
            chat.messages.append(message)
        return message

    def _record(
        self,
        method: str,
        params: dict[str, Any],
        token: str,
        status: int,
        description: str | None = None,
        encoding: str = "",
    ) -> None:
        super()._record(method, params, token, status, description, encoding)
        if method == "getUpdates":
            return
        chat_id = params.get("chat_id")
        if chat_id is None and "callback_query_id" in params:
            chat_id = self.callback_chats.pop(params["callback_query_id"], None)
        chat = self.chats.get(chat_id)  # type: ignore[arg-type]
        if chat is None:
            return
        if chat.first_at is None:
            chat.first_at = time.perf_counter()
        if status == 429:
            chat.rejected += 1
        if status != 200:
            chat.problem = f"{method} -> {status} {description}"
        elif method == "answerCallbackQuery" and params.get("text"):
            chat.problem = f"alert: {params['text']}"
        chat.wake()

    def forget_calls(self) -> None:
        """Drop the record of calls so far (nothing here reads it; it only grows)."""
        self.calls.clear()


# -- measuring ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class Load:
    """How residents write.

    People (`think`): after each answer a resident reads for `think` s (+-25%), and never
    writes twice within `gap` s. Open loop (`pace`): one update every `pace` s on a fixed
    schedule, never before the last step was answered. `spread`: residents start one after
    the other over that many seconds. `ramp_to` > 0: more residents are added until the bot
    queues (or that many write).
    """

    residents: int
    think: float | None = None
    gap: float = 1.0
    pace: float | None = None
    spread: float = 0.0
    ramp_to: int = 0

    @property
    def offered(self) -> float | None:
        return self.residents / self.pace if self.pace else None


@dataclass
class Phase:
    name: str
    load: Load
    window_start: float = math.inf
    window_end: float = math.inf
    residents: int = 0  # residents writing in the window
    latencies: list[float] = field(default_factory=list)  # ms, updates pushed in the window
    per_step: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    recent: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=50_000))
    pushed: int = 0  # updates pushed in the window
    handled: int = 0  # updates whose last answer came in the window
    sends: int = 0  # messages the bot delivered for the steps handled in the window
    timeouts: int = 0
    unexpected: int = 0
    samples: list[str] = field(default_factory=list)
    dialogs: int = 0  # dialogs completed (ticket filed), any time in the phase
    requests: int = 0  # requests the fake received in the window
    rejected: Counter[str] = field(default_factory=Counter)  # 429s in the window, by kind
    bot_cpu: float = float("nan")  # share of one core over the window
    bot_wait: float = float("nan")  # share of the window the bot's main thread was runnable
    # but waited for a CPU (taken by other processes on the machine)
    driver_cpu: float = float("nan")
    driver_gc_ms: float = 0.0  # the driver's longest garbage-collector pause in the window
    driver_lag_ms: float = 0.0  # the longest the driver's event loop was late in the window
    ramp_s: float = 0.0
    saturated: bool = False  # a capacity phase: the bot queued before the crowd's limit
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.window_end - self.window_start

    @property
    def rate(self) -> float:
        return self.handled / self.seconds

    @property
    def cpu_ms_per_update(self) -> float:
        """The bot's CPU time (user + system, all threads) per update handled."""
        return self.bot_cpu * self.seconds * 1000 / self.handled if self.handled else math.nan

    @property
    def errors(self) -> int:
        return self.timeouts + self.unexpected

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)

    def record(
        self, step: str, pushed_at: float, first_at: float, done_at: float, sends: int
    ) -> None:
        latency = (first_at - pushed_at) * 1000
        self.recent.append((done_at, latency))
        if self.window_start <= done_at < self.window_end:
            self.handled += 1
            self.sends += sends
        if self.window_start <= pushed_at < self.window_end:
            self.pushed += 1
            self.latencies.append(latency)
            self.per_step[step].append(latency)

    def recent_median(self, since: float) -> tuple[float, int]:
        values = [ms for at, ms in self.recent if at >= since]
        return (statistics.median(values) if values else 0.0), len(values)

    def problem(self, kind: str, detail: str) -> None:
        if kind == "timeout":
            self.timeouts += 1
        else:
            self.unexpected += 1
        if len(self.samples) < 5:
            self.samples.append(f"{kind}: {detail[:160]}")


class Pacer:
    """When a resident may push its next update (see Load)."""

    def __init__(self, phase: Phase, first_at: float, rng: random.Random) -> None:
        self.phase = phase
        self.load = phase.load
        self.next_at = first_at
        self.last_push: float | None = None
        self.last_sends = 1  # messages the bot sent for the last step
        self.rng = rng

    async def wait(self) -> None:
        load = self.load
        now = time.perf_counter()
        if load.pace is not None:
            at = self.next_at
            self.next_at += load.pace
        elif load.think is not None and self.last_push is not None:
            # A person reads each message: a step answered with two waits twice the gap, so
            # that the chat never needs more than a message a second.
            at = max(
                now + load.think * self.rng.uniform(0.75, 1.25),
                self.last_push + load.gap * max(1, self.last_sends),
            )
        elif self.last_push is None:
            at = self.next_at
        else:
            at = now
        if at >= self.phase.window_end:
            raise PhaseOver
        delay = at - now
        if delay > 0:
            await asyncio.sleep(delay)
        if time.perf_counter() >= self.phase.window_end:
            raise PhaseOver
        self.last_push = time.perf_counter()


def buttons(message: dict) -> list[dict]:
    markup = message.get("reply_markup") or {}
    return [b for row in markup.get("inline_keyboard", []) for b in row]


def button_data(offered: list[dict], label: str | None) -> str:
    """The callback data of the first button whose text starts with `label`."""
    found = [b for b in offered if b["text"].startswith(label or "")]
    if not found:
        raise DialogFailed(f"no button {label!r} in {[b['text'] for b in offered]}")
    return found[0]["callback_data"]


class Resident:
    """One person in one chat; each step pushes an update and waits for its last answer."""

    def __init__(
        self, fake: BenchFake, user_id: int, phase: Phase, pacer: Pacer, timeout: float
    ) -> None:
        self.fake = fake
        self.id = user_id
        self.phase = phase
        self.pacer = pacer
        self.timeout = timeout
        self.chat = fake.chats[user_id] = Chat()

    def say(self, text: str | None = None, **extra: Any) -> None:
        self.fake.push_message(self.id, text, language_code=LANGUAGE, **extra)

    @staticmethod
    def buttons(message: dict) -> list[dict]:
        return buttons(message)

    @staticmethod
    def text(message: dict) -> str:
        return message.get("text") or message.get("caption") or ""

    def press(self, message: dict, label: str | None = None, data: str | None = None) -> None:
        if data is None:
            data = button_data(buttons(message), label)
        update = self.fake.push_callback(
            self.id, data, message["message_id"], language_code=LANGUAGE
        )
        self.fake.callback_chats[update["callback_query"]["id"]] = self.id

    async def step(
        self,
        name: str,
        push: Callable[[], None],
        done: Callable[[str], bool],
        allowed: tuple[str, ...] = (),
    ) -> dict:
        """Push (when the pacer allows), then wait for the message `done` accepts."""
        await self.pacer.wait()
        chat = self.chat
        chat.begin()
        pushed_at = chat.pushed_at
        assert pushed_at is not None
        try:
            push()
        except DialogFailed as exc:
            self.phase.problem("unexpected", f"{name}: {exc}")
            raise
        deadline = pushed_at + self.timeout
        seen = 0
        loop = asyncio.get_running_loop()
        while True:
            if chat.problem is not None:
                self.phase.problem("unexpected", f"{name}: {chat.problem}")
                raise DialogFailed(chat.problem)
            while seen < len(chat.messages):
                message = chat.messages[seen]
                seen += 1
                said = self.text(message)
                if done(said):
                    assert chat.first_at is not None
                    self.pacer.last_sends = len(chat.messages)
                    self.phase.record(
                        name, pushed_at, chat.first_at, time.perf_counter(), len(chat.messages)
                    )
                    return message
                if not allowed or not said.startswith(allowed):
                    self.phase.problem("unexpected", f"{name}: {said!r}")
                    raise DialogFailed(said)
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                self.phase.problem("timeout", f"{name}: nothing after {self.timeout:g} s")
                raise DialogFailed("timeout")
            chat.waiter = loop.create_future()
            try:
                await asyncio.wait_for(chat.waiter, remaining)
            except TimeoutError:
                pass
            finally:
                chat.waiter = None


# -- the sample city ---------------------------------------------------------------------------


def grid_boxes() -> list[tuple[float, float, float, float]]:
    """Each sample-city grid's bounding box (lon0, lat0, lon1, lat1), shrunk by 10%.

    The sample grids are rectangles, so a point in the shrunk box lies inside the grid.
    """
    boxes = []
    for unit in read_org_file(sample_path()).units:
        if unit.kind != UnitKind.GRID or not unit.boundary:
            continue
        ring = unit.boundary["coordinates"][0]
        lons = [p[0] for p in ring]
        lats = [p[1] for p in ring]
        dx = (max(lons) - min(lons)) * 0.1
        dy = (max(lats) - min(lats)) * 0.1
        boxes.append((min(lons) + dx, min(lats) + dy, max(lons) - dx, max(lats) - dy))
    return boxes


async def report_dialog(
    r: Any,
    rng: random.Random,
    boxes: list[tuple[float, float, float, float]],
    label: str,
    number: int,
) -> None:
    """One whole /report dialog, ending with the ticket filed: every benchmark's residents.

    `r` is the benchmark's resident: `step`, `say`, `press`, and `buttons` and `text` of one of
    the messages its chat got (each benchmark keeps them in its own shape)."""
    menu = await r.step(
        "report", lambda: r.say("/report"), lambda s: s.startswith(ASK_CATEGORY), (RESTARTED,)
    )
    choices = [b for b in r.buttons(menu) if b["text"] != CANCEL_LABEL]
    if not choices:
        raise DialogFailed("no categories offered")
    category = rng.choice(choices)["callback_data"]
    await r.step(
        "category",
        lambda: r.press(menu, data=category),
        lambda s: s.startswith(ASK_DESCRIPTION),
    )
    await r.step(
        "description",
        lambda: r.say(f"{label} {number}: rubbish piled up by the east gate since Monday"),
        lambda s: s.startswith(ASK_PHOTOS),
    )
    n = number
    photo = [
        {"file_id": f"s{n}", "file_unique_id": f"us{n}", "width": 90, "height": 67},
        {"file_id": f"b{n}", "file_unique_id": f"ub{n}", "width": 1280, "height": 960},
    ]
    received = await r.step(
        "photo", lambda: r.say(None, photo=photo), lambda s: s.startswith(PHOTO_RECEIVED)
    )
    await r.step(
        "done", lambda: r.press(received, DONE_LABEL), lambda s: s.startswith(ASK_LOCATION)
    )
    lon0, lat0, lon1, lat1 = rng.choice(boxes)
    where = {
        "latitude": round(rng.uniform(lat0, lat1), 6),
        "longitude": round(rng.uniform(lon0, lon1), 6),
    }
    summary = await r.step(
        "location",
        lambda: r.say(None, location=where),
        lambda s: s.startswith((SUMMARY, DUPLICATES)),
        (LOCATED,),
    )
    if r.text(summary).startswith(DUPLICATES):
        offered = summary
        summary = await r.step(
            "new", lambda: r.press(offered, NEW_LABEL), lambda s: s.startswith(SUMMARY)
        )
    await r.step("confirm", lambda: r.press(summary, CONFIRM_LABEL), lambda s: s.startswith(FILED))


# -- the drivers -------------------------------------------------------------------------------


class Driver:
    def __init__(
        self,
        fake: BenchFake,
        rng: random.Random,
        timeout: float,
        first_user: int = FIRST_RESIDENT,
        saturated_ms: float = 250.0,
    ) -> None:
        self.fake = fake
        self.rng = rng
        self.timeout = timeout
        self.next_user = first_user
        self.saturated_ms = saturated_ms
        self.boxes = grid_boxes()
        self.reports = 0
        # When the driver's loop woke up late, and by how much (ms), for the whole run.
        self.lags: list[tuple[float, float]] = []
        self.lag_watch = asyncio.create_task(watch_lag(self.lags))

    def lag_near(self, at: float, within: float = 1.0) -> float:
        """The driver's longest lag within `within` s before `at` (ms)."""
        return max((ms for t, ms in self.lags if at - within <= t <= at), default=0.0)

    def new_user(self) -> int:
        self.next_user += 1
        return self.next_user

    async def report(self, r: Resident) -> None:
        """One whole /report dialog, ending with the ticket filed."""
        self.reports += 1
        await report_dialog(r, self.rng, self.boxes, "Benchmark report", self.reports)

    async def echo(self, r: Resident) -> None:
        """One text to the echo bot, answered by its echo."""
        self.reports += 1
        said = f"ping {self.reports}"
        await r.step("echo", lambda: r.say(said), lambda s: s == said)

    async def _resident(self, phase: Phase, pacer: Pacer, dialog: Callable) -> None:
        r = Resident(self.fake, self.new_user(), phase, pacer, self.timeout)
        while True:
            try:
                await dialog(r)
            except PhaseOver:
                return
            except DialogFailed:
                # Late answers of the failed step must not confuse the next one: a new person.
                self.fake.chats.pop(r.id, None)
                r = Resident(self.fake, self.new_user(), phase, pacer, self.timeout)
            else:
                if dialog == self.report:
                    phase.dialogs += 1

    async def run(
        self,
        phase: Phase,
        dialog: Callable,
        *,
        warmup: float,
        seconds: float,
        bot_pid: int,
        on_window: Callable[[Phase], Awaitable[None]] | None = None,
    ) -> Phase:
        """Residents write until the window ends, then finish the step they are in.

        Residents start one after the other over `load.spread` seconds (so that at any moment
        they are spread over every step); with `load.ramp_to`, more are added until the bot
        queues. The window opens `warmup` s after the last was added (at least `spread` s
        after the start).
        """
        # What this process keeps (the fake's record of every call, hundreds of thousands of
        # objects) is taken out of the collector's reach, now and every FREEZE_EVERY seconds
        # of the phase: full collections over it paused the fake for 100-250 ms inside the
        # windows, which showed as the bot's latency and cost it throughput.
        self.fake.forget_calls()
        gc.collect()
        gc.freeze()
        freezer = asyncio.create_task(keep_frozen())
        load = phase.load
        started = time.perf_counter()
        tasks: list[asyncio.Task[None]] = []

        def add(first_at: float) -> None:
            pacer = Pacer(phase, first_at, self.rng)
            tasks.append(asyncio.create_task(self._resident(phase, pacer, dialog)))

        spread = load.spread
        for i in range(load.residents):
            add(started + spread * i / load.residents)
        if load.ramp_to:
            ramp = (load.think or 1.0) + load.gap
            hits = 0
            while len(tasks) < load.ramp_to:
                await asyncio.sleep(0.25)
                now = time.perf_counter()
                median, count = phase.recent_median(now - 1.0)
                hits = hits + 1 if count >= 10 and median > self.saturated_ms else 0
                if hits >= 2 or phase.timeouts:
                    phase.saturated = True
                    break
                for _ in range(min(load.ramp_to - len(tasks), max(5, len(tasks) // 20))):
                    add(now + self.rng.uniform(0, ramp))
            phase.ramp_s = time.perf_counter() - started
            phase.window_start = time.perf_counter() + warmup
        else:
            phase.window_start = started + max(warmup, spread)
        phase.window_end = phase.window_start + seconds
        phase.residents = len(tasks)
        await asyncio.sleep(max(0.0, phase.window_start - time.perf_counter()))
        if on_window is not None:
            await on_window(phase)
        requests0, bot0, driver0, wait0 = (
            self.fake.requests_received,
            cpu_seconds(bot_pid),
            time.process_time(),
            run_queue_wait(bot_pid),
        )
        rejected0 = self.fake.rejections()
        await asyncio.sleep(max(0.0, phase.window_end - time.perf_counter()))
        requests1, bot1, driver1, wait1 = (
            self.fake.requests_received,
            cpu_seconds(bot_pid),
            time.process_time(),
            run_queue_wait(bot_pid),
        )
        phase.bot_wait = (wait1 - wait0) / seconds
        phase.rejected = self.fake.rejections() - rejected0
        phase.requests = requests1 - requests0
        phase.bot_cpu = (bot1 - bot0) / seconds
        phase.driver_cpu = (driver1 - driver0) / seconds
        phase.driver_gc_ms = GC_PAUSES.longest(phase.window_start, phase.window_end)
        phase.driver_lag_ms = max(
            (ms for at, ms in self.lags if phase.window_start <= at < phase.window_end),
            default=0.0,
        )
        await asyncio.wait_for(asyncio.gather(*tasks), self.timeout + 10)
        freezer.cancel()
        return phase


class GcPauses:
    """The driver's garbage-collector pauses: the fake lives in this process, so a pause here
    delays every answer in flight and shows as the bot's latency."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float]] = []  # (started, ms)
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.append((self._started, (time.perf_counter() - self._started) * 1000))

    def longest(self, start: float, end: float) -> float:
        return max((ms for at, ms in self.pauses if start <= at < end), default=0.0)


GC_PAUSES = GcPauses()
FREEZE_EVERY = 0.5


async def keep_frozen() -> None:
    while True:
        await asyncio.sleep(FREEZE_EVERY)
        gc.freeze()


async def watch_lag(lags: list[tuple[float, float]], every: float = 0.01) -> None:
    """How late the driver's event loop wakes up: the fake answers from this loop, so a late
    loop delays (and bunches) the bot's requests as the fake sees them."""
    while True:
        before = time.perf_counter()
        await asyncio.sleep(every)
        late = time.perf_counter() - before - every
        if late > 0.005:
            lags.append((before, late * 1000))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def run_queue_wait(pid: int) -> float:
    """Seconds the process's main thread has spent runnable but waiting for a CPU (Linux
    schedstat): on a shared machine, the time other processes took from it."""
    try:
        with open(f"/proc/{pid}/schedstat") as fh:
            return int(fh.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return math.nan


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def finite(value: Any) -> Any:
    """JSON has no NaN: None instead, in nested dicts too."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    return value


# -- a call to Party members, set up as benchmarks/fanout.py does --------------------------------


@dataclass
class Community:
    """A community of the sample city with an approved secretary and `members` members."""

    id: int
    secretary_id: int
    members: int
    place: tuple[float, float]  # (latitude, longitude) inside one of its grids


async def seed_members(url: str, members: int) -> Community:
    """An approved secretary and `members` approved members (chats FIRST_MEMBER + n) in the
    first community of the sample city gridbot loaded, inserted in bulk."""
    engine = make_engine(url)
    sessionmaker = make_sessionmaker(engine)
    now = SystemClock().now()
    try:
        async with sessionmaker() as session:
            community = (
                await session.exec(
                    select(OrgUnit)
                    .where(OrgUnit.kind == UnitKind.COMMUNITY)
                    .order_by(OrgUnit.code)
                    .limit(1)
                )
            ).one()
            grids = (
                await session.exec(
                    select(OrgUnit)
                    .where(OrgUnit.parent_id == community.id, OrgUnit.kind == UnitKind.GRID)
                    .order_by(OrgUnit.code)
                )
            ).all()
            secretary = Person(
                telegram_id=FIRST_MEMBER - 1, full_name="Benchmark secretary", language=LANGUAGE
            )
            session.add(secretary)
            await session.flush()
            session.add(
                RoleAssignment(
                    person_id=secretary.id, role=Role.COMMUNITY_SECRETARY, unit_id=community.id
                )
            )
            people = [
                {
                    "telegram_id": FIRST_MEMBER + n,
                    "full_name": f"Member {n}",
                    "username": None,
                    "language": "en" if n % 3 == 0 else "zh-hans",
                    "created_at": now,
                    "updated_at": now,
                }
                for n in range(members)
            ]
            for start in range(0, members, CHUNK):
                await session.exec(
                    sa.insert(Person.__table__), params=people[start : start + CHUNK]
                )
            found = (
                await session.exec(
                    select(Person.id, Person.telegram_id)
                    .where(Person.telegram_id >= FIRST_MEMBER)
                    .order_by(Person.telegram_id)
                )
            ).all()
            rows = [
                {
                    "person_id": person_id,
                    "full_name": f"Member {telegram_id - FIRST_MEMBER}",
                    "branch": "第一党支部",
                    "community_id": community.id,
                    "grid_id": grids[n % len(grids)].id if grids else None,
                    "skills": [],
                    "services": [],
                    "phone": None,
                    "status": MemberStatus.APPROVED,
                    "created_at": now,
                    "updated_at": now,
                }
                for n, (person_id, telegram_id) in enumerate(found)
            ]
            for start in range(0, len(rows), CHUNK):
                await session.exec(sa.insert(Member.__table__), params=rows[start : start + CHUNK])
            await session.commit()
            ring = (grids[0].boundary or community.boundary or {}).get("coordinates", [[]])[0]
            if ring:
                place = (
                    sum(p[1] for p in ring[:-1]) / len(ring[:-1]),
                    sum(p[0] for p in ring[:-1]) / len(ring[:-1]),
                )
            else:
                place = (34.742, 113.632)
            assert secretary.id is not None and community.id is not None
            return Community(community.id, secretary.id, members, place)
    finally:
        await engine.dispose()


async def post_call(url: str, community: Community, title: str) -> tuple[int, float]:
    """The real create_call for the whole community: (outbox rows written, seconds). Each
    member gets the call as its place (a venue) and its text: the rows are counted in the
    outbox, not assumed."""
    engine = make_engine(url)
    sessionmaker = make_sessionmaker(engine)
    clock = SystemClock()
    starts = clock.now() + timedelta(days=1)
    try:
        async with sessionmaker() as session:
            actor = await session.get(Person, community.secretary_id)
            started = time.perf_counter()
            call, _ = await create_call(
                session=session,
                clock=clock,
                actor=actor,
                community_id=community.id,
                title=title,
                description="Benchmark call: every member of the community",
                latitude=community.place[0],
                longitude=community.place[1],
                starts_at=starts,
                ends_at=starts + timedelta(hours=2),
                capacity=1000,
            )
            await session.commit()
            elapsed = time.perf_counter() - started
            rows = (
                await session.exec(
                    select(sa.func.count())
                    .select_from(OutboxMessage)
                    .where(OutboxMessage.kind.in_(["duty_call", "duty_call_place"]))
                    .where(OutboxMessage.created_at >= call.created_at)
                )
            ).one()
            return rows, elapsed
    finally:
        await engine.dispose()


@dataclass
class Delivery:
    """How a call's messages went out, from the fake's record of them."""

    rows: int
    posted_at: float
    enqueue_s: float
    first_at: float = math.nan
    last_at: float = math.nan
    delivered: int = 0
    paid: int = 0
    duplicates: int = 0
    in_window: int = 0
    window_s: float = math.nan
    rejected: Counter[str] = field(default_factory=Counter)
    densest: int = 0  # the most sends the fake saw in any second, those it refused included

    @property
    def rate(self) -> float:
        """Messages a second from the first to the last."""
        span = self.last_at - self.first_at
        return (self.delivered - 1) / span if self.delivered > 1 and span > 0 else math.nan

    @property
    def window_rate(self) -> float:
        return self.in_window / self.window_s if self.window_s > 0 else math.nan


async def wait_delivered(fake: BenchFake, rows: int, since: int, timeout: float) -> None:
    """Until the fake delivered `rows` member messages after index `since`, or none came
    for 15 s, or `timeout` passed."""
    deadline = time.perf_counter() + timeout
    last_count, last_change = -1, time.perf_counter()
    while time.perf_counter() < deadline:
        count = len(fake.bulk_times) - since
        if count >= rows:
            return
        if count != last_count:
            last_count, last_change = count, time.perf_counter()
        elif time.perf_counter() - last_change > 15:
            return
        await asyncio.sleep(0.25)


def delivery_of(
    fake: BenchFake, since: int, rows: int, posted_at: float, enqueue_s: float, phase: Phase
) -> Delivery:
    times = fake.bulk_times[since:]
    delivery = Delivery(rows, posted_at, enqueue_s)
    delivery.delivered = len(times)
    if times:
        delivery.first_at, delivery.last_at = times[0], times[-1]
    delivery.paid = fake.bulk_paid
    delivery.duplicates = sum(n - 1 for n in fake.bulk_chats.values() if n > 1)
    delivery.in_window = sum(1 for t in times if phase.window_start <= t < phase.window_end)
    # Over the part of the window the delivery covered (it may end before the window does).
    end = min(phase.window_end, delivery.last_at) if times else phase.window_end
    delivery.window_s = end - phase.window_start
    # Sends the fake refused for the overall limit count as attempts too.
    refused = [at for at, kind in fake.rejected_at if kind in ("global", "paid")]
    delivery.densest = densest(sorted(times + [t for t in refused if t >= delivery.first_at]))
    return delivery


def densest(times: list[float], span: float = 1.0) -> int:
    """The most of `times` (sorted) inside any `span` seconds."""
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] >= span:
            first += 1
        most = max(most, last - first + 1)
    return most


# -- processes and databases -------------------------------------------------------------------


def connections(url: str) -> str:
    """PostgreSQL: the server's connections in use and its limit (other sessions share it)."""
    if not url.startswith("postgresql"):
        return ""
    engine = sa.create_engine(sync_url(url), poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            used = conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity")).scalar_one()
            most = conn.execute(sa.text("SHOW max_connections")).scalar_one()
    except sa.exc.OperationalError as exc:
        return f"cannot connect ({str(exc.orig).strip().splitlines()[-1]})"
    finally:
        engine.dispose()
    return f"{used} of max_connections {most} in use"


def refused_connections(*bots: BotProcess) -> int:
    """Times a bot was refused a database connection ("too many clients")."""
    count = 0
    for bot in bots:
        with contextlib.suppress(OSError):
            count += bot.log.read_text(errors="replace").count("too many clients")
    return count


def count_tickets(url: str) -> int:
    engine = sa.create_engine(sync_url(url), poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM ticket")).scalar_one()
    finally:
        engine.dispose()


class BotProcess:
    """A bot as a subprocess polling the fake; stopped with SIGTERM."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: str) -> None:
        self.name, self.argv, self.env, self.workdir = name, argv, env, workdir
        self.log = Path(workdir) / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, fake: BenchFake, token: str, timeout: float = 90.0) -> float:
        """Launch and wait for the first getUpdates; seconds it took."""
        fake.polling.pop(token, None)
        ready = fake.polling[token]
        started = time.perf_counter()
        with open(self.log, "ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        waiter = asyncio.create_task(ready.wait())
        exited = asyncio.create_task(self.process.wait())
        await asyncio.wait({waiter, exited}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            waiter.cancel()
            exited.cancel()
            await self.stop()
            raise SystemExit(f"{self.name} did not start polling:\n{self.tail()}")
        exited.cancel()
        return time.perf_counter() - started

    async def stop(self) -> int | None:
        if self.process is None or self.process.returncode is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise SystemExit(f"{self.name} did not stop on SIGTERM:\n{self.tail()}") from None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def problems(self) -> list[str]:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return []
        lines = text.splitlines()
        errors = [n for n, line in enumerate(lines) if " ERROR " in line]
        if not errors:
            return []
        # The first error in full: its line and the traceback under it, up to the next record.
        first = [lines[errors[0]]]
        for line in lines[errors[0] + 1 :]:
            if line[:4].isdigit() and line[4:5] == "-":  # the next record's date
                break
            first.append(line)
        counts = Counter(lines[n].split(" ERROR ", 1)[1].split(":", 1)[0] for n in errors)
        return [
            f"{self.name}: {len(errors)} ERROR lines ({dict(counts)}); the first:",
            *first[:12],
            *(["  ..."] + first[-8:] if len(first) > 20 else first[12:]),
        ]


def keep_logs(workdir: str, where: str | None) -> None:
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        for log in Path(workdir).glob("*.log"):
            shutil.copy(log, Path(where) / log.name)


def bot_env(fake: BenchFake, url: str, **settings: str) -> dict[str, str]:
    """gridbot's environment: the token, the fake, the database and nothing else (so every
    other setting, the send limits included, is the production default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBOT_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(
        GRIDBOT_BOT_TOKEN=GRIDBOT_TOKEN,
        GRIDBOT_TELEGRAM_API_BASE=fake.base_url,
        GRIDBOT_DATABASE_URL=url,
    )
    env.update({f"GRIDBOT_{k.upper()}": v for k, v in settings.items()})
    return env


def gridbot_process(
    args: argparse.Namespace, fake: BenchFake, url: str, workdir: str, name: str, **settings: str
) -> BotProcess:
    command = [sys.executable, "-m", "bot", "run"]
    if getattr(args, "gridbot_command", None):
        command = shlex.split(args.gridbot_command)
    return BotProcess(name, command, bot_env(fake, url, **settings), workdir)


# -- the run -------------------------------------------------------------------------------------


async def resident_and_call_phases(
    args: argparse.Namespace,
    driver: Driver,
    fake: BenchFake,
    url: str,
    gridbot: BotProcess,
    phases: dict[str, Phase],
) -> Delivery:
    """Phases 2 and 3: the issue's residents, then residents at `--rate` during a call."""
    people = {"think": args.think, "gap": 1.0}
    spread = args.think * DIALOG_STEPS
    phases["residents"] = await driver.run(
        Phase(
            f"gridbot, {args.residents} residents",
            Load(args.residents, spread=spread, **people),
        ),
        driver.report,
        warmup=max(args.warmup, spread),
        seconds=args.seconds,
        bot_pid=gridbot.pid,
    )

    # A call to every member of a community, delivered by gridbot's outbox meanwhile.
    community = await seed_members(url, args.call_members)
    since = len(fake.bulk_times)
    rows, enqueue_s = await post_call(url, community, "Snow on the roads: all hands")
    posted_at = time.perf_counter()
    open_residents = max(1, round(args.rate * args.pace))
    spread = args.pace * DIALOG_STEPS
    call_phase = Phase(
        f"gridbot {args.rate:g}/s + call",
        Load(open_residents, pace=args.pace, spread=spread),
    )
    phases["call"] = await driver.run(
        call_phase,
        driver.report,
        warmup=max(args.warmup, spread),
        seconds=args.call_window,
        bot_pid=gridbot.pid,
    )
    await wait_delivered(fake, rows, since, rows / OUTBOX_RATE * 2 + 30)
    delivery = delivery_of(fake, since, rows, posted_at, enqueue_s, call_phase)
    return delivery


async def run(args: argparse.Namespace, url: str, kind: str, workdir: str) -> dict:
    rng = random.Random(args.seed)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBOT_")}
    base_env["PYTHONPATH"] = str(ROOT)
    python = sys.executable
    phases: dict[str, Phase] = {}
    startup: dict[str, float] = {}
    people = {"think": args.think, "gap": 1.0}
    load_at_start = load_average()
    connections_at_start = connections(url)
    bots: list[BotProcess] = []
    async with BenchFake(tokens=[GRIDBOT_TOKEN, BARE_TOKEN, STATE_TOKEN]) as fake:
        fake.limits()  # Telegram's: 30/s to chats that did not write, per chat 3 then 1/s
        driver = Driver(fake, rng, args.timeout, saturated_ms=args.saturated_ms)

        def capacity(name: str) -> Phase:
            return Phase(
                name, Load(args.crowd_start, ramp_to=args.crowd_max, spread=args.think, **people)
            )

        # The echo bot, bare, then keeping each chat's state durable (on a database of the
        # same kind as gridbot's): the floor of any bot whose dialogs survive a restart.
        state_url = url if kind != "sqlite" else f"sqlite:///{Path(workdir) / 'state.db'}"

        async def capacity_of(
            bot: BotProcess, token: str, label: str, dialog: Callable[[Resident], Awaitable[None]]
        ) -> Phase:
            """Start a bot, measure its capacity, stop it."""
            bots.append(bot)
            startup[bot.name] = await bot.start(fake, token)
            try:
                return await driver.run(
                    capacity(label),
                    dialog,
                    warmup=args.warmup,
                    seconds=args.seconds,
                    bot_pid=bot.pid,
                )
            finally:
                await bot.stop()
                fake.drop_pending()

        async def echo_capacity(name: str, token: str, extra: list[str], label: str) -> Phase:
            argv = [python, str(ROOT / "benchmarks" / "bare_bot.py"), fake.base_url, token]
            echo = BotProcess(name, [*argv, *extra], base_env, workdir)
            return await capacity_of(echo, token, label, driver.echo)

        phases["bare"] = await echo_capacity("bare", BARE_TOKEN, [], "bare echo, capacity")
        # The machine's speed drifts over minutes (seen here: the same run 1.6 or 2.4 ms of
        # CPU per update): the durable echo and gridbot are measured in alternation, round
        # after round, and the ratio is the median of the rounds' ratios.
        for round_ in range(1, args.rounds):
            suffix = f" (round {round_})"
            phases[f"durable{suffix}"] = await echo_capacity(
                "durable", STATE_TOKEN, [state_url], f"durable echo, capacity{suffix}"
            )
            phases[f"gridbot{suffix}"] = await capacity_of(
                gridbot_process(args, fake, url, workdir, "gridbot"),
                GRIDBOT_TOKEN,
                f"gridbot, capacity{suffix}",
                driver.report,
            )
        phases["durable"] = await echo_capacity(
            "durable", STATE_TOKEN, [state_url], "durable echo, capacity"
        )

        gridbot = gridbot_process(args, fake, url, workdir, "gridbot")
        bots.append(gridbot)
        startup["gridbot"] = await gridbot.start(fake, GRIDBOT_TOKEN)
        rejected_before = fake.rejections()
        rejected_since = len(fake.rejected_at)
        gridbot_started = time.perf_counter()
        delivery: Delivery | None = None
        try:
            profile: list[asyncio.subprocess.Process] = []

            async def start_profile(phase: Phase) -> None:
                if not args.profile:
                    return
                profile_log = open(Path(workdir) / "py-spy.log", "wb")  # noqa: SIM115
                profile.append(
                    await asyncio.create_subprocess_exec(
                        *shlex.split(args.py_spy),
                        "record",
                        "--pid",
                        str(gridbot.pid),
                        "--duration",
                        str(int(args.seconds)),
                        "--rate",
                        "200",
                        "--format",
                        args.profile_format,
                        "-o",
                        args.profile,
                        *shlex.split(args.profile_args),
                        stdout=profile_log,
                        stderr=subprocess.STDOUT,
                    )
                )
                profile_log.close()

            phases["gridbot"] = await driver.run(
                capacity("gridbot, capacity"),
                driver.report,
                warmup=args.warmup,
                seconds=args.seconds,
                bot_pid=gridbot.pid,
                on_window=start_profile,
            )
            if profile and await profile[0].wait() != 0:
                log = (Path(workdir) / "py-spy.log").read_text(errors="replace")
                print(f"py-spy failed ({profile[0].returncode}): {log[-1000:]}")

            if not args.capacity_only:
                delivery = await resident_and_call_phases(args, driver, fake, url, gridbot, phases)
        finally:
            code = await gridbot.stop()
        rejected = fake.rejections() - rejected_before
        rejections = [
            (at - gridbot_started, kind, driver.lag_near(at))
            for at, kind in fake.rejected_at[rejected_since:]
        ]
        if delivery is not None:
            delivery.rejected = rejected
        if code not in (0, -signal.SIGTERM):
            print(f"gridbot exited {code}:\n{gridbot.tail()}")

    tickets = count_tickets(url)
    dialogs = sum(p.dialogs for p in phases.values())
    return {
        "phases": phases,
        "startup": startup,
        "tickets": tickets,
        "dialogs": dialogs,
        "log_problems": gridbot.problems(),
        "gridbot_rejected": rejected,
        "rejections": rejections,
        "delivery": delivery,
        "load": (load_at_start, load_average()),
        "connections": (connections_at_start, connections(url)),
        "refused_connections": refused_connections(*bots),
    }


def table(phases: list[Phase]) -> None:
    header = (
        f"{'phase':<27} {'chats':>5} {'offered/s':>9} {'pushed/s':>8} {'handled/s':>9} "
        f"{'sends/upd':>9} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'errors':>6} {'429s':>4} {'fake req/s':>10} {'bot CPU':>7} {'CPU ms/upd':>10} "
        f"{'bot wait':>8} {'fake+drv CPU':>12} {'drv GC ms':>9} {'drv lag ms':>10}"
    )
    print(header)
    print("-" * len(header))
    for p in phases:
        offered = f"{p.load.offered:.0f}" if p.load.offered else "people"
        print(
            f"{p.name:<27} {p.residents:>5} {offered:>9} {p.pushed / p.seconds:>8.1f} "
            f"{p.rate:>9.1f} {p.sends / p.handled if p.handled else math.nan:>9.2f} "
            f"{p.p(0.5):>7.1f} {p.p(0.9):>7.1f} {p.p(0.99):>7.1f} "
            f"{max(p.latencies, default=float('nan')):>7.1f} {p.errors:>6} "
            f"{sum(p.rejected.values()):>4} {p.requests / p.seconds:>10.0f} {p.bot_cpu:>7.0%} "
            f"{p.cpu_ms_per_update:>10.2f} {p.bot_wait:>8.0%} {p.driver_cpu:>12.0%} "
            f"{p.driver_gc_ms:>9.1f} {p.driver_lag_ms:>10.1f}"
        )


def print_database_note(result: dict) -> None:
    if result["connections"][0]:
        print(
            f"PostgreSQL server (shared): {result['connections'][0]} at the start, "
            f"{result['connections'][1]} at the end"
        )
    if result["refused_connections"]:
        print(
            f"WARNING: the database server refused the bots a connection "
            f"{result['refused_connections']} times (too many clients: other sessions on the "
            "server used its connections): figures from then on are not the bot's alone"
        )


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def print_residents_and_call(
    args: argparse.Namespace, phases: dict[str, Phase], delivery: Delivery
) -> None:
    residents, call = phases["residents"], phases["call"]
    p99_call = call.p(0.99)
    print(
        f"{args.residents} residents: {residents.rate:.1f} updates/s, p50/p99 "
        f"{residents.p(0.5):.1f}/{residents.p(0.99):.1f} ms"
    )
    print(
        f"p99 at {args.rate:g}/s offered while a call to {args.call_members} members goes out "
        f"{p99_call:.1f} ms (target < {TARGET_P99_MS:g} ms): {verdict(p99_call < TARGET_P99_MS)};"
        f" p50 {call.p(0.5):.1f} ms, achieved {call.pushed / call.seconds:.1f} updates/s"
    )
    print(
        f"the call: {delivery.rows} outbox rows written by create_call in "
        f"{delivery.enqueue_s:.2f} s; {delivery.delivered} delivered "
        f"({delivery.duplicates} twice), {delivery.rate:.2f}/s first to last; "
        f"{delivery.window_rate:.2f}/s during the residents' window "
        f"(x{delivery.window_rate / OUTBOX_RATE:.2f} of the configured {OUTBOX_RATE:g}/s); "
        f"the window ended {'inside' if delivery.last_at >= call.window_end else 'AFTER'} "
        f"the delivery; at most {delivery.densest} call messages (refused ones included) "
        "reached the fake within one second (it takes 30)"
    )


def residents_and_call_figures(
    args: argparse.Namespace, phases: dict[str, Phase], result: dict
) -> dict:
    residents, call = phases["residents"], phases["call"]
    delivery: Delivery = result["delivery"]
    p99_call = call.p(0.99)
    return {
        "residents": args.residents,
        "residents_updates_per_s": round(residents.rate, 1),
        "residents_p50_ms": round(residents.p(0.5), 1),
        "residents_p99_ms": round(residents.p(0.99), 1),
        "offered_rate": args.rate,
        "call_achieved_rate": round(call.pushed / call.seconds, 1),
        "call_p50_ms": round(call.p(0.5), 1),
        "call_p99_ms": round(p99_call, 1),
        "call_p99_met": p99_call < TARGET_P99_MS,
        "call_members": args.call_members,
        "call_rows": delivery.rows,
        "call_delivered": delivery.delivered,
        "call_duplicates": delivery.duplicates,
        "bulk_rate_in_window": round(delivery.window_rate, 2),
        "bulk_rate": round(delivery.rate, 2),
        "bulk_densest_per_s": delivery.densest,
    }


def capacity_ratios(phases: dict[str, Phase]) -> list[float]:
    """gridbot's capacity over the durable echo's, round by round (measured one after the
    other, so that both ran at the machine's speed of the moment)."""
    return [
        phases[key].rate / phases["durable" + key.removeprefix("gridbot")].rate
        for key in phases
        if key.startswith("gridbot") and ("durable" + key.removeprefix("gridbot")) in phases
    ]


def report(args: argparse.Namespace, kind: str, result: dict) -> dict:
    phases: dict[str, Phase] = result["phases"]
    bare, durable, grid = phases["bare"], phases["durable"], phases["gridbot"]
    rejected: Counter[str] = result["gridbot_rejected"]
    print(
        f"inbound: /report dialogs through `gridbot run` ({kind}), an aiogram echo bot bare and "
        f"keeping each chat's state durable, against the fake Bot API on loopback "
        f"({os.cpu_count()} CPUs)"
    )
    print(
        "production send limits (no GRIDBOT_ setting but the token, the API base and the "
        "database); the fake, in this process, enforces Telegram's: per chat a burst of 3 then "
        "1/s, 30/s to chats that did not write within 60 s, 429 with retry_after"
    )
    print(
        f"residents as people: {args.think:g} s (+-25%) to read each answer, at most one "
        f"message a second; window {args.seconds:g} s per phase (the call's "
        f"{args.call_window:g} s); capacity phases add residents until the median latency "
        f"passes {args.saturated_ms:g} ms, then wait {args.warmup:g} s; bot start-up: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in result["startup"].items())
    )
    print(
        f"machine load average at the start {result['load'][0]}, at the end {result['load'][1]};"
        " 'bot wait' is the share of the window the bot's main thread waited for a CPU"
    )
    print_database_note(result)
    print()
    table(list(phases.values()))
    print()
    for p in (bare, durable, grid):
        print(
            f"  {p.name}: {p.residents} residents after {p.ramp_s:.1f} s of ramp, "
            + (
                "the bot queued from there (its capacity set the rate)"
                if p.saturated
                else "NOT SATURATED: --crowd-max reached before the bot queued"
            )
        )
    print()
    print("gridbot latency per dialog step, ms (p50 / p99, count) in the window:")
    for p in (p for k, p in phases.items() if not k.startswith(("bare", "durable"))):
        parts = [
            f"{step} {percentile(v, 0.5):.1f}/{percentile(v, 0.99):.1f} ({len(v)})"
            for step in STEPS
            if (v := p.per_step.get(step))
        ]
        print(f"  {p.name:<27} " + ", ".join(parts))
    print()
    ratios = capacity_ratios(phases)
    ratio = statistics.median(ratios)
    errors = sum(p.errors for p in phases.values())
    mismatch = result["tickets"] != result["dialogs"]
    print(
        f"dialogs completed {result['dialogs']}, tickets in the database {result['tickets']}"
        + ("  MISMATCH" if mismatch else "  (equal)")
    )
    print(f"errors {errors} (timeouts {sum(p.timeouts for p in phases.values())})")
    for p in phases.values():
        for sample in p.samples:
            print(f"  {p.name}: {sample}")
    for line in result["log_problems"]:
        print(f"  log {line[:240]}")
    print(
        f"updates/s: bare echo {bare.rate:.1f}, durable echo {durable.rate:.1f}, "
        f"gridbot {grid.rate:.1f}"
    )
    print(
        f"ratio gridbot/durable echo {ratio:.2f}, the median of {len(ratios)} rounds ("
        + ", ".join(f"{r:.2f}" for r in ratios)
        + f") (target >= {TARGET_RATIO:.2f}): "
        f"{verdict(ratio >= TARGET_RATIO)}; gridbot/bare {grid.rate / bare.rate:.2f}, "
        f"durable/bare {durable.rate / bare.rate:.2f}"
    )
    print(f"gridbot capacity p50/p99 {grid.p(0.5):.1f}/{grid.p(0.99):.1f} ms (queueing by design)")
    if not args.capacity_only:
        print_residents_and_call(args, phases, result["delivery"])
    total_429 = sum(rejected.values())
    print(
        f"429s answered to gridbot: {total_429} "
        + str({k: rejected.get(k, 0) for k in REJECTION_KINDS})
        + f" (target 0): {verdict(total_429 == 0)}"
    )
    for at, what, lag in result["rejections"][:10]:
        print(
            f"  a {what} 429 {at:.1f} s after gridbot started; the driver's loop was up to "
            f"{lag:.0f} ms late in the second before"
        )
    print(
        "the fake runs in this process: its CPU with the residents' is the 'fake+drv' column "
        "(near 100% would mean the fake was the limit, not the bot)"
    )
    figures = {} if args.capacity_only else residents_and_call_figures(args, phases, result)
    return finite(
        {
            "benchmark": "inbound",
            "capacity_only": args.capacity_only,
            "database": kind,
            "fake": "in the driver's process",
            "limits": "production defaults; fake enforces Telegram's",
            "think_s": args.think,
            "bare_updates_per_s": round(bare.rate, 1),
            "durable_echo_updates_per_s": round(durable.rate, 1),
            "gridbot_updates_per_s": round(grid.rate, 1),
            "ratio_gridbot_durable": round(ratio, 3),
            "ratio_rounds": [round(r, 3) for r in ratios],
            "ratio_gridbot_bare": round(grid.rate / bare.rate, 3),
            "ratio_durable_bare": round(durable.rate / bare.rate, 3),
            "ratio_met": ratio >= TARGET_RATIO,
            "crowd": {
                "bare": bare.residents,
                "durable": durable.residents,
                "gridbot": grid.residents,
            },
            "saturated": {
                "bare": bare.saturated,
                "durable": durable.saturated,
                "gridbot": grid.saturated,
            },
            "bare_p50_ms": round(bare.p(0.5), 1),
            "bare_p99_ms": round(bare.p(0.99), 1),
            "durable_p50_ms": round(durable.p(0.5), 1),
            "durable_p99_ms": round(durable.p(0.99), 1),
            "gridbot_p50_ms": round(grid.p(0.5), 1),
            "gridbot_p99_ms": round(grid.p(0.99), 1),
            "gridbot_429": total_429,
            "gridbot_429_by_kind": {k: rejected.get(k, 0) for k in REJECTION_KINDS},
            "tickets_filed": result["tickets"],
            "dialogs_completed": result["dialogs"],
            "errors": errors + (1 if mismatch else 0),
            "seconds": args.seconds,
            "gridbot_cpu_ms_per_update": round(grid.cpu_ms_per_update, 2),
            "durable_cpu_ms_per_update": round(durable.cpu_ms_per_update, 2),
            "bare_cpu_ms_per_update": round(bare.cpu_ms_per_update, 2),
            "bot_cpu": {k: round(p.bot_cpu, 2) for k, p in phases.items()},
            "driver_cpu": {k: round(p.driver_cpu, 2) for k, p in phases.items()},
            "driver_gc_max_ms": round(max(p.driver_gc_ms for p in phases.values()), 1),
            "driver_lag_max_ms": {k: round(p.driver_lag_ms, 1) for k, p in phases.items()},
            "bot_wait": {k: round(p.bot_wait, 2) for k, p in phases.items()},
            **figures,
        }
    )


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--database-url", default=None, help="default: a temp SQLite file")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured window per phase")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured start of a phase")
    parser.add_argument(
        "--think", type=float, default=1.0, help="seconds a resident reads each answer (+-25%%)"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait per step")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--logs", default=None, help="keep the bots' logs in this directory")
    parser.add_argument(
        "--gridbot-command",
        default=None,
        help="run this instead of `python -m bot run` (e.g. a variant under test)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--residents", type=int, default=200, help="the issue's resident phase")
    parser.add_argument(
        "--crowd-start", type=int, default=50, help="capacity phases: residents at first"
    )
    parser.add_argument(
        "--crowd-max", type=int, default=6000, help="capacity phases: at most this many"
    )
    parser.add_argument(
        "--saturated-ms",
        type=float,
        default=250.0,
        help="capacity phases: stop adding residents once the median latency passes this",
    )
    parser.add_argument("--rate", type=float, default=100.0, help="updates/s offered in the call")
    parser.add_argument(
        "--pace",
        type=float,
        default=1.25,
        help="open loop: seconds between a resident's updates (residents: rate x pace); a "
        "step answered with more than one message needs more than a second of its chat",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="capacity phases of the durable echo and gridbot, in alternation (the ratio is "
        "the median of the rounds')",
    )
    parser.add_argument(
        "--capacity-only",
        action="store_true",
        help="the capacity phases alone (the ratio), without the residents and the call",
    )
    parser.add_argument("--call-members", type=int, default=5000, help="members the call reaches")
    parser.add_argument(
        "--call-window", type=float, default=150.0, help="seconds measured while the call goes out"
    )
    parser.add_argument(
        "--profile", default=None, help="py-spy record gridbot's capacity window to this file"
    )
    parser.add_argument("--profile-format", default="flamegraph", help="py-spy --format")
    parser.add_argument(
        "--profile-args", default="", help="more py-spy record arguments: --profile-args=--gil"
    )
    parser.add_argument(
        "--py-spy", default=str(Path(sys.executable).parent / "py-spy"), help="py-spy command"
    )
    args = parser.parse_args()
    if args.profile and shutil.which(shlex.split(args.py_spy)[0]) is None:
        parser.error(f"no py-spy at {args.py_spy}: .venv/bin/pip install py-spy")

    gc.callbacks.append(GC_PAUSES)
    with tempfile.TemporaryDirectory(prefix="gridbot-inbound-") as workdir:
        # gridbot migrates the database itself when it starts.
        with database(args.database_url, migrate=False) as (url, kind):
            result = asyncio.run(run(args, url, kind, workdir))
        keep_logs(workdir, args.logs)
        print(json.dumps(report(args, kind, result)))


if __name__ == "__main__":
    main()
