"""Hypervisor drivers behind one Protocol (:mod:`.base`), chosen by name in config.

``DRIVERS`` is the registry: ``nc.hypervisor = "qemu"`` (the default) or
``"sim"``. A driver class has ``from_config(config)``; libvirt comes later.
"""

from __future__ import annotations

from eucalypt.config import Config
from eucalypt.nc.hypervisors.base import (
    DomainInfo,
    DomainSpec,
    HostResources,
    Hypervisor,
    NicSpec,
)
from eucalypt.nc.hypervisors.qemu import QemuDriver
from eucalypt.nc.hypervisors.sim import SimDriver

__all__ = [
    "DRIVERS",
    "DomainInfo",
    "DomainSpec",
    "HostResources",
    "Hypervisor",
    "NicSpec",
    "QemuDriver",
    "SimDriver",
    "make_driver",
]

DRIVERS: dict[str, type[QemuDriver] | type[SimDriver]] = {"qemu": QemuDriver, "sim": SimDriver}


def make_driver(name: str, config: Config) -> Hypervisor:
    """The driver called ``name``, built from ``config`` (ValueError for an unknown name)."""
    try:
        cls = DRIVERS[name]
    except KeyError:
        raise ValueError(f"unknown hypervisor {name!r}; known: {sorted(DRIVERS)}") from None
    driver: Hypervisor = cls.from_config(config)
    return driver
