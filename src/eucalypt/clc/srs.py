"""The system resource state (SRS) of the paper: admission control.

Every RunInstances is admitted against the capacity the CCs report:
resources are *reserved* before the CC is asked to run anything, then
*committed* when the CC has placed the instances, or *rolled back* on any
error. Admission is serialised, and each decision uses a fresh
DescribeResources from the CCs minus the reservations they do not count
yet, so concurrent requests can never overcommit a cluster.

Zones are clusters. The meta-zone ``any`` places on the emptiest cluster
and overflows to the next when one cannot hold the whole request.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass

from eucalypt.cc.api import CcClient, DescribeResourcesRequest, VmTypeSpec
from eucalypt.config import VmType
from eucalypt.rpc.errors import RemoteError

log = logging.getLogger("eucalypt.clc.srs")

META_ZONE_ANY = "any"


class CapacityError(Exception):
    """Not enough room: ``message`` says how much there was."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Held:
    zone: str
    vm: VmType


def slots(held: VmType, wanted: VmType) -> int:
    """How many instances of ``wanted`` one ``held`` instance may displace (conservative)."""
    return max(
        math.ceil(held.cores / wanted.cores) if wanted.cores else 0,
        math.ceil(held.memory_mib / wanted.memory_mib) if wanted.memory_mib else 0,
        math.ceil(held.disk_gib / wanted.disk_gib) if wanted.disk_gib else 0,
        1,
    )


class ResourceState:
    """Reservations in flight, and the admission decision over the CCs' capacity."""

    def __init__(self, clusters: dict[str, CcClient]) -> None:
        self.clusters = clusters
        self.in_flight: dict[str, Held] = {}
        self._lock = asyncio.Lock()

    async def _available(self, zone: str, vm: VmType) -> int:
        held = {i: h for i, h in self.in_flight.items() if h.zone == zone}
        try:
            reply = await self.clusters[zone].describe_resources(
                DescribeResourcesRequest(
                    vm_types=[VmTypeSpec(**vm.model_dump())], in_flight=sorted(held)
                )
            )
        except RemoteError as exc:
            log.warning(
                "zone unavailable for admission", extra={"zone": zone, "error": exc.message}
            )
            return 0
        counted = set(reply.counted)
        pending = sum(slots(h.vm, vm) for i, h in held.items() if i not in counted)
        return max(reply.vm_types[0].available - pending, 0)

    async def reserve(
        self, instance_ids: list[str], vm: VmType, min_count: int, zone: str | None
    ) -> dict[str, list[str]]:
        """Reserve room for between ``min_count`` and ``len(instance_ids)`` instances.

        Returns zone -> the instance ids reserved there (as many as fit, at
        least ``min_count``); raises :class:`CapacityError` when fewer fit.
        """
        max_count = len(instance_ids)
        zones = list(self.clusters) if zone in (None, "", META_ZONE_ANY) else [zone]
        async with self._lock:
            free = dict(
                zip(
                    zones,
                    await asyncio.gather(*(self._available(z, vm) for z in zones)),
                    strict=True,
                )
            )
            if zone in (None, "", META_ZONE_ANY):
                order = sorted(zones, key=lambda z: (-free[z], zones.index(z)))
            else:
                order = zones
            plan: dict[str, list[str]] = {}
            remaining = list(instance_ids)
            for z in order:
                take = min(free[z], len(remaining))
                if take:
                    plan[z], remaining = remaining[:take], remaining[take:]
                if not remaining:
                    break
            placed = max_count - len(remaining)
            if placed < min_count:
                where = zone or META_ZONE_ANY
                raise CapacityError(
                    f"There is not enough capacity for {min_count} {vm.name} instance(s) in "
                    f"zone '{where}' (room for {sum(free.values())})."
                )
            for z, ids in plan.items():
                for instance_id in ids:
                    self.in_flight[instance_id] = Held(zone=z, vm=vm)
            log.info(
                "reserved", extra={"vm_type": vm.name, "plan": {z: len(v) for z, v in plan.items()}}
            )
            return plan

    def commit(self, instance_ids: list[str]) -> None:
        """The CC has placed these: its own figures count them from now on."""
        for instance_id in instance_ids:
            self.in_flight.pop(instance_id, None)

    def rollback(self, instance_ids: list[str]) -> None:
        """These will not run: give their room back."""
        for instance_id in instance_ids:
            self.in_flight.pop(instance_id, None)
