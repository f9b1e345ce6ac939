"""A fake Telegram Bot API server over real loopback HTTP, for tests and benchmarks.

In process: ``async with FakeTelegram() as fake: bot = Bot(fake.token, session=...)``.
As a separate process (so it doesn't share the bot's CPU)::

    python -m tests.fake_telegram --port 0 --global-per-s 30 --chat-interval-s 1.0 \
        --chat-burst 3 --recent-s 60 --paid-per-s 1000

prints one JSON line ``{"url": ...}`` on stdout once it listens, serves ``GET /_stats``,
``POST /_reset``, ``POST /_limits``, ``POST /_push`` and ``POST /_force_429``, and stops on
SIGTERM or SIGINT.

Flood limits (off until `limits()` is called; `limits()` with no arguments sets Telegram's):

- per chat, a token bucket: `chat_burst` messages at once, one more every `chat_interval_s`
  (refilled continuously, from the moment a send was accepted);
- overall, `global_per_s` sends in any sliding second, counting only sends to chats that
  did not write to the bot within `recent_s` (an update pushed into the fake from the chat:
  replies to a person who just wrote are not bulk);
- sends with allow_paid_broadcast=true are counted instead in a window of their own,
  `paid_per_s` per sliding second, and recorded as paid;
- `force_429(chat_id, retry_after)` refuses every send to one chat for a while.

A send over a limit is refused with 429 and parameters.retry_after (whole seconds, >= 1)
and delivers nothing. Each send request counts once, an album too. `stats()` counts the
429s by kind: chat, global, paid, forced (injected with force_429 or fail_next).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import signal
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from aiohttp import web

if TYPE_CHECKING:
    from aiogram import Bot

logger = logging.getLogger(__name__)

DEFAULT_TOKEN = "123456:TEST"

# Methods that put a message into a chat: they count against the rate limits.
_SEND_EXTRA = {"copymessage", "copymessages", "forwardmessage", "forwardmessages"}

# Form values arrive as strings; these are the fields whose real type is not a string.
_INT_FIELDS = frozenset(
    {
        "chat_id",
        "from_chat_id",
        "message_id",
        "offset",
        "limit",
        "timeout",
        "user_id",
        "reply_to_message_id",
        "message_thread_id",
        "cache_time",
        "max_connections",
        "live_period",
        "heading",
        "proximity_alert_radius",
    }
)
_FLOAT_FIELDS = frozenset({"latitude", "longitude", "horizontal_accuracy"})
_BOOL_FIELDS = frozenset(
    {
        "disable_notification",
        "protect_content",
        "show_alert",
        "drop_pending_updates",
        "disable_web_page_preview",
        "allow_sending_without_reply",
        "has_spoiler",
        "is_big",
        "allow_paid_broadcast",
    }
)
_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "media",
        "commands",
        "scope",
        "allowed_updates",
        "entities",
        "caption_entities",
        "link_preview_options",
        "reply_parameters",
        "message_ids",
        "options",
        "results",
    }
)


def is_send_method(method: str) -> bool:
    """Whether a Bot API method (any case) delivers a message and so counts against limits."""
    name = method.lower()
    return (name.startswith("send") and name != "sendchataction") or name in _SEND_EXTRA


@dataclass(slots=True)
class Call:
    """One request the fake received."""

    method: str
    params: dict[str, Any]
    at: float  # time.monotonic() when the request was handled
    status: int = 200
    description: str | None = None
    token: str = ""
    # How the parameters came: "json" (a JSON body), "form" (url-encoded or multipart), "query".
    encoding: str = ""

    @property
    def chat_id(self) -> int | str | None:
        return self.params.get("chat_id")

    @property
    def ok(self) -> bool:
        return self.status == 200


class _ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: dict | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


class _Drop(Exception):
    """Close the connection without an answer."""


@dataclass(slots=True)
class _Injection:
    remaining: int
    methods: frozenset[str] | None  # lower-case names; None: every method but getUpdates
    status: int = 0  # 0: drop the connection
    retry_after: int = 1  # for status 429

    def applies(self, lower: str) -> bool:
        if self.remaining <= 0:
            return False
        if self.methods is None:
            return lower != "getupdates"
        return lower in self.methods


@dataclass(slots=True)
class _Limits:
    global_per_s: int | None = None
    chat_interval_s: float | None = None
    chat_burst: int = 3
    recent_s: float = 60.0
    paid_per_s: int | None = None
    window: deque[float] = field(default_factory=deque)  # counted sends, last second
    paid_window: deque[float] = field(default_factory=deque)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float  # when `tokens` was last worked out


REJECTION_KINDS = ("chat", "global", "paid", "forced")


def _parse_value(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        if key in _INT_FIELDS:
            return int(value)
        if key in _FLOAT_FIELDS:
            return float(value)
    except ValueError:
        return value  # e.g. chat_id="@channel"
    if key in _BOOL_FIELDS:
        return value.lower() == "true"
    if key in _JSON_FIELDS and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _encoding(request: web.Request) -> str:
    if request.method == "GET":
        return "query"
    return "json" if request.content_type == "application/json" else "form"


def _json_response(status: int, body: dict) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body, ensure_ascii=False).encode(),
        content_type="application/json",
    )


class FakeTelegram:
    """An in-memory Bot API: records calls, queues updates, injects failures and rate limits."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: Iterable[str] = (DEFAULT_TOKEN,),
        username: str = "gridbot_test_bot",
        first_name: str = "Gridbot Test",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`monotonic` is the clock of the flood limits (tests may move it)."""
        self.host = host
        self._monotonic = monotonic
        self.port = port
        self.tokens = set(tokens)
        self.username = username
        self.first_name = first_name
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._stopping = False
        self._handlers: dict[str, Callable[[dict[str, Any], str], Any]] = {
            name.lower(): getattr(self, f"_m_{name}")
            for name in (
                "getMe",
                "getUpdates",
                "deleteWebhook",
                "setWebhook",
                "getWebhookInfo",
                "setMyCommands",
                "getMyCommands",
                "deleteMyCommands",
                "sendMessage",
                "sendPhoto",
                "sendDocument",
                "sendLocation",
                "sendVenue",
                "sendContact",
                "sendMediaGroup",
                "sendChatAction",
                "copyMessage",
                "forwardMessage",
                "editMessageText",
                "editMessageReplyMarkup",
                "editMessageCaption",
                "deleteMessage",
                "answerCallbackQuery",
                "getFile",
                "getChat",
                "close",
                "logOut",
            )
        }
        self._canonical = {name: handler.__name__[3:] for name, handler in self._handlers.items()}
        self.reset()

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def token(self) -> str:
        """A token the fake accepts (the default one if configured)."""
        return DEFAULT_TOKEN if DEFAULT_TOKEN in self.tokens else sorted(self.tokens)[0]

    async def start(self) -> str:
        """Listen on host:port (0 = a free port); returns the base URL for TelegramAPIServer."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        app.router.add_get("/_stats", self._handle_stats)
        app.router.add_post("/_reset", self._handle_reset)
        app.router.add_post("/_limits", self._handle_limits)
        app.router.add_post("/_push", self._handle_push)
        app.router.add_post("/_force_429", self._handle_force_429)
        self._stopping = False
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = site._server.sockets if site._server else []  # noqa: SLF001 - the bound port
        port = sockets[0].getsockname()[1]
        self.base_url = f"http://{self.host}:{port}"
        return self.base_url

    def make_bot(self, token: str | None = None, **kwargs: Any) -> Bot:
        """An aiogram Bot talking to this fake (close it with `await bot.session.close()`)."""
        # Imported here: the stand-alone server starts in 0.2 s instead of 3 s without aiogram.
        from aiogram import Bot
        from aiogram.client.session.aiohttp import AiohttpSession
        from aiogram.client.telegram import TelegramAPIServer

        session = AiohttpSession(api=TelegramAPIServer.from_base(self.base_url))
        return Bot(token or self.token, session=session, **kwargs)

    async def stop(self) -> None:
        """Stop serving; pending long polls return empty."""
        self._stopping = True
        self._notify_updates()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def reset(self) -> None:
        """Forget every call, message, update and injected failure (limits stay as set)."""
        self.calls: list[Call] = []
        self.rejected_429 = 0
        self.rejected_by_kind: Counter[str] = Counter(dict.fromkeys(REJECTION_KINDS, 0))
        self.paid_sent = 0  # messages delivered with allow_paid_broadcast
        self.duplicates = 0
        self.commands: dict[str, list[dict]] = {}
        self.webhook_url = ""
        self.files: dict[str, bytes] = {}
        self._sent: list[dict] = []
        self._consumed: set[int] = set()  # indexes into _sent taken by wait_for_message
        self._messages: dict[tuple[int | str, int], dict] = {}
        self._message_ids: dict[int | str, int] = {}
        self._updates: deque[dict] = deque()
        self._next_update_id = 1
        self._forbidden: set[int | str] = set()
        self._missing: set[int | str] = set()
        self.requests_received = 0  # counted on arrival, before any latency or failure
        self._injections: list[_Injection] = []
        self._latency = 0.0
        self._latency_methods: frozenset[str] | None = None
        self._buckets: dict[int | str, _Bucket] = {}
        self._wrote: dict[int | str, float] = {}  # chat -> monotonic time of its last update
        self._forced: dict[int | str, tuple[float, int]] = {}  # chat -> (until, retry_after)
        self._texts: Counter[tuple[int | str, str]] = Counter()
        self._per_chat: Counter[int | str] = Counter()
        self._methods: Counter[str] = Counter()
        self._send_times: list[float] = []
        self._callback_ids = 0
        if not hasattr(self, "_limits"):
            self._limits = _Limits()
        self._limits.window.clear()
        self._limits.paid_window.clear()
        for event in (getattr(self, "_update_event", None), getattr(self, "_change_event", None)):
            if event is not None:
                event.set()  # whoever waits looks again at the emptied state
        self._update_event = asyncio.Event()
        self._change_event = asyncio.Event()

    # -- configuration helpers -----------------------------------------------------------

    def limits(
        self,
        global_per_s: int | None = 30,
        chat_interval_s: float | None = 1.0,
        *,
        chat_burst: int = 3,
        recent_s: float = 60.0,
        paid_per_s: int | None = 1000,
    ) -> None:
        """Enforce Telegram's flood limits on sends (None switches a limit off).

        Per chat `chat_burst` messages at once, then one per `chat_interval_s`; overall
        `global_per_s` a second to chats that did not write within `recent_s`; paid
        broadcasts `paid_per_s` a second, counted apart.
        """
        if chat_burst < 1:
            raise ValueError("chat_burst must be >= 1")
        self._limits = _Limits(global_per_s, chat_interval_s, chat_burst, recent_s, paid_per_s)
        self._buckets.clear()

    def no_limits(self) -> None:
        self.limits(None, None, paid_per_s=None)

    def force_429(
        self, chat_id: int | str, retry_after: int, *, seconds: float | None = None
    ) -> None:
        """Refuse every send to the chat for `seconds` (default: retry_after) with 429.

        Each answer's retry_after is the time left, rounded up, at most `retry_after`: with
        `seconds` longer than `retry_after` the chat keeps answering `retry_after`.
        """
        if retry_after < 1:
            raise ValueError("retry_after must be >= 1")
        length = retry_after if seconds is None else seconds
        self._forced[chat_id] = (self._monotonic() + length, retry_after)

    def wrote(self, chat_id: int | str) -> None:
        """Count the chat as having just written to the bot (as pushing its update does)."""
        self._wrote[chat_id] = self._monotonic()

    def forbid(self, chat_id: int | str) -> None:
        """Calls to this chat get 403 "Forbidden: bot was blocked by the user"."""
        self._forbidden.add(chat_id)

    def allow(self, chat_id: int | str) -> None:
        """Undo forbid() and chat_not_found()."""
        self._forbidden.discard(chat_id)
        self._missing.discard(chat_id)

    def chat_not_found(self, chat_id: int | str) -> None:
        """Calls to this chat get 400 "Bad Request: chat not found"."""
        self._missing.add(chat_id)

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        *,
        methods: Iterable[str] | None = None,
        retry_after: int = 1,
    ) -> None:
        """The next n requests (all methods but getUpdates, unless `methods`) get `status`
        (500, 502, or 429 with `retry_after`, counted as forced)."""
        self._injections.append(_Injection(n, _lower_set(methods), status, retry_after))

    def drop_next(self, n: int = 1, *, methods: Iterable[str] | None = None) -> None:
        """The next n requests (all but getUpdates, unless `methods`) lose their connection."""
        self._injections.append(_Injection(n, _lower_set(methods), 0))

    def set_latency(self, seconds: float, *, methods: Iterable[str] | None = None) -> None:
        """Hold each request (or only `methods`) this long before handling it.

        A request whose client hung up meanwhile is recorded with status 0 and not delivered,
        as if it never reached Telegram.
        """
        self._latency = seconds
        self._latency_methods = _lower_set(methods)

    # -- updates -------------------------------------------------------------------------

    def push_update(self, update: dict) -> dict:
        """Queue an update for getUpdates; assigns update_id when missing.

        The update's chat counts as having just written (replies to it are not bulk).
        """
        update = dict(update)
        chat_id = _update_chat(update)
        if chat_id is not None:
            self.wrote(chat_id)
        if "update_id" not in update:
            update["update_id"] = self._next_update_id
        self._next_update_id = max(self._next_update_id, update["update_id"]) + 1
        self._updates.append(update)
        self._notify_updates()
        return update

    def start_update_ids_at(self, first: int) -> None:
        """Number the next updates from `first` (Telegram numbers a bot's updates on and on:
        a bot restarted against a new fake must not see update ids it handled before)."""
        self._next_update_id = max(self._next_update_id, first)

    def user(
        self,
        user_id: int,
        *,
        first_name: str | None = None,
        language_code: str | None = "zh-hans",
        username: str | None = None,
    ) -> dict:
        """A User object for a test person."""
        user: dict[str, Any] = {
            "id": user_id,
            "is_bot": False,
            "first_name": first_name or f"User {user_id}",
        }
        if language_code:
            user["language_code"] = language_code
        if username:
            user["username"] = username
        return user

    def push_message(
        self,
        user_id: int,
        text: str | None = None,
        *,
        chat_id: int | None = None,
        first_name: str | None = None,
        language_code: str | None = "zh-hans",
        username: str | None = None,
        **extra: Any,
    ) -> dict:
        """Queue a message from a user (private chat unless chat_id is given); returns the update.

        `extra` goes into the Message as is: location={...}, contact={...}, photo=[...],
        reply_to_message={...}, caption="..."; "/commands" get a bot_command entity.
        """
        chat = chat_id if chat_id is not None else user_id
        from_user = self.user(
            user_id, first_name=first_name, language_code=language_code, username=username
        )
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat),
            "date": int(time.time()),
            "chat": self._chat(chat, from_user),
            "from": from_user,
        }
        if text is not None:
            message["text"] = text
            if text.startswith("/"):
                command = text.split(maxsplit=1)[0]
                message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        message.update(extra)
        self._messages[(chat, message["message_id"])] = message
        return self.push_update({"message": message})

    def push_callback(
        self,
        user_id: int,
        data: str,
        message_id: int,
        *,
        chat_id: int | None = None,
        first_name: str | None = None,
        language_code: str | None = "zh-hans",
    ) -> dict:
        """Queue a button press on a message the bot sent (message_id in the user's chat)."""
        chat = chat_id if chat_id is not None else user_id
        from_user = self.user(user_id, first_name=first_name, language_code=language_code)
        message = self._messages.get((chat, message_id)) or {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": self._chat(chat, from_user),
            "from": self._bot_user(),
            "text": "",
        }
        self._callback_ids += 1
        callback = {
            "id": f"cb{self._callback_ids}",
            "from": from_user,
            "chat_instance": f"ci{chat}",
            "message": _public_message(message),
            "data": data,
        }
        return self.push_update({"callback_query": callback})

    @property
    def pending_updates(self) -> int:
        return len(self._updates)

    # -- inspection ----------------------------------------------------------------------

    def sent(self, chat_id: int | str | None = None) -> list[dict]:
        """Messages delivered (in order), optionally to one chat.

        Each is the Message returned to the bot plus "method", "at" (monotonic) and the
        reply_markup exactly as sent (reply keyboards too, which Telegram doesn't echo).
        """
        if chat_id is None:
            return list(self._sent)
        return [m for m in self._sent if m["chat"]["id"] == chat_id]

    def calls_to(self, method: str, chat_id: int | str | None = None) -> list[Call]:
        """Recorded calls of one method (any case), optionally to one chat."""
        lower = method.lower()
        return [
            c
            for c in self.calls
            if c.method.lower() == lower and (chat_id is None or c.chat_id == chat_id)
        ]

    async def wait_for_message(
        self,
        chat_id: int | str,
        predicate: Callable[[dict], bool] | None = None,
        timeout: float = 5.0,
    ) -> dict:
        """The oldest delivered message to chat_id not yet returned here that matches predicate.

        Each message is returned once, so successive calls walk through the conversation.
        Raises TimeoutError (listing what the chat got) if none arrives in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            for index, message in enumerate(self._sent):
                if (
                    index not in self._consumed
                    and message["chat"]["id"] == chat_id
                    and (predicate is None or predicate(message))
                ):
                    self._consumed.add(index)
                    return message
            if not await self._wait_change(deadline):
                got = [m.get("text") or m.get("caption") or m["method"] for m in self.sent(chat_id)]
                raise TimeoutError(
                    f"no matching message to chat {chat_id} in {timeout}s; got {got}"
                )

    async def wait_for_call(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        timeout: float = 5.0,
        *,
        after: int = 0,
    ) -> Call:
        """The first successful `method` call (from calls[after:]) matching predicate."""
        lower = method.lower()
        deadline = time.monotonic() + timeout
        while True:
            for call in self.calls[after:]:
                if (
                    call.ok
                    and call.method.lower() == lower
                    and (predicate is None or predicate(call))
                ):
                    return call
            if not await self._wait_change(deadline):
                raise TimeoutError(f"no matching {method} call in {timeout}s")

    def stats(self, *, times: bool = False) -> dict[str, Any]:
        """Counters: delivered, per chat, 429s, duplicate (chat, text) deliveries, methods."""
        result: dict[str, Any] = {
            "delivered": len(self._send_times),
            "per_chat": {str(k): v for k, v in self._per_chat.items()},
            "rejected_429": self.rejected_429,
            "rejected_429_by_kind": dict(self.rejected_by_kind),
            "paid": self.paid_sent,
            "duplicates": self.duplicates,
            "calls": len(self.calls),
            "requests_received": self.requests_received,
            "methods": dict(self._methods),
            "first_send_at": self._send_times[0] if self._send_times else None,
            "last_send_at": self._send_times[-1] if self._send_times else None,
            "limits": {
                "global_per_s": self._limits.global_per_s,
                "chat_interval_s": self._limits.chat_interval_s,
                "chat_burst": self._limits.chat_burst,
                "recent_s": self._limits.recent_s,
                "paid_per_s": self._limits.paid_per_s,
            },
        }
        if times:
            result["send_times"] = list(self._send_times)
        return result

    # -- HTTP ----------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests_received += 1
        token = request.match_info["token"]
        method = request.match_info["method"]
        lower = method.lower()
        params = await self._read_params(request)
        canonical = self._canonical.get(lower, method)
        if token not in self.tokens:
            return self._error(canonical, params, token, 401, "Unauthorized")
        if self._latency and (self._latency_methods is None or lower in self._latency_methods):
            await asyncio.sleep(self._latency)
            transport = request.transport
            if transport is None or transport.is_closing():
                self._record(canonical, params, token, 0, "client went away")
                return web.Response(status=499)
        try:
            for injection in self._injections:
                if injection.applies(lower):
                    injection.remaining -= 1
                    if injection.status == 0:
                        raise _Drop
                    if injection.status == 429:
                        self._reject("forced", injection.retry_after)
                    description = (
                        "Internal Server Error" if injection.status == 500 else "Bad Gateway"
                    )
                    raise _ApiError(injection.status, description)
            handler = self._handlers.get(lower)
            if handler is None:
                raise _ApiError(404, "Not Found")
            chat_id = params.get("chat_id")
            if chat_id is not None and chat_id in self._forbidden:
                raise _ApiError(403, "Forbidden: bot was blocked by the user")
            if chat_id is not None and chat_id in self._missing:
                raise _ApiError(400, "Bad Request: chat not found")
            send = is_send_method(lower)
            if send:
                self._check_limits(chat_id, bool(params.get("allow_paid_broadcast")))
            result = handler(params, token)
            if asyncio.iscoroutine(result):
                result = await result
        except _Drop:
            self._record(canonical, params, token, 0, "dropped")
            transport = request.transport
            if transport is not None:
                transport.abort()
            return web.Response(status=499)  # never written: the connection is gone
        except _ApiError as exc:
            return self._error(canonical, params, token, exc.code, exc.description, exc.parameters)
        self._record(canonical, params, token, 200, encoding=_encoding(request))
        return _json_response(200, {"ok": True, "result": result})

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        if request.method == "GET":
            raw: dict[str, Any] = dict(request.query)
        elif request.content_type == "application/json":
            body = await request.read()
            return dict(json.loads(body)) if body else {}
        else:
            raw = {}
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    content = value.file.read()
                    raw[key] = {
                        "filename": value.filename,
                        "size": len(content),
                        "content": content,
                    }
                else:
                    raw[key] = value
            raw.update(request.query)
        params = {key: _parse_value(key, value) for key, value in raw.items()}
        files = {k: v for k, v in params.items() if isinstance(v, dict) and "filename" in v}
        if files:
            # Uploads arrive as a separate part referenced by "attach://<name>".
            for key, value in list(params.items()):
                if isinstance(value, str) and value.startswith("attach://"):
                    params[key] = files.get(value[9:], value)
            for item in params.get("media") or ():
                ref = item.get("media") if isinstance(item, dict) else None
                if isinstance(ref, str) and ref.startswith("attach://"):
                    item["media"] = files.get(ref[9:], ref)
            for name in files:
                params.pop(name, None)
        return params

    def _error(
        self,
        method: str,
        params: dict[str, Any],
        token: str,
        code: int,
        description: str,
        parameters: dict | None = None,
    ) -> web.Response:
        self._record(method, params, token, code, description)
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            body["parameters"] = parameters
        return _json_response(code, body)

    def _record(
        self,
        method: str,
        params: dict[str, Any],
        token: str,
        status: int,
        description: str | None = None,
        encoding: str = "",
    ) -> None:
        self.calls.append(
            Call(method, params, time.monotonic(), status, description, token, encoding)
        )
        self._methods[method] += 1
        self._notify_change()

    def _check_limits(self, chat_id: int | str | None, paid: bool) -> None:
        """Refuse a send over a limit with 429; else count it against the limits."""
        limits = self._limits
        now = self._monotonic()
        forced = self._forced.get(chat_id) if chat_id is not None else None
        if forced is not None:
            until, retry_after = forced
            if now < until:
                self._reject("forced", min(retry_after, until - now))
            del self._forced[chat_id]
        bucket = None
        if limits.chat_interval_s and chat_id is not None:
            bucket = self._buckets.get(chat_id)
            if bucket is None:
                bucket = self._buckets[chat_id] = _Bucket(limits.chat_burst, now)
            refill = (now - bucket.at) / limits.chat_interval_s
            bucket.tokens = min(limits.chat_burst, bucket.tokens + refill)
            bucket.at = now
            if bucket.tokens < 1:
                self._reject("chat", (1 - bucket.tokens) * limits.chat_interval_s)
        window = None
        if paid:
            if limits.paid_per_s:
                window = limits.paid_window
                self._check_window(window, limits.paid_per_s, now, "paid")
        elif limits.global_per_s and not self._just_wrote(chat_id, now):
            window = limits.window
            self._check_window(window, limits.global_per_s, now, "global")
        if window is not None:
            window.append(now)
        if bucket is not None:
            bucket.tokens -= 1

    def _just_wrote(self, chat_id: int | str | None, now: float) -> bool:
        wrote = self._wrote.get(chat_id) if chat_id is not None else None
        return wrote is not None and now - wrote < self._limits.recent_s

    def _check_window(self, window: deque[float], limit: int, now: float, kind: str) -> None:
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= limit:
            self._reject(kind, window[0] + 1.0 - now)

    def _reject(self, kind: str, wait: float) -> NoReturn:
        self.rejected_429 += 1
        self.rejected_by_kind[kind] += 1
        retry_after = max(1, math.ceil(wait))
        raise _ApiError(
            429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
        )

    async def _handle_file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] not in self.tokens:
            return web.Response(status=401)
        path = request.match_info["path"]
        file_id = path.rsplit("/", 1)[-1].split(".", 1)[0]
        return web.Response(body=self.files.get(file_id, b"fake file " + file_id.encode()))

    async def _handle_stats(self, request: web.Request) -> web.Response:
        return _json_response(200, self.stats(times=request.query.get("times") == "1"))

    async def _handle_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return _json_response(200, {"ok": True})

    async def _handle_limits(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.limits(
            body.get("global_per_s"),
            body.get("chat_interval_s"),
            chat_burst=body.get("chat_burst", 3),
            recent_s=body.get("recent_s", 60.0),
            paid_per_s=body.get("paid_per_s"),
        )
        return _json_response(200, {"ok": True})

    async def _handle_force_429(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.force_429(body["chat_id"], body["retry_after"], seconds=body.get("seconds"))
        return _json_response(200, {"ok": True})

    async def _handle_push(self, request: web.Request) -> web.Response:
        return _json_response(200, {"ok": True, "result": self.push_update(await request.json())})

    # -- events --------------------------------------------------------------------------

    def _notify_updates(self) -> None:
        event, self._update_event = self._update_event, asyncio.Event()
        event.set()

    def _notify_change(self) -> None:
        event, self._change_event = self._change_event, asyncio.Event()
        event.set()

    async def _wait_change(self, deadline: float) -> bool:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            await asyncio.wait_for(self._change_event.wait(), remaining)
        except TimeoutError:
            return False
        return True

    # -- objects -------------------------------------------------------------------------

    def _bot_user(self) -> dict:
        bot_id = int(self.token.split(":", 1)[0])
        return {
            "id": bot_id,
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
        }

    def _chat(self, chat_id: int | str, user: dict | None = None) -> dict:
        if isinstance(chat_id, int) and chat_id > 0:
            chat: dict[str, Any] = {"id": chat_id, "type": "private"}
            chat["first_name"] = (user or {}).get("first_name", f"User {chat_id}")
            return chat
        return {"id": chat_id, "type": "supergroup", "title": f"Group {chat_id}"}

    def _next_message_id(self, chat_id: int | str) -> int:
        value = self._message_ids.get(chat_id, 0) + 1
        self._message_ids[chat_id] = value
        return value

    def _deliver(self, method: str, params: dict[str, Any], **content: Any) -> dict:
        chat_id = _require(params, "chat_id")
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat_id),
            "date": int(time.time()),
            "chat": self._chat(chat_id),
            "from": self._bot_user(),
        }
        message.update({k: v for k, v in content.items() if v is not None})
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            message["reply_markup"] = markup  # Telegram echoes only inline keyboards
        self._messages[(chat_id, message["message_id"])] = message
        paid = bool(params.get("allow_paid_broadcast"))
        record = dict(message, method=method, at=time.monotonic(), paid=paid)
        self.paid_sent += paid
        if markup is not None:
            record["reply_markup"] = markup
        self._sent.append(record)
        now = record["at"]
        self._send_times.append(now)
        self._per_chat[chat_id] += 1
        body = message.get("text") or message.get("caption")
        if body:
            key = (chat_id, body)
            self._texts[key] += 1
            if self._texts[key] > 1:
                self.duplicates += 1
        return message

    def _find(self, params: dict[str, Any], action: str) -> dict:
        chat_id = _require(params, "chat_id")
        message_id = _require(params, "message_id")
        message = self._messages.get((chat_id, message_id))
        if message is None:
            raise _ApiError(400, f"Bad Request: message to {action} not found")
        return message

    # -- methods -------------------------------------------------------------------------

    def _m_getMe(self, params: dict, token: str) -> dict:
        return {
            "id": int(token.split(":", 1)[0]),
            "is_bot": True,
            "first_name": self.first_name,
            "username": self.username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _m_getUpdates(self, params: dict, token: str) -> list[dict]:
        offset = params.get("offset")
        if offset:
            if offset < 0:
                while len(self._updates) > -offset:
                    self._updates.popleft()
            else:
                while self._updates and self._updates[0]["update_id"] < offset:
                    self._updates.popleft()
        limit = min(max(params.get("limit") or 100, 1), 100)
        deadline = time.monotonic() + (params.get("timeout") or 0)
        while not self._updates and not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._update_event.wait(), remaining)
        return [self._updates[i] for i in range(min(limit, len(self._updates)))]

    def _m_deleteWebhook(self, params: dict, token: str) -> bool:
        self.webhook_url = ""
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    def _m_setWebhook(self, params: dict, token: str) -> bool:
        self.webhook_url = _require(params, "url")
        return True

    def _m_getWebhookInfo(self, params: dict, token: str) -> dict:
        return {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    @staticmethod
    def _commands_key(params: dict) -> str:
        scope = params.get("scope") or {"type": "default"}
        return f"{json.dumps(scope, sort_keys=True)}|{params.get('language_code') or ''}"

    def _m_setMyCommands(self, params: dict, token: str) -> bool:
        self.commands[self._commands_key(params)] = list(_require(params, "commands"))
        return True

    def _m_getMyCommands(self, params: dict, token: str) -> list[dict]:
        return self.commands.get(self._commands_key(params), [])

    def _m_deleteMyCommands(self, params: dict, token: str) -> bool:
        self.commands.pop(self._commands_key(params), None)
        return True

    def my_commands(self, language_code: str = "", scope: dict | None = None) -> list[dict]:
        """Commands set for a language_code ("" = default) and scope (default scope)."""
        return self.commands.get(
            self._commands_key({"scope": scope, "language_code": language_code}), []
        )

    def _m_sendMessage(self, params: dict, token: str) -> dict:
        return self._deliver("sendMessage", params, text=_require(params, "text"))

    def _photo(self, params: dict) -> list[dict]:
        photo = params.get("photo")
        file_id = photo if isinstance(photo, str) else f"photo{len(self._sent) + 1}"
        return [{"file_id": file_id, "file_unique_id": f"u{file_id}", "width": 640, "height": 480}]

    def _m_sendPhoto(self, params: dict, token: str) -> dict:
        return self._deliver(
            "sendPhoto", params, photo=self._photo(params), caption=params.get("caption")
        )

    def _m_sendDocument(self, params: dict, token: str) -> dict:
        document = params.get("document")
        file_id = document if isinstance(document, str) else f"doc{len(self._sent) + 1}"
        return self._deliver(
            "sendDocument",
            params,
            document={"file_id": file_id, "file_unique_id": f"u{file_id}"},
            caption=params.get("caption"),
        )

    def _m_sendLocation(self, params: dict, token: str) -> dict:
        location = {
            "latitude": _require(params, "latitude"),
            "longitude": _require(params, "longitude"),
        }
        return self._deliver("sendLocation", params, location=location)

    def _m_sendVenue(self, params: dict, token: str) -> dict:
        location = {
            "latitude": _require(params, "latitude"),
            "longitude": _require(params, "longitude"),
        }
        venue = {
            "location": location,
            "title": _require(params, "title"),
            "address": _require(params, "address"),
        }
        return self._deliver("sendVenue", params, venue=venue, location=location)

    def _m_sendContact(self, params: dict, token: str) -> dict:
        contact = {
            "phone_number": _require(params, "phone_number"),
            "first_name": _require(params, "first_name"),
        }
        return self._deliver("sendContact", params, contact=contact)

    def _m_sendMediaGroup(self, params: dict, token: str) -> list[dict]:
        media = _require(params, "media")
        if not isinstance(media, list) or not 1 <= len(media) <= 10:
            raise _ApiError(400, "Bad Request: wrong number of media")
        group = f"mg{len(self._sent) + 1}"
        messages = []
        for item in media:
            content: dict[str, Any] = {"media_group_id": group, "caption": item.get("caption")}
            ref = item.get("media")
            file_id = ref if isinstance(ref, str) else None
            file_id = file_id or f"media{len(self._sent) + 1}"
            if item.get("type") == "photo":
                content["photo"] = [
                    {
                        "file_id": file_id,
                        "file_unique_id": f"u{file_id}",
                        "width": 640,
                        "height": 480,
                    }
                ]
            else:
                content["document"] = {"file_id": file_id, "file_unique_id": f"u{file_id}"}
            messages.append(self._deliver("sendMediaGroup", params, **content))
        return messages

    def _m_sendChatAction(self, params: dict, token: str) -> bool:
        _require(params, "chat_id")
        return True

    def _m_copyMessage(self, params: dict, token: str) -> dict:
        source = self._find(
            {"chat_id": _require(params, "from_chat_id"), "message_id": params.get("message_id")},
            "copy",
        )
        content = {
            k: v
            for k, v in source.items()
            if k not in ("message_id", "date", "chat", "from", "reply_markup", "entities")
        }
        if "caption" in params:
            content["caption"] = params["caption"]
        message = self._deliver("copyMessage", params, **content)
        return {"message_id": message["message_id"]}

    def _m_forwardMessage(self, params: dict, token: str) -> dict:
        source = self._find(
            {"chat_id": _require(params, "from_chat_id"), "message_id": params.get("message_id")},
            "forward",
        )
        content = {
            k: v
            for k, v in source.items()
            if k not in ("message_id", "date", "chat", "from", "reply_markup")
        }
        return self._deliver("forwardMessage", params, **content)

    def _edit(self, params: dict, **changes: Any) -> dict:
        if "inline_message_id" in params:
            return True  # type: ignore[return-value] - Telegram answers True for inline messages
        message = self._find(params, "edit")
        markup = params.get("reply_markup")
        new = dict(message, **{k: v for k, v in changes.items() if v is not None})
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            new["reply_markup"] = markup
        else:
            new.pop("reply_markup", None)
        if new == message:
            raise _ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message",
            )
        new["edit_date"] = int(time.time())
        self._messages[(message["chat"]["id"], message["message_id"])] = new
        return new

    def _m_editMessageText(self, params: dict, token: str) -> dict:
        return self._edit(params, text=_require(params, "text"))

    def _m_editMessageCaption(self, params: dict, token: str) -> dict:
        return self._edit(params, caption=params.get("caption"))

    def _m_editMessageReplyMarkup(self, params: dict, token: str) -> dict:
        return self._edit(params)

    def _m_deleteMessage(self, params: dict, token: str) -> bool:
        message = self._find(params, "delete")
        del self._messages[(message["chat"]["id"], message["message_id"])]
        return True

    def _m_answerCallbackQuery(self, params: dict, token: str) -> bool:
        _require(params, "callback_query_id")
        return True

    def _m_getFile(self, params: dict, token: str) -> dict:
        file_id = _require(params, "file_id")
        size = len(self.files.get(file_id, b"fake file " + file_id.encode()))
        return {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_size": size,
            "file_path": f"files/{file_id}.jpg",
        }

    def _m_getChat(self, params: dict, token: str) -> dict:
        return self._chat(_require(params, "chat_id"))

    def _m_close(self, params: dict, token: str) -> bool:
        return True

    def _m_logOut(self, params: dict, token: str) -> bool:
        return True


def _public_message(message: dict) -> dict:
    return {k: v for k, v in message.items() if k not in ("method", "at", "paid")}


def _require(params: dict[str, Any], key: str) -> Any:
    value = params.get(key)
    if value is None or value == "":
        raise _ApiError(400, f"Bad Request: {key} is empty")
    return value


def _update_chat(update: dict) -> int | str | None:
    """The chat an update came from, if it names one."""
    for key in ("message", "edited_message", "channel_post", "business_message"):
        if isinstance(update.get(key), dict):
            return (update[key].get("chat") or {}).get("id")
    callback = update.get("callback_query")
    if isinstance(callback, dict):
        message = callback.get("message")
        if isinstance(message, dict) and message.get("chat"):
            return message["chat"].get("id")
        return (callback.get("from") or {}).get("id")
    for key in ("my_chat_member", "chat_member", "chat_join_request"):
        if isinstance(update.get(key), dict):
            return (update[key].get("chat") or {}).get("id")
    return None


def _lower_set(methods: Iterable[str] | None) -> frozenset[str] | None:
    return None if methods is None else frozenset(m.lower() for m in methods)


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeTelegram(host=args.host, port=args.port, tokens=args.token or [DEFAULT_TOKEN])
    fake.limits(
        args.global_per_s,
        args.chat_interval_s,
        chat_burst=args.chat_burst,
        recent_s=args.recent_s,
        paid_per_s=args.paid_per_s,
    )
    url = await fake.start()
    print(json.dumps({"url": url, "token": fake.token}), flush=True)  # noqa: T201 - CLI
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await fake.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake Telegram Bot API server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--token", action="append", help="accepted token (repeatable)")
    parser.add_argument("--global-per-s", type=int, default=None, help="sends per 1 s window")
    parser.add_argument(
        "--chat-interval-s", type=float, default=None, help="seconds per send to a chat, sustained"
    )
    parser.add_argument(
        "--chat-burst", type=int, default=3, help="sends a chat may get at once (token bucket)"
    )
    parser.add_argument(
        "--recent-s",
        type=float,
        default=60.0,
        help="a chat that wrote within this many seconds gets replies outside the global limit",
    )
    parser.add_argument(
        "--paid-per-s", type=int, default=1000, help="paid broadcasts per 1 s window"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
