"""The Node Controller service: HTTP wiring."""

from __future__ import annotations

import socket
from pathlib import Path

from fastapi import FastAPI

from eucalypt.auth.credentials import Credential
from eucalypt.config import Config
from eucalypt.nc.api import DescribeResourceRequest, DescribeResourceResponse, NodeResources
from eucalypt.nc.resources import discover
from eucalypt.rpc import ComponentKeys, RpcRouter, rpc_app


def create_app(config: Config) -> FastAPI:
    keys = ComponentKeys.load(config.keys_dir)
    app = rpc_app("nc", keys.store(["cc", "clc"]))
    router = RpcRouter()
    instances_dir = Path(config.nc.instances_dir)
    node_name = f"{socket.gethostname()}:{config.nc.port}"

    @router.operation(
        "DescribeResource", DescribeResourceRequest, DescribeResourceResponse, allow={"cc", "admin"}
    )
    async def describe_resource(
        _req: DescribeResourceRequest, _caller: Credential
    ) -> DescribeResourceResponse:
        """The node's cores, memory and disk, total and free."""
        host = discover(instances_dir, config.nc.reserve_cores, config.nc.reserve_memory_mib)
        return DescribeResourceResponse(
            node=node_name,
            hypervisor=config.nc.hypervisor,
            resources=NodeResources(
                cores_total=host.cores,
                cores_free=host.cores,
                memory_mib_total=host.memory_mib,
                memory_mib_free=host.memory_mib,
                disk_gib_total=host.disk_gib,
                disk_gib_free=host.disk_gib,
            ),
        )

    router.mount(app)
    return app
