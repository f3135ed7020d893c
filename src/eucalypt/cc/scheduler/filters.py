"""Filters: may this node take this instance?"""

from __future__ import annotations

from eucalypt.cc.scheduler.base import NodeView, PlacementRequest


class NodeUpFilter:
    """Only nodes that answered the last poll."""

    name = "up"

    def passes(self, node: NodeView, request: PlacementRequest) -> bool:
        return node.up


class ResourceFilter:
    """Enough free cores, memory and disk for the VM type."""

    name = "resources"

    def passes(self, node: NodeView, request: PlacementRequest) -> bool:
        vm, free = request.vm, node.free
        return (
            free.cores_free >= vm.cores
            and free.memory_mib_free >= vm.memory_mib
            and free.disk_gib_free >= vm.disk_gib
        )


FILTERS = {f.name: f for f in (NodeUpFilter(), ResourceFilter())}
