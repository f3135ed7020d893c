"""Walrus's HTTP/1.1 server: a small ASGI server built around request bodies.

Walrus ran under uvicorn, which hands a request body to the application as
``bytes`` messages: each read from the socket is copied into a new object,
again by the HTTP parser, again into a per-request buffer and once more into
the message, and each one wakes the application's task. For a 1 MiB PUT
that was about 1 ms of CPU (a fifth of the server's whole cost of the PUT,
hashing included) where reading the same bytes straight into a buffer costs
0.3 ms (``docs/performance.md``).

This server reads the request head with httptools (llhttp: the same
parser), then reads a body framed by ``Content-Length`` itself, with an
:class:`asyncio.BufferedProtocol`: the kernel copies the bytes into the
buffer the application passes to the ASGI extension
``scope["extensions"]["eucalypt.receive_into"]`` (an ``async (view) -> int``
that returns 0 at the end of the body and raises :class:`EOFError` if the
client leaves). Plain ``receive()`` works as ASGI says, for every body. A
``Transfer-Encoding: chunked`` body is decoded by httptools; the connection
closes after such a request.

What it implements of HTTP/1.1 is what S3 clients use: keep-alive (with an
idle timeout), ``Expect: 100-continue`` (the interim response goes out when
the application first asks for the body, as in uvicorn), HEAD, responses
with ``Content-Length`` or chunked, backpressure on writes (a slow reader
never makes the server buffer more than ``WRITE_HIGH`` bytes), a bad or
oversized request head answered with 400/431 and the connection closed, and
a request whose body the application left unread ending its connection. On
SIGTERM/SIGINT it stops accepting, lets requests in progress finish (up to
``GRACE`` seconds), and runs the application's lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import signal
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools

log = logging.getLogger("eucalypt.walrus.server")

App = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]],
                Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]

HEAD_MAX = 64 << 10  # request line and headers
BODY_BUFFER = 256 << 10  # body bytes read ahead of the application, per connection
WRITE_HIGH, WRITE_LOW = 1 << 20, 256 << 10
KEEP_ALIVE = 30.0  # seconds a connection may sit idle between requests
GRACE = 10.0  # seconds requests in progress get to finish at shutdown
READ_AHEAD = 16 << 20  # bytes of a file asked of the disk ahead of a zero-copy send
SEND_WAIT = 0.05  # seconds a sendfile thread waits for a full socket before letting go
SEND_STALL = 60.0  # seconds a zero-copy send waits for a client that reads nothing
RECEIVE_INTO = "eucalypt.receive_into"
ZEROCOPY = "http.response.zerocopysend"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _sendfile(sock: int, fd: int, offset: int, count: int, ahead: int) -> tuple[int, int]:
    """sendfile(2) of up to ``count`` bytes on a non-blocking socket, from a worker thread.

    Returns (bytes sent, read-ahead mark). It stops when all went out or when the
    socket stayed full for ``SEND_WAIT`` seconds, so that a client that reads
    slowly, or not at all, does not hold the thread. The ``READ_AHEAD`` bytes after
    the mark are asked for ahead (``POSIX_FADV_WILLNEED``), so the disk reads a
    file not in the page cache while the socket sends.
    """
    done = 0
    while done < count:
        pos, left = offset + done, count - done
        if ahead < pos + min(left, READ_AHEAD // 2):
            ahead = max(ahead, pos)
            span = min(READ_AHEAD, pos + left - ahead)
            os.posix_fadvise(fd, ahead, span, os.POSIX_FADV_WILLNEED)
            ahead += span
        try:
            sent = os.sendfile(sock, fd, pos, left)
        except BlockingIOError:
            _, writable, _ = select.select([], [sock], [], SEND_WAIT)
            if not writable:
                break
            continue
        if sent == 0:
            raise OSError("the file is shorter than the response")
        done += sent
    return done, ahead


class _Date:
    """The ``Date`` header value, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def value(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode()
        return self._value


class _Head:
    """httptools callbacks for one request head."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False
        # Chunked bodies only (decoded by httptools):
        self.chunks: list[bytes] = []
        self.message_complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self.complete = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.message_complete = True


class _Request:
    """One request/response cycle on a connection."""

    def __init__(self, conn: _Connection, scope: dict[str, Any], length: int | None,
                 expect_continue: bool, keep_alive: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.head_only = scope["method"] == "HEAD"
        # Body: ``remaining`` bytes still to come from the socket (Content-Length
        # framing), or None for a chunked body (httptools decodes it).
        self.remaining = length
        self.buffered = bytearray()  # read but not yet handed to the application
        self.body_done = length == 0
        self.body_returned = False  # the last http.request message went out
        self.waiter: asyncio.Future[None] | None = None
        self.target: memoryview | None = None  # a receive_into buffer being filled
        self.filled = 0
        # receive() reads ahead (up to BODY_BUFFER); receive_into reads only into its buffer.
        self.read_ahead = False
        self.expect_continue = expect_continue
        self.keep_alive = keep_alive
        # Response.
        self.started = False
        self.head_written = False
        self.complete = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunked_response = False
        self.disconnected = False

    # -- request body -----------------------------------------------------
    def _want_body(self) -> None:
        if self.expect_continue:
            self.expect_continue = False
            if not self.disconnected:
                self.conn.write(_CONTINUE)

    async def _wait(self) -> None:
        self.waiter = self.conn.loop.create_future()
        self.conn.flow()
        try:
            await self.waiter
        finally:
            self.waiter = None
            self.conn.flow()

    def wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def receive(self) -> dict[str, Any]:
        while True:
            if self.disconnected:
                return {"type": "http.disconnect"}
            if self.body_returned:
                # ASGI: after the body, receive() waits for the client to leave.
                await self._wait()
                continue
            self.read_ahead = True
            if self.buffered or self.body_done:
                data = bytes(self.buffered)
                self.buffered.clear()
                more = not self.body_done
                self.body_returned = not more
                self.conn.flow()
                return {"type": "http.request", "body": data, "more_body": more}
            self._want_body()
            await self._wait()

    async def receive_into(self, view: memoryview) -> int:
        """Fill the start of ``view`` with body bytes; 0 at the end of the body."""
        view = view.cast("B") if view.format != "B" else view
        self.read_ahead = False
        while True:
            if self.disconnected:
                raise EOFError("the client disconnected")
            if self.buffered:
                n = min(len(view), len(self.buffered))
                view[:n] = self.buffered[:n]
                del self.buffered[:n]
                if not self.buffered and self.body_done:
                    self.body_returned = True
                self.conn.flow()
                return n
            if self.body_done or not view:
                self.body_returned = self.body_done
                return 0
            if self.remaining is None:  # chunked: bytes come decoded, into buffered
                self._want_body()
                await self._wait()
                continue
            assert self.remaining is not None
            self.target = view[:self.remaining]
            self.filled = 0
            self._want_body()
            try:
                await self._wait()
            finally:
                self.target = None
            if self.filled:
                if self.body_done:
                    self.body_returned = True
                return self.filled

    def body_bytes(self, n: int, into_target: bool) -> None:
        """``n`` body bytes arrived (in ``target`` or already appended to ``buffered``)."""
        if into_target:
            self.filled = n
            self.target = None
        assert self.remaining is not None
        self.remaining -= n
        if self.remaining == 0:
            self.body_done = True
        self.wake()
        self.conn.flow()

    # -- response ---------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.disconnected or self.complete:
            return
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("response already started")
            self.started = True
            self.status = int(message["status"])
            self.headers = list(message.get("headers", []))
            return
        if kind not in ("http.response.body", ZEROCOPY):
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if not self.started:
            raise RuntimeError("response body before its start")
        more = bool(message.get("more_body", False))
        if kind == ZEROCOPY:
            await self._send_file(message, more)
            return
        body = message.get("body", b"")
        out: list[bytes] = []
        if not self.head_written:
            out.append(self._head(more))
            self.head_written = True
        if body and not self.head_only:
            if self.chunked_response:
                out += [b"%x\r\n" % len(body), body, b"\r\n"]
            else:
                out.append(body)
        if not more:
            if self.chunked_response and not self.head_only:
                out.append(b"0\r\n\r\n")
            self.complete = True
        if out:
            self.conn.writelines(out)
        if self.complete:
            self.conn.response_complete(self)
        else:
            await self.conn.drain()

    async def _send_file(self, message: dict[str, Any], more: bool) -> None:
        """ASGI ``http.response.zerocopysend``: a file's bytes sent by the kernel (sendfile)."""
        file = message["file"]
        fd = file if isinstance(file, int) else file.fileno()
        offset = int(message.get("offset") or 0)
        count = message.get("count")
        count = os.fstat(fd).st_size - offset if count is None else int(count)
        out: list[bytes] = []
        if not self.head_written:
            out.append(self._head(more))
            self.head_written = True
        if self.head_only:
            count = 0
        if count and self.chunked_response:
            out.append(b"%x\r\n" % count)
        if out:
            self.conn.writelines(out)
        if count:
            try:
                await self.conn.sendfile(fd, offset, count)
            except (OSError, TimeoutError) as exc:
                log.info("zero-copy send ended early: %s", exc)
                self.disconnected = True
                self.conn.close()
                return
            if self.chunked_response:
                self.conn.write(b"\r\n")
        if not more:
            if self.chunked_response and not self.head_only:
                self.conn.write(b"0\r\n\r\n")
            self.complete = True
            self.conn.response_complete(self)

    def _head(self, more: bool) -> bytes:
        names = {name.lower() for name, _ in self.headers}
        if b"content-length" not in names and self.status not in (204, 304) \
                and self.status >= 200:
            if more:
                self.chunked_response = True
                self.headers.append((b"transfer-encoding", b"chunked"))
            else:
                self.headers.append((b"content-length", b"0"))
        # A body not read by now cannot be skipped over: the connection ends with this
        # response (so does any, once the server is stopping).
        unread = not self.body_done or bool(self.buffered)
        if not self.keep_alive or unread or not self.conn.keeping_alive():
            self.keep_alive = False
            self.headers.append((b"connection", b"close"))
        lines = [b"HTTP/1.1 %d %s\r\n" % (self.status, _reason(self.status)),
                 b"date: " + self.conn.server.date.value() + b"\r\n"]
        lines += [name + b": " + value + b"\r\n" for name, value in self.headers]
        lines.append(b"\r\n")
        return b"".join(lines)


class _Connection(asyncio.BufferedProtocol):
    """One client connection: reads heads and bodies, runs one request at a time."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.head = bytearray(HEAD_MAX)
        self.head_len = 0
        self.scanned = 0  # head bytes already searched for the blank line
        self.request: _Request | None = None
        self.parser: httptools.HttpRequestParser | None = None  # chunked bodies only
        self.parsed: _Head | None = None
        self.body_buf = bytearray(BODY_BUFFER)
        self.reading = True
        self.write_paused = False
        self.drainers: list[asyncio.Future[None]] = []
        self.closed = False
        self.idle: asyncio.TimerHandle | None = None
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None

    # -- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.local = (str(sock[0]), int(sock[1])) if isinstance(sock, tuple) else None
        self.server.connections.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        self._disarm_idle()
        if self.request is not None:
            self.request.disconnected = True
            self.request.wake()
        for waiter in self.drainers:
            if not waiter.done():
                waiter.set_result(None)
        self.drainers.clear()

    def eof_received(self) -> bool:
        return False  # close: a client that half-closes gets no more answers

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        for waiter in self.drainers:
            if not waiter.done():
                waiter.set_result(None)
        self.drainers.clear()

    def get_buffer(self, sizehint: int) -> memoryview:
        req = self.request
        if req is not None and not req.body_done:
            if self.parser is not None:  # chunked body, through the parser
                return memoryview(self.body_buf)
            if req.target is not None:
                return req.target
            assert req.remaining is not None
            return memoryview(self.body_buf)[:min(len(self.body_buf), req.remaining)]
        if self.head_len >= HEAD_MAX:  # reading is paused before this can happen
            return memoryview(bytearray(1))
        return memoryview(self.head)[self.head_len:]

    def buffer_updated(self, nbytes: int) -> None:
        req = self.request
        if req is not None and not req.body_done:
            if self.parser is not None:
                self._feed_chunked(memoryview(self.body_buf)[:nbytes])
            elif req.target is not None:
                req.body_bytes(nbytes, into_target=True)
            else:
                req.buffered += memoryview(self.body_buf)[:nbytes]
                req.body_bytes(nbytes, into_target=False)
            return
        # Head bytes: of the next request (kept while one is in progress) or this one.
        self.head_len += nbytes
        if self.request is None:
            self._next_request()
        else:
            self.flow()

    # -- reading ----------------------------------------------------------
    def flow(self) -> None:
        """Read while a request head is awaited, or while the application wants body
        bytes: into its receive_into buffer, or (receive) up to BODY_BUFFER ahead."""
        req = self.request
        if req is None:
            want = self.head_len < HEAD_MAX
        elif req.body_done or self.closed:
            want = False  # until the response is complete
        elif req.target is not None:
            want = True
        else:
            waiting = req.waiter is not None and not req.waiter.done()
            want = (waiting or req.read_ahead) and len(req.buffered) < BODY_BUFFER
        self._set_reading(want)

    def _set_reading(self, on: bool) -> None:
        if self.transport is None or self.closed or on == self.reading:
            return
        self.reading = on
        if on:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()

    def _next_request(self) -> None:
        """Parse a complete request head from ``head`` if there is one, and start it."""
        if self.request is not None or self.closed:
            return
        end = self.head.find(b"\r\n\r\n", max(0, self.scanned - 3), self.head_len)
        if end < 0:
            self.scanned = self.head_len
            if self.head_len >= HEAD_MAX:
                self._refuse(431, b"Request Header Fields Too Large")
            return
        head_end = end + 4
        parsed = _Head()
        parser = httptools.HttpRequestParser(parsed)
        try:
            parser.feed_data(bytes(self.head[:head_end]))
        except httptools.HttpParserUpgrade:
            pass
        except httptools.HttpParserError:
            self._refuse(400, b"Bad Request")
            return
        if not parsed.complete:
            self._refuse(400, b"Bad Request")
            return
        leftover = bytes(self.head[head_end:self.head_len])
        self.head_len = self.scanned = 0
        headers = parsed.headers
        names = {name for name, _ in headers}
        chunked = b"transfer-encoding" in names
        length: int | None = 0
        if chunked:
            te = b",".join(v for n, v in headers if n == b"transfer-encoding").lower()
            if te.strip() != b"chunked" or b"content-length" in names:
                self._refuse(400, b"Bad Request")
                return
            length = None
        elif b"content-length" in names:
            values = {v.strip() for n, v in headers if n == b"content-length"}
            value = values.pop() if len(values) == 1 else b""
            if not value.isdigit():
                self._refuse(400, b"Bad Request")
                return
            length = int(value)
        version = parser.get_http_version()
        keep_alive = parser.should_keep_alive() and not chunked
        expect = any(n == b"expect" and v.strip().lower() == b"100-continue"
                     for n, v in headers) and version == "1.1" and bool(length or chunked)
        request = _Request(self, self._scope(parser, parsed, version), length, expect,
                           keep_alive)
        self.request = request
        self._disarm_idle()
        if chunked:
            self.parser, self.parsed = parser, parsed
            if leftover:
                self._feed_chunked(memoryview(leftover))
        else:
            assert length is not None
            body_part, rest = leftover[:length], leftover[length:]
            if body_part:
                request.buffered += body_part
                request.body_bytes(len(body_part), into_target=False)
            if rest:  # the next request's bytes (pipelining): kept for later
                self.head[:len(rest)] = rest
                self.head_len = len(rest)
        self.flow()
        self.server.start(self, request)

    def _feed_chunked(self, data: memoryview) -> None:
        req, parser, parsed = self.request, self.parser, self.parsed
        assert req is not None and parser is not None and parsed is not None
        if req.body_done:
            return  # the bytes after the message: the connection closes after it
        try:
            parser.feed_data(bytes(data))
        except httptools.HttpParserError:
            req.disconnected = True
            req.wake()
            self.close()
            return
        for chunk in parsed.chunks:
            req.buffered += chunk
        parsed.chunks.clear()
        if parsed.message_complete:
            req.body_done = True
        req.wake()
        self.flow()

    def _scope(self, parser: httptools.HttpRequestParser, parsed: _Head,
               version: str) -> dict[str, Any]:
        url = httptools.parse_url(parsed.url)
        raw_path = url.path or b"/"
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version,
            "method": parser.get_method().decode("ascii"),
            "scheme": "http",
            "path": unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path,
            "query_string": url.query or b"",
            "root_path": "",
            "headers": parsed.headers,
            "client": self.client,
            "server": self.local,
            "extensions": {},
        }

    def _refuse(self, status: int, reason: bytes) -> None:
        body = reason + b"\n"
        self.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n"
                   b"connection: close\r\n\r\n%s" % (status, reason, len(body), body))
        self.close()

    # -- writing ----------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def writelines(self, data: list[bytes]) -> None:
        if self.transport is not None and not self.closed:
            self.transport.writelines(data)

    async def drain(self) -> None:
        if self.write_paused and not self.closed:
            waiter = self.loop.create_future()
            self.drainers.append(waiter)
            await waiter

    async def sendfile(self, fd: int, offset: int, count: int) -> None:
        """Send ``count`` bytes of ``fd`` from ``offset`` with sendfile(2), in worker-thread
        turns (see ``_sendfile``); TimeoutError after ``SEND_STALL`` s without progress.

        The transport's buffer is drained first and nothing else writes to the socket
        meanwhile (one request at a time; reads are paused once its body is in).
        """
        while self.transport is not None and not self.closed \
                and self.transport.get_write_buffer_size():
            await asyncio.sleep(0.0005)
        if self.transport is None or self.closed:
            raise ConnectionResetError("the client disconnected")
        sock = self.transport.get_extra_info("socket").fileno()
        ahead, last_progress = offset, time.monotonic()
        while count > 0:
            job = self.loop.run_in_executor(self.server.files, _sendfile, sock, fd, offset,
                                            count, ahead)
            try:
                sent, ahead = await asyncio.shield(job)
            except asyncio.CancelledError:
                # The thread still uses fd and the socket: end the connection, wait for it.
                self.close()
                await asyncio.wait([job])
                raise
            offset, count = offset + sent, count - sent
            if sent:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > SEND_STALL:
                raise TimeoutError(f"the client read nothing for {SEND_STALL:.0f} s")
            if count and self.closed:
                raise ConnectionResetError("the client disconnected")
            if count and not sent:
                await asyncio.sleep(SEND_WAIT)  # a slow reader: no thread held meanwhile

    def keeping_alive(self) -> bool:
        return not self.server.stopping

    def response_complete(self, request: _Request) -> None:
        """The response is written: next request, or close."""
        if request is not self.request:
            return
        if not request.keep_alive or not request.body_done or request.buffered \
                or self.parser is not None:
            self.close()  # a body left unread (or chunked) cannot be skipped over
            return
        self.request = None
        self.flow()
        self._arm_idle()
        if self.head_len:
            self.loop.call_soon(self._next_request)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()
        if self.request is not None:
            self.request.disconnected = True
            self.request.wake()

    def close_if_idle(self) -> None:
        if self.request is None:
            self.close()

    def _arm_idle(self) -> None:
        self._disarm_idle()
        self.idle = self.loop.call_later(KEEP_ALIVE, self.close_if_idle)

    def _disarm_idle(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
            self.idle = None


class Server:
    """Serves one ASGI application on one address (see the module docstring)."""

    def __init__(self, app: App, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.loop = asyncio.get_event_loop()
        self.connections: set[_Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.date = _Date()
        self.files = ThreadPoolExecutor(max_workers=16, thread_name_prefix="walrus-sendfile")
        self.stopping = False
        self._exit = asyncio.Event()

    def start(self, conn: _Connection, request: _Request) -> None:
        request.scope["extensions"][RECEIVE_INTO] = request.receive_into
        request.scope["extensions"][ZEROCOPY] = {}
        task = self.loop.create_task(self._run(conn, request))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, conn: _Connection, request: _Request) -> None:
        try:
            await self.app(request.scope, request.receive, request.send)
        except Exception:
            log.exception("unhandled error in the application")
            if not request.started and not request.disconnected:
                request.keep_alive = False
                await request.send({"type": "http.response.start", "status": 500,
                                    "headers": [(b"content-type", b"text/plain")]})
                await request.send({"type": "http.response.body",
                                    "body": b"Internal Server Error\n"})
        finally:
            if not request.complete:
                conn.close()

    def request_exit(self) -> None:
        self._exit.set()

    async def serve(self, ready: Callable[[], None] | None = None) -> None:
        lifespan = _Lifespan(self.app)
        await lifespan.startup()
        server = await self.loop.create_server(lambda: _Connection(self), self.host, self.port,
                                               backlog=2048, reuse_address=True)
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self.loop.add_signal_handler(sig, self.request_exit)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                pass
        log.info("serving on %s:%d", self.host, self.port)
        if ready is not None:
            ready()
        try:
            await self._exit.wait()
        finally:
            self.stopping = True
            server.close()
            for conn in list(self.connections):
                conn.close_if_idle()
            if self.tasks:
                await asyncio.wait(set(self.tasks), timeout=GRACE)
            for conn in list(self.connections):
                conn.close()
            await server.wait_closed()
            await lifespan.shutdown()
            self.files.shutdown(wait=False)


class _Lifespan:
    """Runs the application's ASGI lifespan protocol (startup, then shutdown)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.started = asyncio.get_event_loop().create_future()
        self.stopped = asyncio.get_event_loop().create_future()
        self.task: asyncio.Task[None] | None = None

    async def _receive(self) -> dict[str, Any]:
        return await self.inbox.get()

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        target = self.started if kind.startswith("lifespan.startup") else self.stopped
        if not target.done():
            target.set_result(message)

    async def _main(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"},
                 "state": {}}
        try:
            await self.app(scope, self._receive, self._send)
        except Exception as exc:
            for target in (self.started, self.stopped):
                if not target.done():
                    target.set_exception(exc)

    async def startup(self) -> None:
        self.task = asyncio.get_event_loop().create_task(self._main())
        await self.inbox.put({"type": "lifespan.startup"})
        message = await self.started
        if message["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"application startup failed: {message.get('message', '')}")

    async def shutdown(self) -> None:
        await self.inbox.put({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(asyncio.shield(self.stopped), timeout=GRACE)
        except (TimeoutError, Exception):
            log.warning("application shutdown did not complete", exc_info=True)
        if self.task is not None:
            self.task.cancel()


def run(app: App, host: str, port: int) -> None:
    """Serve ``app`` on ``host:port`` (uvloop) until SIGTERM or SIGINT."""
    import uvloop

    async def main() -> None:
        await Server(app, host, port).serve()

    uvloop.run(main())


class ServerThread:
    """Serve an application from a daemon thread (tests; embedding in another process).

    ``start()`` returns once the server listens; ``stop()`` shuts it down as SIGTERM
    would. Signal handlers are left to the process's main thread.
    """

    def __init__(self, app: App, host: str, port: int, *, use_uvloop: bool = True) -> None:
        import threading

        self._args = (app, host, port)
        self._use_uvloop = use_uvloop
        self._ready = threading.Event()
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name=f"walrus-http-{port}",
                                        daemon=True)

    def _main(self) -> None:
        if self._use_uvloop:
            import uvloop

            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)

        async def main() -> None:
            self._server = Server(*self._args)
            await self._server.serve(ready=self._ready.set)

        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
        finally:
            loop.close()

    def start(self, timeout: float = 30) -> None:
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise RuntimeError(f"the server did not start: {self._error!r}")

    def stop(self, timeout: float = 15) -> None:
        if self._loop is not None and self._server is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._server.request_exit)
        self._thread.join(timeout)
