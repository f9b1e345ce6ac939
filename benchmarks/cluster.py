"""A city's cluster: three `gridbot run` processes behind a load balancer on one PostgreSQL
database, against Telegram's limits; a call to every Party member while residents file
reports; then the process holding the send lease killed mid-delivery.

    .venv/bin/python benchmarks/cluster.py [--residents 200] [--members 5000] [--seconds 20]
        [--timeout 900] [--no-kill] [--database-url postgresql://postgres@127.0.0.1:5432/test]

Set-up: a new PostgreSQL database (created on the --database-url server, dropped at the end),
migrated, with the bundled sample city, one community's secretary and --members approved
Party members of that community (inserted in bulk before any bot starts). The fake Bot API
(tests/fake_telegram.py with Telegram's limits: per chat a burst of 3 then one a second; 30 a
second overall to chats that did not write within a minute) runs as its own process; it keeps
little of what it records and feeds each delivery to this process over a control port. Three
`python -m bot run` processes share the database in webhook mode, each listening on its own
port, all with the default roles (serve, send, schedule) and the production send limits
(GRIDBOT_OUTBOX_RATE 29, GRIDBOT_CHAT_INTERVAL 1 s, GRIDBOT_CHAT_BURST 3, none of them set);
GRIDBOT_SWEEP_INTERVAL=1 and GRIDBOT_CALL_REMINDER_MINUTES=--reminder-minutes (1) so that a
call's reminder falls inside the run.

This process plays the residents, the members and the load balancer: it builds each update
by hand (a chat is first reported to the fake as having written, as Telegram would count it),
and POSTs it to the three webhooks in turn with the secret the bots derive from the token. A
webhook that does not answer is taken out of the rotation and the update posted to the next
one (Telegram would send it again).

Part 1, steady: --residents residents at a time file whole /report dialogs (the steps of
benchmarks/inbound.py, at most one step every --pace seconds each, every dialog from a new
person) while the secretary's call to every member goes out (domain.calls.create_call: one
bulk-lane outbox row per member). The first --coming members to get it press "I'll come"
through the bot; the call starts GRIDBOT_CALL_REMINDER_MINUTES + --remind-after seconds after
it was posted, so each of them must get exactly one reminder. The part lasts until every
outbox row is sent and the reminder went out, and at least --seconds. Measured: dialogs
completed and tickets in the database; every outbox row sent and delivered once (each row's
Telegram message id looked up in the fake's deliveries, and (chat, text) pairs delivered more
than once counted); the call's delivery rate from the fake's send times while it had a
backlog (target: at most the 29/s budget and at least 0.9 of it); the 429s the bots got; which
process held the send and schedule leases.

Part 2, failover (skipped with --no-kill): a second call to every member; once --kill-at of
it was delivered, the process holding the send lease (read from the `lease` table, holder
host:pid:tail) gets SIGKILL. Measured: seconds from the kill to the next bulk row sent by
another process (target <= 10 s), rows lost (target 0), rows delivered twice (allowed: only
those the dead process had delivered but not yet recorded as sent; nobody can know whether
Telegram took a send cut short by a kill), and again one reminder per member coming. Steps
that got no answer are looked up in `inbound_update` (recorded as handled or not).

Also printed, so that a reader can tell what limited a figure: each process's CPU and the
share of time each bot's event loop waited for a CPU (/proc/<pid>/schedstat), where the call's
delivery lost time (long pauses or short delays), the most PostgreSQL connections seen against
max_connections, how often the leases moved, and counts of the bots' flood-control and
"handled already" log lines and of their errors (--logs DIR keeps the logs). --processes and
--gridbot-command (another command line in place of `python -m bot run`, e.g. a variant under
test) are for comparisons.

The last line printed is JSON.
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
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import orjson  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from aiohttp import web  # noqa: E402
from sqlmodel import select  # noqa: E402

from benchmarks.common import database  # noqa: E402
from benchmarks.inbound import (  # noqa: E402
    DIALOG_STEPS,
    DialogFailed,
    PhaseOver,
    button_data,
    cpu_seconds,
    grid_boxes,
    keep_frozen,
    percentile,
    report_dialog,
)
from bot.inbound import SECRET_HEADER, webhook_secret  # noqa: E402
from bot.settings import Settings  # noqa: E402
from domain.calls import create_call  # noqa: E402
from domain.clock import SystemClock  # noqa: E402
from storage.db import POOL_OVERFLOW, POOL_SIZE, make_engine, make_sessionmaker  # noqa: E402
from storage.enums import ClaimStatus, MemberStatus, OutboxStatus, Role, UnitKind  # noqa: E402
from storage.models import (  # noqa: E402
    CallClaim,
    DutyCall,
    InboundUpdate,
    Lease,
    Member,
    OrgUnit,
    OutboxMessage,
    Person,
    RoleAssignment,
    Ticket,
)
from storage.org_loader import apply_org, sample_path  # noqa: E402
from storage.orgfile import read_org_file  # noqa: E402
from tests.fake_telegram import FakeTelegram, is_send_method  # noqa: E402
from views.i18n import text as i18n_text  # noqa: E402

TOKEN = "123456:CLUSTER-BENCH"
BOT_ID = int(TOKEN.split(":", 1)[0])
PROCESSES = 3
# The lease of a dead holder lasts 6 s (bot.leadership.LEASE_TTL): a delivery within this long
# of the kill was made by the dead process (a request it had sent, answered after its death).
DEAD_SENDS_S = 1.0
FIRST_MEMBER = 100_000  # members' chats: FIRST_MEMBER + n
SECRETARY_CHAT = 300
FIRST_RESIDENT = 10_000_000  # every dialog from a new person: chats from here up
FIRST_USER_MESSAGE = 1_000_000_000  # ids of messages people send (never the bot's own ids)
PLACE = (34.742, 113.632)
CHUNK = 1000
LANGUAGE = "en"  # the residents' client language
LANGUAGES = ("en", "zh-hans")  # the members': a third English, the rest Chinese
TARGET_RATIO = 0.9
TARGET_FAILOVER_S = 10.0
# Messages the fake keeps for edits and button presses (a run delivers ~100k): the oldest
# go, since nobody edits or presses a message thousands of deliveries old.
KEEP_MESSAGES = 20_000


# Lines of the bots' logs worth counting (bot.throttle, bot.middlewares).
LOG_PATTERNS = {
    "reply hit flood control, retried": "hit flood control; retrying once",
    "reply given up (flood control)": "given up",
    "429s taken as global": "taken as a global limit",
    "update handled already, skipped": "was handled already; skipped",
}


# -- the fake Bot API, in its own process --------------------------------------------------------


class Pauses:
    """The longest garbage-collector pause of this process, and how many took over 20 ms."""

    def __init__(self) -> None:
        self.max_ms = 0.0
        self.long = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        ms = (time.perf_counter() - self._started) * 1000
        self.max_ms = max(self.max_ms, ms)
        self.long += ms > 20


def _body(message: dict) -> str:
    """What a delivered message says: its text or caption, else its venue or location."""
    text = message.get("text") or message.get("caption")
    if text:
        return text
    venue = message.get("venue")
    if venue:
        return f"venue: {venue.get('title')} | {venue.get('address')}"
    location = message.get("location")
    if location:
        return f"location: {location.get('latitude')},{location.get('longitude')}"
    return ""


class ClusterFake(FakeTelegram):
    """The fake with Telegram's limits, feeding each delivery (and each refused send or alert)
    to the driver instead of keeping it: the driver reads them with GET /feed."""

    def __init__(self, **kwargs: Any) -> None:
        self.feed: list[dict] = []
        self.feed_base = 0  # index of feed[0] since the start
        self.feed_ready = asyncio.Event()
        self.kept: deque[tuple[int | str, int]] = deque()
        self.failures: Counter[str] = Counter()
        super().__init__(**kwargs)

    def _emit(self, item: dict) -> None:
        self.feed.append(item)
        self.feed_ready.set()

    def _keep(self, key: tuple[int | str, int]) -> None:
        self.kept.append(key)
        while len(self.kept) > KEEP_MESSAGES:
            self._messages.pop(self.kept.popleft(), None)

    def _deliver(self, method: str, params: dict[str, Any], **content: Any) -> dict:
        message = super()._deliver(method, params, **content)
        record = self._sent.pop() if self._sent else {}
        chat = message["chat"]["id"]
        self._keep((chat, message["message_id"]))
        item: dict[str, Any] = {
            "c": chat,
            "i": message["message_id"],
            "m": method,
            "t": _body(message),
            "a": record.get("at", time.monotonic()),
            "s": 200,
        }
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and markup.get("inline_keyboard"):
            item["b"] = markup["inline_keyboard"]
        self._emit(item)
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
        if self.calls:
            self.calls.pop()  # counted in stats()["methods"]; not kept
        lower = method.lower()
        if status != 200:
            self.failures[f"{method} {status}"] += 1
        if lower == "answercallbackquery":
            if params.get("text") or status != 200:
                chat = str(params.get("callback_query_id", "")).split(":", 1)[0]
                self._emit(
                    {
                        "c": int(chat) if chat.isdigit() else None,
                        "m": method,
                        "s": status,
                        "t": params.get("text") or "",
                        "d": description,
                        "a": time.monotonic(),
                    }
                )
        elif status != 200 and is_send_method(lower):
            self._emit(
                {
                    "c": params.get("chat_id"),
                    "m": method,
                    "s": status,
                    "d": description,
                    "a": time.monotonic(),
                }
            )


def control_app(fake: ClusterFake, pauses: Pauses) -> web.Application:
    """The driver's side door: the feed of deliveries, chats that wrote, a few counters."""

    async def feed(request: web.Request) -> web.Response:
        after = int(request.query.get("after", "0"))
        wait = float(request.query.get("wait", "1"))
        if after > fake.feed_base:  # the driver has these: forget them
            del fake.feed[: after - fake.feed_base]
            fake.feed_base = after
        if not fake.feed:
            fake.feed_ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fake.feed_ready.wait(), wait)
        items = list(fake.feed)
        body = {"next": fake.feed_base + len(items), "items": items}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    async def wrote(request: web.Request) -> web.Response:
        for chat in orjson.loads(await request.read()):
            fake.wrote(chat)
        return web.json_response({"ok": True})

    async def info(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "gc_max_ms": round(pauses.max_ms, 1),
                "gc_over_20ms": pauses.long,
                "failures": dict(fake.failures),
                "messages_kept": len(fake.kept),
            }
        )

    app = web.Application()
    app.router.add_get("/feed", feed)
    app.router.add_post("/wrote", wrote)
    app.router.add_get("/info", info)
    return app


