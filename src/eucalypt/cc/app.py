"""The Cluster Controller service: HTTP wiring."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from eucalypt.auth.credentials import Credential
from eucalypt.cc.api import DescribeResourcesRequest, DescribeResourcesResponse
from eucalypt.cc.capacity import availability
from eucalypt.cc.nodes import NodeRegistry
from eucalypt.config import Config
from eucalypt.nc.api import NcClient
from eucalypt.rpc import ComponentKeys, RpcRouter, rpc_app


def create_app(config: Config) -> FastAPI:
    keys = ComponentKeys.load(config.keys_dir)
    me = keys.credential("cc")
    registry = NodeRegistry(
        {url: NcClient(url, me, region=config.region, timeout=5.0) for url in config.cc.nodes}
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await registry.refresh()
        poller = asyncio.create_task(registry.poll_forever(config.cc.poll_seconds))
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await registry.aclose()

    app = rpc_app("cc", keys.store(["clc"]))
    app.router.lifespan_context = lifespan
    app.state.registry = registry
    router = RpcRouter()

    @router.operation(
        "DescribeResources",
        DescribeResourcesRequest,
        DescribeResourcesResponse,
        allow={"clc", "admin"},
    )
    async def describe_resources(
        req: DescribeResourcesRequest, _caller: Credential
    ) -> DescribeResourcesResponse:
        """How many instances of each VM type fit on the cluster's nodes that are up."""
        nodes = list(registry.status.values())
        up = [n.resources for n in nodes if n.state == "up" and n.resources is not None]
        return DescribeResourcesResponse(
            cluster=config.cc.name, vm_types=availability(up, req.vm_types), nodes=nodes
        )

    router.mount(app)
    return app
