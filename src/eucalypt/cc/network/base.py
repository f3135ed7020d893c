"""What every network mode provides to the CC: the launch path and the CLC's operations."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from eucalypt.cc.api import LaunchSpec
from eucalypt.cc.netapi import (
    AddressMapping,
    DescribeNetworksResponse,
    IngressRule,
    NetworkInfo,
)
from eucalypt.nc.api import NetworkSpec

#: Locally administered, unicast; Eucalyptus used d0:0d for instances too.
MAC_PREFIX = "d0:0d"


def instance_mac(instance_id: str) -> str:
    """A stable MAC address for an instance, derived from its id."""
    digest = hashlib.sha256(instance_id.encode()).digest()[:4]
    return MAC_PREFIX + "".join(f":{b:02x}" for b in digest)


@dataclass(frozen=True)
class FoundEndpoint:
    """An active instance's endpoint as its NC reports it (for a restarted CC to adopt)."""

    instance_id: str
    node_url: str
    spec: NetworkSpec
    owner_id: str = ""


class NetworkManager(Protocol):
    """Gives each instance its network endpoint and takes it back.

    ``prepare`` runs before the NC is asked to boot the instance (it may
    allocate addresses and set up host networking; called again for the
    same instance on another node, it keeps the instance's address);
    ``release`` runs after the instance is terminated or its launch failed,
    and succeeds when there is nothing to release. ``start`` brings the
    CC host's network to the desired state; ``stop`` removes everything the
    manager put on the host (links, rules, addresses, dnsmasq processes).

    The manager's state is soft. ``adopt`` takes back the endpoints of
    instances the NCs report (each NC's first answer after the CC starts):
    called before ``start``, it only books them, so the first sync renders
    them with everything else; called later, it also applies the change.
    Endpoints the manager already has are left as they are.

    The group/address operations are the CLC's (see ``api.py``); modes that
    do not isolate record groups without enforcing them.
    """

    mode: str

    async def prepare(self, spec: LaunchSpec, node_url: str) -> NetworkSpec: ...

    async def release(self, instance_id: str) -> None: ...

    async def adopt(self, found: list[FoundEndpoint]) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ensure_network(
        self,
        group_id: str,
        owner_id: str = "",
        name: str = "",
        *,
        vni: int | None = None,
        subnet: str | None = None,
    ) -> NetworkInfo: ...

    async def delete_network(self, group_id: str) -> bool: ...

    async def set_ingress_rules(self, group_id: str, rules: list[IngressRule]) -> NetworkInfo: ...

    async def assign_address(self, instance_id: str, public_ip: str) -> AddressMapping: ...

    async def unassign_address(self, public_ip: str) -> AddressMapping: ...

    def describe(self, group_ids: list[str]) -> DescribeNetworksResponse: ...
