"""Scheduling policies over node views: first fit (the paper's), round robin, pack, spread."""

from __future__ import annotations

import pytest

from eucalypt.cc.scheduler import POLICIES, NodeView, PlacementRequest, make_policy
from eucalypt.nc.api import NodeResources, VmSpec

SMALL = PlacementRequest("i-1", VmSpec(name="s", cores=1, memory_mib=512, disk_gib=1))
BIG = PlacementRequest("i-2", VmSpec(name="b", cores=4, memory_mib=4096, disk_gib=10))


def node(index: int, cores_free: int, mem_free: int, up: bool = True, cores: int = 8) -> NodeView:
    return NodeView(
        url=f"http://n{index}",
        index=index,
        up=up,
        free=NodeResources(
            cores_total=cores,
            cores_free=cores_free,
            memory_mib_total=8192,
            memory_mib_free=mem_free,
            disk_gib_total=100,
            disk_gib_free=100,
        ),
    )


def urls(views: list[NodeView]) -> list[str]:
    return [v.url for v in views]


def test_firstfit_takes_first_node_in_order_with_room() -> None:
    nodes = [node(0, 2, 256), node(1, 1, 8192), node(2, 8, 8192)]
    # node 0 lacks memory for SMALL; node 1 fits; node 2 fits too but comes later.
    assert urls(make_policy("firstfit").candidates(nodes, SMALL)) == ["http://n1", "http://n2"]
    assert urls(make_policy("firstfit").candidates(nodes, BIG)) == ["http://n2"]


def test_down_nodes_are_never_chosen() -> None:
    nodes = [node(0, 8, 8192, up=False), node(1, 8, 8192)]
    for name in POLICIES:
        assert urls(make_policy(name).candidates(nodes, SMALL)) == ["http://n1"], name


def test_pack_prefers_fullest_and_spread_prefers_emptiest() -> None:
    nodes = [node(0, 6, 6000), node(1, 1, 1000), node(2, 8, 8192)]
    assert urls(make_policy("pack").candidates(nodes, SMALL))[0] == "http://n1"
    assert urls(make_policy("spread").candidates(nodes, SMALL))[0] == "http://n2"


def test_roundrobin_rotates() -> None:
    nodes = [node(i, 8, 8192) for i in range(3)]
    policy = make_policy("roundrobin")
    firsts = [policy.candidates(nodes, SMALL)[0].url for _ in range(4)]
    assert firsts == ["http://n0", "http://n1", "http://n2", "http://n0"]


def test_no_room_gives_no_candidates_and_unknown_policy_is_clear() -> None:
    assert make_policy("firstfit").candidates([node(0, 0, 0)], SMALL) == []
    with pytest.raises(ValueError, match="firstfit"):
        make_policy("best-guess")


def test_a_new_policy_is_one_class() -> None:
    """A researcher's policy: prefer odd-indexed nodes. No other code changes."""
    from eucalypt.cc.scheduler.filters import ResourceFilter
    from eucalypt.cc.scheduler.policies import WeightedPolicy

    class OddFirst:
        name = "odd"

        def weigh(self, n: NodeView, request: PlacementRequest) -> float:
            return float(n.index % 2)

    policy = WeightedPolicy("odd-first", [ResourceFilter()], [OddFirst()])
    nodes = [node(i, 8, 8192) for i in range(4)]
    assert urls(policy.candidates(nodes, SMALL)) == [
        "http://n1",
        "http://n3",
        "http://n0",
        "http://n2",
    ]
