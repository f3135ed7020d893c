"""SYSTEM mode: instances' taps join a bridge on the node's physical network.

The site's DHCP server gives out addresses; the CC only picks MACs.
"""

from __future__ import annotations

from eucalypt.cc.api import LaunchSpec
from eucalypt.cc.network.base import instance_mac
from eucalypt.config import Config
from eucalypt.nc.api import NetworkSpec


class SystemNetwork:
    mode = "SYSTEM"

    def __init__(self, config: Config) -> None:
        self.bridge = config.cc.bridge

    async def prepare(self, spec: LaunchSpec, node_url: str) -> NetworkSpec:
        return NetworkSpec(
            mode="bridge",
            mac=spec.network.mac or instance_mac(spec.instance_id),
            bridge=self.bridge,
        )

    async def release(self, instance_id: str) -> None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