async def serve_fake(host: str) -> None:
    """The fake's process: print {"url", "control"} once listening; stop on SIGTERM."""
    fake = ClusterFake(host=host, tokens=[TOKEN])
    fake.limits()  # Telegram's
    url = await fake.start()
    pauses = Pauses()
    runner = web.AppRunner(control_app(fake, pauses), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = runner.addresses[0][1]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # What the fake keeps is frozen out of the collector's sight, as in benchmarks/inbound.py:
    # a full collection over it would pause every bot's sends.
    gc.collect()
    gc.freeze()
    gc.callbacks.append(pauses)  # from here on: the collections that come by themselves
    freezer = asyncio.create_task(keep_frozen())
    print(json.dumps({"url": url, "control": f"http://{host}:{port}"}), flush=True)
    await stop.wait()
    freezer.cancel()
    await runner.cleanup()
    await fake.stop()


def start_fake() -> tuple[subprocess.Popen, str, str]:
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--serve-fake"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise SystemExit("the fake Bot API did not start")
    started = json.loads(line)
    return process, started["url"], started["control"]


# -- what the driver recognises ------------------------------------------------------------------


def _prefixes(key: str) -> tuple[str, ...]:
    """The fixed start of a text (up to its first placeholder) in every language."""
    return tuple(sorted({i18n_text(lang, key).split("{", 1)[0] for lang in LANGUAGES}))


CALL_PREFIXES = _prefixes("calls.call")
REMINDER_PREFIXES = _prefixes("calls.reminder")
COME_LABELS = frozenset(i18n_text(lang, "calls.btn.come") for lang in LANGUAGES)
BOT_USER = {"id": BOT_ID, "is_bot": True, "first_name": "Gridbot", "username": "gridbot_bot"}


def buttons(item: dict) -> list[dict]:
    return [b for row in item.get("b") or () for b in row if "callback_data" in b]


def run_queue_seconds(pid: int) -> float:
    """Seconds a process's main thread (the event loop) spent runnable, waiting for a CPU."""
    with open(f"/proc/{pid}/schedstat") as fh:
        return int(fh.read().split()[1]) / 1e9


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks (/proc/stat)."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


@dataclass
class Part:
    """One call's delivery and everything measured meanwhile."""

    name: str
    title: str
    coming: int  # members who press "I'll come"
    exclude: frozenset[int] = frozenset()  # members who may not (they came to another call)
    kill_after: int | None = None  # call deliveries after which the sender is killed
    lead: float = 0.0  # seconds from posting the call to its reminder
    started: float = 0.0
    ended: float = 0.0
    first_row: int = 0  # outbox ids above this are the part's
    last_row: int = 0
    call_id: int = 0
    rows: int = 0
    posted_at: float = 0.0
    call_times: list[float] = field(default_factory=list)
    # The call's place (a venue) sent before its text: the first to each member is the call's
    # (a later one comes with the reminder).
    place_times: list[float] = field(default_factory=list)
    placed: set[int] = field(default_factory=set)
    pressing: set[int] = field(default_factory=set)
    pressed: Counter[int] = field(default_factory=Counter)  # webhook status -> presses
    reminders: Counter[int] = field(default_factory=Counter)  # chat -> reminders delivered
    half: asyncio.Event = field(default_factory=asyncio.Event)
    dialogs: int = 0
    steps: int = 0
    latencies: list[float] = field(default_factory=list)
    per_step: dict[str, list[float]] = field(default_factory=dict)
    timeouts: int = 0
    unexpected: int = 0
    samples: list[str] = field(default_factory=list)
    kill: dict[str, Any] | None = None
    unanswered: list[tuple[int, str]] = field(default_factory=list)  # (update, step) timed out
    timed_out: bool = False
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def call_texts(self) -> tuple[str, ...]:
        return tuple(p + self.title for p in CALL_PREFIXES)

    @property
    def place_text(self) -> str:
        return f"venue: {self.title} |"

    @property
    def reminder_texts(self) -> tuple[str, ...]:
        return tuple(p + self.title for p in REMINDER_PREFIXES)

    def problem(self, kind: str, detail: str) -> None:
        if kind == "timeout":
            self.timeouts += 1
        else:
            self.unexpected += 1
        if len(self.samples) < 5:
            self.samples.append(f"{kind}: {detail[:160]}")


class Chat:
    """What the bot said in one resident's chat since the resident's last update."""

    __slots__ = ("messages", "problem", "waiter")

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.problem: str | None = None
        self.waiter: asyncio.Future[None] | None = None

    def begin(self) -> None:
        self.messages.clear()
        self.problem = None

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


# -- the processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BotProcess:
    """One `python -m bot run` in webhook mode on its own port."""

    def __init__(self, index: int, command: list[str], env: dict[str, str], workdir: str) -> None:
        self.name = f"bot{index}"
        self.command = command
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}/hook"
        self.env = {
            **env,
            "GRIDBOT_WEBHOOK_URL": self.endpoint,
            "GRIDBOT_WEBHOOK_LISTEN_HOST": "127.0.0.1",
            "GRIDBOT_WEBHOOK_LISTEN_PORT": str(self.port),
        }
        self.workdir = workdir
        self.log = Path(workdir) / f"{self.name}.log"
        self.process: asyncio.subprocess.Process | None = None
        self.killed = False
        self.cpu = 0.0  # last CPU seconds read
        self.waited = 0.0  # last read of the seconds its main thread waited for a CPU

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        with open(self.log, "wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.command,
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def ready(self, http: aiohttp.ClientSession, timeout: float = 180.0) -> float:
        """Wait until the webhook serves (a GET gets 405: only POST is routed)."""
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            assert self.process is not None
            if self.process.returncode is not None:
                raise SystemExit(f"{self.name} exited {self.process.returncode}:\n{self.tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(self.endpoint) as answer:
                    if answer.status == 405:
                        return time.perf_counter() - started
            await asyncio.sleep(0.2)
        raise SystemExit(f"{self.name} did not serve its webhook in {timeout:g} s:\n{self.tail()}")

    def read_cpu(self) -> float:
        if not self.killed and self.process is not None and self.process.returncode is None:
            with contextlib.suppress(OSError, ValueError, IndexError):
                self.cpu = cpu_seconds(self.pid)
                self.waited = run_queue_seconds(self.pid)
        return self.cpu

    def kill(self) -> None:
        self.read_cpu()
        self.killed = True
        os.kill(self.pid, signal.SIGKILL)

    async def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 40)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
                return None
        return self.process.returncode

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def count(self, patterns: dict[str, str]) -> Counter[str]:
        """How many lines of the log contain each pattern."""
        found: Counter[str] = Counter()
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return found
        for line in text.splitlines():
            for name, pattern in patterns.items():
                if pattern in line:
                    found[name] += 1
        return found

    def problems(self) -> Counter[str]:
        """Errors logged and the exceptions their tracebacks end in, each counted (numbers
        taken out, so that the same error about different updates counts as one)."""
        try:
            lines = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return Counter()
        found: Counter[str] = Counter()
        in_traceback = False
        for line in lines:
            if " ERROR " in line or " CRITICAL " in line:
                found[f"{self.name}: {_shape(line.split(' ', 2)[-1])}"] += 1
            elif line.startswith("Traceback"):
                in_traceback = True
            elif in_traceback and line and not line.startswith(" "):
                # The line after a traceback's frames: the exception it ended in.
                found[f"{self.name}:   raised {_shape(line)}"] += 1
                in_traceback = False
        return found


def _shape(text: str) -> str:
    return re.sub(r"\d+", "N", text)[:200]


# -- seeding ---------------------------------------------------------------------------------------


@dataclass
class City:
    community_id: int
    secretary_id: int
    members: int


async def seed(sessionmaker, members: int) -> City:
    """The sample city, one community's secretary, and its approved members (in bulk)."""
    clock = SystemClock()
    org = await asyncio.to_thread(read_org_file, sample_path())
    async with sessionmaker() as session:
        await apply_org(session=session, org=org, clock=clock)
    async with sessionmaker() as session:
        community = (
            await session.exec(
                select(OrgUnit).where(OrgUnit.kind == UnitKind.COMMUNITY).order_by(OrgUnit.code)
            )
        ).first()
        assert community is not None
        grids = (
            await session.exec(
                select(OrgUnit.id).where(OrgUnit.parent_id == community.id).order_by(OrgUnit.code)
            )
        ).all()
        secretary = Person(telegram_id=SECRETARY_CHAT, full_name="Secretary", language="en")
        session.add(secretary)
        await session.flush()
        session.add(
            RoleAssignment(
                person_id=secretary.id, role=Role.COMMUNITY_SECRETARY, unit_id=community.id
            )
        )
        now = clock.now()
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
            await session.exec(sa.insert(Person.__table__), params=people[start : start + CHUNK])
        found = (
            await session.exec(
                select(Person.id, Person.telegram_id)
                .where(Person.telegram_id >= FIRST_MEMBER, Person.telegram_id < FIRST_RESIDENT)
                .order_by(Person.telegram_id)
            )
        ).all()
        rows = [
            {
                "person_id": person_id,
                "full_name": f"Member {telegram_id - FIRST_MEMBER}",
                "branch": "第一党支部",
                "community_id": community.id,
                "grid_id": grids[(telegram_id - FIRST_MEMBER) % len(grids)] if grids else None,
                "skills": [],
                "services": [],
                "phone": None,
                "status": MemberStatus.APPROVED,
                "created_at": now,
                "updated_at": now,
            }
            for person_id, telegram_id in found
        ]
        for start in range(0, len(rows), CHUNK):
            await session.exec(sa.insert(Member.__table__), params=rows[start : start + CHUNK])
        await session.commit()
        return City(community.id, secretary.id, members)


# -- the driver ------------------------------------------------------------------------------------


class Balancer:
    """The load balancer: each update to the next webhook in turn; one that cannot be reached
    leaves the rotation and the update goes to the next (as Telegram would send it again)."""

    def __init__(self, http: aiohttp.ClientSession, bots: list[BotProcess]) -> None:
        self.http = http
        self.bots = bots
        self.alive = [True] * len(bots)
        self.turn = 0
        self.headers = {SECRET_HEADER: webhook_secret(TOKEN), "Content-Type": "application/json"}
        self.answered: Counter[str] = Counter()  # bot name -> updates answered 200
        self.refused: Counter[int] = Counter()  # other statuses
        self.unreachable = 0  # posts that found a webhook gone (and went to the next)
        self.rerouted: dict[int, list[str]] = {}  # update id -> webhooks tried, when several
        self.tasks: set[asyncio.Task[int]] = set()

    @property
    def handled(self) -> int:
        return sum(self.answered.values())

    def _pick(self) -> int | None:
        for _ in range(len(self.bots)):
            index = self.turn % len(self.bots)
            self.turn += 1
            if self.alive[index]:
                return index
        return None

    async def post(self, update: dict) -> int:
        """The webhook's HTTP status (0: no webhook could be reached)."""
        body = orjson.dumps(update)
        tried: list[str] = []
        while (index := self._pick()) is not None:
            tried.append(self.bots[index].name)
            try:
                async with self.http.post(
                    self.bots[index].endpoint, data=body, headers=self.headers
                ) as answer:
                    await answer.read()
                    status = answer.status
            except (aiohttp.ClientConnectionError, OSError):
                self.alive[index] = False
                self.unreachable += 1
                self.rerouted[update["update_id"]] = tried
                continue
            except TimeoutError:
                self.refused[-1] += 1  # no answer in time
                return -1
            if status == 200:
                self.answered[self.bots[index].name] += 1
            else:
                self.refused[status] += 1
            return status
        return 0

    def submit(self, update: dict, chat: Chat | None = None) -> asyncio.Task[int]:
        task = asyncio.create_task(self.post(update))
        self.tasks.add(task)

        def done(finished: asyncio.Task[int]) -> None:
            self.tasks.discard(finished)
            if chat is not None and not finished.cancelled():
                status = finished.result()
                if status != 200:
                    chat.problem = f"webhook answered {status}"
                    chat.wake()

        task.add_done_callback(done)
        return task


class Pacer:
    """When a resident may send its next update: on a grid of `pace` seconds (never before the
    previous step was answered), until the run stops."""

    def __init__(self, driver: Driver, pace: float, first_at: float) -> None:
        self.driver = driver
        self.pace = pace
        self.next_at = first_at

    async def wait(self) -> None:
        if self.driver.stopping:
            raise PhaseOver
        delay = self.next_at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        self.next_at += self.pace
        if self.driver.stopping:
            raise PhaseOver


class Resident:
    """One person filing one report; each step sends an update and waits for its last answer."""

    def __init__(self, driver: Driver, user_id: int, pacer: Pacer) -> None:
        self.d = driver
        self.id = user_id
        self.pacer = pacer
        self.chat = driver.chats[user_id] = Chat()
        self.pushed_at = 0.0
        self.wrote_at = -math.inf
        self.update_id = 0

    async def _send(self, update: dict) -> None:
        # The fake must count the chat as having written before the bot answers it.
        if time.monotonic() - self.wrote_at > 30:
            await self.d.wrote([self.id])
            self.wrote_at = time.monotonic()
        self.pushed_at = time.perf_counter()
        self.update_id = update["update_id"]
        self.d.balancer.submit(update, self.chat)

    async def say(self, text: str | None = None, **extra: Any) -> None:
        await self._send(self.d.message_update(self.id, text, **extra))

    @staticmethod
    def buttons(item: dict) -> list[dict]:
        return buttons(item)

    @staticmethod
    def text(item: dict) -> str:
        return item.get("t") or ""

    async def press(self, item: dict, label: str | None = None, data: str | None = None) -> None:
        if data is None:
            data = button_data(buttons(item), label)
        await self._send(self.d.callback_update(self.id, item, data))

    async def step(
        self,
        name: str,
        push: Callable[[], Awaitable[None]],
        done: Callable[[str], bool],
        allowed: tuple[str, ...] = (),
    ) -> dict:
        await self.pacer.wait()
        chat = self.chat
        chat.begin()
        part = self.d.part
        try:
            await push()
        except DialogFailed as exc:
            part.problem("unexpected", f"{name}: {exc}")
            raise
        deadline = self.pushed_at + self.d.step_timeout
        seen = 0
        loop = asyncio.get_running_loop()
        while True:
            if chat.problem is not None:
                self.d.part.problem("unexpected", f"{name}: {chat.problem}")
                raise DialogFailed(chat.problem)
            while seen < len(chat.messages):
                item = chat.messages[seen]
                seen += 1
                said = self.text(item)
                if done(said):
                    part = self.d.part
                    part.steps += 1
                    latency = (time.perf_counter() - self.pushed_at) * 1000
                    part.latencies.append(latency)
                    part.per_step.setdefault(name, []).append(latency)
                    return item
                if not allowed or not said.startswith(allowed):
                    self.d.part.problem("unexpected", f"{name}: {said!r}")
                    raise DialogFailed(said)
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                self.d.part.problem("timeout", f"{name}: nothing after {self.d.step_timeout:g} s")
                self.d.part.unanswered.append((self.update_id, name))
                raise DialogFailed("timeout")
            chat.waiter = loop.create_future()
            try:
                await asyncio.wait_for(chat.waiter, remaining)
            except TimeoutError:
                pass
            finally:
                chat.waiter = None


class Driver:
    def __init__(
        self,
        args: argparse.Namespace,
        http: aiohttp.ClientSession,
        control: str,
        bots: list[BotProcess],
        sessionmaker,
        city: City,
    ) -> None:
        self.args = args
        self.http = http
        self.control = control
        self.bots = bots
        self.sessionmaker = sessionmaker
        self.city = city
        self.balancer = Balancer(http, bots)
        self.rng = random.Random(args.seed)
        self.boxes = grid_boxes()
        self.step_timeout = args.step_timeout
        self.stopping = False
        self.part = self.ramp = Part("ramp", "", 0)
        self.parts: list[Part] = []
        self.chats: dict[int, Chat] = {}
        self.next_resident = FIRST_RESIDENT
        self.update_id = 0
        self.user_message_id = FIRST_USER_MESSAGE
        self.callbacks = 0
        self.reports = 0
        self.dialogs = 0
        # What the fake delivered to chats other than residents' (members, the secretary).
        self.delivered: dict[tuple[int, int], str] = {}  # (chat, message id) -> text
        self.times: dict[tuple[int, str], list[float]] = {}  # (chat, text) -> delivery times
        self.rejected: Counter[str] = Counter()  # "429 member" ...
        self.leases: dict[str, str] = {}  # "send"/"schedule" -> bot name
        # Connections to PostgreSQL, sampled every second: (ours, the server's) at the most.
        self.connections = [0, 0]
        self.max_connections = 0
        self.moves: list[tuple[float, str, str]] = []  # (monotonic, duty, bot) as observed
        self.tasks: set[asyncio.Task[Any]] = set()
        self.pauses = Pauses()
        self.budget = Settings(_env_file=None).outbox_rate

    # -- updates, built by hand ----------------------------------------------------------

    def _next_update_id(self) -> int:
        self.update_id += 1
        return self.update_id

    @staticmethod
    def _person(user: int) -> dict:
        return {"id": user, "is_bot": False, "first_name": f"P{user}", "language_code": LANGUAGE}

    def message_update(self, user: int, text: str | None = None, **extra: Any) -> dict:
        self.user_message_id += 1
        person = self._person(user)
        message: dict[str, Any] = {
            "message_id": self.user_message_id,
            "date": int(time.time()),
            "chat": {"id": user, "type": "private", "first_name": person["first_name"]},
            "from": person,
        }
        if text is not None:
            message["text"] = text
            if text.startswith("/"):
                length = len(text.split(maxsplit=1)[0])
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        message.update(extra)
        return {"update_id": self._next_update_id(), "message": message}

    def callback_update(self, user: int, item: dict, data: str) -> dict:
        """A press of a button on a message the bot delivered (as the feed described it)."""
        self.callbacks += 1
        person = self._person(user)
        message: dict[str, Any] = {
            "message_id": item["i"],
            "date": int(time.time()),
            "chat": {"id": user, "type": "private", "first_name": person["first_name"]},
            "from": BOT_USER,
            "text": item.get("t") or "",
        }
        if item.get("b"):
            message["reply_markup"] = {"inline_keyboard": item["b"]}
        callback = {
            # The chat in front lets the fake say whose press an alert answers.
            "id": f"{user}:{self.callbacks}",
            "from": person,
            "chat_instance": f"ci{user}",
            "message": message,
            "data": data,
        }
        return {"update_id": self._next_update_id(), "callback_query": callback}

    async def wrote(self, chats: list[int]) -> None:
        async with self.http.post(f"{self.control}/wrote", data=orjson.dumps(chats)) as answer:
            await answer.read()

    def spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- the feed ------------------------------------------------------------------------

    async def follow(self) -> None:
        after = 0
        while True:
            try:
                async with self.http.get(
                    f"{self.control}/feed", params={"after": str(after), "wait": "1"}
                ) as answer:
                    body = orjson.loads(await answer.read())
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.2)
                continue
            after = body["next"]
            for item in body["items"]:
                self.observe(item)

    def observe(self, item: dict) -> None:
        chat = item.get("c")
        status = item["s"]
        method = item["m"]
        if not isinstance(chat, int):
            if status != 200:
                self.rejected[f"{status} no chat"] += 1
            return
        resident = chat >= FIRST_RESIDENT
        whose = "resident" if resident else "member" if chat >= FIRST_MEMBER else "other"
        if status != 200:
            self.rejected[f"{status} {whose}"] += 1
        if resident:
            dialog = self.chats.get(chat)
            if dialog is None:
                return
            if method == "answerCallbackQuery":
                dialog.problem = f"alert: {item.get('t')}"
            elif status == 200:
                dialog.messages.append(item)
            elif status != 429:  # a 429 is waited out and the reply sent again
                dialog.problem = f"{method} -> {status} {item.get('d')}"
            dialog.wake()
            return
        if status != 200 or method == "answerCallbackQuery":
            return
        text = item["t"]
        self.delivered[(chat, item["i"])] = text
        self.times.setdefault((chat, text), []).append(item["a"])
        for part in self.parts:
            if text.startswith(part.call_texts):
                self.on_call(part, chat, item)
            elif text.startswith(part.place_text) and chat not in part.placed:
                part.placed.add(chat)
                part.place_times.append(item["a"])
            elif text.startswith(part.reminder_texts):
                part.reminders[chat] += 1

    def on_call(self, part: Part, chat: int, item: dict) -> None:
        part.call_times.append(item["a"])
        if part.kill_after is not None and len(part.call_times) >= part.kill_after:
            part.half.set()
        if (
            len(part.pressing) < part.coming
            and chat not in part.exclude
            and FIRST_MEMBER <= chat < FIRST_MEMBER + self.city.members
        ):
            part.pressing.add(chat)
            self.spawn(self.come(part, chat, item))

    async def come(self, part: Part, chat: int, item: dict) -> None:
        """A member presses "I'll come" on the call, through the bot."""
        data = next((b["callback_data"] for b in buttons(item) if b["text"] in COME_LABELS), None)
        if data is None:
            part.pressed[-1] += 1
            return
        await self.wrote([chat])
        part.pressed[await self.balancer.post(self.callback_update(chat, item, data))] += 1

    # -- the residents -------------------------------------------------------------------

    async def report(self, r: Resident) -> None:
        """One whole /report dialog, ending with the ticket filed (benchmarks/inbound.py)."""
        self.reports += 1
        await report_dialog(r, self.rng, self.boxes, "Cluster report", self.reports)

    async def resident(self, first_at: float) -> None:
        """One place in the queue of residents: dialog after dialog, each from a new person."""
        pacer = Pacer(self, self.args.pace, first_at)
        while True:
            self.next_resident += 1
            r = Resident(self, self.next_resident, pacer)
            try:
                await self.report(r)
            except PhaseOver:
                return
            except DialogFailed:
                pass
            else:
                self.part.dialogs += 1
                self.dialogs += 1
            finally:
                self.chats.pop(r.id, None)

    # -- the database --------------------------------------------------------------------

    async def watch(self) -> None:
        """Who holds the leases (as observed every 0.2 s), and the bots' CPU every second."""
        last_cpu = 0.0
        while True:
            try:
                async with self.sessionmaker() as session:
                    rows = (await session.exec(select(Lease.name, Lease.holder))).all()
            except Exception:  # noqa: BLE001 - a benchmark keeps watching
                rows = []
            now = time.monotonic()
            for name, holder in rows:
                duty = name.split(":", 1)[0]
                bot = self.bot_of(holder)
                if self.leases.get(duty) != bot:
                    self.leases[duty] = bot
                    self.moves.append((now, duty, bot))
            if now - last_cpu >= 1.0:
                last_cpu = now
                for bot in self.bots:
                    bot.read_cpu()
                with contextlib.suppress(Exception):
                    await self.count_connections()
            await asyncio.sleep(0.2)

    async def count_connections(self) -> None:
        async with self.sessionmaker() as session:
            ours, total = (
                await session.exec(
                    sa.text(
                        "SELECT count(*) FILTER (WHERE datname = current_database()), count(*)"
                        " FROM pg_stat_activity WHERE backend_type = 'client backend'"
                    )
                )
            ).one()
            if not self.max_connections:
                self.max_connections = int(
                    (await session.exec(sa.text("SHOW max_connections"))).scalar_one()
                )
        self.connections = [max(self.connections[0], ours), max(self.connections[1], total)]

    def bot_of(self, holder: str) -> str:
        """The bot whose process holds a lease (holder: host:pid:tail)."""
        try:
            pid = int(holder.rsplit(":", 2)[1])
        except (IndexError, ValueError):
            return holder
        for bot in self.bots:
            if bot.process is not None and bot.pid == pid:
                return bot.name
        return holder

    async def holder(self, duty: str) -> tuple[str, int] | None:
        """The live holder of a duty's lease: (holder, pid)."""
        async with self.sessionmaker() as session:
            row = (
                await session.exec(
                    select(Lease.holder).where(
                        Lease.name == f"{duty}:{BOT_ID}", Lease.expires_at >= datetime.now(UTC)
                    )
                )
            ).first()
        if row is None:
            return None
        return row, int(row.rsplit(":", 2)[1])

    async def max_row(self) -> int:
        async with self.sessionmaker() as session:
            return (
                await session.exec(select(sa.func.coalesce(sa.func.max(OutboxMessage.id), 0)))
            ).one()

    async def pending(self) -> int:
        async with self.sessionmaker() as session:
            return (
                await session.exec(
                    select(sa.func.count())
                    .select_from(OutboxMessage)
                    .where(OutboxMessage.status == OutboxStatus.PENDING)
                )
            ).one()

    async def reminded(self, call_id: int) -> bool:
        async with self.sessionmaker() as session:
            call = await session.get(DutyCall, call_id)
            return call is not None and call.reminded_at is not None

    async def post_call(self, part: Part) -> None:
        """The secretary's call to the whole community (the domain use case the /call dialog
        ends in): two bulk outbox rows per member (its place, then its text), committed; the
        sender finds them by polling."""
        now = datetime.now(UTC)
        starts = now + timedelta(minutes=self.args.reminder_minutes, seconds=part.lead)
        async with self.sessionmaker() as session:
            actor = await session.get(Person, self.city.secretary_id)
            call, rows = await create_call(
                session=session,
                clock=SystemClock(),
                actor=actor,
                community_id=self.city.community_id,
                title=part.title,
                description="Cluster benchmark: all hands",
                latitude=PLACE[0],
                longitude=PLACE[1],
                starts_at=starts,
                ends_at=starts + timedelta(hours=2),
                capacity=max(1000, part.coming),
            )
            await session.commit()
        part.call_id, part.rows = call.id, rows

    # -- a part --------------------------------------------------------------------------

    async def run_part(self, part: Part) -> Part:
        self.part = part
        self.parts.append(part)
        stats0 = await self.fake_stats()
        cpu0 = self.cpu()
        answered0 = self.balancer.handled
        part.first_row = await self.max_row()
        part.started = time.monotonic()
        await self.post_call(part)
        part.posted_at = time.monotonic()
        if part.kill_after is not None:
            try:
                await asyncio.wait_for(part.half.wait(), self.args.timeout)
            except TimeoutError:
                part.timed_out = True
            else:
                await self.kill_sender(part)
        deadline = part.started + self.args.timeout
        while True:
            now = time.monotonic()
            if now >= deadline:
                part.timed_out = True
                break
            if (
                now >= part.started + self.args.seconds
                and len(part.call_times) >= part.rows
                and await self.reminded(part.call_id)
                and await self.pending() == 0
            ):
                break
            await asyncio.sleep(0.5)
        await asyncio.sleep(1.0)  # the feed catches up with the last deliveries
        part.ended = time.monotonic()
        part.last_row = await self.max_row()
        cpu1 = self.cpu()
        stats1 = await self.fake_stats()
        seconds = part.ended - part.started
        part.figures["cpu"] = {
            name: (cpu1[name] - cpu0[name]) / seconds
            for name in cpu1
            if name not in ("machine", "waited")
        }
        part.figures["waited"] = {
            name: (cpu1["waited"][name] - cpu0["waited"][name]) / seconds for name in cpu1["waited"]
        }
        busy0, total0 = cpu0["machine"]
        busy1, total1 = cpu1["machine"]
        part.figures["machine_busy"] = (busy1 - busy0) / max(1, total1 - total0)
        part.figures["updates_per_s"] = (self.balancer.handled - answered0) / seconds
        part.figures["fake"] = {
            "duplicates": stats1["duplicates"] - stats0["duplicates"],
            "rejected_429": stats1["rejected_429"] - stats0["rejected_429"],
            "by_kind": {
                kind: stats1["rejected_429_by_kind"].get(kind, 0)
                - stats0["rejected_429_by_kind"].get(kind, 0)
                for kind in stats1["rejected_429_by_kind"]
            },
            "delivered": stats1["delivered"] - stats0["delivered"],
        }
        part.figures["leases"] = dict(self.leases)
        part.figures["lease_moves"] = [
            (round(at - part.started, 1), duty, bot)
            for at, duty, bot in self.moves
            if part.started <= at <= part.ended
        ]
        return part

    async def kill_sender(self, part: Part) -> None:
        found = await self.holder("send")
        if found is None:
            part.kill = {"error": "nobody held the send lease"}
            return
        holder, pid = found
        bot = next((b for b in self.bots if b.process is not None and b.pid == pid), None)
        if bot is None:  # never kill a process this run did not start
            part.kill = {"error": f"the send lease is held by {holder}, not one of ours"}
            return
        schedule = await self.holder("schedule")
        part.kill = {
            "bot": bot.name,
            "holder": holder,
            "schedule_holder": self.bot_of(schedule[0]) if schedule else None,
            "delivered_before": len(part.call_times),
            "mono": time.monotonic(),
            "wall": datetime.now(UTC),
        }
        bot.kill()
        await bot.process.wait()  # type: ignore[union-attr]

    async def fake_stats(self) -> dict:
        async with self.http.get(f"{self.args.fake_url}/_stats") as answer:
            return orjson.loads(await answer.read())

    def cpu(self) -> dict[str, Any]:
        values: dict[str, Any] = {bot.name: bot.read_cpu() for bot in self.bots}
        values["waited"] = {bot.name: bot.waited for bot in self.bots}
        with contextlib.suppress(OSError, ValueError, IndexError):
            values["fake"] = cpu_seconds(self.args.fake_pid)
        values["driver"] = time.process_time()
        values["machine"] = machine_busy()
        return values

    # -- checks --------------------------------------------------------------------------

    async def rows_of(self, part: Part) -> list[Any]:
        async with self.sessionmaker() as session:
            return (
                await session.exec(
                    select(
                        OutboxMessage.id,
                        OutboxMessage.chat_id,
                        OutboxMessage.kind,
                        OutboxMessage.status,
                        OutboxMessage.telegram_message_id,
                        OutboxMessage.sent_at,
                        OutboxMessage.data,
                    )
                    .where(OutboxMessage.id > part.first_row, OutboxMessage.id <= part.last_row)
                    .order_by(OutboxMessage.id)
                )
            ).all()

    async def coming(self, call_id: int) -> set[int]:
        async with self.sessionmaker() as session:
            return set(
                (
                    await session.exec(
                        select(Person.telegram_id)
                        .join(Member, Member.person_id == Person.id)
                        .join(CallClaim, CallClaim.member_id == Member.id)
                        .where(
                            CallClaim.call_id == call_id, CallClaim.status == ClaimStatus.CLAIMED
                        )
                    )
                ).all()
            )

    async def check(self, part: Part) -> None:
        """Every outbox row of the part sent and delivered once; reminders; rates."""
        rows = await self.rows_of(part)
        f = part.figures
        kill = part.kill if part.kill and "mono" in part.kill else None
        unsent = Counter()
        never_delivered = 0
        residents_rows = 0
        duplicated: list[tuple[int, str, list[float], int]] = []
        # Rows sent per (chat, text): a call's place and its reminder's are the same venue.
        rows_per_text: Counter[tuple[int, str]] = Counter()
        reminder_rows: Counter[int] = Counter()
        first_after_kill = None
        unrecorded = 0
        # Deliveries before this were the dead process's (see DEAD_SENDS_S).
        boundary = kill["mono"] + DEAD_SENDS_S if kill is not None else math.inf
        for _id, chat, kind, status, message_id, sent_at, data in rows:
            if kind == "duty_call_reminder" and (data or {}).get("call_id") == part.call_id:
                reminder_rows[chat] += 1
            if status != OutboxStatus.SENT:
                unsent[str(status)] += 1
                continue
            if (
                kill is not None
                and sent_at is not None
                and sent_at > kill["wall"]
                and (first_after_kill is None or sent_at < first_after_kill)
            ):
                first_after_kill = sent_at
            if chat >= FIRST_RESIDENT:
                residents_rows += 1  # the feed keeps no index for residents' chats
                continue
            text = self.delivered.get((chat, message_id))
            if text is None:
                never_delivered += 1
                continue
            rows_per_text[(chat, text)] += 1
            times = self.times[(chat, text)]
            if kill is not None and times[0] < boundary and sent_at > kill["wall"]:
                unrecorded += 1  # delivered by the dead process, recorded as sent by another
        for (chat, text), sent in rows_per_text.items():
            times = self.times[(chat, text)]
            if len(times) > sent:
                duplicated.append((chat, text, times, sent))
        f["rows"] = len(rows)
        f["unsent"] = dict(unsent)
        f["never_delivered"] = never_delivered
        f["lost"] = sum(unsent.values()) + never_delivered
        f["resident_rows"] = residents_rows
        f["duplicated_rows"] = len(duplicated)
        f["extra_deliveries"] = sum(len(t) - n for _, _, t, n in duplicated)
        if kill is not None:
            straddling = [
                t for _, _, t, n in duplicated if len(t) == n + 1 and t[0] < boundary <= t[-1]
            ]
            f["duplicates_at_kill"] = len(straddling)
            f["duplicates_elsewhere"] = len(duplicated) - len(straddling)
            f["unrecorded_at_kill"] = unrecorded
            f["failover_s"] = (
                (first_after_kill - kill["wall"]).total_seconds()
                if first_after_kill is not None
                else None
            )
            moved = [
                (at, bot)
                for at, duty, bot in self.moves
                if duty == "send" and at > kill["mono"] and bot != kill["bot"]
            ]
            f["lease_moved_s"] = moved[0][0] - kill["mono"] if moved else None
            f["new_sender"] = moved[0][1] if moved else None
            f["delivered_in_last_second"] = sum(
                1 for t in part.call_times if kill["mono"] - 1.0 <= t < kill["mono"]
            )
            f["delivered_after_death"] = sum(
                1 for t in part.call_times if kill["mono"] <= t < boundary
            )
        # Reminders: each member coming, exactly one, and nobody else.
        coming = await self.coming(part.call_id)
        f["coming"] = len(coming)
        f["reminders_delivered"] = sum(part.reminders.values())
        f["reminder_rows"] = sum(reminder_rows.values())
        wrong = {
            chat
            for chat in coming | set(part.reminders) | set(reminder_rows)
            if (chat in coming) != (part.reminders[chat] == 1)
            or (chat in coming) != (reminder_rows[chat] == 1)
            or part.reminders[chat] > 1
        }
        f["reminders_wrong"] = len(wrong)
        f["reminders_once"] = bool(coming) and not wrong
        # The call's delivery rate while it had a backlog: first to last delivery, its places
        # and its texts (a part with a kill: before it, and after the new sender took over).
        times = sorted(part.call_times + part.place_times)
        if kill is not None:
            before = [t for t in times if t < kill["mono"]]
            after = [t for t in times if t >= kill["mono"] + (f.get("failover_s") or 0)]
            f["bulk_rate"] = rate(before)
            f["bulk_rate_after"] = rate(after)
        else:
            f["bulk_rate"] = rate(times)
        f["bulk_peak_1s"] = peak(times)
        f["call_deliveries"] = len(times)
        f["gaps"] = gaps([t for t in times if t < boundary], self.budget)
        # Steps that got no answer: was their update recorded as handled anyway?
        f["unanswered"] = await self.handled_unanswered(part.unanswered)

    async def handled_unanswered(self, steps: list[tuple[int, str]]) -> dict[str, int]:
        """The updates of steps that timed out, by what `inbound_update` says of them."""
        if not steps:
            return {}
        update_ids = [update_id for update_id, _ in steps]
        async with self.sessionmaker() as session:
            found = dict(
                (
                    await session.exec(
                        select(InboundUpdate.update_id, InboundUpdate.handled_at).where(
                            InboundUpdate.bot_id == BOT_ID,
                            InboundUpdate.update_id.in_(update_ids),
                        )
                    )
                ).all()
            )
        outcome: Counter[str] = Counter()
        for update_id, step in steps:
            if update_id not in found:
                outcome["never claimed"] += 1
            elif found[update_id] is None:
                outcome["received, not handled"] += 1
            else:
                outcome["recorded as handled"] += 1
                # A confirm recorded as handled filed its ticket: the dialog is not counted.
                outcome["confirms recorded as handled"] += step == "confirm"
            if update_id in self.balancer.rerouted:
                outcome["posted again to another webhook"] += 1
        return dict(outcome)

    async def settle(self) -> None:
        """Let the residents stop after the step they are in (the run is over)."""
        self.stopping = True
        for chat in list(self.chats.values()):
            chat.wake()


