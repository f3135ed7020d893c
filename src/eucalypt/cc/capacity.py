"""Capacity per VM type over the nodes' free resources (DescribeResources)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from eucalypt.cc.api import VmTypeAvailability, VmTypeSpec
from eucalypt.nc.api import NodeResources

Resources = tuple[int, int, int]  # cores, memory MiB, disk GiB


def fits(cores: int, memory_mib: int, disk_gib: int, vm: VmTypeSpec) -> int:
    """How many instances of ``vm`` fit in the given free resources."""
    return min(
        cores // vm.cores if vm.cores else 0,
        memory_mib // vm.memory_mib if vm.memory_mib else 0,
        disk_gib // vm.disk_gib if vm.disk_gib else 0,
    )


def _total(shapes: Counter[Resources], vm: VmTypeSpec) -> int:
    return sum(count * max(fits(c, m, d, vm), 0) for (c, m, d), count in shapes.items())


def availability(
    nodes: Iterable[NodeResources], vm_types: Iterable[VmTypeSpec]
) -> list[VmTypeAvailability]:
    """Per VM type: the sum over nodes of the minimum over cores, memory, disk.

    ``available`` uses what is free now; ``maximum`` what each node has in all.
    Nodes are grouped by their (free, total) figures first: a cluster of a few
    node models has few distinct shapes however many nodes it has, so each VM
    type costs O(shapes), and the whole answer O(nodes + shapes x types).
    """
    free: Counter[Resources] = Counter()
    total: Counter[Resources] = Counter()
    for n in nodes:
        free[n.cores_free, n.memory_mib_free, n.disk_gib_free] += 1
        total[n.cores_total, n.memory_mib_total, n.disk_gib_total] += 1
    return [
        VmTypeAvailability(**vm.model_dump(), available=_total(free, vm), maximum=_total(total, vm))
        for vm in vm_types
    ]
