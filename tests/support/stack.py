"""A whole cloud in one test process: CLC, CC and NCs (sim driver) on threads.

For tests of the request path that need no VM: admission control,
scheduling, instance state flowing up. Real servers, real signed RPC,
real boto3.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

from eucalypt.cc.app import create_app as create_cc
from eucalypt.clc import identity
from eucalypt.clc.app import create_app as create_clc
from eucalypt.clc.app import open_database
from eucalypt.clc.models import Image
from eucalypt.cli.init import initialise
from eucalypt.config import CcConfig, ClcConfig, ClusterRef, Config, NcConfig, VmType
from eucalypt.nc.app import create_app as create_nc
from tests.support.servers import free_port, serve_in_thread

IMAGE_ID = "emi-00000000000000001"


@dataclass
class Stack:
    config: Config
    admin: identity.KeyInfo
    user: identity.KeyInfo

    def ec2(self, who: identity.KeyInfo | None = None) -> Any:
        who = who or self.user
        return boto3.client(
            "ec2",
            endpoint_url=self.config.clc.url,
            region_name=self.config.region,
            aws_access_key_id=who.access_key,
            aws_secret_access_key=who.secret_key,
            config=BotoConfig(retries={"max_attempts": 1}, max_pool_connections=64),
        )


@contextlib.contextmanager
def sim_stack(
    data_dir: Path,
    *,
    nodes: int = 1,
    cores: int = 4,
    memory_mib: int = 4096,
    disk_gib: int = 100,
    boot_seconds: float = 0.2,
    scheduler: str = "firstfit",
    clusters: int = 1,
) -> Iterator[Stack]:
    """CLC + ``clusters`` CCs (zones zone-1, zone-2, ...), each with ``nodes`` sim NCs."""
    ccs = [
        CcConfig(
            name=f"zone-{c + 1}",
            port=free_port(),
            nodes=[f"http://127.0.0.1:{free_port()}" for _ in range(nodes)],
            poll_seconds=0.5,
            scheduler=scheduler,
        )
        for c in range(clusters)
    ]
    base = Config(
        data_dir=data_dir,
        clc=ClcConfig(port=free_port(), sync_seconds=0.5),
        cc=ccs[0],
        clusters=[ClusterRef(name=c.name, url=c.url) for c in ccs],
        vm_types=[
            VmType(name="t1.micro", cores=1, memory_mib=256, disk_gib=1),
            VmType(name="m1.small", cores=1, memory_mib=512, disk_gib=2),
            VmType(name="m1.large", cores=2, memory_mib=2048, disk_gib=10),
        ],
    )
    base.save()
    admin = initialise(data_dir).admin
    db = open_database(base)
    try:
        user = db.run_sync(
            lambda s: identity.create_access_key(
                s, identity.get_user(s, identity.create_account(s, "tester"), "admin")
            )
        )
        db.run_sync(
            lambda s: s.add(
                Image(
                    id=IMAGE_ID,
                    account_id=admin.account_id,
                    name="sim-image",
                    image_type="machine",
                    state="available",
                    location="images/sim.img",
                    is_public=True,
                    sha256="0" * 64,
                    size=1,
                )
            )
        )
    finally:
        db.dispose()
    with contextlib.ExitStack() as stack:
        for c, cc in enumerate(ccs):
            for i, url in enumerate(cc.nodes):
                port = int(url.rsplit(":", 1)[1])
                nc_config = base.model_copy(deep=True)
                nc_config.nc = NcConfig(
                    port=port,
                    hypervisor="sim",
                    sim_boot_seconds=boot_seconds,
                    sim_cores=cores,
                    sim_memory_mib=memory_mib,
                    sim_disk_gib=disk_gib,
                    reserve_memory_mib=0,
                    instances_dir=str(data_dir / f"nc{c}-{i}" / "instances"),
                    cache_dir=str(data_dir / f"nc{c}-{i}" / "cache"),
                )
                stack.enter_context(serve_in_thread(create_nc(nc_config), port))
            cc_config = base.model_copy(deep=True)
            cc_config.cc = cc
            stack.enter_context(serve_in_thread(create_cc(cc_config), cc.port))
        stack.enter_context(serve_in_thread(create_clc(base), base.clc.port))
        yield Stack(config=base, admin=admin, user=user)
