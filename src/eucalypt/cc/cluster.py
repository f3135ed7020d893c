"""The CC's soft state: its nodes and their instances, rebuilt by polling.

Nothing here is persisted: after a restart the first poll of every NC
rebuilds it (the paper's CC keeps no state of its own). Between polls the
CC also counts what it has placed that the node does not report yet
("claims"), so concurrent launches never overcommit a node on a stale view.

A node's first answer after the CC starts is handed to ``on_first_contact``
(the CC's network manager adopts the endpoints of its instances from it).

Scale: the scheduler asks for every node's view on each placement, so a
node's view is computed once and kept until that node changes (a poll
answer, a claim, a launch or terminate recorded); a placement then costs
O(nodes), not O(instances). Change a node's instances and claims only
through this class's methods, which drop the kept view. A poll round asks
at most ``poll_concurrency`` nodes at once, so a large cluster's round does
not flood the event loop that also serves the CLC, and asks an up node for
its instances only (its resources every ``resources_every`` rounds): each
request costs the CC about a millisecond of CPU, and with 1,000 nodes the
poller is most of the CC's work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from eucalypt.cc.api import ClusterInstance, NodeStatus
from eucalypt.cc.scheduler import NodeView
from eucalypt.nc.api import (
    DescribeInstancesResponse,
    InstanceInfo,
    InstanceState,
    NcClient,
    NodeResources,
    VmSpec,
)
from eucalypt.rpc.errors import RemoteError

log = logging.getLogger("eucalypt.cc.cluster")

#: States in which an instance holds its node's resources.
ACTIVE = frozenset({InstanceState.PENDING, InstanceState.RUNNING, InstanceState.SHUTTING_DOWN})

#: ``await on_first_contact(node_url, instances)``: a node's instances, first time it answers.
FirstContact = Callable[[str, list[InstanceInfo]], Awaitable[None]]

#: Nodes polled at once in a round.
POLL_CONCURRENCY = 64
#: A node that has not answered a poll within this many seconds is down (until it answers):
#: a hung node holds one of the round's POLL_CONCURRENCY places no longer than this.
POLL_TIMEOUT = 15.0
#: An up node's DescribeResource is asked once every this many rounds (DescribeInstances
#: every round): its totals rarely change, and its free resources are counted from its
#: instances. A node that is not up is asked both.
RESOURCES_EVERY = 12

_NO_RESOURCES = NodeResources(
    cores_total=0,
    cores_free=0,
    memory_mib_total=0,
    memory_mib_free=0,
    disk_gib_total=0,
    disk_gib_free=0,
)


@dataclass
class Node:
    url: str
    index: int
    client: NcClient
    status: NodeStatus
    instances: dict[str, InstanceInfo] = field(default_factory=dict)
    # instance id -> VM: placements the node has not reported yet
    claims: dict[str, VmSpec] = field(default_factory=dict)
    _view: NodeView | None = field(default=None, repr=False)

    def active(self) -> int:
        """Instances holding the node's resources: active ones and our unseen placements."""
        seen = sum(1 for i in self.instances.values() if i.state in ACTIVE)
        return seen + sum(1 for iid in self.claims if iid not in self.instances)

    def changed(self) -> None:
        """Forget the kept view (call after changing status, instances or claims)."""
        self._view = None

    def view(self) -> NodeView:
        """Free = the node's totals minus its active instances minus our unseen placements.

        Computed from the instance list rather than the NC's own free figures,
        so the two answers of one poll can never disagree about a launch that
        landed between them. Kept until the node changes.
        """
        if self._view is None:
            self._view = self._compute_view()
        return self._view

    def _compute_view(self) -> NodeView:
        res = self.status.resources
        if res is None:
            return NodeView(url=self.url, index=self.index, up=False, free=_NO_RESOURCES)
        cores = memory = disk = 0
        for i in self.instances.values():
            if i.state in ACTIVE:
                cores += i.vm.cores
                memory += i.vm.memory_mib
                disk += i.vm.disk_gib
        for iid, vm in self.claims.items():
            if iid not in self.instances:
                cores += vm.cores
                memory += vm.memory_mib
                disk += vm.disk_gib
        free = NodeResources(
            cores_total=res.cores_total,
            cores_free=res.cores_total - cores,
            memory_mib_total=res.memory_mib_total,
            memory_mib_free=res.memory_mib_total - memory,
            disk_gib_total=res.disk_gib_total,
            disk_gib_free=res.disk_gib_total - disk,
        )
        return NodeView(url=self.url, index=self.index, up=self.status.state == "up", free=free)


