"""The Node Controller's internal protocol: request/response types and client.

The CC is the NC's only regular caller (cloud administrators may call too).
Instance states are EC2's, with an explicit transition table that the NC,
the CC and the CLC all follow.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from eucalypt.rpc.client import RpcClient


class InstanceState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SHUTTING_DOWN = "shutting-down"
    TERMINATED = "terminated"
    STOPPING = "stopping"
    STOPPED = "stopped"

    @property
    def code(self) -> int:
        """EC2's numeric state code."""
        return EC2_STATE_CODES[self]


EC2_STATE_CODES: dict[InstanceState, int] = {
    InstanceState.PENDING: 0,
    InstanceState.RUNNING: 16,
    InstanceState.SHUTTING_DOWN: 32,
    InstanceState.TERMINATED: 48,
    InstanceState.STOPPING: 64,
    InstanceState.STOPPED: 80,
}

#: Which state may follow which. ``terminated`` is final. A failed launch goes
#: pending → shutting-down → terminated (with a reason), never back.
TRANSITIONS: dict[InstanceState, frozenset[InstanceState]] = {
    InstanceState.PENDING: frozenset(
        {InstanceState.RUNNING, InstanceState.SHUTTING_DOWN, InstanceState.TERMINATED}
    ),
    InstanceState.RUNNING: frozenset(
        {InstanceState.SHUTTING_DOWN, InstanceState.STOPPING, InstanceState.TERMINATED}
    ),
    InstanceState.STOPPING: frozenset(
        {InstanceState.STOPPED, InstanceState.SHUTTING_DOWN, InstanceState.TERMINATED}
    ),
    InstanceState.STOPPED: frozenset({InstanceState.PENDING, InstanceState.SHUTTING_DOWN}),
    InstanceState.SHUTTING_DOWN: frozenset({InstanceState.TERMINATED}),
    InstanceState.TERMINATED: frozenset(),
}


def can_transition(current: InstanceState, new: InstanceState) -> bool:
    return new == current or new in TRANSITIONS[current]


class NodeResources(BaseModel):
    """What a node has for instances (after the configured reserve) and what is free."""

    cores_total: int
    cores_free: int
    memory_mib_total: int
    memory_mib_free: int
    disk_gib_total: int
    disk_gib_free: int


class VmSpec(BaseModel):
    """The VM type of an instance: what it takes from the node."""

    name: str
    cores: int = Field(ge=1)
    memory_mib: int = Field(ge=16)
    disk_gib: int = Field(ge=0)


class ImageRef(BaseModel):
    """One image the instance boots from, fetched by the NC into its cache.

    ``url`` is an ``http(s)://`` URL, normally a Walrus object; the NC signs
    the GET with its component key (SigV4, service ``s3``). ``sha256`` (hex)
    is checked after download and names the cache entry; when absent the
    URL and ETag name it instead.
    """

    image_id: str
    url: str
    sha256: str | None = None
    size: int | None = None
    format: Literal["raw", "qcow2"] = "raw"


class BootImages(BaseModel):
    """Kernel + ramdisk + root filesystem (paravirtual, as in the paper) or one whole disk."""

    root: ImageRef
    kernel: ImageRef | None = None
    ramdisk: ImageRef | None = None
    kernel_args: str = "console=ttyS0 panic=-1"


class NetworkSpec(BaseModel):
    """The instance's network endpoint, chosen by the CC.

    ``bridge``: a tap device on the named host bridge (every CC network mode).
    ``user``: QEMU user-mode networking (no root, no bridge: laptops, tests);
    ``metadata_forward`` then names the ``host:port`` that the guest's
    169.254.169.254:80 is forwarded to.
    """

    mode: Literal["bridge", "user", "none"] = "bridge"
    mac: str
    bridge: str | None = None
    # MANAGED mode: the network's VXLAN VNI and the underlay addresses of its other
    # ends (the CC and the other nodes); the NC creates bridge + VXLAN on first use.
    vni: int | None = None
    vxlan_peers: list[str] = Field(default_factory=list)
    vxlan_port: int = 4789
    private_ip: str | None = None
    # The CC's name for the network (the security group's id in the MANAGED modes):
    # the NC only stores it, so a restarted CC can put the instance back in its group.
    network_id: str | None = None
    metadata_forward: str | None = None
    # bridge mode, SYSTEM and STATIC (the CC is not on the instances' path): the NC
    # itself brings the tap's 169.254.169.254:80 to its metadata proxy (nc.metadata_port)
    # and pins the tap to ``mac`` (eucalypt.nc.metadata).
    node_metadata: bool = False
    # user mode only: host ports forwarded to guest ports (e.g. {"2222": 22}).
    host_forwards: dict[int, int] = Field(default_factory=dict)


class RunInstanceRequest(BaseModel):
    instance_id: str
    reservation_id: str = ""
    owner_id: str
    vm: VmSpec
    images: BootImages
    network: NetworkSpec


class InstanceInfo(BaseModel):
    instance_id: str
    reservation_id: str = ""
    owner_id: str
    state: InstanceState
    vm: VmSpec
    launched_at: datetime
    network: NetworkSpec
    tap: str | None = None
    # Why the instance is shutting down or terminated, when it was not asked to.
    reason: str = ""
    # The hypervisor's process for the instance, when it has one (qemu: QEMU's pid).
    pid: int | None = None


class RunInstanceResponse(BaseModel):
    instance: InstanceInfo


class InstanceIdRequest(BaseModel):
    instance_id: str


class InstanceResponse(BaseModel):
    instance: InstanceInfo


class DescribeInstancesRequest(BaseModel):
    instance_ids: list[str] = Field(default_factory=list)


class DescribeInstancesResponse(BaseModel):
    instances: list[InstanceInfo]


class GetConsoleOutputResponse(BaseModel):
    instance_id: str
    output: str
    timestamp: datetime


class DescribeResourceRequest(BaseModel):
    pass


class DescribeResourceResponse(BaseModel):
    node: str
    hypervisor: str
    resources: NodeResources


class NcClient(RpcClient):
    """Typed client of one NC."""

    async def describe_resource(self) -> DescribeResourceResponse:
        return await self.call(
            "DescribeResource", DescribeResourceRequest(), DescribeResourceResponse
        )

    async def run_instance(self, req: RunInstanceRequest) -> RunInstanceResponse:
        return await self.call("RunInstance", req, RunInstanceResponse)

    async def terminate_instance(self, instance_id: str) -> InstanceResponse:
        return await self.call(
            "TerminateInstance", InstanceIdRequest(instance_id=instance_id), InstanceResponse
        )

    async def reboot_instance(self, instance_id: str) -> InstanceResponse:
        return await self.call(
            "RebootInstance", InstanceIdRequest(instance_id=instance_id), InstanceResponse
        )

    async def describe_instances(
        self, instance_ids: list[str] | None = None
    ) -> DescribeInstancesResponse:
        return await self.call(
            "DescribeInstances",
            DescribeInstancesRequest(instance_ids=instance_ids or []),
            DescribeInstancesResponse,
        )

    async def get_console_output(self, instance_id: str) -> GetConsoleOutputResponse:
        return await self.call(
            "GetConsoleOutput", InstanceIdRequest(instance_id=instance_id), GetConsoleOutputResponse
        )
