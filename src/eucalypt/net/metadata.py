"""The metadata proxy: instances' 169.254.169.254:80, forwarded to the CLC.

Whoever intercepts an instance's TCP 169.254.169.254:80 redirects it to this
proxy's port, so that the connection's source address is the instance's own
address: the CC (MANAGED modes, and STATIC when it is the router: iptables
REDIRECT on the instance interfaces, ``eucalypt.cc.network``) or the NC
(SYSTEM and STATIC: nftables on the node's bridge, ``eucalypt.nc.metadata``).
The proxy

- finds the instance by that source address with ``lookup`` (the CC: its
  network manager's table; the NC: the MAC behind the address; a lookup may
  be a coroutine; unknown addresses get 403 and nothing is forwarded),
- forwards the request to ``upstream`` (the CLC's metadata service) with
  the same method, path, query and body,
- adds ``X-Eucalypt-Instance-Id`` and ``X-Eucalypt-Instance-Ip`` (any such
  headers sent by the instance are dropped first),
- signs the forwarded request with its component's key (SigV4, service
  ``eucalypt``) when it has one, so the CLC can trust those headers,
- and returns the upstream's status, content type and body as they are.

The listening socket is opened inside the data plane's network namespace;
the upstream connection goes out from the component's own namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterator

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from eucalypt.auth.credentials import Credential
from eucalypt.auth.sign import HttpxSigV4Auth
from eucalypt.net.netns import socket_in_netns

log = logging.getLogger("eucalypt.metadata")

INSTANCE_ID_HEADER = "X-Eucalypt-Instance-Id"
INSTANCE_IP_HEADER = "X-Eucalypt-Instance-Ip"
_DROP = {"host", "content-length", "connection", "transfer-encoding"}

Lookup = Callable[[str], str | Awaitable[str | None] | None]


class _Server(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers to the component's server."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class MetadataProxy:
    def __init__(
        self,
        lookup: Lookup,
        upstream: str,
        port: int,
        *,
        netns: str | None = None,
        credential: Credential | None = None,
        region: str = "eucalypt-1",
    ) -> None:
        self.lookup = lookup
        self.upstream = upstream.rstrip("/")
        self.port = port
        self.netns = netns
        self.auth = (
            HttpxSigV4Auth(credential, region=region, service="eucalypt") if credential else None
        )
        self.client = httpx.AsyncClient(auth=self.auth, timeout=10.0)
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(
                    "/{path:path}",
                    self.handle,
                    methods=["GET", "HEAD", "PUT", "POST", "DELETE"],
                )
            ]
        )

    async def handle(self, request: Request) -> Response:
        ip = request.client.host if request.client else ""
        found = self.lookup(ip)
        instance_id = await found if inspect.isawaitable(found) else found
        if instance_id is None:
            return PlainTextResponse("unknown instance\n", status_code=403)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in _DROP and not k.lower().startswith("x-eucalypt-")
        }
        headers[INSTANCE_ID_HEADER] = instance_id
        headers[INSTANCE_IP_HEADER] = ip
        url = self.upstream + request.url.path
        if request.url.query:
            url += "?" + request.url.query
        try:
            reply = await self.client.request(
                request.method, url, headers=headers, content=await request.body()
            )
        except httpx.HTTPError as exc:
            log.warning("metadata upstream failed", extra={"error": str(exc)})
            return PlainTextResponse("metadata service unavailable\n", status_code=502)
        out = {"content-type": reply.headers.get("content-type", "text/plain")}
        return Response(reply.content, status_code=reply.status_code, headers=out)

    async def start(self) -> None:
        if self.client.is_closed:
            self.client = httpx.AsyncClient(auth=self.auth, timeout=10.0)
        sock = socket_in_netns(self.netns, "0.0.0.0", self.port)
        config = uvicorn.Config(self.app(), log_level="warning", lifespan="off", access_log=False)
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()  # raises the server's startup error

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._server = self._task = None
        await self.client.aclose()