class Cluster:
    """Nodes in configured (then registration) order, polled for resources and instances."""

    def __init__(
        self,
        clients: dict[str, NcClient],
        on_first_contact: FirstContact | None = None,
        *,
        poll_concurrency: int = POLL_CONCURRENCY,
        resources_every: int = RESOURCES_EVERY,
        poll_timeout: float = POLL_TIMEOUT,
    ) -> None:
        self.nodes: dict[str, Node] = {}
        self._next_index = 0
        # Which node each known instance is on.
        self.placement: dict[str, str] = {}
        self.lock = asyncio.Lock()
        self.on_first_contact = on_first_contact
        # Nodes that have answered since the CC started (and been handed to on_first_contact).
        self.contacted: set[str] = set()
        self.poll_concurrency = max(1, poll_concurrency)
        self.resources_every = max(1, resources_every)
        self.poll_timeout = poll_timeout
        self._round = 0
        #: Seconds each of the last poll rounds took (newest last).
        self.poll_rounds: deque[float] = deque(maxlen=100)
        for url, client in clients.items():
            self.add(url, client)

    # ------------------------------------------------------------------ membership
    def add(self, url: str, client: NcClient) -> Node:
        """Add a node (after those already known); it is polled from the next round."""
        if url in self.nodes:
            raise ValueError(f"node {url} is already known")
        node = Node(
            url=url,
            index=self._next_index,
            client=client,
            status=NodeStatus(url=url, state="unknown"),
        )
        self._next_index += 1
        self.nodes[url] = node
        return node

    def remove(self, url: str) -> Node:
        """Forget a node and its instances; the caller closes its client."""
        node = self.nodes.pop(url)
        self.contacted.discard(url)
        for iid in [*node.instances, *node.claims]:
            if self.placement.get(iid) == url:
                del self.placement[iid]
        return node

    # ------------------------------------------------------------------ polling
    def _wants_resources(self, node: Node) -> bool:
        """DescribeResource this time? Always until the node is up; then once every
        ``resources_every`` rounds (staggered by node), as a node's totals rarely change
        and its free resources are counted from its instances."""
        if node.status.state != "up" or node.status.resources is None:
            return True
        return (self._round + node.index) % self.resources_every == 0

    async def _ask(self, node: Node) -> tuple[str, NodeResources | None, DescribeInstancesResponse]:
        """The node's name, resources and instances (resources from the last time when
        this round does not ask for them)."""
        if self._wants_resources(node):
            res, inst = await asyncio.gather(
                node.client.describe_resource(), node.client.describe_instances()
            )
            return res.node, res.resources, inst
        inst = await node.client.describe_instances()
        return node.status.node, node.status.resources, inst

    async def _ask_again(
        self, node: Node
    ) -> tuple[str, NodeResources | None, DescribeInstancesResponse]:
        try:
            return await self._ask(node)
        except RemoteError as exc:
            if exc.code != "ServiceUnavailable":
                raise
            # Once more before calling the node down: a kept-alive connection that the NC
            # closed just as we reused it fails like this (polls are idempotent).
            return await self._ask(node)

    async def _poll(self, node: Node) -> None:
        try:
            name, resources, inst = await asyncio.wait_for(self._ask_again(node), self.poll_timeout)
        except (RemoteError, TimeoutError) as exc:
            if self.nodes.get(node.url) is not node:
                return  # removed while we asked
            error = (
                exc.message
                if isinstance(exc, RemoteError)
                else f"no answer within {self.poll_timeout:g} s"
            )
            if node.status.state != "down":
                log.warning("node down", extra={"node_url": node.url, "error": error})
            node.status = NodeStatus(url=node.url, state="down", error=error)
            node.changed()
            return
        except Exception:
            if self.nodes.get(node.url) is not node:
                return  # deregistered meanwhile: its client was closed under the poll
            raise
        if self.nodes.get(node.url) is not node:
            return
        if node.status.state != "up":
            log.info("node up", extra={"node_url": node.url, "node": name})
            node.status = NodeStatus(url=node.url, state="up", node=name, resources=resources)
        elif resources is not node.status.resources:
            node.status = NodeStatus(url=node.url, state="up", node=name, resources=resources)
        fresh = {i.instance_id: i for i in inst.instances}
        # Placements the NC now reports are counted from its instance list.
        node.claims = {k: v for k, v in node.claims.items() if k not in fresh}
        # A launch recorded while this poll was on its way is not in the answer yet: keep it.
        for iid in node.claims:
            known = node.instances.get(iid)
            if known is not None:
                fresh[iid] = known
        for iid in node.instances.keys() - fresh.keys():
            if self.placement.get(iid) == node.url:
                del self.placement[iid]  # the NC forgot it (terminated long ago)
        for iid in fresh:
            self.placement[iid] = node.url
        node.instances = fresh
        node.changed()
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

    async def poll_node(self, node: Node) -> NodeStatus:
        """Poll one node now; its status afterwards."""
        await self._poll(node)
        return node.status

    async def _poll_all(self) -> None:
        gate = asyncio.Semaphore(self.poll_concurrency)

        async def one(node: Node) -> None:
            async with gate:
                await self._poll(node)

        self._round += 1
        await asyncio.gather(*(one(n) for n in list(self.nodes.values())))

    async def refresh(self, timeout: float | None = None) -> None:
        """Poll every node; with ``timeout``, stop waiting for the slow ones (they
        stay as they were, and the next refresh asks them again)."""
        if timeout is None:
            await self._poll_all()
            return
        try:
            await asyncio.wait_for(self._poll_all(), timeout)
        except TimeoutError:
            quiet = [n.url for n in self.nodes.values() if n.url not in self.contacted]
            log.warning("nodes not heard from", extra={"nodes": quiet[:20], "count": len(quiet)})

    async def poll_forever(self, interval: float) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.refresh()
            except Exception:  # the poller must outlive any one bad round
                log.exception("node poll failed")
            took = time.monotonic() - started
            self.poll_rounds.append(took)
            if took > interval:
                log.warning(
                    "poll round slower than poll_seconds",
                    extra={"seconds": round(took, 2), "nodes": len(self.nodes)},
                )
            await asyncio.sleep(interval)

    # ------------------------------------------------------------------ views and bookkeeping
    def views(self) -> list[NodeView]:
        return [n.view() for n in self.nodes.values()]

    def claim(self, url: str, instance_id: str, vm: VmSpec) -> None:
        node = self.nodes[url]
        node.claims[instance_id] = vm
        node.changed()
        self.placement[instance_id] = url

    def release(self, url: str, instance_id: str) -> None:
        node = self.nodes.get(url)
        if node is None:
            return
        node.claims.pop(instance_id, None)
        node.changed()
        if self.placement.get(instance_id) == url and instance_id not in node.instances:
            del self.placement[instance_id]

    def record(self, url: str, info: InstanceInfo) -> None:
        node = self.nodes.get(url)
        if node is None:
            return  # deregistered meanwhile
        node.instances[info.instance_id] = info
        node.changed()
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
