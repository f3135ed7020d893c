"""CC DescribeResources over real NCs, checked against a hand count."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from eucalypt.cc.api import CcClient, DescribeResourcesRequest, VmTypeSpec
from eucalypt.cc.app import create_app as create_cc
from eucalypt.cc.capacity import availability
from eucalypt.config import CcConfig, Config, NcConfig
from eucalypt.nc.api import NcClient, NodeResources
from eucalypt.nc.app import create_app as create_nc
from eucalypt.nc.resources import read_meminfo_mib
from eucalypt.rpc import ComponentKeys, RemoteError
from tests.support.servers import free_port, serve_in_thread

TYPES = [
    VmTypeSpec(name="tiny", cores=1, memory_mib=128, disk_gib=1),
    VmTypeSpec(name="wide", cores=2, memory_mib=256, disk_gib=1),
    VmTypeSpec(name="huge", cores=1, memory_mib=10**9, disk_gib=1),
]


def test_capacity_is_sum_over_nodes_of_min_over_resources() -> None:
    nodes = [
        NodeResources(
            cores_total=8,
            cores_free=3,
            memory_mib_total=4096,
            memory_mib_free=1024,
            disk_gib_total=100,
            disk_gib_free=2,
        ),
        NodeResources(
            cores_total=2,
            cores_free=2,
            memory_mib_total=512,
            memory_mib_free=512,
            disk_gib_total=10,
            disk_gib_free=10,
        ),
    ]
    got = {a.name: (a.available, a.maximum) for a in availability(nodes, TYPES)}
    # tiny: node1 min(3, 8, 2)=2 + node2 min(2, 4, 10)=2; max: min(8,32,100)=8 + min(2,4,10)=2
    assert got["tiny"] == (4, 10)
    # wide: node1 min(1, 4, 2)=1 + node2 min(1, 2, 10)=1; max: min(4,16,100)=4 + min(1,2,10)=1
    assert got["wide"] == (2, 5)
    assert got["huge"] == (0, 0)


@pytest.fixture
def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    nc_port, dead_port = free_port(), free_port()
    config = Config(
        data_dir=tmp_path,
        cc=CcConfig(
            port=free_port(),
            nodes=[f"http://127.0.0.1:{nc_port}", f"http://127.0.0.1:{dead_port}"],
            poll_seconds=0.5,
        ),
        nc=NcConfig(port=nc_port, reserve_memory_mib=100, reserve_cores=0),
    )
    keys = ComponentKeys.generate(config.keys_dir)
    with (
        serve_in_thread(create_nc(config), nc_port),
        serve_in_thread(create_cc(config), config.cc.port) as cc_url,
    ):
        yield config, keys, cc_url


def test_describe_resources_matches_hand_count_and_marks_dead_node(cluster) -> None:  # type: ignore[no-untyped-def]
    config, keys, cc_url = cluster

    async def go():  # type: ignore[no-untyped-def]
        nc = NcClient(config.cc.nodes[0], keys.credential("cc"), region=config.region)
        cc = CcClient(cc_url, keys.credential("clc"), region=config.region)
        try:
            node = await nc.describe_resource()
            cluster_view = await cc.describe_resources(DescribeResourcesRequest(vm_types=TYPES))
            return node, cluster_view
        finally:
            await nc.aclose()
            await cc.aclose()

    node, view = asyncio.run(go())
    res = node.resources
    assert res.cores_total == len(os.sched_getaffinity(0))
    assert res.memory_mib_total == read_meminfo_mib() - 100
    states = {n.url: n.state for n in view.nodes}
    assert states == {config.cc.nodes[0]: "up", config.cc.nodes[1]: "down"}
    by_name = {a.name: a for a in view.vm_types}
    hand = min(res.cores_free // 1, res.memory_mib_free // 128, res.disk_gib_free // 1)
    assert by_name["tiny"].available == hand
    assert by_name["huge"].available == 0
    assert view.cluster == config.cc.name


def test_nc_refuses_callers_other_than_cc(cluster) -> None:  # type: ignore[no-untyped-def]
    config, keys, _ = cluster

    async def go() -> None:
        nc = NcClient(config.cc.nodes[0], keys.credential("walrus"), region=config.region)
        try:
            await nc.describe_resource()
        finally:
            await nc.aclose()

    with pytest.raises(RemoteError) as err:
        asyncio.run(go())
    assert err.value.code in ("AuthFailure", "AccessDenied")
