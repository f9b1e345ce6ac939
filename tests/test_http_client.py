"""The Bot API's HTTP client against a scripted server on loopback: framing, reuse, failures."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bot.http_client import HttpClient, HttpError

TLS = Path(__file__).parent / "tls"

Reply = Callable[[asyncio.StreamWriter, "Request"], Awaitable[None]]


@dataclass
class Request:
    connection: int
    line: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Server:
    """Answers each request with the next scripted reply (or a plain 200 with the body)."""

    replies: list[Reply] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    base: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *rest = head.decode("latin-1").split("\r\n")
                headers = {}
                for h in rest:
                    if h:
                        name, _, value = h.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(number, line, headers, body)
                self.requests.append(request)
                reply = self.replies.pop(0) if self.replies else echo
                await reply(writer, request)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self.open_now -= 1
            writer.close()


async def echo(writer: asyncio.StreamWriter, request: Request) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(request.body)}\r\n\r\n".encode()
        + request.body
    )
    await writer.drain()


def raw(data: bytes, *, close: bool = False, pieces: int = 1) -> Reply:
    """Write these bytes (in `pieces` writes, each drained), then maybe close."""

    async def reply(writer: asyncio.StreamWriter, request: Request) -> None:
        size = max(1, -(-len(data) // pieces))
        for start in range(0, len(data), size):
            writer.write(data[start : start + size])
            await writer.drain()
            await asyncio.sleep(0)
        if close:
            writer.close()

    return reply


def silent() -> Reply:
    async def reply(writer: asyncio.StreamWriter, request: Request) -> None:
        await asyncio.sleep(3600)

    return reply


@asynccontextmanager
async def serving(state: Server, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """Serve `state` on a loopback port (over TLS if given); the port."""
    srv = await asyncio.start_server(state.handle, "127.0.0.1", 0, ssl=tls)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        for writer in state.writers:
            writer.close()
        srv.close()
        await srv.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server()
    async with serving(state) as port:
        state.base = f"http://127.0.0.1:{port}"
        yield state


@pytest.fixture
async def client(server: Server) -> AsyncIterator[HttpClient]:
    http = HttpClient(server.base, limit=4)
    yield http
    await http.close()


async def test_a_post_is_well_formed_and_its_connection_reused(
    server: Server, client: HttpClient
) -> None:
    for n in range(3):
        status, body = await client.post("/bot1:x/sendMessage", b'{"n": %d}' % n, timeout=5)
        assert (status, body) == (200, b'{"n": %d}' % n)
    assert server.connections == 1
    first = server.requests[0]
    assert first.line == "POST /bot1:x/sendMessage HTTP/1.1"
    port = server.base.rsplit(":", 1)[1]
    assert first.headers["host"] == f"127.0.0.1:{port}"
    assert first.headers["content-type"] == "application/json"
    assert first.headers["content-length"] == "8"
    assert client.open_connections == 1


async def test_chunked_answers_arriving_a_few_bytes_at_a_time(
    server: Server, client: HttpClient
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5;ext=1\r\n{"ok"\r\n'
        b"7\r\n: true}\r\n"
        b"0\r\nX-Trailer: yes\r\n\r\n"
    )
    server.replies = [
        raw(chunked, pieces=len(chunked)),
        raw(chunked.replace(b"X-Trailer: yes\r\n", b"")),
    ]
    assert await client.post("/m", b"{}", timeout=5) == (200, b'{"ok": true}')
    assert await client.post("/m", b"{}", timeout=5) == (200, b'{"ok": true}')
    assert await client.post("/m", b"[1]", timeout=5) == (200, b"[1]")
    assert server.connections == 1


async def test_interim_and_bodyless_answers(server: Server, client: HttpClient) -> None:
    server.replies = [
        raw(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        raw(b"HTTP/1.1 204 No Content\r\n\r\n"),
    ]
    assert await client.post("/m", b"{}", timeout=5) == (200, b"ok")
    assert await client.post("/m", b"{}", timeout=5) == (204, b"")
    assert await client.post("/m", b"{}", timeout=5) == (200, b"{}")
    assert server.connections == 1


async def test_answers_that_end_the_connection(server: Server, client: HttpClient) -> None:
    server.replies = [
        # No length: the body runs to the close.
        raw(b"HTTP/1.1 502 Bad Gateway\r\n\r\nbad gateway", close=True),
        raw(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nA", close=True),
        raw(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nB"),
    ]
    assert await client.post("/m", b"{}", timeout=5) == (502, b"bad gateway")
    assert await client.post("/m", b"{}", timeout=5) == (200, b"A")
    assert await client.post("/m", b"{}", timeout=5) == (200, b"B")
    assert await client.post("/m", b"{}", timeout=5) == (200, b"{}")
    # Each of the three was not reused: four connections for four calls.
    assert server.connections == 4


async def test_an_idle_connection_the_server_closed_is_not_reused(
    server: Server, client: HttpClient
) -> None:
    await client.post("/m", b"1", timeout=5)
    for writer in server.writers:
        writer.close()
    for _ in range(50):
        if client.open_connections == 0:
            break
        await asyncio.sleep(0.01)
    assert client.open_connections == 0
    assert await client.post("/m", b"2", timeout=5) == (200, b"2")
    assert server.connections == 2


async def test_broken_answers_raise_and_the_next_call_starts_afresh(
    server: Server, client: HttpClient
) -> None:
    server.replies = [
        raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", close=True),
        raw(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"),
        raw(b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n"),
        raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
        raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"),
    ]
    for expected in ("server disconnected", "not an HTTP response", "Content-Length", "chunk"):
        with pytest.raises(HttpError, match=expected):
            await client.post("/m", b"{}", timeout=5)
    # An answer followed by stray bytes is taken, but its connection is not used again.
    assert await client.post("/m", b"{}", timeout=5) == (200, b"ok")
    assert await client.post("/m", b"{}", timeout=5) == (200, b"{}")
    assert server.connections == 6


async def test_a_timeout_leaves_no_connection_behind_for_a_late_answer(
    server: Server, client: HttpClient
) -> None:
    server.replies = [silent()]
    with pytest.raises(TimeoutError):
        await client.post("/m", b"late", timeout=0.1)
    assert await client.post("/m", b"next", timeout=5) == (200, b"next")
    assert server.connections == 2
    assert client.open_connections == 1  # the one that timed out was closed


async def test_at_most_limit_connections(server: Server, client: HttpClient) -> None:
    async def slow(writer: asyncio.StreamWriter, request: Request) -> None:
        await asyncio.sleep(0.05)
        await echo(writer, request)

    server.replies = [slow] * 10
    answers = await asyncio.gather(
        *(client.post("/m", str(n).encode(), timeout=5) for n in range(10))
    )
    assert sorted(answers) == sorted((200, str(n).encode()) for n in range(10))
    assert server.most_open <= 4
    assert server.connections >= 2


async def test_a_closed_client_refuses_calls(server: Server, client: HttpClient) -> None:
    await client.post("/m", b"1", timeout=5)
    await client.close()
    assert client.open_connections == 0
    with pytest.raises(HttpError, match="closed"):
        await client.post("/m", b"2", timeout=5)


async def test_a_refused_connection_is_an_os_error() -> None:
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    http = HttpClient(f"http://127.0.0.1:{port}")
    with pytest.raises(OSError):
        await http.post("/m", b"{}", timeout=5)
    await http.close()


async def test_https_with_the_servers_certificate_verified(server: Server) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(TLS / "cert.pem", TLS / "key.pem")
    async with serving(server, context) as port:
        trusting = ssl.create_default_context(cafile=TLS / "cert.pem")
        http = HttpClient(f"https://127.0.0.1:{port}", ssl_context=trusting)
        assert await http.post("/m", b"secret", timeout=5) == (200, b"secret")
        assert await http.post("/m", b"again", timeout=5) == (200, b"again")
        await http.close()
        # Without trusting the test certificate, the handshake fails.
        stranger = HttpClient(f"https://127.0.0.1:{port}")
        with pytest.raises(ssl.SSLError):
            await stranger.post("/m", b"{}", timeout=5)
        await stranger.close()


def test_only_http_urls() -> None:
    for bad in ("ftp://example.org", "example.org", "http://"):
        with pytest.raises(ValueError):
            HttpClient(bad)
    assert HttpClient("https://api.telegram.org").port == 443
