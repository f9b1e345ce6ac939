"""Gates: a router turns an update away only when none of its handlers (nor its nested
routers') could take it; every filter runs on the event loop."""

from __future__ import annotations

import enum
import itertools
import typing
from typing import Any

import pytest
from aiogram import Dispatcher, Router
from aiogram.filters import Command, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import Message

import handlers
from bot.app import COMMANDS, build_dispatcher
from bot.routing import ALWAYS, CallbackGate, MessageGate, gate_for, install_gates
from bot.settings import Settings
from domain.clock import FrozenClock
from domain.languages import LANGUAGES
from handlers.filters import Label
from tests.factories import PHOTO, tg_message, tg_query
from views.i18n import translator


@pytest.fixture
def dp(clock: FrozenClock) -> Dispatcher:
    settings = Settings(_env_file=None, bot_token="1:x")
    return build_dispatcher(settings=settings, sessionmaker=None, clock=clock)


def _leaves(router: Router) -> list[Router]:
    """The routers with handlers of their own, in the order aiogram tries them."""
    nested = [leaf for r in router.sub_routers for leaf in _leaves(r)]
    return [router, *nested] if not router.sub_routers else nested


def _all_states() -> list[str | None]:
    groups: set[type[StatesGroup]] = set()
    stack = list(StatesGroup.__subclasses__())
    while stack:
        group = stack.pop()
        groups.add(group)
        stack.extend(group.__subclasses__())
    states = sorted({name for g in groups for name in g.__all_states_names__})
    return [None, *states, "Nobody:knows"]


def _labels(dp: Dispatcher) -> list[str]:
    """The reply-keyboard labels the handlers listen for, in every language."""
    keys = {
        key
        for router in _leaves(dp)
        for handler in router.message.handlers
        for f in handler.filters or []
        if isinstance(f.callback, Label)
        for key in f.callback.keys
    }
    assert keys
    return [translator(language)(key) for key in sorted(keys) for language in LANGUAGES]


def _messages(dp: Dispatcher) -> list[Message]:
    texts = [f"/{c}" for c in COMMANDS] + _labels(dp)
    texts += ["/report@gridbot_test_bot", "/report now", " /my", "/REPORT", "/invite x", "/"]
    texts += ["hello", "/nosuchcommand", "12", "取消"]
    found = [tg_message(t) for t in texts]
    found.append(tg_message(None, photo=PHOTO, caption="/report"))
    found.append(tg_message(None, photo=PHOTO))
    found.append(tg_message(None, location={"latitude": 30.0, "longitude": 120.0}))
    found.append(tg_message(None, sticker={
        "file_id": "s", "file_unique_id": "u", "type": "regular", "width": 1, "height": 1,
        "is_animated": False, "is_video": False,
    }))  # fmt: skip
    return found


def _callback_classes() -> list[type[CallbackData]]:
    found: list[type[CallbackData]] = []
    stack = list(CallbackData.__subclasses__())
    while stack:
        cls = stack.pop()
        found.append(cls)
        stack.extend(cls.__subclasses__())
    return found


def _field_values(annotation: Any, words: list[str]) -> list[Any]:
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return list(annotation)
    if annotation is bool:
        return [True, False]
    if annotation is int:
        return [1, 0]
    if typing.get_origin(annotation) is not None:  # Optional[...] and the like
        return [v for a in typing.get_args(annotation) for v in _field_values(a, words)]
    if annotation is type(None):
        return [None]
    return words


def _callback_data() -> list[str]:
    """Every callback class packed with a spread of field values."""
    classes = _callback_classes()
    words = ["my", "queue", "x", "a", "1", "calls", "posts"]
    for cls in classes:
        for hint in typing.get_type_hints(cls).values():
            if isinstance(hint, type) and issubclass(hint, enum.Enum):
                words.extend(str(m.value) for m in hint)
    packed: set[str] = set()
    for cls in classes:
        hints = typing.get_type_hints(cls)
        names = list(cls.model_fields)
        choices = [_field_values(hints[n], words) for n in names]
        for combo in itertools.islice(itertools.product(*choices), 400):
            try:
                packed.add(cls(**dict(zip(names, combo, strict=True))).pack())
            except (ValueError, TypeError):
                continue
    return sorted(packed) + ["", "zz:1", "nothing"]


