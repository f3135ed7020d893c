"""Capacity per VM type over the nodes' free resources (DescribeResources)."""

from __future__ import annotations

from collections.abc import Iterable

from eucalypt.cc.api import VmTypeAvailability, VmTypeSpec
from eucalypt.nc.api import NodeResources


def fits(cores: int, memory_mib: int, disk_gib: int, vm: VmTypeSpec) -> int:
    """How many instances of ``vm`` fit in the given free resources."""
    return min(
        cores // vm.cores if vm.cores else 0,
        memory_mib // vm.memory_mib if vm.memory_mib else 0,
        disk_gib // vm.disk_gib if vm.disk_gib else 0,
    )


def availability(
    nodes: Iterable[NodeResources], vm_types: Iterable[VmTypeSpec]
) -> list[VmTypeAvailability]:
    """Per VM type: the sum over nodes of the minimum over cores, memory, disk.

    ``available`` uses what is free now; ``maximum`` what each node has in all.
    """
    node_list = list(nodes)
    out = []
    for vm in vm_types:
        available = sum(
            fits(n.cores_free, n.memory_mib_free, n.disk_gib_free, vm) for n in node_list
        )
        maximum = sum(
            fits(n.cores_total, n.memory_mib_total, n.disk_gib_total, vm) for n in node_list
        )
        out.append(VmTypeAvailability(**vm.model_dump(), available=available, maximum=maximum))
    return out
