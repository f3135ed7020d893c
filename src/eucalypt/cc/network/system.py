"""SYSTEM mode: instances' taps join a bridge on the node's physical network.

The site's DHCP server gives out addresses and the site's router routes;
the CC only picks MACs. Groups are recorded, not enforced (the paper's
SYSTEM mode has no isolation). The metadata service is the site's to route
(169.254.169.254 is not on a path the CC controls in this mode).
"""

from __future__ import annotations

from eucalypt.cc.api import LaunchSpec
from eucalypt.cc.network.base import FoundEndpoint, instance_mac
from eucalypt.cc.network.groups import GroupBook
from eucalypt.config import Config
from eucalypt.nc.api import NetworkSpec


class SystemNetwork(GroupBook):
    mode = "SYSTEM"

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.bridge = config.cc.bridge

    async def prepare(self, spec: LaunchSpec, node_url: str) -> NetworkSpec:
        return NetworkSpec(
            mode="bridge",
            mac=spec.network.mac or instance_mac(spec.instance_id),
            bridge=self.bridge,
            network_id=spec.network.network or None,
        )

    async def release(self, instance_id: str) -> None:
        return None

    async def adopt(self, found: list[FoundEndpoint]) -> None:
        return None  # nothing of the instances' is kept here

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