class _Bot:
    """What Command asks of the bot: its username, for "/report@gridbot_test_bot"."""

    async def me(self) -> Any:
        return type("Me", (), {"username": "gridbot_test_bot"})()


def _context(router: Router, raw_state: str | None) -> dict[str, Any]:
    return {"raw_state": raw_state, "bot": _Bot(), "event_router": router, "translator": translator}


async def offered(dp: Dispatcher, update_type: str, event: Any, raw_state: str | None) -> list[str]:
    """The routers with handlers that aiogram reaches with this event: those whose gate, and
    every gate above them, let it through (aiogram checks a router's own filters before its
    handlers and its nested routers)."""
    found: list[str] = []

    async def walk(router: Router) -> None:
        admitted, _ = await router.observers[update_type].check_root_filters(
            event, **_context(router, raw_state)
        )
        if not admitted:
            return
        if router.observers[update_type].handlers:
            found.append(router.name)
        for nested in router.sub_routers:
            await walk(nested)

    for router in dp.sub_routers:
        await walk(router)
    return found


async def _takes(router: Router, update_type: str, event: Any, raw_state: str | None) -> bool:
    """Whether a handler of this router would take the event, by aiogram's own checks."""
    for handler in router.observers[update_type].handlers:
        ok, _ = await handler.check(event, **_context(router, raw_state))
        if ok:
            return True
    return False


async def test_no_router_that_would_take_a_message_is_skipped(dp: Dispatcher) -> None:
    checked = taken = 0
    for message in _messages(dp):
        for raw_state in _all_states():
            reached = await offered(dp, "message", message, raw_state)
            for router in _leaves(dp):
                if await _takes(router, "message", message, raw_state):
                    taken += 1
                    assert router.name in reached, (router.name, message.text, raw_state)
            checked += 1
    # The check saw real matches, not only refusals.
    assert checked > 500 and taken > checked


async def test_no_router_that_would_take_a_button_is_skipped(dp: Dispatcher) -> None:
    taken_by: set[str] = set()
    data = _callback_data()
    assert len(data) > 100
    for value in data:
        query = tg_query(value)
        for raw_state in (None, "Report:description"):
            reached = await offered(dp, "callback_query", query, raw_state)
            for router in _leaves(dp):
                if await _takes(router, "callback_query", query, raw_state):
                    taken_by.add(router.name)
                    assert router.name in reached, (router.name, value, raw_state)
    # Every router with buttons of its own took some of them.
    assert taken_by >= {"leader", "member", "resident", "whistle", "department", "posts"}


async def test_routers_are_skipped_for_what_they_cannot_take(dp: Dispatcher) -> None:
    async def names(update_type: str, event: Any, raw_state: str | None) -> list[str]:
        return await offered(dp, update_type, event, raw_state)

    # A report's description goes to the report dialog (and the fallback behind it), and not
    # through the /duty or /call dialogs' routers.
    assert await names("message", tg_message("a pothole"), "Report:description") == [
        "resident",
        "fallback",
    ]
    assert "member" in await names("message", tg_message("Li Ming"), "Register:name")
    assert "member" not in await names("message", tg_message("Li Ming"), "Report:description")
    assert "member" in await names("message", tg_message("/duty"), None)
    assert "member" in await names("message", tg_message("/duty@gridbot_test_bot"), "Report:photos")
    # Routers keep their order.
    order = [r.name for r in _leaves(dp)]
    reached = await names("message", tg_message("/cancel"), "Register:name")
    assert reached == sorted(reached, key=order.index)
    # A ticket button goes to the routers with "t" buttons only.
    assert await names("callback_query", tg_query("t:a:1"), None) == [
        "leader",
        "whistle",
        "fallback",
    ]


async def test_a_residents_update_passes_the_duties_routers_in_one_check(dp: Dispatcher) -> None:
    duties = next(r for r in dp.sub_routers if r.name == "duties")
    description = tg_message("a pothole")
    admitted, _ = await duties.message.check_root_filters(
        description, **_context(duties, "Report:description")
    )
    assert not admitted
    # While a member's registration is under way, the same words reach the member's router.
    admitted, _ = await duties.message.check_root_filters(
        description, **_context(duties, "Register:name")
    )
    assert admitted


