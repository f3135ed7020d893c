"""The Cluster Controller's internal protocol: request/response types and client."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from eucalypt.nc.api import NodeResources
from eucalypt.rpc.client import RpcClient


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


class DescribeResourcesResponse(BaseModel):
    cluster: str
    vm_types: list[VmTypeAvailability]
    nodes: list[NodeStatus]


class CcClient(RpcClient):
    """Typed client of one CC."""

    async def describe_resources(self, req: DescribeResourcesRequest) -> DescribeResourcesResponse:
        return await self.call("DescribeResources", req, DescribeResourcesResponse)
