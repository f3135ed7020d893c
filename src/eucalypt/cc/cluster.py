"""The CC's soft state: its nodes and their instances, rebuilt by polling.

Nothing here is persisted: after a restart the first poll of every NC
rebuilds it (the paper's CC keeps no state of its own). Between polls the
CC subtracts what it has placed since the last poll started ("claims"), so
concurrent launches never overcommit a node on a stale view.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from eucalypt.cc.api import ClusterInstance, NodeStatus
from eucalypt.cc.scheduler import NodeView
from eucalypt.nc.api import InstanceInfo, NcClient, NodeResources, VmSpec
from eucalypt.rpc.errors import RemoteError

log = logging.getLogger("eucalypt.cc.cluster")


@dataclass
class Node:
    url: str
    index: int
    client: NcClient
    status: NodeStatus
    instances: dict[str, InstanceInfo] = field(default_factory=dict)
    # instance id -> (VM, monotonic time placed): placements not yet seen in a poll
    claims: dict[str, tuple[VmSpec, float]] = field(default_factory=dict)

    def view(self) -> NodeView:
        res = self.status.resources
        if res is None:
            free = NodeResources(
                cores_total=0,
                cores_free=0,
                memory_mib_total=0,
                memory_mib_free=0,
                disk_gib_total=0,
                disk_gib_free=0,
            )
        else:
            free = res.model_copy()
            for vm, _ in self.claims.values():
                free.cores_free -= vm.cores
                free.memory_mib_free -= vm.memory_mib
                free.disk_gib_free -= vm.disk_gib
        return NodeView(url=self.url, index=self.index, up=self.status.state == "up", free=free)


class Cluster:
    """Nodes in configured order, polled for resources and instances."""

    def __init__(self, clients: dict[str, NcClient]) -> None:
        self.nodes: dict[str, Node] = {
            url: Node(url=url, index=i, client=c, status=NodeStatus(url=url, state="unknown"))
            for i, (url, c) in enumerate(clients.items())
        }
        # Which node each known instance is on.
        self.placement: dict[str, str] = {}
        self.lock = asyncio.Lock()

    async def _poll(self, node: Node) -> None:
        started = time.monotonic()
        try:
            res, inst = await asyncio.gather(
                node.client.describe_resource(), node.client.describe_instances()
            )
        except RemoteError as exc:
            if node.status.state != "down":
                log.warning("node down", extra={"node_url": node.url, "error": exc.message})
            node.status = NodeStatus(url=node.url, state="down", error=exc.message)
            return
        if node.status.state != "up":
            log.info("node up", extra={"node_url": node.url, "node": res.node})
        node.status = NodeStatus(url=node.url, state="up", node=res.node, resources=res.resources)
        node.instances = {i.instance_id: i for i in inst.instances}
        for instance_id in node.instances:
            self.placement[instance_id] = node.url
        # Placements made before this poll began are now in the NC's own figures.
        node.claims = {k: v for k, v in node.claims.items() if v[1] >= started}

    async def refresh(self) -> None:
        await asyncio.gather(*(self._poll(n) for n in self.nodes.values()))

    async def poll_forever(self, interval: float) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # the poller must outlive any one bad round
                log.exception("node poll failed")
            await asyncio.sleep(interval)

    def views(self) -> list[NodeView]:
        return [n.view() for n in self.nodes.values()]

    def claim(self, url: str, instance_id: str, vm: VmSpec) -> None:
        self.nodes[url].claims[instance_id] = (vm, time.monotonic())
        self.placement[instance_id] = url

    def release(self, url: str, instance_id: str) -> None:
        self.nodes[url].claims.pop(instance_id, None)
        if self.placement.get(instance_id) == url and instance_id not in self.nodes[url].instances:
            del self.placement[instance_id]

    def record(self, url: str, info: InstanceInfo) -> None:
        self.nodes[url].instances[info.instance_id] = info
        self.placement[info.instance_id] = url

    def lookup(self, instance_id: str) -> ClusterInstance | None:
        url = self.placement.get(instance_id)
        if url is None:
            return None
        node = self.nodes[url]
        info = node.instances.get(instance_id)
        if info is None:
            return None
        return ClusterInstance(instance=info, node_url=url, node_state=node.status.state)

    def all_instances(self) -> list[ClusterInstance]:
        return [
            ClusterInstance(instance=i, node_url=n.url, node_state=n.status.state)
            for n in self.nodes.values()
            for i in n.instances.values()
        ]

    async def aclose(self) -> None:
        for node in self.nodes.values():
            await node.client.aclose()
