"""The Cluster Controller service: HTTP wiring.

Callers: the CLC by its component key, and cloud administrators, whose keys
the CC resolves through the CLC's ``LookupAccessKey`` (cached briefly; while
the CLC does not answer, an administrator's first request gets
ServiceUnavailable).

Nodes come from ``cc.nodes`` and from ``RegisterNode``; registered ones are
kept in ``<data_dir>/cc/nodes.json`` (:mod:`eucalypt.cc.registry`) so a
restarted CC polls them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from eucalypt.auth.credentials import ChainCredentialStore, Credential, CredentialStore
from eucalypt.cc.api import (
    DeregisterNodeRequest,
    DeregisterNodeResponse,
    DescribeInstancesResponse,
    DescribeNodesRequest,
    DescribeNodesResponse,
    DescribeResourcesRequest,
    DescribeResourcesResponse,
    InstanceIdRequest,
    InstanceIdsRequest,
    NodeInfo,
    NodeRequest,
    RegisterNodeResponse,
    RunInstancesRequest,
    RunInstancesResponse,
)
from eucalypt.cc.capacity import availability
from eucalypt.cc.cluster import ACTIVE, Cluster, Node
from eucalypt.cc.errors import NodeConfigured, NodeInUse
from eucalypt.cc.network import FoundEndpoint, make_network
from eucalypt.cc.network.rpc import register as register_network_operations
from eucalypt.cc.registry import NodeRegistry, normalize_node_url
from eucalypt.cc.scheduler import make_policy
from eucalypt.cc.service import ClusterService
from eucalypt.clc.api import ClcIdentityStore
from eucalypt.config import Config
from eucalypt.nc.api import GetConsoleOutputResponse, InstanceInfo, NcClient
from eucalypt.net.local import INSIDE_END, ensure_local_dataplane, uplink_from_config
from eucalypt.net.runner import CommandRunner
from eucalypt.rpc import ComponentKeys, RemoteError, RpcRouter, rpc_app
from eucalypt.rpc.errors import InvalidRequest, ServiceUnavailable

log = logging.getLogger("eucalypt.cc")

CALLERS = {"clc", "admin"}
#: How long a starting CC waits for its nodes' first answers before it sets up the network.
START_POLL_SECONDS = 10.0
#: How long RegisterNode waits for the new node's first answer before it replies.
REGISTER_POLL_SECONDS = 5.0


class _AdminKeys:
    """The CLC's answer for a key that is not a component's; ServiceUnavailable (not an
    internal error) while the CLC cannot be asked."""

    def __init__(self, store: ClcIdentityStore) -> None:
        self._store = store

    async def lookup(self, access_key: str) -> Credential | None:
        try:
            return await self._store.lookup(access_key)
        except RemoteError as exc:
            raise ServiceUnavailable(
                f"cannot verify the access key: the CLC does not answer ({exc.message})"
            ) from None


def _same_url(url: str) -> str:
    return url.strip().rstrip("/")


def create_app(config: Config) -> FastAPI:
    # Our own copy: RegisterNode changes cc.nodes (the network manager reads it).
    config = config.model_copy(deep=True)
    if config.cc.local_uplink and not config.cc.public_interface:
        # The single-host data plane: public addresses sit on the veth's inside end.
        config.cc.public_interface = INSIDE_END
    keys = ComponentKeys.load(config.keys_dir)
    me = keys.credential("cc")
    registry = NodeRegistry.in_data_dir(config.data_dir)
    configured = list(dict.fromkeys(config.cc.nodes))
    in_config = {_same_url(u) for u in configured}
    # Registered nodes in registration order (a dict: order and O(1) membership).
    registered = dict.fromkeys(u for u in registry.load() if u not in in_config)
    config.cc.nodes = [*configured, *registered]
    network = make_network(config, credential=me)

    async def adopt(node_url: str, instances: list[InstanceInfo]) -> None:
        """The network state is soft: take back the endpoints of the node's instances."""
        await network.adopt(
            [
                FoundEndpoint(i.instance_id, node_url, i.network, i.owner_id)
                for i in instances
                if i.state in ACTIVE
            ]
        )

    def nc_client(url: str) -> NcClient:
        return NcClient(url, me, region=config.region, timeout=60.0)

    cluster = Cluster({url: nc_client(url) for url in config.cc.nodes}, on_first_contact=adopt)
    membership = asyncio.Lock()  # RegisterNode / DeregisterNode, one at a time
    admins = ClcIdentityStore(config, component="cc")
    credentials: CredentialStore = ChainCredentialStore(keys.store(["clc"]), _AdminKeys(admins))
    service = ClusterService(cluster, make_policy(config.cc.scheduler), network)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if config.cc.local_uplink:  # needs cc.network_netns (ValueError otherwise)
            await ensure_local_dataplane(CommandRunner(), uplink_from_config(config))
        # The nodes first: the first sync of the network then keeps their instances'
        # endpoints (a node that answers later has its instances adopted then).
        await cluster.refresh(timeout=START_POLL_SECONDS)
        await network.start()
        poller = asyncio.create_task(cluster.poll_forever(config.cc.poll_seconds))
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await cluster.aclose()
            await network.stop()
            await admins.aclose()

    app = rpc_app("cc", credentials)
    app.router.lifespan_context = lifespan
    app.state.service = service
    router = RpcRouter()

    @router.operation(
        "DescribeResources", DescribeResourcesRequest, DescribeResourcesResponse, allow=CALLERS
    )
    async def describe_resources(
        req: DescribeResourcesRequest, _caller: Credential
    ) -> DescribeResourcesResponse:
        """How many instances of each VM type fit on the cluster's nodes that are up."""
        nodes = [n.status for n in cluster.nodes.values()]
        up = [v.free for v in cluster.views() if v.up]
        return DescribeResourcesResponse(
            cluster=config.cc.name,
            vm_types=availability(up, req.vm_types),
            nodes=nodes,
            counted=[i for i in req.in_flight if i in cluster.placement],
        )

    @router.operation("RunInstances", RunInstancesRequest, RunInstancesResponse, allow=CALLERS)
    async def run_instances(req: RunInstancesRequest, _caller: Credential) -> RunInstancesResponse:
        """Place and start each instance on a node chosen by the scheduling policy."""
        return RunInstancesResponse(results=await service.run_instances(req.instances))

    @router.operation(
        "TerminateInstances", InstanceIdsRequest, DescribeInstancesResponse, allow=CALLERS
    )
    async def terminate_instances(
        req: InstanceIdsRequest, _caller: Credential
    ) -> DescribeInstancesResponse:
        """Terminate instances; returns their new state."""
        done = await asyncio.gather(*(service.terminate(i) for i in req.instance_ids))
        return DescribeInstancesResponse(instances=list(done))

    @router.operation(
        "RebootInstances", InstanceIdsRequest, DescribeInstancesResponse, allow=CALLERS
    )
    async def reboot_instances(
        req: InstanceIdsRequest, _caller: Credential
    ) -> DescribeInstancesResponse:
        """Reboot instances."""
        done = await asyncio.gather(*(service.reboot(i) for i in req.instance_ids))
        return DescribeInstancesResponse(instances=list(done))

    @router.operation(
        "DescribeInstances", InstanceIdsRequest, DescribeInstancesResponse, allow=CALLERS
    )
    async def describe_instances(
        req: InstanceIdsRequest, _caller: Credential
    ) -> DescribeInstancesResponse:
        """Instances as of the last poll (and the CC's own launches since)."""
        return DescribeInstancesResponse(instances=service.describe(req.instance_ids))

    @router.operation(
        "GetConsoleOutput", InstanceIdRequest, GetConsoleOutputResponse, allow=CALLERS
    )
    async def get_console_output(
        req: InstanceIdRequest, _caller: Credential
    ) -> GetConsoleOutputResponse:
        """The instance's serial console, from its node."""
        return await service.console(req.instance_id)

    def find(url: str) -> Node | None:
        wanted = _same_url(url)
        node = cluster.nodes.get(wanted)
        if node is not None:
            return node
        return next((n for n in cluster.nodes.values() if _same_url(n.url) == wanted), None)

    def node_info(node: Node) -> NodeInfo:
        status = node.status
        # Free as the scheduler counts it now (the NC's own figures may be a few polls old).
        resources = node.view().free if status.resources is not None else None
        return NodeInfo(
            url=status.url,
            state=status.state,
            node=status.node,
            resources=resources,
            error=status.error,
            source="registered" if node.url in registered else "config",
            instances=node.active(),
        )

    def node_url(raw: str) -> str:
        try:
            return normalize_node_url(raw)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None

    @router.operation("RegisterNode", NodeRequest, RegisterNodeResponse, allow=CALLERS)
    async def register_node(req: NodeRequest, caller: Credential) -> RegisterNodeResponse:
        """Add an NC to the cluster (idempotent); it is polled from then on and kept in
        <data_dir>/cc/nodes.json across restarts."""
        url = node_url(req.url)
        async with membership:
            node = find(url)
            if node is not None:
                return RegisterNodeResponse(node=node_info(node), added=False)
            await asyncio.to_thread(registry.save, [*registered, url])
            registered[url] = None
            config.cc.nodes.append(url)
            node = cluster.add(url, nc_client(url))
        log.info("node registered", extra={"node_url": url, "caller": caller.access_key})
        # Its first answer, so the reply says whether it is up (it is polled from now on anyway).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(cluster.poll_node(node), REGISTER_POLL_SECONDS)
        return RegisterNodeResponse(node=node_info(node), added=True)

    @router.operation(
        "DeregisterNode", DeregisterNodeRequest, DeregisterNodeResponse, allow=CALLERS
    )
    async def deregister_node(
        req: DeregisterNodeRequest, caller: Credential
    ) -> DeregisterNodeResponse:
        """Stop using a registered NC (idempotent). Refused while it runs instances unless
        ``force`` (they keep running, unknown to the cloud); configured nodes are refused."""
        url = node_url(req.url)
        async with membership:
            node = find(url)
            if node is None:
                return DeregisterNodeResponse(url=url, removed=False)
            if node.url not in registered:
                raise NodeConfigured(
                    f"{node.url} is in the configuration (cc.nodes): remove it there "
                    "and restart the CC"
                )
            active = node.active()
            if active and not req.force:
                raise NodeInUse(
                    f"{node.url} runs {active} instance(s): terminate them first, "
                    "or force the deregistration"
                )
            await asyncio.to_thread(registry.save, [u for u in registered if u != node.url])
            del registered[node.url]
            if node.url in config.cc.nodes:
                config.cc.nodes.remove(node.url)
            info = node_info(node)
            cluster.remove(node.url)
        await node.client.aclose()
        log.info(
            "node deregistered",
            extra={"node_url": node.url, "instances": active, "caller": caller.access_key},
        )
        return DeregisterNodeResponse(url=node.url, removed=True, node=info)

    @router.operation("DescribeNodes", DescribeNodesRequest, DescribeNodesResponse, allow=CALLERS)
    async def describe_nodes(
        req: DescribeNodesRequest, _caller: Credential
    ) -> DescribeNodesResponse:
        """The cluster's nodes (or those named): last poll, source, active instances."""
        if req.urls:
            chosen = [n for n in (find(u) for u in req.urls) if n is not None]
        else:
            chosen = list(cluster.nodes.values())
        return DescribeNodesResponse(nodes=[node_info(n) for n in chosen])

    register_network_operations(router, network, allow=CALLERS)
    router.mount(app)
    return app
