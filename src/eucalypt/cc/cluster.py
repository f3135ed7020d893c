"""The CC's soft state: its nodes and their instances, rebuilt by polling.

Nothing here is persisted: after a restart the first poll of every NC
rebuilds it (the paper's CC keeps no state of its own). Between polls the
CC also counts what it has placed that the node does not report yet
("claims"), so concurrent launches never overcommit a node on a stale view.

A node's first answer after the CC starts is handed to ``on_first_contact``
(the CC's network manager adopts the endpoints of its instances from it).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from eucalypt.cc.api import ClusterInstance, NodeStatus
from eucalypt.cc.scheduler import NodeView
from eucalypt.nc.api import InstanceInfo, InstanceState, NcClient, NodeResources, VmSpec
from eucalypt.rpc.errors import RemoteError

log = logging.getLogger("eucalypt.cc.cluster")

#: States in which an instance holds its node's resources.
ACTIVE = frozenset({InstanceState.PENDING, InstanceState.RUNNING, InstanceState.SHUTTING_DOWN})

#: ``await on_first_contact(node_url, instances)``: a node's instances, first time it answers.
FirstContact = Callable[[str, list[InstanceInfo]], Awaitable[None]]


@dataclass
class Node:
    url: str
    index: int
    client: NcClient
    status: NodeStatus
    instances: dict[str, InstanceInfo] = field(default_factory=dict)
    # instance id -> VM: placements the node has not reported yet
    claims: dict[str, VmSpec] = field(default_factory=dict)

    def view(self) -> NodeView:
        """Free = the node's totals minus its active instances minus our unseen placements.

        Computed from the instance list rather than the NC's own free figures,
        so the two answers of one poll can never disagree about a launch that
        landed between them.
        """
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
            return NodeView(url=self.url, index=self.index, up=False, free=free)
        used = [i.vm for i in self.instances.values() if i.state in ACTIVE]
        used += [vm for iid, vm in self.claims.items() if iid not in self.instances]
        free = NodeResources(
            cores_total=res.cores_total,
            cores_free=res.cores_total - sum(v.cores for v in used),
            memory_mib_total=res.memory_mib_total,
            memory_mib_free=res.memory_mib_total - sum(v.memory_mib for v in used),
            disk_gib_total=res.disk_gib_total,
            disk_gib_free=res.disk_gib_total - sum(v.disk_gib for v in used),
        )
        return NodeView(url=self.url, index=self.index, up=self.status.state == "up", free=free)


class Cluster:
    """Nodes in configured order, polled for resources and instances."""

    def __init__(
        self, clients: dict[str, NcClient], on_first_contact: FirstContact | None = None
    ) -> None:
        self.nodes: dict[str, Node] = {
            url: Node(url=url, index=i, client=c, status=NodeStatus(url=url, state="unknown"))
            for i, (url, c) in enumerate(clients.items())
        }
        # Which node each known instance is on.
        self.placement: dict[str, str] = {}
        self.lock = asyncio.Lock()
        self.on_first_contact = on_first_contact
        # Nodes that have answered since the CC started (and been handed to on_first_contact).
        self.contacted: set[str] = set()

    async def _poll(self, node: Node) -> None:
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
        # Placements the NC now reports are counted from its instance list.
        node.claims = {k: v for k, v in node.claims.items() if k not in node.instances}
        if node.url not in self.contacted:
            self.contacted.add(node.url)
            try:
                if self.on_first_contact is not None:
                    await self.on_first_contact(node.url, list(inst.instances))
            except asyncio.CancelledError:
                self.contacted.discard(node.url)
                raise
            except Exception:
                self.contacted.discard(node.url)  # tried again at the next poll
                log.exception("first contact failed", extra={"node_url": node.url})

    async def refresh(self, timeout: float | None = None) -> None:
        """Poll every node; with ``timeout``, stop waiting for the slow ones (they
        stay as they were, and the next refresh asks them again)."""
        polls = asyncio.gather(*(self._poll(n) for n in self.nodes.values()))
        if timeout is None:
            await polls
            return
        try:
            await asyncio.wait_for(polls, timeout)
        except TimeoutError:
            quiet = [n.url for n in self.nodes.values() if n.url not in self.contacted]
            log.warning("nodes not heard from", extra={"nodes": quiet})

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
        self.nodes[url].claims[instance_id] = vm
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
