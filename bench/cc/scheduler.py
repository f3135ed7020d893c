#!/usr/bin/env python3
"""The CC's own cost per placement, without HTTP: choose a node and claim it.

Builds a Cluster of N up nodes (4 to 16 slots, as bench/cc/run.py) in this
process and places M instances through ``ClusterService._pick`` with each
scheduling policy, then times ``availability`` (DescribeResources' sum) over
the full cluster. CPU time of this process, so other load on the machine
matters less. Also runs against an older tree for comparisons:
``PYTHONPATH=/path/to/old/src python bench/cc/scheduler.py``.

Usage: .venv/bin/python bench/cc/scheduler.py [--nodes 1000] [--instances 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: tests.support

from tests.support.simnodes import node_sizes

from eucalypt.cc.api import LaunchSpec, NodeStatus, VmTypeSpec
from eucalypt.cc.capacity import availability
from eucalypt.cc.cluster import Cluster
from eucalypt.cc.scheduler import make_policy
from eucalypt.cc.service import ClusterService
from eucalypt.config import default_vm_types
from eucalypt.nc.api import BootImages, ImageRef, NodeResources, VmSpec


async def place(nodes: int, instances: int, policy: str) -> tuple[float, float, int]:
    """CPU µs per placement, and per availability() over the full cluster; placed count."""
    vm_type = next(v for v in default_vm_types() if v.name == "m1.small")
    sizes = node_sizes(nodes, instances, vm_type)
    cluster = Cluster({f"http://n{i:04d}": None for i in range(nodes)})  # type: ignore[misc]
    for node, size in zip(cluster.nodes.values(), sizes, strict=True):
        node.status = NodeStatus(
            url=node.url,
            state="up",
            resources=NodeResources(
                cores_total=size["cores"],
                cores_free=size["cores"],
                memory_mib_total=size["memory_mib"],
                memory_mib_free=size["memory_mib"],
                disk_gib_total=size["disk_gib"],
                disk_gib_free=size["disk_gib"],
            ),
        )
        if hasattr(node, "changed"):
            node.changed()
    service = ClusterService(cluster, make_policy(policy), None)  # type: ignore[arg-type]
    vm = VmSpec(**vm_type.model_dump())
    images = BootImages(root=ImageRef(image_id="emi-1", url="http://127.0.0.1:9/sim"))
    specs = [
        LaunchSpec(instance_id=f"i-{k:08x}", owner_id="0", vm=vm, images=images)
        for k in range(instances)
    ]
    placed = 0
    started = time.process_time()
    for spec in specs:
        placed += await service._pick(spec, set()) is not None
    pick = (time.process_time() - started) / instances
    types = [VmTypeSpec(**v.model_dump()) for v in default_vm_types()]
    started = time.process_time()
    for _ in range(20):
        availability([v.free for v in cluster.views() if v.up], types)
    return pick * 1e6, (time.process_time() - started) / 20 * 1e6, placed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--policies", default="firstfit,roundrobin,pack,spread")
    args = parser.parse_args()
    print(f"{args.nodes} nodes, {args.instances} placements (CPU time of this process)")
    for policy in args.policies.split(","):
        pick, avail, placed = asyncio.run(place(args.nodes, args.instances, policy))
        print(
            f"  {policy:<10} {pick:8.0f} us/placement   availability() at full "
            f"{avail / 1000:6.1f} ms   placed {placed}"
        )


if __name__ == "__main__":
    main()
