"""The CC's soft view of its nodes, refreshed by polling each NC."""

from __future__ import annotations

import asyncio
import logging

from eucalypt.cc.api import NodeStatus
from eucalypt.nc.api import NcClient
from eucalypt.rpc.errors import RemoteError

log = logging.getLogger("eucalypt.cc.nodes")


class NodeRegistry:
    """Polls the NCs; a node that does not answer is marked ``down``."""

    def __init__(self, clients: dict[str, NcClient]) -> None:
        self._clients = clients
        self.status: dict[str, NodeStatus] = {
            url: NodeStatus(url=url, state="unknown") for url in clients
        }

    async def _poll_one(self, url: str, client: NcClient) -> NodeStatus:
        try:
            reply = await client.describe_resource()
        except RemoteError as exc:
            if self.status[url].state != "down":
                log.warning("node down", extra={"node_url": url, "error": exc.message})
            return NodeStatus(url=url, state="down", error=exc.message)
        return NodeStatus(url=url, state="up", node=reply.node, resources=reply.resources)

    async def refresh(self) -> None:
        results = await asyncio.gather(*(self._poll_one(u, c) for u, c in self._clients.items()))
        self.status = {s.url: s for s in results}

    async def poll_forever(self, interval: float) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # the poller must outlive any one bad round
                log.exception("node poll failed")
            await asyncio.sleep(interval)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
