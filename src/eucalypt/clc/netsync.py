"""Pushing security groups, rules and public addresses from the CLC to every CC.

The CLC's database is the source of truth; each CC holds the derived
network state (networks, iptables, DHCP, NAT) as soft state. Every change
is pushed at once so running instances follow it, and a periodic
reconciliation re-pushes what a restarted CC has lost.

The first cluster allocates a group's network (VNI and subnet); the CLC
keeps the VNI and gives the same VNI and subnet to every other cluster, so
instances of one group in two clusters share one LAN.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from eucalypt.cc.api import CcClient
from eucalypt.cc.netapi import (
    AssignAddressRequest,
    EnsureNetworkRequest,
    IngressRule,
    SetIngressRulesRequest,
)
from eucalypt.clc.models import Address, SecurityGroup
from eucalypt.db import Database
from eucalypt.rpc.errors import RemoteError

log = logging.getLogger("eucalypt.clc.netsync")


@dataclass(frozen=True)
class GroupView:
    group_id: str
    owner_id: str
    name: str
    vni: int | None
    rules: list[IngressRule]


def _load(s: Session, group_id: str) -> GroupView | None:
    group = s.get(SecurityGroup, group_id)
    if group is None:
        return None
    rules = [
        IngressRule(
            protocol=r.protocol,  # type: ignore[arg-type]
            from_port=r.from_port,
            to_port=r.to_port,
            cidr=r.cidr,
            source_group=r.source_group_id,
        )
        for r in group.rules
    ]
    return GroupView(group.id, group.account_id, group.name, group.vni, rules)


class NetworkSync:
    def __init__(self, db: Database, clusters: dict[str, CcClient]) -> None:
        self.db = db
        self.clusters = clusters
        self._lock = asyncio.Lock()

    async def push_group(self, group_id: str, zones: list[str] | None = None) -> None:
        """Create/update the group's network and rules on the CCs (all, or ``zones``)."""
        view = await self.db.run(lambda s: _load(s, group_id))
        if view is None:
            return
        async with self._lock:
            vni, subnet = view.vni, None
            for zone, cc in self.clusters.items():
                if zones is not None and zone not in zones and vni is not None:
                    continue
                try:
                    reply = await cc.ensure_network(
                        EnsureNetworkRequest(
                            group_id=view.group_id,
                            owner_id=view.owner_id,
                            name=view.name,
                            vni=vni,
                            subnet=subnet,
                        )
                    )
                    await cc.set_ingress_rules(
                        SetIngressRulesRequest(group_id=view.group_id, rules=view.rules)
                    )
                except RemoteError as exc:
                    log.warning(
                        "group push failed",
                        extra={"group_id": group_id, "zone": zone, "error": exc.message},
                    )
                    continue
                if vni is None and reply.network.vni is not None:
                    vni = reply.network.vni
                    await self.db.run(partial(_store_vni, group_id=group_id, vni=vni))
                subnet = subnet or reply.network.subnet

    async def reconcile_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reconcile()
            except Exception:
                log.exception("network reconciliation failed")

    async def group_changed(self, group_id: str) -> None:
        await self.push_group(group_id)

    async def group_deleted(self, group_id: str) -> None:
        for zone, cc in self.clusters.items():
            try:
                await cc.delete_network(group_id)
            except RemoteError as exc:
                if exc.status != 404:
                    log.warning(
                        "network delete failed",
                        extra={"group_id": group_id, "zone": zone, "error": exc.message},
                    )

    async def reconcile(self) -> None:
        """Re-push groups and address mappings that a CC does not have (after its restart)."""
        groups = await self.db.run(lambda s: list(s.scalars(select(SecurityGroup.id))))
        mapped = await self.db.run(
            lambda s: [
                (a.zone, a.public_ip, a.instance_id)
                for a in s.scalars(select(Address).where(Address.instance_id.is_not(None)))
            ]
        )
        for zone, cc in self.clusters.items():
            try:
                have = await cc.describe_networks()
            except RemoteError:
                continue
            present = {n.group_id for n in have.networks}
            for group_id in groups:
                if group_id not in present:
                    await self.push_group(group_id, zones=[zone])
            current = {a.public_ip: a.instance_id for a in have.addresses}
            for z, public_ip, instance_id in mapped:
                if z == zone and public_ip in current and current[public_ip] != instance_id:
                    try:
                        await cc.assign_address(
                            AssignAddressRequest(instance_id=instance_id or "", public_ip=public_ip)
                        )
                    except RemoteError as exc:
                        log.info(
                            "address not restored yet",
                            extra={"public_ip": public_ip, "error": exc.message},
                        )


def _store_vni(s: Session, group_id: str, vni: int) -> None:
    group = s.get(SecurityGroup, group_id)
    if group is not None and group.vni is None:
        group.vni = vni
