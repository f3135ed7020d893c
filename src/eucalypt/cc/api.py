"""The Cluster Controller's internal protocol: request/response types and client.

The CLC is the CC's caller. Operations are plural (the paper):
RunInstances, TerminateInstances, RebootInstances, DescribeInstances,
DescribeResources, GetConsoleOutput. Cloud administrators (and the CLC)
manage the cluster's nodes with RegisterNode, DeregisterNode and
DescribeNodes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from eucalypt.cc.netapi import CcNetworkClient
from eucalypt.nc.api import (
    BootImages,
    GetConsoleOutputResponse,
    InstanceInfo,
    InstanceState,
    NodeResources,
    VmSpec,
)

__all__ = ["InstanceState"]


class VmTypeSpec(BaseModel):
    name: str
    cores: int
    memory_mib: int
    disk_gib: int


class VmTypeAvailability(VmTypeSpec):
    """How many more instances of this type fit now, and how many when empty."""

    available: int
    maximum: int


class NodeStatus(BaseModel):
    url: str
    state: Literal["up", "down", "unknown"]
    node: str = ""
    resources: NodeResources | None = None
    error: str = ""


class DescribeResourcesRequest(BaseModel):
    vm_types: list[VmTypeSpec]
    # Instances the caller has admitted but not yet seen placed: the CC answers which
    # of them it already counts, so the CLC's admission control never counts twice.
    in_flight: list[str] = Field(default_factory=list)


class DescribeResourcesResponse(BaseModel):
    cluster: str
    vm_types: list[VmTypeAvailability]
    nodes: list[NodeStatus]
    counted: list[str] = Field(default_factory=list)


class InstanceNetworkRequest(BaseModel):
    """What the CLC asks of the network for one instance.

    ``network`` names the isolated network (the security group's, in the
    MANAGED modes); ``mac`` and ``private_ip`` are chosen by the CC when empty.
    """

    network: str = "default"
    owner_id: str = ""
    mac: str = ""
    private_ip: str = ""


class LaunchSpec(BaseModel):
    instance_id: str
    reservation_id: str = ""
    owner_id: str
    vm: VmSpec
    images: BootImages
    network: InstanceNetworkRequest = Field(default_factory=InstanceNetworkRequest)


class RunInstancesRequest(BaseModel):
    instances: list[LaunchSpec]


class LaunchResult(BaseModel):
    instance_id: str
    ok: bool
    node_url: str = ""
    instance: InstanceInfo | None = None
    error_code: str = ""
    error_message: str = ""


class RunInstancesResponse(BaseModel):
    results: list[LaunchResult]


class InstanceIdsRequest(BaseModel):
    instance_ids: list[str] = Field(default_factory=list)


class ClusterInstance(BaseModel):
    """An instance as the CC last saw it, with the node that runs it."""

    instance: InstanceInfo
    node_url: str
    node_state: Literal["up", "down", "unknown"]


class DescribeInstancesResponse(BaseModel):
    instances: list[ClusterInstance]


class InstanceIdRequest(BaseModel):
    instance_id: str


class NodeRequest(BaseModel):
    """A node by its NC base URL (``http(s)://host:port[/path]``)."""

    url: str


class DeregisterNodeRequest(NodeRequest):
    # Forget the node even though it runs instances (they keep running, unknown to the cloud).
    force: bool = False


class DescribeNodesRequest(BaseModel):
    urls: list[str] = Field(default_factory=list)  # empty: every node


class NodeInfo(NodeStatus):
    """A node as the CC sees it: last poll, where the CC learnt of it, its active instances.

    ``resources``: the node's totals, and free as the CC counts it (its instances and the
    CC's placements there that it does not report yet)."""

    source: Literal["config", "registered"] = "config"
    instances: int = 0


class RegisterNodeResponse(BaseModel):
    node: NodeInfo
    added: bool  # False: the node was known already (RegisterNode is idempotent)


class DeregisterNodeResponse(BaseModel):
    url: str
    removed: bool  # False: the node was not known (DeregisterNode is idempotent)
    node: NodeInfo | None = None


class DescribeNodesResponse(BaseModel):
    nodes: list[NodeInfo]


class CcClient(CcNetworkClient):
    """Typed client of one CC (instances, resources, and the network operations)."""

    async def describe_resources(self, req: DescribeResourcesRequest) -> DescribeResourcesResponse:
        return await self.call("DescribeResources", req, DescribeResourcesResponse)

    async def run_instances(self, req: RunInstancesRequest) -> RunInstancesResponse:
        return await self.call("RunInstances", req, RunInstancesResponse)

    async def terminate_instances(self, instance_ids: list[str]) -> DescribeInstancesResponse:
        return await self.call(
            "TerminateInstances",
            InstanceIdsRequest(instance_ids=instance_ids),
            DescribeInstancesResponse,
        )

    async def reboot_instances(self, instance_ids: list[str]) -> DescribeInstancesResponse:
        return await self.call(
            "RebootInstances",
            InstanceIdsRequest(instance_ids=instance_ids),
            DescribeInstancesResponse,
        )

    async def describe_instances(
        self, instance_ids: list[str] | None = None
    ) -> DescribeInstancesResponse:
        return await self.call(
            "DescribeInstances",
            InstanceIdsRequest(instance_ids=instance_ids or []),
            DescribeInstancesResponse,
        )

    async def get_console_output(self, instance_id: str) -> GetConsoleOutputResponse:
        return await self.call(
            "GetConsoleOutput", InstanceIdRequest(instance_id=instance_id), GetConsoleOutputResponse
        )

    async def register_node(self, url: str) -> RegisterNodeResponse:
        return await self.call("RegisterNode", NodeRequest(url=url), RegisterNodeResponse)

    async def deregister_node(self, url: str, *, force: bool = False) -> DeregisterNodeResponse:
        return await self.call(
            "DeregisterNode", DeregisterNodeRequest(url=url, force=force), DeregisterNodeResponse
        )

    async def describe_nodes(self, urls: list[str] | None = None) -> DescribeNodesResponse:
        return await self.call(
            "DescribeNodes", DescribeNodesRequest(urls=urls or []), DescribeNodesResponse
        )
