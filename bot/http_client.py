"""A small HTTP/1.1 client for the Bot API: POSTs of JSON bodies over kept-alive connections.

Every update the bot handles costs one or two calls to Telegram, and through aiohttp each
call went through its whole client machinery (timeouts, cookies, tracing, redirects, the
connector's bookkeeping): more CPU than the rest of the call together. The Bot API needs none
of it: one host, POST with a JSON body, an answer with a length. This client keeps up to
`limit` connections open (HTTP or HTTPS) and parses the answer as it arrives: a status line,
headers, then a Content-Length or chunked body, or one that ends with the connection.

A call is never repeated here: a connection that breaks mid-call raises, as aiohttp does, and
the caller (the outbox, aiogram's polling) decides what to do.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from urllib.parse import urlsplit

MAX_HEADER_BYTES = 64 * 1024


class HttpError(ConnectionError):
    """The connection broke, or the server's answer was not HTTP/1.x."""


class _Answer:
    """Parses one response from the bytes that arrive."""

    __slots__ = ("buffer", "status", "length", "chunked", "keep_alive", "body", "head_done")

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.status = 0
        self.length: int | None = None
        self.chunked = False
        self.keep_alive = True
        self.body = bytearray()
        self.head_done = False

    def feed(self, data: bytes) -> bool:
        """Take bytes; True once the response is complete."""
        self.buffer += data
        while not self.head_done:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER_BYTES:
                    raise HttpError("response headers too long")
                return False
            head = bytes(self.buffer[:end]).decode("latin-1")
            del self.buffer[: end + 4]
            self._parse_head(head)
        if self.chunked:
            return self._feed_chunks()
        if self.length is not None:
            if len(self.buffer) >= self.length:
                self.body = self.buffer[: self.length]
                del self.buffer[: self.length]
                return True
            return False
        return False  # read until the server closes the connection

    def _parse_head(self, head: str) -> None:
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpError(f"not an HTTP response: {lines[0][:100]!r}")
        status = int(parts[1])
        if 100 <= status < 200:
            return  # an interim answer (100 Continue): the real one follows
        self.status = status
        self.head_done = True
        if parts[0] == "HTTP/1.0":
            self.keep_alive = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            if name == "content-length":
                if not value.isdigit():
                    raise HttpError(f"bad Content-Length {value[:50]!r}")
                self.length = int(value)
            elif name == "transfer-encoding":
                self.chunked = "chunked" in value.lower()
            elif name == "connection":
                tokens = value.lower()
                if "close" in tokens:
                    self.keep_alive = False
                elif "keep-alive" in tokens:
                    self.keep_alive = True
        if self.chunked:
            self.length = None
        elif status in (204, 304):
            self.length = 0
        elif self.length is None:
            self.keep_alive = False  # the body ends with the connection

    def _feed_chunks(self) -> bool:
        buffer = self.buffer
        while True:
            end = buffer.find(b"\r\n")
            if end < 0:
                return False
            size_text = bytes(buffer[:end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError as exc:
                raise HttpError(f"bad chunk size {size_text[:20]!r}") from exc
            if size == 0:
                # The last chunk, then optional trailers, then an empty line.
                trailer_end = buffer.find(b"\r\n\r\n", end)
                if trailer_end >= 0:
                    del buffer[: trailer_end + 4]
                    return True
                if buffer[end + 2 : end + 4] == b"\r\n":
                    del buffer[: end + 4]
                    return True
                return False
            if len(buffer) < end + 2 + size + 2:
                return False
            self.body += buffer[end + 2 : end + 2 + size]
            del buffer[: end + 2 + size + 2]

    def finish_at_close(self) -> bool:
        """The connection closed: True if that completes the response."""
        if self.head_done and not self.chunked and self.length is None:
            self.body = self.buffer
            return True
        return False


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._answer: _Answer | None = None
        self._waiter: asyncio.Future[_Answer] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        answer, waiter = self._answer, self._waiter
        if answer is None or waiter is None or waiter.done():
            # Bytes nobody asked for: the connection is out of step, never reuse it.
            self._fail(HttpError("unexpected data from the server"))
            return
        try:
            complete = answer.feed(data)
        except HttpError as exc:
            self._fail(exc)
            return
        if complete:
            self._answer = self._waiter = None
            if answer.buffer:
                # More than one answer to one request.
                answer.keep_alive = False
            waiter.set_result(answer)

    def eof_received(self) -> bool:
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        answer, waiter = self._answer, self._waiter
        self._answer = self._waiter = None
        if waiter is None or waiter.done():
            return
        if answer is not None and answer.finish_at_close():
            answer.keep_alive = False
            waiter.set_result(answer)
        else:
            reason = f": {exc}" if exc else ""
            waiter.set_exception(HttpError(f"server disconnected{reason}"))

    def _fail(self, exc: Exception) -> None:
        waiter = self._waiter
        self._answer = self._waiter = None
        self.close()
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def send(self, data: bytes) -> asyncio.Future[_Answer]:
        assert self.transport is not None and self._waiter is None
        self._answer = _Answer()
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self._waiter


class HttpClient:
    """POSTs to one server (`base`: http://host[:port] or https://...) over kept-alive
    connections, at most `limit` at a time. HTTPS verifies the server against the system's
    certificate authorities unless `ssl_context` says otherwise."""

    def __init__(
        self, base: str, *, limit: int = 100, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = None
        if parts.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        default_port = self.port == (443 if self._ssl else 80)
        self._host_header = host if default_port else f"{host}:{self.port}"
        self._idle: deque[_Connection] = deque()
        self._open: set[_Connection] = set()
        self._slots = asyncio.Semaphore(limit)
        self._closing = False

    async def post(
        self, path: str, body: bytes, *, content_type: str = "application/json", timeout: float
    ) -> tuple[int, bytes]:
        """Send one POST; the status and the body of the answer. Raises TimeoutError after
        `timeout` seconds, HttpError (a ConnectionError) or OSError when the connection fails."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Connection: keep-alive\r\n\r\n"
        ).encode("latin-1")
        async with self._slots:
            connection = None
            try:
                async with asyncio.timeout(timeout):
                    connection = await self._acquire()
                    answer = await connection.send(head + body)
            except BaseException:
                if connection is not None:
                    # Its answer may still come: never hand the connection to another call.
                    self._discard(connection)
                raise
            if answer.keep_alive and not connection.closed and not self._closing:
                self._idle.append(connection)
            else:
                self._discard(connection)
            return answer.status, bytes(answer.body)

    async def _acquire(self) -> _Connection:
        if self._closing:
            raise HttpError("the client is closed")
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
            self._open.discard(connection)
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(
            _Connection,
            self.host,
            self.port,
            ssl=self._ssl,
            server_hostname=self.host if self._ssl else None,
        )
        self._open.add(connection)
        return connection

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._open.discard(connection)

    @property
    def open_connections(self) -> int:
        return sum(1 for c in self._open if not c.closed)

    async def close(self) -> None:
        """Close every connection; calls made afterwards fail."""
        self._closing = True
        self._idle.clear()
        for connection in list(self._open):
            connection.close()
        self._open.clear()
