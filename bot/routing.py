"""Routing by index: an update is offered only to the routers that have a handler for it.

aiogram offers a message or a button press to every router in turn until one takes it, and
each offer costs a round of its machinery (the router's middlewares wrapped, its filters
called with the update's whole context). gridbot has a dozen routers, most of them serving one
dialog or one family of buttons, so a resident's description passed ten routers before
reaching the report dialog's.

Here each router gets a gate worked out from its handlers' own filters when the dispatcher is
built: the callback-data prefixes of its buttons; the commands and the dialog states of its
message handlers. A router with any handler that the gate cannot describe (a bare F.text, a
wildcard state, a command given as a pattern) is always offered the update, so nothing that
would have matched is skipped, and the order of the routers is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiogram import Dispatcher, Router
from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.dispatcher.event.handler import HandlerObject
from aiogram.dispatcher.event.telegram import TelegramEventObserver
from aiogram.filters import Command, StateFilter
from aiogram.filters.callback_data import CallbackQueryFilter
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, Message, TelegramObject

# Update types routed by index; any other goes through aiogram's own walk.
INDEXED = ("message", "callback_query")


@dataclass(frozen=True)
class CallbackGate:
    """Buttons whose callback data starts with one of these prefixes."""

    prefixes: frozenset[str]

    def admits(self, query: CallbackQuery, raw_state: str | None) -> bool:
        data = query.data
        return data is not None and data.split(":", 1)[0] in self.prefixes


@dataclass(frozen=True)
class MessageGate:
    """Messages that are one of these commands, or that arrive in one of these states."""

    prefixes: str
    commands: frozenset[str]
    states: frozenset[str | None]

    def admits(self, message: Message, raw_state: str | None) -> bool:
        if raw_state in self.states:
            return True
        if not self.commands:
            return False
        # As aiogram's Command reads it: "/name@mention args".
        words = (message.text or message.caption or "").split(maxsplit=1)
        if not words or words[0][0] not in self.prefixes:
            return False
        return words[0][1:].partition("@")[0] in self.commands


class Always:
    """A router the gate cannot describe: it is offered every update."""

    def admits(self, event: TelegramObject, raw_state: str | None) -> bool:
        return True


ALWAYS = Always()
Gate = CallbackGate | MessageGate | Always


def callback_gate(handlers: list[HandlerObject]) -> Gate:
    """The callback-data prefixes of these handlers, if every one filters on callback data."""
    prefixes: set[str] = set()
    for handler in handlers:
        found = [
            f.callback.callback_data
            for f in handler.filters or []
            if isinstance(f.callback, CallbackQueryFilter)
        ]
        if not found or found[0].__separator__ != ":":
            return ALWAYS
        prefixes.add(found[0].__prefix__)
    return CallbackGate(frozenset(prefixes))


def message_gate(handlers: list[HandlerObject]) -> Gate:
    """The commands and states of these handlers, if every one asks for a state or a command."""
    prefixes: set[str] = set()
    commands: set[str] = set()
    states: set[str | None] = set()
    for handler in handlers:
        filters = [f.callback for f in handler.filters or []]
        state_filters = [f for f in filters if isinstance(f, StateFilter)]
        command_filters = [f for f in filters if isinstance(f, Command)]
        if state_filters:
            named = _state_names(state_filters[0].states)
            if named is None:
                return ALWAYS
            states.update(named)
        elif command_filters:
            command = command_filters[0]
            if command.ignore_case:
                return ALWAYS
            if not all(isinstance(c, str) for c in command.commands):
                return ALWAYS
            commands.update(command.commands)
            prefixes.update(command.prefix)
        else:
            return ALWAYS
    return MessageGate("".join(sorted(prefixes)), frozenset(commands), frozenset(states))


def _state_names(states: Iterable[Any]) -> set[str | None] | None:
    """The raw state strings a StateFilter lets through; None when it cannot be listed."""
    names: set[str | None] = set()
    for state in states:
        if state is None:
            names.add(None)
        elif isinstance(state, State):
            if state.state == "*":
                return None
            names.add(state.state)
        elif isinstance(state, type) and issubclass(state, StatesGroup):
            names.update(state.__all_states_names__)
        elif isinstance(state, str) and state != "*":
            names.add(state)
        else:
            return None
    return names


def gate_for(router: Router, update_type: str) -> Gate | None:
    """The router's gate for this update type; None when it has no handler for it at all."""
    if router.sub_routers:
        return ALWAYS
    observer: TelegramEventObserver = router.observers[update_type]
    if len(observer.outer_middleware) or observer._handler.filters:
        return ALWAYS
    if not observer.handlers:
        return None
    if update_type == "callback_query":
        return callback_gate(observer.handlers)
    return message_gate(observer.handlers)


class IndexedDispatcher(Dispatcher):
    """A Dispatcher that offers messages and button presses only to the routers whose gate
    admits them, in the routers' order. Routers must be included before `build_index`."""

    _index: dict[str, list[tuple[Router, Gate]]] | None = None

    def build_index(self) -> None:
        index: dict[str, list[tuple[Router, Gate]]] = {}
        for update_type in INDEXED:
            index[update_type] = [
                (router, gate)
                for router in self.sub_routers
                if (gate := gate_for(router, update_type)) is not None
            ]
        self._index = index

    def routers_for(
        self, update_type: str, event: TelegramObject, raw_state: str | None
    ) -> list[Router]:
        """The routers that will be offered this update, in order."""
        assert self._index is not None, "build_index() first"
        return [r for r, gate in self._index[update_type] if gate.admits(event, raw_state)]

    async def _propagate_event(
        self,
        observer: TelegramEventObserver | None,
        update_type: str,
        event: TelegramObject,
        **kwargs: Any,
    ) -> Any:
        routes = self._index.get(update_type) if self._index is not None else None
        if routes is None or (
            observer is not None and (observer.handlers or observer._handler.filters)
        ):
            # The dispatcher's own handlers or filters: aiogram's walk, which checks them.
            return await super()._propagate_event(observer, update_type, event, **kwargs)
        raw_state = kwargs.get("raw_state")
        for router, gate in routes:
            if not gate.admits(event, raw_state):
                continue
            response = await router.propagate_event(update_type=update_type, event=event, **kwargs)
            if response is not UNHANDLED:
                return response
        return UNHANDLED
