"""The scheduling policies, chosen by name in config (``cc.scheduler``).

- ``firstfit`` (default, the paper's): the first node in configured order with room.
- ``roundrobin``: like first fit, but each placement starts after the last node used.
- ``pack``: the fullest node that still fits.
- ``spread``: the emptiest node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter

from eucalypt.cc.scheduler.base import Filter, NodeView, PlacementRequest, Policy, Weigher
from eucalypt.cc.scheduler.filters import NodeUpFilter, ResourceFilter
from eucalypt.cc.scheduler.weighers import ConfigOrderWeigher, EmptiestWeigher, FullestWeigher


class WeightedPolicy:
    """Filter, then sort by the weighers' sum (ties broken by config order)."""

    def __init__(self, name: str, filters: Sequence[Filter], weighers: Sequence[Weigher]) -> None:
        self.name = name
        self.filters = list(filters)
        self.weighers = list(weighers)

    def candidates(self, nodes: Sequence[NodeView], request: PlacementRequest) -> list[NodeView]:
        # Called for every placement over every node: plain loops, no per-node generators.
        ok = _passing(nodes, self.filters, request)
        if len(self.weighers) == 1:
            weigh = self.weighers[0].weigh
            keyed = [(-weigh(n, request), n.index, n) for n in ok]
        else:
            keyed = [(-_weight(self.weighers, n, request), n.index, n) for n in ok]
        keyed.sort(key=_RANK)  # weight, then config order (never the views themselves)
        return [k[2] for k in keyed]


_RANK = itemgetter(0, 1)


def _weight(weighers: Sequence[Weigher], node: NodeView, request: PlacementRequest) -> float:
    total = 0.0
    for w in weighers:
        total += w.weigh(node, request)
    return total


def _passing(
    nodes: Sequence[NodeView], filters: Sequence[Filter], request: PlacementRequest
) -> list[NodeView]:
    """The nodes every filter passes, in their order."""
    ok = list(nodes)
    for f in filters:
        passes = f.passes
        ok = [n for n in ok if passes(n, request)]
    return ok


class RoundRobinPolicy:
    """First fit, starting one past the node used last time."""

    name = "roundrobin"

    def __init__(self) -> None:
        self.filters: list[Filter] = [NodeUpFilter(), ResourceFilter()]
        self._next = 0

    def candidates(self, nodes: Sequence[NodeView], request: PlacementRequest) -> list[NodeView]:
        if not nodes:
            return []
        start = self._next % len(nodes)
        rotated = list(nodes[start:]) + list(nodes[:start])
        ok = _passing(rotated, self.filters, request)
        if ok:
            self._next = ok[0].index + 1
        return ok


def firstfit() -> WeightedPolicy:
    return WeightedPolicy("firstfit", [NodeUpFilter(), ResourceFilter()], [ConfigOrderWeigher()])


def pack() -> WeightedPolicy:
    return WeightedPolicy("pack", [NodeUpFilter(), ResourceFilter()], [FullestWeigher()])


def spread() -> WeightedPolicy:
    return WeightedPolicy("spread", [NodeUpFilter(), ResourceFilter()], [EmptiestWeigher()])


POLICIES: dict[str, Callable[[], Policy]] = {
    "firstfit": firstfit,
    "roundrobin": RoundRobinPolicy,
    "pack": pack,
    "spread": spread,
}


def make_policy(name: str) -> Policy:
    try:
        return POLICIES[name]()
    except KeyError:
        raise ValueError(
            f"unknown scheduler {name!r}; choose one of {', '.join(sorted(POLICIES))}"
        ) from None
