"""DescribeAvailabilityZones: one zone per cluster, state from its CC.

``ZoneName.1=verbose`` is the Eucalyptus extension: after each zone, one
pseudo-zone line per VM type with ``free / max`` instances and the type's
cpu, ram and disk, from the CC's DescribeResources.
"""

from __future__ import annotations

import asyncio
from typing import Any

from eucalypt.cc.api import (
    CcClient,
    DescribeResourcesRequest,
    DescribeResourcesResponse,
    VmTypeSpec,
)
from eucalypt.clc.actions.filters import apply_filters
from eucalypt.clc.context import RequestContext
from eucalypt.clc.ec2.errors import InvalidParameterValue
from eucalypt.rpc.errors import RemoteError


async def _resources(
    client: CcClient, vm_types: list[VmTypeSpec]
) -> DescribeResourcesResponse | RemoteError:
    try:
        return await client.describe_resources(DescribeResourcesRequest(vm_types=vm_types))
    except RemoteError as exc:
        return exc


def _zone(
    ctx: RequestContext, name: str, index: int, state: str, messages: list[str]
) -> dict[str, Any]:
    region = ctx.services.config.region
    return {
        "ZoneName": name,
        "ZoneId": f"{region}-az{index + 1}",
        "State": state,
        "RegionName": region,
        "ZoneType": "availability-zone",
        "GroupName": region,
        "NetworkBorderGroup": region,
        "OptInStatus": "opt-in-not-required",
        "Messages": [{"Message": m} for m in messages],
    }


def _verbose_lines(reply: DescribeResourcesResponse) -> list[dict[str, Any]]:
    lines = [{"ZoneName": "|- vm types", "State": "free / max   cpu   ram  disk"}]
    for vm in reply.vm_types:
        lines.append(
            {
                "ZoneName": f"|- {vm.name}",
                "State": f"{vm.available:04d} / {vm.maximum:04d}  {vm.cores:4d} {vm.memory_mib:5d} "
                f"{vm.disk_gib:5d}",
            }
        )
    return lines


async def describe_availability_zones(
    ctx: RequestContext, params: dict[str, Any]
) -> dict[str, Any]:
    services = ctx.services
    requested = list(params.get("ZoneNames", []))
    verbose = "verbose" in requested
    requested = [z for z in requested if z != "verbose"]
    for name in requested:
        if name not in services.clusters:
            raise InvalidParameterValue(
                f"The zone '{name}' does not exist; zones: {', '.join(services.clusters)}"
            )
    vm_types = [VmTypeSpec(**vm.model_dump()) for vm in services.config.vm_types]
    names = list(services.clusters)
    replies = await asyncio.gather(*(_resources(services.clusters[n], vm_types) for n in names))
    zones: list[dict[str, Any]] = []
    extra: dict[str, list[dict[str, Any]]] = {}
    for index, (name, reply) in enumerate(zip(names, replies, strict=True)):
        if isinstance(reply, RemoteError):
            zones.append(
                _zone(ctx, name, index, "unavailable", [f"cluster controller: {reply.message}"])
            )
            continue
        up = sum(1 for n in reply.nodes if n.state == "up")
        state = "available" if up else "impaired"
        messages = [] if up else ["no node controller of this cluster is up"]
        zones.append(_zone(ctx, name, index, state, messages))
        if verbose:
            extra[name] = _verbose_lines(reply)
    zones = [z for z in zones if not requested or z["ZoneName"] in requested]
    zones = apply_filters(
        zones,
        params.get("Filters"),
        {
            "zone-name": lambda z: [z["ZoneName"]],
            "zone-id": lambda z: [z["ZoneId"]],
            "state": lambda z: [z["State"]],
            "region-name": lambda z: [z["RegionName"]],
            "zone-type": lambda z: [z["ZoneType"]],
            "group-name": lambda z: [z["GroupName"]],
            "message": lambda z: [m["Message"] for m in z["Messages"]],
        },
    )
    out: list[dict[str, Any]] = []
    for zone in zones:
        out.append(zone)
        out.extend(extra.get(zone["ZoneName"], []))
    return {"AvailabilityZones": out}
