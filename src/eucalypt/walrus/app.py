"""Walrus's HTTP wiring: ``create_app(config)`` builds everything, ``serve(config)`` runs it.

The S3 API is served by a raw ASGI application (streaming request and
response bodies without a framework in the way). Per request it: assigns a
request id (``x-amz-request-id`` / ``x-amz-id-2``, and the logging context),
parses the target, authenticates through ``eucalypt.auth``, dispatches
through the table in ``api/__init__.py``, renders any :class:`S3Error` as
S3's XML error document, turns anything unexpected into ``InternalError``
(logged with its traceback) and logs one structured line.

``GET /healthz`` (unsigned) answers ``{"status": "ok"}``.

It runs under Walrus's own HTTP server (``server.py``), which lets upload
bodies land straight in their buffers; response bodies are streamed in 1-4
MiB chunks read in worker threads (no sendfile path yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import resource
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import event

from eucalypt.auth import CredentialStore, SigningKeyCache
from eucalypt.auth.credentials import ChainCredentialStore
from eucalypt.config import Config
from eucalypt.db import Database, migrate
from eucalypt.logs import request_id_var
from eucalypt.rpc.keys import ComponentKeys
from eucalypt.walrus import errors, xml
from eucalypt.walrus.api import route
from eucalypt.walrus.body import ClientDisconnected, drain
from eucalypt.walrus.http import (
    Receive,
    Response,
    S3Request,
    Scope,
    Send,
    build_request,
    new_host_id,
    new_request_id,
)
from eucalypt.walrus.security import authenticate_request
from eucalypt.walrus.server import ZEROCOPY
from eucalypt.walrus.services import Context
from eucalypt.walrus.services.commit import GroupCommitter
from eucalypt.walrus.services.janitor import sweep_orphans
from eucalypt.walrus.storage import BlobStore, FilesystemStore

log = logging.getLogger("eucalypt.walrus")
access_log = logging.getLogger("eucalypt.walrus.access")

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_walrus"


def _durable_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # A commit must be on disk before it is answered (and before we unlink
    # the blob it replaced): in WAL mode, FULL fsyncs the WAL at every commit.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _raise_fd_limit() -> None:
    # A GET holds every segment of a multipart object open (up to 10,000).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class WalrusApp:
    """The ASGI application (see the module docstring)."""

    def __init__(self, ctx: Context, credentials: CredentialStore) -> None:
        self.ctx = ctx
        self.credentials = credentials
        self.signing_keys = SigningKeyCache()
        self.domain = ctx.config.walrus.domain.lower().strip(".")
        self.started_at = time.time()
        self.sweeper: threading.Thread | None = None

    # -- lifespan ---------------------------------------------------------------
    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start_background()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def start_background(self) -> None:
        if self.sweeper is None:
            self.sweeper = threading.Thread(target=self._sweep, name="walrus-sweep", daemon=True)
            self.sweeper.start()

    def _sweep(self) -> None:
        try:
            sweep_orphans(self.ctx.db, self.ctx.store, self.started_at)
        except Exception:
            log.exception("orphan blob sweep failed")

    def close(self) -> None:
        self.ctx.executor.shutdown(wait=False, cancel_futures=True)
        if self.ctx.committer is not None:
            self.ctx.committer.close()
        self.ctx.store.close()
        self.ctx.db.dispose()

    # -- requests ---------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request_id = new_request_id()
        token = request_id_var.set(request_id)
        try:
            await self._handle(scope, receive, send, request_id)
        finally:
            request_id_var.reset(token)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        started = time.perf_counter()
        if scope.get("path") == "/healthz" and scope["method"] in ("GET", "HEAD") and \
                not _has_signature(scope):
            body = json.dumps({"status": "ok"}).encode()
            await _send(send, receive, request_id,
                        Response(headers=[("content-type", "application/json")], body=body),
                        head=scope["method"] == "HEAD",
                        done=lambda sent: self._log(scope, None, 200, started, None, sent))
            return
        req: S3Request | None = None
        response: Response
        error: errors.S3Error | None = None
        try:
            req = build_request(scope, receive, self.domain, request_id)
            principal = await authenticate_request(req, self.credentials, self.signing_keys)
            if principal.account_id:
                self.ctx.display_names[principal.canonical_id] = principal.display_name
            handler = route(req)
            response = await handler(self.ctx, req)
        except errors.S3Error as exc:
            error = exc
        except ClientDisconnected:
            self._log(scope, req, 499, started, "ClientDisconnected")
            return
        except Exception:
            log.exception("unexpected error serving %s %s", scope["method"], scope.get("path"))
            error = errors.InternalError()
        if error is not None:
            response = self._error_response(error, req, scope, request_id)
            # An unread body would be parsed as the next request: drain it or close.
            close = req is None or not await drain(req)
            if close:
                response.headers.append(("connection", "close"))
        code = error.code if error else None
        await _send(send, receive, request_id, response, head=scope["method"] == "HEAD",
                    done=lambda sent: self._log(scope, req, response.status, started, code, sent),
                    zerocopy=ZEROCOPY in (scope.get("extensions") or {}))

    def _error_response(self, exc: errors.S3Error, req: S3Request | None, scope: Scope,
                        request_id: str) -> Response:
        headers = list(exc.headers.items())
        if exc.status == 304:
            return Response(status=304, headers=headers)
        resource_name = req.resource if req is not None else scope.get("path", "/")
        body = xml.render_error(exc.code, exc.detail, resource_name, request_id,
                                {k: str(v) for k, v in exc.extra.items()})
        headers.append(("content-type", "application/xml"))
        return Response(status=exc.status, headers=headers, body=body)

    def _log(self, scope: Scope, req: S3Request | None, status: int, started: float,
             error: str | None, sent: int = 0) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        principal = req.principal if req is not None else None
        access_log.info("s3 request", extra={
            "request_id": request_id_var.get(),
            "method": scope["method"],
            "path": scope.get("path", ""),
            "query": _redacted_query(scope.get("query_string", b"").decode("latin-1"))[:300],
            "status": status,
            "error": error,
            "bytes_in": req.headers.get("content-length") if req is not None else None,
            "bytes_out": sent,
            "ms": round((time.perf_counter() - started) * 1000, 2),
            "account": principal.account_id if principal else None,
            "client": req.client if req is not None else "",
        })


_SECRET_PARAMS = ("X-Amz-Signature=", "Signature=", "X-Amz-Security-Token=")


def _redacted_query(query: str) -> str:
    """The query for the log, without signatures (a presigned URL is a bearer token)."""
    parts = query.split("&")
    for i, part in enumerate(parts):
        if part.startswith(_SECRET_PARAMS):
            parts[i] = part.split("=", 1)[0] + "=REDACTED"
    return "&".join(parts)


def _has_signature(scope: Scope) -> bool:
    if any(name.lower() == b"authorization" for name, _ in scope.get("headers", [])):
        return True
    qs = scope.get("query_string", b"")
    return b"Signature" in qs or b"X-Amz-Credential" in qs


async def _send(send: Send, receive: Receive, request_id: str, response: Response,
                *, head: bool, done: Callable[[int], None], zerocopy: bool = False) -> None:
    """Send ``response``, stopping early if the client leaves.

    With ``zerocopy`` (the server takes ASGI ``http.response.zerocopysend``) a response
    whose bytes are in files (``Response.files``) is sent by the kernel from them.

    ``done(bytes_sent)`` is called once, just before the message that ends the
    response: a client that has its answer finds the access log line written.
    """
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    headers.append((b"x-amz-request-id", request_id.encode()))
    headers.append((b"x-amz-id-2", new_host_id()))
    length = response.length if response.stream is not None or response.length is not None \
        else len(response.body)
    if response.status not in (204, 304):
        headers.append((b"content-length", str(length or 0).encode()))
    sent = 0
    reported = False

    def report() -> None:
        nonlocal reported
        if not reported:
            reported = True
            done(sent)

    try:
        await send({"type": "http.response.start", "status": response.status,
                    "headers": headers})
        if response.stream is None or head:
            sent = 0 if head else len(response.body)
            report()
            await send({"type": "http.response.body", "body": b"" if head else response.body})
            return
        if zerocopy and response.files is not None:
            await response.stream.aclose()  # type: ignore[attr-defined]  # never started
            for fd, offset, count in response.files:
                await send({"type": ZEROCOPY, "file": fd, "offset": offset, "count": count,
                            "more_body": True})
                sent += count
            report()
            await send({"type": "http.response.body", "body": b""})
            return
        gone = asyncio.Event()

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    gone.set()
                    return

        watcher = asyncio.create_task(watch())
        try:
            async for chunk in response.stream:
                if gone.is_set():
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent += len(chunk)
            report()
            await send({"type": "http.response.body", "body": b""})
        finally:
            watcher.cancel()
            await response.stream.aclose()  # type: ignore[attr-defined]
    finally:
        report()
        if response.cleanup is not None:
            await response.cleanup()


def create_app(config: Config, *, credentials: CredentialStore | None = None,
               store: BlobStore | None = None) -> WalrusApp:
    """Build Walrus: database (migrated), blob store (temp files swept), credential store.

    ``credentials`` defaults to the other components' keys (the CLC reads
    images to register them, NCs fetch them to boot) followed by the CLC's
    identity store (users' keys live in the CLC database); ``store``
    defaults to a :class:`FilesystemStore` under ``config.walrus.storage_dir``.
    """
    if credentials is None:
        from eucalypt.clc.api import ClcIdentityStore

        components = ComponentKeys.load(config.keys_dir).store(["clc", "cc", "nc"])
        credentials = ChainCredentialStore(components, ClcIdentityStore(config))
    db = Database(config.walrus.database_url)
    sqlite = db.engine.dialect.name == "sqlite"
    if sqlite:
        event.listen(db.engine, "connect", _durable_sqlite)
    migrate(db.engine, MIGRATIONS, VERSION_TABLE)
    if store is None:
        store = FilesystemStore(config.walrus.storage_dir)
    swept = store.sweep_temp()
    if swept:
        log.info("removed %d temp file(s) of interrupted writes", swept)
    _raise_fd_limit()
    executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="walrus-io")
    committer = GroupCommitter(db.engine) if sqlite else None
    ctx = Context(config=config, db=db, store=store, executor=executor, committer=committer,
                  credentials=credentials)
    return WalrusApp(ctx, credentials)


def serve(config: Config) -> None:
    """Run Walrus on ``config.walrus.host:port`` with its own HTTP server (``server.py``)."""
    run_app(create_app(config), config.walrus.host, config.walrus.port)


def run_app(app: WalrusApp, host: str, port: int) -> None:
    """Serve a built Walrus until SIGTERM/SIGINT (uvloop; ``eucalypt.walrus.server``)."""
    from eucalypt.walrus import server

    server.run(app, host, port)
