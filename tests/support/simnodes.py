"""Many sim NCs behind one HTTP server, for scale tests and the CC benchmark.

``http://HOST:PORT/n0042/v1/<Operation>`` reaches node ``n0042``'s NC app,
built by :func:`eucalypt.nc.app.create_app` with the ``sim`` driver and its
own instances directory. Only ``path`` is rewritten for routing: the NC
checks the signature against ``raw_path``, the full path the CC signed, so
SigV4 works unchanged. The router runs every app's lifespan; ``GET
/healthz`` answers 200 once all have started, and ``GET /_truth`` reports
each node's own view (from its NodeService, not through the NC API), for
correctness checks.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from eucalypt.config import Config, NcConfig, VmType
from eucalypt.nc.api import InstanceState
from eucalypt.nc.app import create_app
from eucalypt.nc.service import NodeService
from eucalypt.rpc import ComponentKeys

ACTIVE = {InstanceState.PENDING, InstanceState.RUNNING, InstanceState.SHUTTING_DOWN}

Scope = dict[str, Any]


def node_name(i: int) -> str:
    return f"n{i:04d}"


def node_sizes(nodes: int, slots: int, vm: VmType) -> list[dict[str, int]]:
    """Per node: cores/memory/disk for a whole number of ``vm`` slots, varied around the
    mean (offsets -3s, -s, +s, +3s: 4, 8, 12, 16 for a mean of 10), adding up to exactly
    ``slots``: a cluster that ends exactly full after ``slots`` placements."""
    base = slots // nodes
    step = max(0, min(2, (base - 1) // 3))
    offsets = [-3 * step, -step, step, 3 * step]
    counts = [base + (offsets[i % 4] if i < nodes - nodes % 4 else 0) for i in range(nodes)]
    for i in range(slots - sum(counts)):
        counts[i % nodes] += 1
    return [
        {"cores": c * vm.cores, "memory_mib": c * vm.memory_mib, "disk_gib": c * vm.disk_gib}
        for c in counts
    ]


def build_nodes(
    base: Config,
    sizes: list[dict[str, int]],
    root: Path,
    *,
    first: int = 0,
    count: int | None = None,
    boot_seconds: float = 0.05,
    monitor_seconds: float = 5.0,
) -> dict[str, FastAPI]:
    """NC apps (sim driver) for nodes ``first`` .. ``first + count - 1``, sized by ``sizes``.

    Only the CC's key is accepted (no CLC lookups)."""
    store = ComponentKeys.load(base.keys_dir).store(["cc"])
    count = len(sizes) - first if count is None else count
    apps = {}
    for i in range(first, first + count):
        name = node_name(i)
        size = sizes[i]
        config = base.model_copy()
        config.nc = NcConfig(
            port=20000 + i,  # only names the node (hostname:port); never bound
            hypervisor="sim",
            sim_boot_seconds=boot_seconds,
            sim_cores=size["cores"],
            sim_memory_mib=size["memory_mib"],
            sim_disk_gib=size["disk_gib"],
            reserve_cores=0,
            reserve_memory_mib=0,
            monitor_seconds=monitor_seconds,
            instances_dir=str(root / name / "instances"),
            cache_dir=str(root / name / "cache"),
        )
        apps[name] = create_app(config, credentials=store)
    return apps


class PrefixRouter:
    """ASGI: ``/<node>/rest`` → that node's app at ``/rest``; runs every app's lifespan."""

    def __init__(self, apps: dict[str, FastAPI]) -> None:
        self.apps = apps
        self.started = False

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope["path"]
        if path == "/healthz":
            await _json(send, 200 if self.started else 503, {"nodes": len(self.apps)})
            return
        if path == "/_truth":
            await _json(send, 200, await self.truth())
            return
        parts = path.split("/", 2)  # "", node, rest
        app = self.apps.get(parts[1]) if len(parts) > 1 else None
        if app is None or scope["type"] != "http":
            await _json(send, 404, {"error": {"code": "NotFound", "message": path}})
            return
        # raw_path keeps the full path: the NC checks the signature against it.
        await app({**scope, "path": "/" + (parts[2] if len(parts) > 2 else "")}, receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        await receive()  # lifespan.startup
        async with contextlib.AsyncExitStack() as stack:
            try:
                for app in self.apps.values():
                    await stack.enter_async_context(app.router.lifespan_context(app))
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                return
            self.started = True
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})

    async def truth(self) -> dict[str, Any]:
        """Per node: active and running instances, and its resources (total and free)."""
        nodes = {}
        for name, app in self.apps.items():
            service: NodeService = app.state.service
            infos = await service.describe_instances([])
            nodes[name] = {
                "active": sum(1 for i in infos if i.state in ACTIVE),
                "running": sum(1 for i in infos if i.state == InstanceState.RUNNING),
                "resources": service.resources().model_dump(),
            }
        return {"nodes": nodes}


async def _json(send: Any, status: int, doc: Any) -> None:
    body = json.dumps(doc).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