def test_gates_describe_only_what_they_can() -> None:
    class Dialog(StatesGroup):
        one = State()

    narrow = Router(name="narrow")
    narrow.message.register(lambda m: None, Command("go"))
    narrow.message.register(lambda m: None, StateFilter(Dialog))
    narrow.message.register(lambda m: None, StateFilter(None))
    gate = gate_for(narrow, "message")
    assert gate == MessageGate("/", frozenset({"go"}), frozenset({"Dialog:one", None}))
    assert gate_for(narrow, "callback_query") is None  # no handler: never offered

    class Data(CallbackData, prefix="dd"):
        n: int

    buttons = Router(name="buttons")
    buttons.callback_query.register(lambda q: None, Data.filter())
    assert gate_for(buttons, "callback_query") == CallbackGate(frozenset({"dd"}))

    # What a gate cannot list: any state, a case-blind command, a plain text handler, a
    # router-wide filter, a button without callback data.
    wide = [
        StateFilter("*"),
        Command("go", ignore_case=True),
    ]
    for f in wide:
        router = Router()
        router.message.register(lambda m: None, f)
        assert gate_for(router, "message") is ALWAYS, f
    router = Router()
    router.message.register(lambda m: None)
    assert gate_for(router, "message") is ALWAYS
    # A router's own filters stay: its gate is added to them.
    router = Router()
    router.message.filter(StateFilter(Dialog))
    router.message.register(lambda m: None, StateFilter(Dialog))
    assert gate_for(router, "message") == MessageGate("", frozenset(), frozenset({"Dialog:one"}))
    # A router with nested routers: the union of theirs; with one beyond a gate, none.
    parent = Router()
    parent.include_routers(narrow, buttons)
    assert gate_for(parent, "message") == gate_for(narrow, "message")
    assert gate_for(parent, "callback_query") == CallbackGate(frozenset({"dd"}))
    wide_child = Router()
    wide_child.message.register(lambda m: None)
    parent.include_router(wide_child)
    assert gate_for(parent, "message") is ALWAYS
    router = Router()
    router.callback_query.register(lambda q: None)
    assert gate_for(router, "callback_query") is ALWAYS


def test_every_router_of_the_bot_has_its_gates(dp: Dispatcher) -> None:
    """No router of the bot is beyond a gate (the fallback, which takes everything, aside):
    a handler that a gate cannot describe would make every update visit its router."""
    assert [r.name for r in dp.sub_routers] == [r.name for r in handlers.routers()]
    for router in _leaves(dp):
        if router.name == "fallback":
            continue
        for update_type in ("message", "callback_query"):
            assert gate_for(router, update_type) is not ALWAYS, (update_type, router.name)


async def test_updates_reach_the_handler_aiogram_would_pick() -> None:
    from aiogram import Bot
    from aiogram.types import Update

    ran: list[str] = []

    def router(name: str, *filters: Any) -> Router:
        r = Router(name=name)

        async def handle(message: Message) -> None:
            ran.append(name)

        r.message.register(handle, *filters)
        return r

    def dispatcher() -> Dispatcher:
        dp = Dispatcher()
        routers = [router("dialog", StateFilter("Dialog:one")), router("go", Command("go"))]
        family = Router(name="family")
        family.include_routers(*routers)
        for r in (family, rest := router("rest")):
            install_gates(r)
        dp.include_routers(family, rest)
        return dp

    bot = Bot("1:x")
    dp = dispatcher()

    async def feed(text: str) -> str:
        ran.clear()
        update = Update.model_validate({"update_id": 1, "message": tg_message(text).model_dump()})
        await dp.feed_update(bot, update)
        return ",".join(ran)

    assert await feed("/go now") == "go"
    assert await feed("hello") == "rest"
    # The dispatcher's own filters still apply: none of its routers sees what they refuse.
    dp = dispatcher()
    dp.message.filter(lambda message: message.text != "blocked")
    assert await feed("blocked") == ""
    assert await feed("/go") == "go"
    await bot.session.close()
