"""One CC places 2,000 instances over 200 sim NCs: all placed, no node ever overcommitted.

The NCs are 200 real NC apps (sim driver) behind one server, routed by path
prefix (tests/support/simnodes.py); the CC is the real app with their 200
URLs. Node sizes (4 to 16 slots) add up to exactly 2,000 slots, so the
cluster ends full and one more instance must be refused. While placements
run, every node's own accounting is read again and again: no node may ever
have less than nothing free. Not timed.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import httpx

from eucalypt.cc.api import (
    CcClient,
    DescribeResourcesRequest,
    LaunchSpec,
    RunInstancesRequest,
    VmTypeSpec,
)
from eucalypt.cc.app import create_app as create_cc
from eucalypt.config import CcConfig, Config, VmType
from eucalypt.nc.api import BootImages, ImageRef, VmSpec
from eucalypt.rpc import ComponentKeys
from tests.support.servers import free_port, serve_in_thread
from tests.support.simnodes import PrefixRouter, build_nodes, node_sizes

NODES = 200
INSTANCES = 2000
BATCH = 100
IN_FLIGHT = 4
VM = VmType(name="m1.small", cores=1, memory_mib=512, disk_gib=2)


def launch_spec(instance_id: str) -> LaunchSpec:
    return LaunchSpec(
        instance_id=instance_id,
        reservation_id="r-scale",
        owner_id="000000000001",
        vm=VmSpec(**VM.model_dump()),
        images=BootImages(root=ImageRef(image_id="emi-1", url="http://127.0.0.1:9/sim")),
    )


def overcommitted(truth: dict) -> list[str]:  # type: ignore[type-arg]
    return [
        name
        for name, n in truth["nodes"].items()
        if min(
            n["resources"]["cores_free"],
            n["resources"]["memory_mib_free"],
            n["resources"]["disk_gib_free"],
        )
        < 0
    ]


def test_2000_instances_over_200_sim_ncs(tmp_path: Path) -> None:
    sizes = node_sizes(NODES, INSTANCES, VM)
    assert sum(s["cores"] for s in sizes) == INSTANCES
    config = Config(data_dir=tmp_path, vm_types=[VM])
    ComponentKeys.generate(config.keys_dir)
    router = PrefixRouter(build_nodes(config, sizes, tmp_path / "nodes", boot_seconds=0.05))
    with serve_in_thread(router) as nodes_url:
        config.cc = CcConfig(
            port=free_port(),
            nodes=[f"{nodes_url}/{name}" for name in router.apps],
            poll_seconds=1.0,
        )
        with serve_in_thread(create_cc(config), config.cc.port) as cc_url:
            asyncio.run(drive(config, cc_url, nodes_url))


async def drive(config: Config, cc_url: str, nodes_url: str) -> None:
    keys = ComponentKeys.load(config.keys_dir)
    cc = CcClient(cc_url, keys.credential("clc"), region=config.region, timeout=300.0)
    http = httpx.AsyncClient(base_url=nodes_url, timeout=120.0)
    types = [VmTypeSpec(**VM.model_dump())]
    try:
        while True:  # every node answered a poll
            view = await cc.describe_resources(DescribeResourcesRequest(vm_types=types))
            if all(n.state == "up" for n in view.nodes):
                break
            await asyncio.sleep(0.2)
        assert len(view.nodes) == NODES
        assert view.vm_types[0].available == view.vm_types[0].maximum == INSTANCES

        ids = (f"i-{k:08x}" for k in itertools.count())
        batches = iter([BATCH] * (INSTANCES // BATCH))
        results = []

        async def worker() -> None:
            for size in batches:
                req = RunInstancesRequest(instances=[launch_spec(next(ids)) for _ in range(size)])
                results.extend((await cc.run_instances(req)).results)

        workers = asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
        checks = 0
        while not workers.done():  # the nodes' own accounting, again and again
            truth = (await http.get("/_truth")).json()
            assert overcommitted(truth) == []
            checks += 1
            await asyncio.wait([workers], timeout=0.5)
        await workers
        assert checks > 1

        failed = [(r.instance_id, r.error_code, r.error_message) for r in results if not r.ok]
        assert failed == []
        assert len(results) == INSTANCES
        truth = (await http.get("/_truth")).json()
        assert overcommitted(truth) == []
        assert sum(n["active"] for n in truth["nodes"].values()) == INSTANCES
        per_node = {r.node_url.rsplit("/", 1)[1] for r in results}
        assert len(per_node) == NODES  # exactly full: every node took its share

        # Full: one more is refused, and the CC (from the nodes' reports) sees no room.
        extra = await cc.run_instances(RunInstancesRequest(instances=[launch_spec("i-extra")]))
        assert not extra.results[0].ok
        assert extra.results[0].error_code == "InsufficientInstanceCapacity"
        view = await cc.describe_resources(DescribeResourcesRequest(vm_types=types))
        assert view.vm_types[0].available == 0
        found = await cc.describe_instances()
        assert len(found.instances) == INSTANCES
    finally:
        await cc.aclose()
        await http.aclose()
