"""Discovering the node's physical resources (the paper: cores, memory, disk)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HostResources:
    """Cores, memory (MiB) and disk (GiB) for instances."""

    cores: int
    memory_mib: int
    disk_gib: int


def read_meminfo_mib(path: Path = Path("/proc/meminfo")) -> int:
    for line in path.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError(f"MemTotal missing from {path}")


def discover(
    instances_dir: Path, reserve_cores: int = 0, reserve_memory_mib: int = 0
) -> HostResources:
    """The host's cores, memory and the disk under ``instances_dir``, minus the reserve."""
    instances_dir.mkdir(parents=True, exist_ok=True)
    cores = len(os.sched_getaffinity(0))
    disk = shutil.disk_usage(instances_dir)
    return HostResources(
        cores=max(cores - reserve_cores, 0),
        memory_mib=max(read_meminfo_mib() - reserve_memory_mib, 0),
        disk_gib=disk.total // 2**30,
    )
