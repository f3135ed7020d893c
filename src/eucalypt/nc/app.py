"""The Node Controller service: HTTP wiring.

``create_app(config)`` builds the driver, the image cache and the service,
and registers the NC's operations; every one accepts only the CC's key and
cloud administrators. At startup the service reconciles its instance
directories with the hypervisor; at shutdown running domains are left
running (a restarted NC adopts them). Where the CC asks for it (SYSTEM and
STATIC modes), the NC serves its instances' metadata itself
(:mod:`eucalypt.nc.metadata`). With ``nc.netns`` the NC makes sure
that namespace exists before it reconciles (its taps and their QEMUs live
there); the NC's own server stays in the host's namespace.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from eucalypt.auth.credentials import ChainCredentialStore, Credential, CredentialStore
from eucalypt.config import Config
from eucalypt.nc.api import (
    DescribeInstancesRequest,
    DescribeInstancesResponse,
    DescribeResourceRequest,
    DescribeResourceResponse,
    GetConsoleOutputResponse,
    InstanceIdRequest,
    InstanceResponse,
    RunInstanceRequest,
    RunInstanceResponse,
)
from eucalypt.nc.cache import FetchSettings, ImageCache
from eucalypt.nc.endpoint import Endpoints
from eucalypt.nc.hypervisors import Hypervisor, make_driver
from eucalypt.nc.metadata import NodeMetadata
from eucalypt.nc.service import NodeParts, NodeService, NodeSettings
from eucalypt.net.local import ensure_netns
from eucalypt.net.runner import CommandRunner, Runner
from eucalypt.rpc import ComponentKeys, RpcRouter, rpc_app

#: Who may call the NC: the CC, and cloud administrators.
CALLERS = frozenset({"cc", "admin"})


def create_app(
    config: Config,
    *,
    driver: Hypervisor | None = None,
    runner: Runner | None = None,
    credentials: CredentialStore | None = None,
) -> FastAPI:
    """The NC app. ``driver``, ``runner`` and ``credentials`` replace the defaults
    (the configured driver, real host commands, the component keys)."""
    keys = ComponentKeys.load(config.keys_dir)
    run = runner or CommandRunner()
    hypervisor = driver or make_driver(config.nc.hypervisor, config)
    cache = ImageCache(
        Path(config.nc.cache_dir),
        max_bytes=int(config.nc.cache_max_gib * 2**30),
        fetch=FetchSettings(credential=keys.credential("nc"), region=config.region),
        runner=run,
    )
    node_name = f"{socket.gethostname()}:{config.nc.port}"
    service = NodeService(
        NodeSettings.from_config(config, node_name),
        NodeParts(
            driver=hypervisor,
            cache=cache,
            endpoints=Endpoints(run, netns=config.nc.netns or None),
            runner=run,
            metadata=NodeMetadata(
                port=config.nc.metadata_port,
                upstream=config.nc.metadata_upstream or config.clc.url,
                credential=keys.credential("nc"),
                region=config.region,
                netns=config.nc.netns or None,
                runner=run,
            ),
        ),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if config.nc.netns and runner is None:
            await ensure_netns(run, config.nc.netns)
        await service.start()
        try:
            yield
        finally:
            await service.close()

    if credentials is None:
        from eucalypt.clc.api import ClcIdentityStore

        # The CC (and CLC) by their component keys; cloud administrators by theirs.
        credentials = ChainCredentialStore(
            keys.store(["cc", "clc"]), ClcIdentityStore(config, component="nc")
        )
    app = rpc_app("nc", credentials)
    app.router.lifespan_context = lifespan
    app.state.service = service
    router = RpcRouter()

    @router.operation(
        "DescribeResource", DescribeResourceRequest, DescribeResourceResponse, allow=CALLERS
    )
    async def describe_resource(
        _req: DescribeResourceRequest, _caller: Credential
    ) -> DescribeResourceResponse:
        """The node's cores, memory and disk: total (after the reserve) and free."""
        return service.describe_resource()

    @router.operation("RunInstance", RunInstanceRequest, RunInstanceResponse, allow=CALLERS)
    async def run_instance(req: RunInstanceRequest, _caller: Credential) -> RunInstanceResponse:
        """Admit an instance (pending) and launch it; InsufficientCapacity if it does not fit."""
        return RunInstanceResponse(instance=await service.run_instance(req))

    @router.operation("TerminateInstance", InstanceIdRequest, InstanceResponse, allow=CALLERS)
    async def terminate_instance(req: InstanceIdRequest, _caller: Credential) -> InstanceResponse:
        """Stop the instance, delete its network endpoint and files (idempotent)."""
        return InstanceResponse(instance=await service.terminate_instance(req.instance_id))

    @router.operation("RebootInstance", InstanceIdRequest, InstanceResponse, allow=CALLERS)
    async def reboot_instance(req: InstanceIdRequest, _caller: Credential) -> InstanceResponse:
        """Reset a running instance (same disk, same network endpoint)."""
        return InstanceResponse(instance=await service.reboot_instance(req.instance_id))

    @router.operation(
        "DescribeInstances", DescribeInstancesRequest, DescribeInstancesResponse, allow=CALLERS
    )
    async def describe_instances(
        req: DescribeInstancesRequest, _caller: Credential
    ) -> DescribeInstancesResponse:
        """The node's instances (or those named), terminated ones with their reason."""
        return DescribeInstancesResponse(
            instances=await service.describe_instances(req.instance_ids)
        )

    @router.operation(
        "GetConsoleOutput", InstanceIdRequest, GetConsoleOutputResponse, allow=CALLERS
    )
    async def get_console_output(
        req: InstanceIdRequest, _caller: Credential
    ) -> GetConsoleOutputResponse:
        """The last 64 KiB of the instance's serial console."""
        return await service.console_output(req.instance_id)

    router.mount(app)
    return app
