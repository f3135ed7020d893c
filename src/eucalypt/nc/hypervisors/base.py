"""The hypervisor driver Protocol: the narrow waist between the NC and a hypervisor.

Drivers are chosen by name in config (``nc.hypervisor``): ``qemu`` (QEMU
with QMP, no daemon: the embedded default), ``sim`` (no VM: resources and
timings only, for scale studies) and, later, ``libvirt``. A driver knows
nothing about the NC's API, caches or networks: it gets a fully prepared
:class:`DomainSpec` (local files, a tap name) and boots it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

# One definition of the host's resources, shared with discovery.
from eucalypt.nc.resources import HostResources

__all__ = ["DomainInfo", "DomainSpec", "HostResources", "Hypervisor", "NicSpec"]


@dataclass(frozen=True)
class NicSpec:
    mac: str
    # "tap": an existing tap device ``tap``; "user": QEMU user-mode networking.
    kind: Literal["tap", "user", "none"]
    tap: str | None = None
    metadata_forward: str | None = None  # user mode: host:port for 169.254.169.254:80
    host_forwards: dict[int, int] = field(
        default_factory=dict
    )  # user mode: host port -> guest port


@dataclass(frozen=True)
class DomainSpec:
    """Everything needed to boot one instance, all of it already on local disk."""

    instance_id: str
    workdir: Path  # the instance's directory; drivers keep their files (pid, sockets) here
    cores: int
    memory_mib: int
    disk: Path  # the root disk (qcow2 overlay)
    nic: NicSpec
    kernel: Path | None = None
    ramdisk: Path | None = None
    kernel_args: str = ""
    console_log: Path | None = None  # where the serial console is captured


@dataclass(frozen=True)
class DomainInfo:
    instance_id: str
    running: bool
    pid: int | None = None
    # Why the domain is not running, when the driver can tell (e.g. killed vs exited).
    reason: str = ""


class Hypervisor(Protocol):
    """What the NC needs from a hypervisor. Every method is safe to retry."""

    name: str
    #: True when the driver boots nothing (``sim``): the NC then skips fetching
    #: images, making disks and creating network endpoints, and only accounts.
    simulated: bool

    async def spawn(self, spec: DomainSpec) -> DomainInfo:
        """Boot the domain; return once the hypervisor has it running.

        On failure it raises and leaves nothing behind (no process, no
        socket); the instance's files in ``spec.workdir`` belong to the NC.
        """
        ...

    async def destroy(self, instance_id: str, workdir: Path) -> None:
        """Stop the domain hard. Succeeds when it is already gone."""
        ...

    async def reboot(self, instance_id: str, workdir: Path) -> None:
        """Reset the domain (same disk, same NIC)."""
        ...

    async def info(self, instance_id: str, workdir: Path) -> DomainInfo:
        """Whether the domain runs now (a domain that died shows ``running=False``)."""
        ...

    async def list(self, instances_dir: Path) -> list[DomainInfo]:
        """Domains this driver finds under ``instances_dir`` (for reconciliation at start)."""
        ...

    async def console_output(self, instance_id: str, workdir: Path, limit: int) -> bytes:
        """The last ``limit`` bytes of the serial console."""
        ...

    def host_resources(self, instances_dir: Path) -> HostResources:
        """The node's cores, memory (MiB) and disk (GiB) for instances."""
        ...
