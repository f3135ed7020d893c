"""The Cluster Controller service: HTTP wiring."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from eucalypt.auth.credentials import Credential
from eucalypt.cc.api import (
    DescribeInstancesResponse,
    DescribeResourcesRequest,
    DescribeResourcesResponse,
    InstanceIdRequest,
    InstanceIdsRequest,
    RunInstancesRequest,
    RunInstancesResponse,
)
from eucalypt.cc.capacity import availability
from eucalypt.cc.cluster import ACTIVE, Cluster
from eucalypt.cc.network import FoundEndpoint, make_network
from eucalypt.cc.network.rpc import register as register_network_operations
from eucalypt.cc.scheduler import make_policy
from eucalypt.cc.service import ClusterService
from eucalypt.config import Config
from eucalypt.nc.api import GetConsoleOutputResponse, InstanceInfo, NcClient
from eucalypt.net.local import INSIDE_END, ensure_local_dataplane, uplink_from_config
from eucalypt.net.runner import CommandRunner
from eucalypt.rpc import ComponentKeys, RpcRouter, rpc_app

CALLERS = {"clc", "admin"}
#: How long a starting CC waits for its nodes' first answers before it sets up the network.
START_POLL_SECONDS = 10.0


def create_app(config: Config) -> FastAPI:
    if config.cc.local_uplink and not config.cc.public_interface:
        # The single-host data plane: public addresses sit on the veth's inside end.
        config = config.model_copy(deep=True)
        config.cc.public_interface = INSIDE_END
    keys = ComponentKeys.load(config.keys_dir)
    me = keys.credential("cc")
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

    cluster = Cluster(
        {url: NcClient(url, me, region=config.region, timeout=60.0) for url in config.cc.nodes},
        on_first_contact=adopt,
    )
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

    app = rpc_app("cc", keys.store(["clc"]))
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

    register_network_operations(router, network, allow=CALLERS)
    router.mount(app)
    return app
