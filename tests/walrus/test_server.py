"""Walrus's HTTP/1.1 server (eucalypt.walrus.server), driven over raw sockets.

A small ASGI application stands in for Walrus, so each test shows one piece of
HTTP: keep-alive and pipelining, ``Expect: 100-continue``, bodies read with
``receive()`` and with the zero-copy ``receive_into`` extension, chunked
request bodies, bad heads, HEAD, backpressure on a slow reader, clients that
leave, the keep-alive timeout and the lifespan protocol.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from eucalypt.walrus import server as http_server
from eucalypt.walrus.server import RECEIVE_INTO, ZEROCOPY, ServerThread
from tests.support.servers import free_port


class EchoApp:
    """``/echo``: the body's length and SHA-256 (read by ``receive()``); ``/into``: the
    same, read with ``receive_into`` in 100,000-byte steps; ``/stream?n``: n MiB, counted
    in ``sent``; ``/ignore``: answers without reading the body; ``/boom``: raises."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.sent = 0
        self.disconnects = 0
        self.file = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.events.append(message["type"])
                kind = message["type"].replace("lifespan.", "")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        path = scope["path"]
        if path == "/boom":
            raise RuntimeError("boom")
        if path == "/ignore":
            await self.answer(send, b"ignored")
            return
        if path == "/stream":
            await self.stream(scope, send)
            return
        if path in ("/file", "/file-chunked"):
            await self.send_file(scope, send, chunked=path == "/file-chunked")
            return
        digest, size = hashlib.sha256(), 0
        try:
            if path == "/into":
                receive_into = scope["extensions"][RECEIVE_INTO]
                buf = bytearray(100_000)
                while n := await receive_into(memoryview(buf)):
                    digest.update(buf[:n])
                    size += n
            else:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise EOFError
                    digest.update(message["body"])
                    size += len(message["body"])
                    if not message["more_body"]:
                        break
        except EOFError:
            self.disconnects += 1
            return
        await self.answer(send, f"{size} {digest.hexdigest()}".encode())

    async def answer(self, send: Any, body: bytes) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def send_file(self, scope: dict[str, Any], send: Any, chunked: bool) -> None:
        """Two ranges of ``self.file`` by zero-copy sends: ``?offset,count,offset,count``."""
        assert ZEROCOPY in scope["extensions"]
        a, b, c, d = (int(x) for x in scope["query_string"].split(b","))
        headers = [] if chunked else [(b"content-length", str(b + d).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        with open(self.file, "rb") as f:
            for offset, count in ((a, b), (c, d)):
                await send({"type": ZEROCOPY, "file": f, "offset": offset, "count": count,
                            "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def stream(self, scope: dict[str, Any], send: Any) -> None:
        n = int(scope["query_string"] or b"1")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(n << 20).encode())]})
        chunk = b"s" * (1 << 20)
        for _ in range(n):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            self.sent += 1
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def served() -> Iterator[tuple[EchoApp, int]]:
    app, port = EchoApp(), free_port()
    thread = ServerThread(app, "127.0.0.1", port)
    thread.start()
    try:
        yield app, port
    finally:
        thread.stop()
    assert app.events == ["lifespan.startup", "lifespan.shutdown"]


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_response(sock: socket.socket, buf: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response off ``sock`` (bytes after it stay in ``buf``)."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        rest += data
    buf[:] = rest[length:]
    return status, headers, rest[:length]


def closed(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def put(path: str, body: bytes, extra: str = "") -> bytes:
    return (f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            .encode() + body)


def expected(body: bytes) -> bytes:
    return f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()


@pytest.mark.parametrize("path", ["/echo", "/into"])
def test_bodies_on_a_kept_alive_connection(served: tuple[EchoApp, int], path: str) -> None:
    _, port = served
    bodies = [b"", b"a", b"x" * 100_000, bytes(range(256)) * 12_000]
    with connect(port) as sock:
        buf = bytearray()
        for body in bodies:
            sock.sendall(put(path, body))
            status, headers, got = read_response(sock, buf)
            assert (status, got) == (200, expected(body))
            assert "connection" not in headers and "date" in headers


def test_a_body_sent_slowly_in_pieces_arrives_whole(served: tuple[EchoApp, int]) -> None:
    _, port = served
    body = bytes(range(251)) * 4000
    request = put("/into", body)
    with connect(port) as sock:
        sock.sendall(request[:60])  # half a head first
        time.sleep(0.05)
        rest = request[60:]
        for i in range(0, len(rest), 70_001):
            sock.sendall(rest[i:i + 70_001])
            time.sleep(0.01)
        assert read_response(sock, bytearray())[2] == expected(body)


def test_pipelined_requests_are_answered_in_order(served: tuple[EchoApp, int]) -> None:
    _, port = served
    bodies = [b"one", b"", b"three" * 1000]
    with connect(port) as sock:
        sock.sendall(b"".join(put(p, b) for p, b in zip(["/echo", "/into", "/echo"], bodies,
                                                        strict=True)))
        buf = bytearray()
        assert [read_response(sock, buf)[2] for _ in bodies] == [expected(b) for b in bodies]


def test_expect_100_continue_is_sent_when_the_body_is_wanted(
        served: tuple[EchoApp, int]) -> None:
    _, port = served
    body = b"z" * 300_000
    with connect(port) as sock:
        sock.sendall(put("/into", b"", "Expect: 100-continue\r\n").replace(
            b"Content-Length: 0", f"Content-Length: {len(body)}".encode()))
        buf = bytearray()
        status, _, _ = read_response(sock, buf)
        assert status == 100
        sock.sendall(body)
        assert read_response(sock, buf)[2] == expected(body)
    # Answered without reading the body: no 100, and the connection ends (the body
    # the client may still send cannot be told from the next request).
    with connect(port) as sock:
        sock.sendall(put("/ignore", b"", "Expect: 100-continue\r\n").replace(
            b"Content-Length: 0", b"Content-Length: 5000"))
        status, headers, got = read_response(sock, bytearray())
        assert (status, got, headers["connection"]) == (200, b"ignored", "close")
        assert closed(sock)


def test_chunked_request_body(served: tuple[EchoApp, int]) -> None:
    _, port = served
    with connect(port) as sock:
        sock.sendall(b"PUT /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        status, headers, got = read_response(sock, bytearray())
        assert (status, got) == (200, expected(b"hello world"))
        assert headers["connection"] == "close" and closed(sock)


@pytest.mark.parametrize("request_bytes, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nContent-Length: nope\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (70 << 10) + b"\r\n\r\n", 431),
])
def test_bad_heads_get_an_error_and_the_connection_ends(
        served: tuple[EchoApp, int], request_bytes: bytes, status: int) -> None:
    _, port = served
    with connect(port) as sock:
        try:
            sock.sendall(request_bytes)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got, headers, _ = read_response(sock, bytearray())
        assert (got, headers["connection"]) == (status, "close")
        assert closed(sock)


def test_head_requests_get_no_body(served: tuple[EchoApp, int]) -> None:
    _, port = served
    with connect(port) as sock:
        sock.sendall(b"HEAD /ignore HTTP/1.1\r\nHost: x\r\n\r\nGET /ignore HTTP/1.1\r\n\r\n")
        sock.settimeout(10)
        buf = bytearray()
        while buf.count(b"\r\n\r\n") < 2 or not buf.endswith(b"ignored"):
            buf += sock.recv(65536)
        first, _, second = bytes(buf).partition(b"\r\n\r\n")
        assert b"content-length: 7" in first.lower()
        assert second.startswith(b"HTTP/1.1 200")  # right after the HEAD response's head


def test_a_slow_reader_holds_the_sender_back(served: tuple[EchoApp, int]) -> None:
    app, port = served
    with connect(port) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        sock.sendall(b"GET /stream?64 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(1.0)
        # Socket buffers and the server's write limit hold a few MiB, not 64.
        assert app.sent < 16
        got = 0
        while got < (64 << 20):
            data = sock.recv(1 << 20)
            assert data
            got += len(data)
        assert app.sent == 64


def test_a_client_leaving_mid_body_is_seen_by_the_application(
        served: tuple[EchoApp, int]) -> None:
    app, port = served
    for path in ("/echo", "/into"):
        with connect(port) as sock:
            sock.sendall(put(path, b"")[:-2].replace(b"Content-Length: 0",
                                                     b"Content-Length: 1000000")
                         + b"\r\n" + b"p" * 1000)
            time.sleep(0.2)
        deadline = time.monotonic() + 10
        while app.disconnects < (1 if path == "/echo" else 2):
            assert time.monotonic() < deadline
            time.sleep(0.02)


def test_an_application_error_is_a_500(served: tuple[EchoApp, int]) -> None:
    _, port = served
    with connect(port) as sock:
        sock.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = read_response(sock, bytearray())
        assert (status, headers["connection"]) == (500, "close")


def test_idle_connections_are_closed(served: tuple[EchoApp, int],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _, port = served
    monkeypatch.setattr(http_server, "KEEP_ALIVE", 0.3)
    with connect(port) as sock:
        sock.sendall(put("/echo", b"x"))
        read_response(sock, bytearray())
        started = time.monotonic()
        assert closed(sock)
        assert time.monotonic() - started < 4


def test_requests_in_progress_finish_at_shutdown() -> None:
    app, port = EchoApp(), free_port()
    thread = ServerThread(app, "127.0.0.1", port)
    thread.start()
    with connect(port) as sock:
        sock.sendall(put("/echo", b"")[:-2].replace(b"Content-Length: 0",
                                                    b"Content-Length: 10") + b"\r\n12345")
        time.sleep(0.1)
        stopper = asyncio.new_event_loop()
        stopping = stopper.run_in_executor(None, thread.stop)
        time.sleep(0.2)
        sock.sendall(b"67890")
        assert read_response(sock, bytearray())[2] == expected(b"1234567890")
        stopper.run_until_complete(stopping)
        stopper.close()
    assert app.events == ["lifespan.startup", "lifespan.shutdown"]


def test_zero_copy_file_ranges(served: tuple[EchoApp, int], tmp_path: Any) -> None:
    """http.response.zerocopysend: file ranges go out by sendfile, framed by Content-Length
    or, without one, as chunks; the connection stays usable after either."""
    import os

    app, port = served
    data = os.urandom(5 << 20)
    app.file = str(tmp_path / "blob")
    (tmp_path / "blob").write_bytes(data)
    with connect(port) as sock:
        buf = bytearray()
        sock.sendall(b"GET /file?7,3000000,4000000,1000001 HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, got = read_response(sock, buf)
        assert (status, got) == (200, data[7:3_000_007] + data[4_000_000:5_000_001])
        sock.sendall(b"GET /file-chunked?0,10,100,5 HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(10)
        while not buf.endswith(b"0\r\n\r\n"):
            buf += sock.recv(65536)
        head, _, body = bytes(buf).partition(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head.lower()
        assert body == b"a\r\n" + data[:10] + b"\r\n5\r\n" + data[100:105] + b"\r\n0\r\n\r\n"
        buf.clear()
        sock.sendall(put("/echo", b"after"))
        assert read_response(sock, buf)[2] == expected(b"after")


def test_a_stalled_reader_does_not_hold_a_sendfile_thread(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """With one sendfile thread, a client that stops reading a zero-copy response must not
    keep another client's zero-copy response from going out."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(http_server, "ThreadPoolExecutor",
                        lambda **kw: ThreadPoolExecutor(max_workers=1))
    app, port = EchoApp(), free_port()
    data = os.urandom(64 << 20)
    app.file = str(tmp_path / "blob")
    (tmp_path / "blob").write_bytes(data)
    thread = ServerThread(app, "127.0.0.1", port)
    thread.start()
    try:
        with connect(port) as stalled, connect(port) as other:
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
            stalled.sendall(b"GET /file?0,40000000,0,1 HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.3)  # its send fills the socket and waits
            started = time.monotonic()
            other.sendall(b"GET /file?5,1000,0,0 HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_response(other, bytearray())[2] == data[5:1005]
            assert time.monotonic() - started < 5
    finally:
        thread.stop()