def rate(times: list[float]) -> float:
    if len(times) < 2 or times[-1] <= times[0]:
        return float("nan")
    return (len(times) - 1) / (times[-1] - times[0])


def gaps(times: list[float], budget: float, over: float = 0.1) -> dict[str, float]:
    """Where a delivery lost time against `budget`/s: pauses over `over` s (how many, the
    longest, the time they lost) and the time lost in shorter delays."""
    ideal = 1.0 / budget
    spaces = [b - a for a, b in zip(times, times[1:], strict=False)]
    long = [d for d in spaces if d > over]
    return {
        "count": len(long),
        "longest_s": max(long, default=0.0),
        "lost_long_s": sum(d - ideal for d in long),
        "lost_short_s": sum(d - ideal for d in spaces if ideal < d <= over),
    }


def peak(times: list[float]) -> int:
    """The most deliveries in any one-second window."""
    best = start = 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


# -- the run -------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, url: str, workdir: str) -> dict:
    engine = make_engine(url)
    sessionmaker = make_sessionmaker(engine)
    started = time.perf_counter()
    city = await seed(sessionmaker, args.members)
    seeded = time.perf_counter() - started

    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDBOT_")}
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "GRIDBOT_BOT_TOKEN": TOKEN,
            "GRIDBOT_TELEGRAM_API_BASE": args.fake_url,
            "GRIDBOT_DATABASE_URL": url,
            "GRIDBOT_SWEEP_INTERVAL": "1",
            "GRIDBOT_CALL_REMINDER_MINUTES": f"{args.reminder_minutes:g}",
        }
    )
    command = [sys.executable, "-m", "bot", "run"]
    if args.gridbot_command:
        command = shlex.split(args.gridbot_command)
    bots = [BotProcess(n + 1, command, env, workdir) for n in range(args.processes)]
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=args.step_timeout + 30)
    result: dict[str, Any] = {"seed_s": seeded}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        driver = Driver(args, http, args.control, bots, sessionmaker, city)
        started = time.perf_counter()
        await asyncio.gather(*(bot.start() for bot in bots))
        try:
            await asyncio.gather(*(bot.ready(http) for bot in bots))
            follower = asyncio.create_task(driver.follow())
            watcher = asyncio.create_task(driver.watch())
            deadline = time.perf_counter() + 60
            while "send" not in driver.leases or "schedule" not in driver.leases:
                if time.perf_counter() > deadline:
                    raise SystemExit(f"nobody took the leases: {driver.leases}")
                await asyncio.sleep(0.2)
            result["startup_s"] = time.perf_counter() - started
            result["first_leases"] = dict(driver.leases)
            gc.collect()
            gc.freeze()
            gc.callbacks.append(driver.pauses)  # the collections that come by themselves
            freezer = asyncio.create_task(keep_frozen())

            # Residents start one after the other over one dialog's length, so that their
            # steps are mixed; the call goes out once they all have.
            ramp = args.pace * DIALOG_STEPS
            t0 = time.perf_counter()
            residents = [
                asyncio.create_task(driver.resident(t0 + ramp * i / max(1, args.residents)))
                for i in range(args.residents)
            ]
            await asyncio.sleep(ramp)

            steady = await driver.run_part(
                Part("steady", "Cluster drill 1 (steady)", args.coming, lead=args.remind_after)
            )
            parts = [steady]
            if not args.no_kill:
                kill_after = max(1, math.ceil(args.members * args.kill_at))
                lead = kill_after / Settings(_env_file=None).outbox_rate + 5 + args.remind_after
                parts.append(
                    await driver.run_part(
                        Part(
                            "failover",
                            "Cluster drill 2 (failover)",
                            args.coming,
                            exclude=frozenset(steady.pressing),
                            kill_after=kill_after,
                            lead=lead,
                        )
                    )
                )
            await driver.settle()
            await asyncio.wait_for(
                asyncio.gather(*residents, return_exceptions=True), args.step_timeout + 30
            )
            if driver.balancer.tasks:
                await asyncio.wait(driver.balancer.tasks, timeout=30)
            if driver.tasks:
                await asyncio.wait(driver.tasks, timeout=30)
            await asyncio.sleep(1.0)
            for part in parts:
                await driver.check(part)
            driver.ramp.figures["unanswered"] = await driver.handled_unanswered(
                driver.ramp.unanswered
            )
            async with sessionmaker() as session:
                result["tickets"] = (
                    await session.exec(select(sa.func.count()).select_from(Ticket))
                ).one()
            async with http.get(f"{args.control}/info") as answer:
                result["fake_info"] = orjson.loads(await answer.read())
            freezer.cancel()
            follower.cancel()
            watcher.cancel()
        finally:
            codes = await asyncio.gather(*(bot.stop() for bot in bots))
            await engine.dispose()
            if args.logs:
                Path(args.logs).mkdir(parents=True, exist_ok=True)
                for bot in bots:
                    shutil.copy(bot.log, Path(args.logs) / bot.log.name)
    result.update(
        {
            "parts": parts,
            "ramp": driver.ramp,
            "dialogs": driver.dialogs,
            "balancer": driver.balancer,
            "rejected": driver.rejected,
            "driver_gc_max_ms": driver.pauses.max_ms,
            "exit_codes": {bot.name: code for bot, code in zip(bots, codes, strict=True)},
            "log_problems": sum((bot.problems() for bot in bots), Counter()),
            "log_counts": sum((bot.count(LOG_PATTERNS) for bot in bots), Counter()),
            "connections": driver.connections,
            "max_connections": driver.max_connections,
        }
    )
    return result


