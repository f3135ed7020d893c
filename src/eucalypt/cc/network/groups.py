"""Security groups in the modes that do not isolate (SYSTEM, STATIC).

The paper's SYSTEM and STATIC modes give no isolation between instances:
groups and their rules are recorded (so the CLC can push them in every
mode and read them back) but not enforced, and public addresses are not
available (only the MANAGED modes map them).
"""

from __future__ import annotations

from eucalypt.cc.netapi import (
    AddressMapping,
    DescribeNetworksResponse,
    IngressRule,
    NetworkInfo,
)
from eucalypt.cc.network.errors import NetworkNotFound, UnsupportedInMode


class GroupBook:
    """Records groups and rules; the base of the modes that do not enforce them."""

    mode: str

    def __init__(self) -> None:
        self.groups: dict[str, NetworkInfo] = {}

    async def ensure_network(
        self,
        group_id: str,
        owner_id: str = "",
        name: str = "",
        *,
        vni: int | None = None,
        subnet: str | None = None,
    ) -> NetworkInfo:
        info = self.groups.get(group_id) or NetworkInfo(group_id=group_id)
        info.owner_id, info.name = owner_id or info.owner_id, name or info.name or group_id
        self.groups[group_id] = info
        return info

    async def delete_network(self, group_id: str) -> bool:
        return self.groups.pop(group_id, None) is not None

    async def set_ingress_rules(self, group_id: str, rules: list[IngressRule]) -> NetworkInfo:
        if group_id not in self.groups:
            raise NetworkNotFound()
        self.groups[group_id].rules = list(rules)
        return self.groups[group_id]

    async def assign_address(self, instance_id: str, public_ip: str) -> AddressMapping:
        raise UnsupportedInMode(f"public addresses need a MANAGED mode, not {self.mode}")

    async def unassign_address(self, public_ip: str) -> AddressMapping:
        raise UnsupportedInMode(f"public addresses need a MANAGED mode, not {self.mode}")

    def describe(self, group_ids: list[str]) -> DescribeNetworksResponse:
        nets = [g for k, g in sorted(self.groups.items()) if not group_ids or k in group_ids]
        return DescribeNetworksResponse(mode=self.mode, networks=nets, addresses=[])
