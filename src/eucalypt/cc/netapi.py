"""The CC's network operations: what the CLC pushes about security groups and addresses.

The CLC owns security groups, their rules and the allocation of public
addresses to accounts; the CC enforces them for the instances it runs. Each
group is a network (the paper's "named network"): in the MANAGED modes it
gets a subnet of the administrator's range and (MANAGED) its own VXLAN VNI.
The CC's state is soft: after a restart the CLC re-sends groups, rules and
addresses (``DescribeNetworks`` shows what the CC has).

Operations (``POST /v1/<name>``, callers: clc, admin):

- ``EnsureNetwork`` — create or update the network of a group (idempotent).
  ``vni``/``subnet`` may be fixed by the CLC so that two clusters give one
  group the same LAN (cross-cluster networks); otherwise the CC picks.
- ``DeleteNetwork`` — forget a group; fails with ``DependencyViolation``
  while instances use it.
- ``SetIngressRules`` — replace the group's ingress rules (the whole list);
  running instances are affected at once.
- ``AssignAddress`` / ``UnassignAddress`` — map a public address of the
  pool to an instance (DNAT in, SNAT out) or remove the mapping.
- ``DescribeNetworks`` — networks, their instances and public mappings.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from eucalypt.rpc.client import RpcClient


class IngressRule(BaseModel):
    """One ingress permission of a group (EC2's IpPermission, flattened).

    ``protocol`` ``-1`` means every protocol (ports ignored). For tcp/udp
    ``from_port``..``to_port`` is the port range (-1: all). For icmp
    ``from_port`` is the ICMP type and ``to_port`` the code (-1: any).
    Exactly one of ``cidr`` and ``source_group`` names who may connect.
    """

    protocol: Literal["tcp", "udp", "icmp", "-1"]
    from_port: int = Field(default=-1, ge=-1, le=65535)
    to_port: int = Field(default=-1, ge=-1, le=65535)
    cidr: str | None = None
    source_group: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> IngressRule:
        if (self.cidr is None) == (self.source_group is None):
            raise ValueError("give exactly one of cidr and source_group")
        if self.cidr is not None:
            self.cidr = str(ipaddress.IPv4Network(self.cidr, strict=False))
        ranged = self.protocol in ("tcp", "udp") and -1 not in (self.from_port, self.to_port)
        if ranged and self.from_port > self.to_port:
            raise ValueError("from_port is above to_port")
        return self


class NetworkInstance(BaseModel):
    instance_id: str
    mac: str
    private_ip: str
    public_ip: str | None = None
    node_url: str = ""


class NetworkInfo(BaseModel):
    group_id: str
    owner_id: str = ""
    name: str = ""
    vni: int | None = None
    subnet: str | None = None
    gateway: str | None = None
    bridge: str | None = None
    rules: list[IngressRule] = Field(default_factory=list)
    instances: list[NetworkInstance] = Field(default_factory=list)


class EnsureNetworkRequest(BaseModel):
    group_id: str
    owner_id: str = ""
    name: str = ""
    vni: int | None = Field(default=None, ge=1, le=16777215)
    subnet: str | None = None


class NetworkResponse(BaseModel):
    network: NetworkInfo


class DeleteNetworkRequest(BaseModel):
    group_id: str


class DeleteNetworkResponse(BaseModel):
    group_id: str
    deleted: bool


class SetIngressRulesRequest(BaseModel):
    group_id: str
    rules: list[IngressRule] = Field(default_factory=list)


class AssignAddressRequest(BaseModel):
    instance_id: str
    public_ip: str


class UnassignAddressRequest(BaseModel):
    public_ip: str


class AddressMapping(BaseModel):
    public_ip: str
    instance_id: str | None = None
    private_ip: str | None = None


class DescribeNetworksRequest(BaseModel):
    group_ids: list[str] = Field(default_factory=list)


class DescribeNetworksResponse(BaseModel):
    mode: str
    networks: list[NetworkInfo]
    addresses: list[AddressMapping]


class CcNetworkClient(RpcClient):
    """Typed client of a CC's network operations (CcClient may inherit these)."""

    async def ensure_network(self, req: EnsureNetworkRequest) -> NetworkResponse:
        return await self.call("EnsureNetwork", req, NetworkResponse)

    async def delete_network(self, group_id: str) -> DeleteNetworkResponse:
        return await self.call(
            "DeleteNetwork", DeleteNetworkRequest(group_id=group_id), DeleteNetworkResponse
        )

    async def set_ingress_rules(self, req: SetIngressRulesRequest) -> NetworkResponse:
        return await self.call("SetIngressRules", req, NetworkResponse)

    async def assign_address(self, req: AssignAddressRequest) -> AddressMapping:
        return await self.call("AssignAddress", req, AddressMapping)

    async def unassign_address(self, public_ip: str) -> AddressMapping:
        return await self.call(
            "UnassignAddress", UnassignAddressRequest(public_ip=public_ip), AddressMapping
        )

    async def describe_networks(
        self, group_ids: list[str] | None = None
    ) -> DescribeNetworksResponse:
        return await self.call(
            "DescribeNetworks",
            DescribeNetworksRequest(group_ids=group_ids or []),
            DescribeNetworksResponse,
        )