def report(args: argparse.Namespace, kind: str, result: dict) -> dict:
    settings = Settings(_env_file=None)
    budget = settings.outbox_rate
    parts: list[Part] = result["parts"]
    steady = parts[0]
    failover = parts[1] if len(parts) > 1 else None
    s = steady.figures
    balancer: Balancer = result["balancer"]

    def verdict(ok: bool) -> str:
        return "OK" if ok else "MISSED"

    def ms(values: list[float], q: float) -> float:
        return percentile(values, q) if values else float("nan")

    phases = [result["ramp"], *parts]
    latencies = [v for p in phases for v in p.latencies]
    errors = sum(p.timeouts + p.unexpected for p in phases)
    tickets, dialogs = result["tickets"], result["dialogs"]
    # A confirm whose update a killed process recorded as handled filed a ticket, but its
    # answer never came, so its dialog is not counted as completed.
    unanswered = sum(
        p.figures.get("unanswered", {}).get("confirms recorded as handled", 0) for p in phases
    )
    tickets_ok = tickets == dialogs + unanswered
    steps: dict[str, list[float]] = {}
    for p in phases:
        for name, values in p.per_step.items():
            steps.setdefault(name, []).extend(values)
    ratio = s["bulk_rate"] / budget
    rate_ok = s["bulk_rate"] <= budget * 1.005 and ratio >= TARGET_RATIO
    steady_ok = s["extra_deliveries"] == 0 and s["lost"] == 0 and s["fake"]["duplicates"] == 0
    lines = [
        f"cluster: {args.processes} `gridbot run` processes (webhooks, {kind}),"
        f" {os.cpu_count()} CPUs; send limits at the production defaults: outbox"
        f" {budget:g}/s, chat interval {settings.chat_interval:g} s, burst"
        f" {settings.chat_burst}; the fake enforces Telegram's (30/s bulk, 1/s per chat"
        " after a burst of 3)",
        f"set-up           {args.members} members seeded in {result['seed_s']:.1f} s; bots up and"
        f" leases taken in {result['startup_s']:.1f} s (send {result['first_leases'].get('send')},"
        f" schedule {result['first_leases'].get('schedule')})",
        f"residents        {args.residents} at a time, one step every {args.pace:g} s at most,"
        f" each dialog from a new person; {dialogs} dialogs completed, {tickets} tickets in the"
        f" database"
        + (f" ({unanswered} filed by a confirm whose answer never came)" if unanswered else "")
        + f" [{verdict(tickets_ok)}]",
        f"steps            {sum(p.steps for p in phases)} answered, p50"
        f" {ms(latencies, 0.5):.0f} ms, p99 {ms(latencies, 0.99):.0f} ms; {errors} failed"
        f" (timeouts {sum(p.timeouts for p in phases)})",
        "  per step p50/p99 ms: "
        + ", ".join(
            f"{name} {ms(values, 0.5):.0f}/{ms(values, 0.99):.0f}" for name, values in steps.items()
        ),
        f"bots' logs       {dict(result['log_counts'])}",
        f"load balancer    {dict(balancer.answered)} answered; refused {dict(balancer.refused)};"
        f" {balancer.unreachable} posts found a webhook gone and went to the next",
    ]
    for p in parts:
        f = p.figures
        cpu = ", ".join(f"{name} {share:.0%}" for name, share in f["cpu"].items())
        lines += [
            "",
            f"part {p.name}: call {p.call_id} to {p.rows} members, {p.ended - p.started:.1f} s"
            + (" (TIMED OUT)" if p.timed_out else ""),
            f"  dialogs        {p.dialogs} completed, {f['updates_per_s']:.1f} updates/s handled;"
            f" failed steps {p.timeouts + p.unexpected}",
            f"  outbox rows    {f['rows']}: lost {f['lost']} (not sent {f['unsent']}, sent but"
            f" never delivered {f['never_delivered']}); rows delivered twice"
            f" {f['duplicated_rows']} ({f['extra_deliveries']} extra deliveries);"
            f" the fake's (chat, text) duplicates {f['fake']['duplicates']}",
            f"  bulk rate      {f['bulk_rate']:.2f}/s over {f['call_deliveries']} call deliveries"
            f" (budget {budget:g}/s, ratio {f['bulk_rate'] / budget:.3f}); most in one second"
            f" {f['bulk_peak_1s']}"
            + (f"; after the failover {f['bulk_rate_after']:.2f}/s" if p.kill else ""),
            f"  time lost      {f['gaps']['lost_long_s']:.1f} s in {f['gaps']['count']} pauses"
            f" over 0.1 s between two call deliveries (longest {f['gaps']['longest_s']:.2f} s),"
            f" {f['gaps']['lost_short_s']:.1f} s in shorter delays",
            f"  429s           {f['fake']['rejected_429']} {f['fake']['by_kind']}",
            f"  unanswered     steps that timed out, by their update: {f['unanswered']}",
            f"  reminders      {f['coming']} coming, {f['reminders_delivered']} reminders"
            f" delivered ({f['reminder_rows']} rows); wrong {f['reminders_wrong']}"
            f" [{verdict(f['reminders_once'])}]",
            f"  leases         send {f['leases'].get('send')}, schedule"
            f" {f['leases'].get('schedule')} at the end; moved"
            f" {f['lease_moves'] or 'never'} (s into the part, duty, to)",
            f"  CPU            {cpu}; machine {f['machine_busy']:.0%} busy",
            "  waiting for CPU "
            + ", ".join(f"{name} {share:.0%}" for name, share in f["waited"].items())
            + " of the time (each bot's event loop, runnable but not running)",
        ]
        if p.kill:
            k = p.kill
            if "error" in k:
                lines.append(f"  kill           NOT DONE: {k['error']}")
                continue
            failover_s = f["failover_s"]
            lines += [
                f"  kill           SIGKILL to {k['bot']} (send lease {k['holder']}; schedule lease"
                f" {k['schedule_holder']}) after {k['delivered_before']} call deliveries;"
                f" {f['delivered_in_last_second']} delivered in the second before",
                f"  failover       next bulk row sent {failover_s:.2f} s after the kill"
                if failover_s is not None
                else "  failover       no bulk row sent after the kill",
                f"                 (lease seen with {f['new_sender']}"
                f" {f['lease_moved_s'] or float('nan'):.2f} s after)"
                f" [target <= {TARGET_FAILOVER_S:g} s:"
                f" {verdict(failover_s is not None and failover_s <= TARGET_FAILOVER_S)}]",
                f"  at the kill    {f['unrecorded_at_kill']} rows delivered by the dead process but"
                f" not recorded as sent ({f['delivered_after_death']} of its sends answered after"
                f" its death); {f['duplicates_at_kill']} delivered twice across the kill,"
                f" {f['duplicates_elsewhere']} otherwise",
            ]
    rejected = result["rejected"]
    lines += [
        "",
        f"429s by recipient (from the fake's feed): {dict(rejected)}",
        f"PostgreSQL connections at most: {result['connections'][0]} to this run's database,"
        f" {result['connections'][1]} to the server (max_connections"
        f" {result['max_connections']}); each bot may open {POOL_SIZE + POOL_OVERFLOW} pooled"
        " and 3 more (dialog state, per-chat locks, leases)",
        f"collector pauses: fake {result['fake_info']['gc_max_ms']:.0f} ms longest,"
        f" driver {result['driver_gc_max_ms']:.0f} ms longest",
        f"bots' exit codes {result['exit_codes']}",
    ]
    for p in phases:
        for sample in p.samples:
            lines.append(f"  {p.name}: {sample}")
    for problem, count in result["log_problems"].most_common(12):
        lines.append(f"  log: {count} x {problem}")
    lines += [
        "",
        f"steady: 0 duplicates, 0 lost: {verdict(steady_ok)}; bulk rate <= {budget:g}/s and >="
        f" {TARGET_RATIO:g} of it: {verdict(rate_ok)}; every reminder once:"
        f" {verdict(s['reminders_once'])}",
    ]
    figures: dict[str, Any] = {
        "benchmark": "cluster",
        "database": kind,
        "processes": args.processes,
        "residents": args.residents,
        "members": args.members,
        "pace_s": args.pace,
        "outbox_rate": budget,
        "chat_interval": settings.chat_interval,
        "chat_burst": settings.chat_burst,
        "dialogs_completed": dialogs,
        "tickets": tickets,
        "tickets_unanswered": unanswered,
        "step_errors": errors,
        "step_p50_ms": round(ms(latencies, 0.5), 1),
        "step_p99_ms": round(ms(latencies, 0.99), 1),
        "updates_per_s": round(s["updates_per_s"], 1),
        "rows": s["rows"],
        "duplicates": s["extra_deliveries"],
        "fake_duplicates": s["fake"]["duplicates"],
        "lost": s["lost"],
        "bulk_rate": round(s["bulk_rate"], 2),
        "bulk_ratio": round(ratio, 3),
        "bulk_peak_1s": s["bulk_peak_1s"],
        "received_429": s["fake"]["rejected_429"],
        "received_429_by_kind": s["fake"]["by_kind"],
        "db_connections_peak": result["connections"][0],
        "server_connections_peak": result["connections"][1],
        "max_connections": result["max_connections"],
        "send_lease": s["leases"].get("send"),
        "sender_waited_for_cpu": round(s["waited"].get(s["leases"].get("send"), math.nan), 3),
        "schedule_lease": s["leases"].get("schedule"),
        "send_lease_moves": sum(1 for _, duty, _ in s["lease_moves"] if duty == "send"),
        "coming": s["coming"],
        "reminders": s["reminders_delivered"],
        "reminders_once": s["reminders_once"],
        "killed": None,
        "failover_s": None,
        "kill_rows": None,
        "kill_duplicates": None,
        "kill_unrecorded": None,
        "kill_lost": None,
        "kill_reminders_once": None,
    }
    ok = steady_ok and rate_ok and s["reminders_once"] and tickets_ok
    if failover is not None and failover.kill and "error" not in failover.kill:
        f = failover.figures
        figures.update(
            {
                "killed": failover.kill["bot"],
                "new_sender": f["new_sender"],
                "failover_s": None if f["failover_s"] is None else round(f["failover_s"], 2),
                "kill_rows": f["rows"],
                "kill_duplicates": f["extra_deliveries"],
                "kill_duplicates_elsewhere": f["duplicates_elsewhere"],
                "kill_unrecorded": f["unrecorded_at_kill"],
                "kill_lost": f["lost"],
                "kill_reminders_once": f["reminders_once"],
                "kill_received_429": f["fake"]["rejected_429"],
                "bulk_rate_after_failover": round(f["bulk_rate_after"], 2),
            }
        )
        failover_ok = (
            f["failover_s"] is not None
            and f["failover_s"] <= TARGET_FAILOVER_S
            and f["lost"] == 0
            and f["duplicates_elsewhere"] == 0
            and f["extra_deliveries"] <= f["unrecorded_at_kill"]
            and f["reminders_once"]
        )
        lines.append(
            f"failover: next bulk send within {TARGET_FAILOVER_S:g} s, 0 lost, duplicates only"
            f" of rows unrecorded at the kill, every reminder once: {verdict(failover_ok)}"
        )
        ok = ok and failover_ok
    elif failover is not None:
        ok = False
    figures["ok"] = ok
    print("\n".join(lines))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="a PostgreSQL server (a database of the run's own is made there and dropped)",
    )
    parser.add_argument("--processes", type=int, default=PROCESSES, help="`gridbot run`s")
    parser.add_argument("--residents", type=int, default=200, help="residents at a time")
    parser.add_argument("--members", type=int, default=5000, help="Party members called")
    parser.add_argument("--coming", type=int, default=50, help="members who say I'll come")
    parser.add_argument(
        "--pace", type=float, default=1.0, help="seconds between a resident's steps, at least"
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="each part lasts at least this long"
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="each part gives up after this long"
    )
    parser.add_argument("--step-timeout", type=float, default=20.0, help="per dialog step")
    parser.add_argument(
        "--reminder-minutes", type=float, default=1.0, help="GRIDBOT_CALL_REMINDER_MINUTES"
    )
    parser.add_argument(
        "--remind-after",
        type=float,
        default=15.0,
        help="seconds from posting a call to its reminder (after the kill in part 2)",
    )
    parser.add_argument(
        "--kill-at", type=float, default=0.5, help="share of the second call delivered at the kill"
    )
    parser.add_argument("--no-kill", action="store_true", help="skip the second part")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--logs", default=None, help="keep the bots' logs in this directory")
    parser.add_argument(
        "--gridbot-command",
        default=None,
        help="run this instead of `python -m bot run` (e.g. a variant under test)",
    )
    parser.add_argument("--serve-fake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        asyncio.run(serve_fake("127.0.0.1"))
        return
    if not 0 < args.kill_at < 1:
        parser.error("--kill-at must be between 0 and 1")
    if args.coming * 2 > args.members:
        parser.error("--coming must be at most half of --members (two calls, different members)")
    kind_url = sa.engine.make_url(args.database_url)
    if kind_url.get_backend_name() != "postgresql":
        parser.error("--database-url must be a PostgreSQL server: several processes share it")

    process, args.fake_url, args.control = start_fake()
    args.fake_pid = process.pid
    try:
        with (
            tempfile.TemporaryDirectory(prefix="gridbot-cluster-") as workdir,
            database(args.database_url) as (url, kind),
        ):
            result = asyncio.run(run(args, url, workdir))
    finally:
        process.terminate()
        process.wait(timeout=10)
    print(json.dumps(report(args, kind, result)))


if __name__ == "__main__":
    main()
