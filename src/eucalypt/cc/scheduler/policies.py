"""The scheduling policies, chosen by name in config (``cc.scheduler``).

- ``firstfit`` (default, the paper's): the first node in configured order with room.
- ``roundrobin``: like first fit, but each placement starts after the last node used.
- ``pack``: the fullest node that still fits.
- ``spread``: the emptiest node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
        ok = [n for n in nodes if all(f.passes(n, request) for f in self.filters)]
        return sorted(ok, key=lambda n: (-sum(w.weigh(n, request) for w in self.weighers), n.index))


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
        ok = [n for n in rotated if all(f.passes(n, request) for f in self.filters)]
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
