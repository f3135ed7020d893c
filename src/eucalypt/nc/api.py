"""The Node Controller's internal protocol: request/response types and client."""

from __future__ import annotations

from pydantic import BaseModel

from eucalypt.rpc.client import RpcClient


class NodeResources(BaseModel):
    """What a node has for instances (after the configured reserve) and what is free."""

    cores_total: int
    cores_free: int
    memory_mib_total: int
    memory_mib_free: int
    disk_gib_total: int
    disk_gib_free: int


class DescribeResourceRequest(BaseModel):
    pass


class DescribeResourceResponse(BaseModel):
    node: str
    hypervisor: str
    resources: NodeResources


class NcClient(RpcClient):
    """Typed client of one NC."""

    async def describe_resource(self) -> DescribeResourceResponse:
        return await self.call(
            "DescribeResource", DescribeResourceRequest(), DescribeResourceResponse
        )
