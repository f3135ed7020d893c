"""Weighers: how good is this node for this instance (higher is better)?"""

from __future__ import annotations

from eucalypt.cc.scheduler.base import NodeView, PlacementRequest


def _free_fraction(node: NodeView) -> float:
    """The node's free share, averaged over cores and memory (0 full .. 1 empty)."""
    f = node.free
    cores = f.cores_free / f.cores_total if f.cores_total else 0.0
    memory = f.memory_mib_free / f.memory_mib_total if f.memory_mib_total else 0.0
    return (cores + memory) / 2


class EmptiestWeigher:
    """Prefer the emptiest node: spreads load."""

    name = "emptiest"

    def weigh(self, node: NodeView, request: PlacementRequest) -> float:
        return _free_fraction(node)


class FullestWeigher:
    """Prefer the fullest node that still fits: packs load, leaves nodes idle."""

    name = "fullest"

    def weigh(self, node: NodeView, request: PlacementRequest) -> float:
        return -_free_fraction(node)


class ConfigOrderWeigher:
    """Prefer nodes earlier in the configured list (the paper's first fit)."""

    name = "config-order"

    def weigh(self, node: NodeView, request: PlacementRequest) -> float:
        return -float(node.index)


WEIGHERS = {w.name: w for w in (EmptiestWeigher(), FullestWeigher(), ConfigOrderWeigher())}
