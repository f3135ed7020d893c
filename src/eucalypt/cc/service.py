"""The CC's operations: place, launch (retrying on another node), terminate, describe."""

from __future__ import annotations

import asyncio
import logging

from eucalypt.cc.api import (
    ClusterInstance,
    LaunchResult,
    LaunchSpec,
)
from eucalypt.cc.cluster import Cluster
from eucalypt.cc.errors import InstanceNotFound, NoCapacity, NodeUnavailable
from eucalypt.cc.network import NetworkManager
from eucalypt.cc.scheduler import PlacementRequest, Policy
from eucalypt.nc.api import GetConsoleOutputResponse, RunInstanceRequest
from eucalypt.rpc.errors import RemoteError

log = logging.getLogger("eucalypt.cc")

#: NC answers that mean "try another node" rather than "this launch is bad".
RETRYABLE = {"InsufficientCapacity", "ServiceUnavailable", "InternalError"}


class ClusterService:
    def __init__(self, cluster: Cluster, policy: Policy, network: NetworkManager) -> None:
        self.cluster = cluster
        self.policy = policy
        self.network = network

    async def _pick(self, spec: LaunchSpec, tried: set[str]) -> str | None:
        """Choose a node and claim the VM's resources there, atomically."""
        async with self.cluster.lock:
            request = PlacementRequest(instance_id=spec.instance_id, vm=spec.vm)
            views = [v for v in self.cluster.views() if v.url not in tried]
            candidates = self.policy.candidates(views, request)
            if not candidates:
                return None
            url = candidates[0].url
            self.cluster.claim(url, spec.instance_id, spec.vm)
            return url

    async def launch(self, spec: LaunchSpec) -> LaunchResult:
        """Place one instance; on a node's refusal or failure, try the next candidate."""
        tried: set[str] = set()
        last_error = ("InsufficientInstanceCapacity", NoCapacity.message)
        while True:
            url = await self._pick(spec, tried)
            if url is None:
                code, message = last_error
                return LaunchResult(
                    instance_id=spec.instance_id, ok=False, error_code=code, error_message=message
                )
            tried.add(url)
            node = self.cluster.nodes.get(url)
            if node is None:  # deregistered (forced) since we picked it
                continue
            try:
                net = await self.network.prepare(spec, url)
                request = RunInstanceRequest(
                    instance_id=spec.instance_id,
                    reservation_id=spec.reservation_id,
                    owner_id=spec.owner_id,
                    vm=spec.vm,
                    images=spec.images,
                    network=net,
                )
                try:
                    reply = await node.client.run_instance(request)
                except RemoteError as exc:
                    if exc.code != "ServiceUnavailable":
                        raise
                    # Once more on the same node: a kept-alive connection that the NC closed
                    # as we reused it fails like this, and RunInstance is idempotent per id.
                    reply = await node.client.run_instance(request)
            except RemoteError as exc:
                self.cluster.release(url, spec.instance_id)
                await self.network.release(spec.instance_id)
                log.warning(
                    "launch failed on node",
                    extra={
                        "instance_id": spec.instance_id,
                        "node_url": url,
                        "code": exc.code,
                        "error": exc.message,
                    },
                )
                if exc.code not in RETRYABLE:
                    return LaunchResult(
                        instance_id=spec.instance_id,
                        ok=False,
                        node_url=url,
                        error_code=exc.code,
                        error_message=exc.message,
                    )
                last_error = (
                    "InsufficientInstanceCapacity",
                    f"no node could take the instance; last: {exc.code}: {exc.message}",
                )
                continue
            self.cluster.record(url, reply.instance)
            log.info("instance placed", extra={"instance_id": spec.instance_id, "node_url": url})
            return LaunchResult(
                instance_id=spec.instance_id, ok=True, node_url=url, instance=reply.instance
            )

    async def run_instances(self, specs: list[LaunchSpec]) -> list[LaunchResult]:
        return list(await asyncio.gather(*(self.launch(s) for s in specs)))

    def _find(self, instance_id: str) -> ClusterInstance:
        found = self.cluster.lookup(instance_id)
        if found is None:
            raise InstanceNotFound(
                f"The instance ID '{instance_id}' does not exist in this cluster."
            )
        return found

    async def terminate(self, instance_id: str) -> ClusterInstance:
        found = self._find(instance_id)
        node = self.cluster.nodes[found.node_url]
        try:
            reply = await node.client.terminate_instance(instance_id)
        except RemoteError as exc:
            if exc.code == "ServiceUnavailable":
                raise NodeUnavailable(f"{found.node_url}: {exc.message}") from None
            raise
        self.cluster.record(found.node_url, reply.instance)
        await self.network.release(instance_id)
        return ClusterInstance(
            instance=reply.instance, node_url=found.node_url, node_state=node.status.state
        )

    async def reboot(self, instance_id: str) -> ClusterInstance:
        found = self._find(instance_id)
        node = self.cluster.nodes[found.node_url]
        reply = await node.client.reboot_instance(instance_id)
        self.cluster.record(found.node_url, reply.instance)
        return ClusterInstance(
            instance=reply.instance, node_url=found.node_url, node_state=node.status.state
        )

    def describe(self, instance_ids: list[str]) -> list[ClusterInstance]:
        if not instance_ids:
            return self.cluster.all_instances()
        return [self._find(i) for i in instance_ids]

    async def console(self, instance_id: str) -> GetConsoleOutputResponse:
        found = self._find(instance_id)
        return await self.cluster.nodes[found.node_url].client.get_console_output(instance_id)
