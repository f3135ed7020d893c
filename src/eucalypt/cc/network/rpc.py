"""The CC's network operations on its RpcRouter (``register(router, network, allow)``)."""

from __future__ import annotations

from collections.abc import Collection

from eucalypt.auth.credentials import Credential
from eucalypt.cc.netapi import (
    AddressMapping,
    AssignAddressRequest,
    DeleteNetworkRequest,
    DeleteNetworkResponse,
    DescribeNetworksRequest,
    DescribeNetworksResponse,
    EnsureNetworkRequest,
    NetworkResponse,
    SetIngressRulesRequest,
    UnassignAddressRequest,
)
from eucalypt.cc.network.base import NetworkManager
from eucalypt.rpc import RpcRouter


def register(router: RpcRouter, network: NetworkManager, allow: Collection[str]) -> None:
    """Add EnsureNetwork, DeleteNetwork, SetIngressRules, AssignAddress,
    UnassignAddress and DescribeNetworks to ``router``."""

    @router.operation("EnsureNetwork", EnsureNetworkRequest, NetworkResponse, allow=allow)
    async def ensure_network(req: EnsureNetworkRequest, _caller: Credential) -> NetworkResponse:
        """Create or update a security group's network (idempotent)."""
        info = await network.ensure_network(
            req.group_id, req.owner_id, req.name, vni=req.vni, subnet=req.subnet
        )
        return NetworkResponse(network=info)

    @router.operation("DeleteNetwork", DeleteNetworkRequest, DeleteNetworkResponse, allow=allow)
    async def delete_network(
        req: DeleteNetworkRequest, _caller: Credential
    ) -> DeleteNetworkResponse:
        """Forget a group's network; fails while instances use it."""
        deleted = await network.delete_network(req.group_id)
        return DeleteNetworkResponse(group_id=req.group_id, deleted=deleted)

    @router.operation("SetIngressRules", SetIngressRulesRequest, NetworkResponse, allow=allow)
    async def set_ingress_rules(
        req: SetIngressRulesRequest, _caller: Credential
    ) -> NetworkResponse:
        """Replace a group's ingress rules; running instances are affected at once."""
        return NetworkResponse(network=await network.set_ingress_rules(req.group_id, req.rules))

    @router.operation("AssignAddress", AssignAddressRequest, AddressMapping, allow=allow)
    async def assign_address(req: AssignAddressRequest, _caller: Credential) -> AddressMapping:
        """Map a public address of the pool to an instance (DNAT/SNAT)."""
        return await network.assign_address(req.instance_id, req.public_ip)

    @router.operation("UnassignAddress", UnassignAddressRequest, AddressMapping, allow=allow)
    async def unassign_address(req: UnassignAddressRequest, _caller: Credential) -> AddressMapping:
        """Remove a public address's mapping (succeeds when it has none)."""
        return await network.unassign_address(req.public_ip)

    @router.operation(
        "DescribeNetworks", DescribeNetworksRequest, DescribeNetworksResponse, allow=allow
    )
    async def describe_networks(
        req: DescribeNetworksRequest, _caller: Credential
    ) -> DescribeNetworksResponse:
        """Networks, their instances and the public pool's mappings."""
        return network.describe(req.group_ids)
