"""The ``sim`` driver: no VM at all, for scheduler and scale studies.

A simulated domain "boots" by sleeping ``boot_seconds`` and then "runs" as an
entry in memory; it uses no CPU, memory or disk of the host, but the NC
accounts its VM type exactly as for a real one. The driver may pretend to be
a node of any size (``sim_cores`` etc. in config), so thousands of NCs on one
machine can model a heterogeneous cloud. Domains live in this process only: a
restarted NC finds none and reports its old instances terminated.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from eucalypt.config import Config
from eucalypt.nc.hypervisors.base import DomainInfo, DomainSpec, HostResources
from eucalypt.nc.resources import discover

CONSOLE_LINE = "[eucalypt sim] instance {id} is simulated by the sim driver: no VM, no console\n"


@dataclass(frozen=True)
class SimHost:
    """The node the driver pretends to be; 0 means "this host's"."""

    cores: int = 0
    memory_mib: int = 0
    disk_gib: int = 0


class SimDriver:
    """Accounts resources and timings only. Contracts are the Protocol's."""

    name = "sim"
    simulated = True

    def __init__(self, *, boot_seconds: float = 1.0, host: SimHost | None = None) -> None:
        self.boot_seconds = boot_seconds
        self._host = host or SimHost()
        self._domains: dict[str, DomainSpec] = {}
        self.boots = 0

    @classmethod
    def from_config(cls, config: Config) -> SimDriver:
        nc = config.nc
        return cls(
            boot_seconds=nc.sim_boot_seconds,
            host=SimHost(nc.sim_cores, nc.sim_memory_mib, nc.sim_disk_gib),
        )

    async def spawn(self, spec: DomainSpec) -> DomainInfo:
        if self.boot_seconds > 0:
            await asyncio.sleep(self.boot_seconds)
        self._domains[spec.instance_id] = spec
        self.boots += 1
        return DomainInfo(spec.instance_id, True, None)

    async def destroy(self, instance_id: str, workdir: Path) -> None:
        self._domains.pop(instance_id, None)

    async def reboot(self, instance_id: str, workdir: Path) -> None:
        if instance_id not in self._domains:
            raise RuntimeError(f"{instance_id} is not running")
        if self.boot_seconds > 0:
            await asyncio.sleep(min(self.boot_seconds, 0.1))

    async def info(self, instance_id: str, workdir: Path) -> DomainInfo:
        if instance_id in self._domains:
            return DomainInfo(instance_id, True, None)
        return DomainInfo(instance_id, False, None, "no simulated domain (the NC restarted?)")

    async def list(self, instances_dir: Path) -> list[DomainInfo]:
        return [DomainInfo(i, True, None) for i in self._domains]

    async def console_output(self, instance_id: str, workdir: Path, limit: int) -> bytes:
        return CONSOLE_LINE.format(id=instance_id).encode()[-limit:]

    def host_resources(self, instances_dir: Path) -> HostResources:
        real = (
            discover(instances_dir)
            if 0 in (self._host.cores, self._host.memory_mib, self._host.disk_gib)
            else None
        )
        return HostResources(
            cores=self._host.cores or (real.cores if real else 0),
            memory_mib=self._host.memory_mib or (real.memory_mib if real else 0),
            disk_gib=self._host.disk_gib or (real.disk_gib if real else 0),
        )
