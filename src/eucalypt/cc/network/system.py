"""SYSTEM mode: instances' taps join a bridge on the node's physical network.

The site's DHCP server gives out addresses and the site's router routes;
the CC only picks MACs. Groups are recorded, not enforced (the paper's
SYSTEM mode has no isolation).

Metadata: an instance's requests to 169.254.169.254:80 go to the site's
router and never pass the CC, so every spec asks the NODE to serve them
(``NetworkSpec.node_metadata``). The NC intercepts them on its bridge with
nftables (frames from the instance's tap to 169.254.169.254:80 are handed to
the node's own stack and redirected to the NC's metadata proxy), names the
instance by its MAC (the tap is pinned to it) and forwards to the CLC with
the instance id signed by the NC's key: :mod:`eucalypt.nc.metadata`. The
node's bridge must hold an IPv4 address on the instances' LAN (the replies
come from it), as the paper's SYSTEM mode has the node's address on br0.
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
            node_metadata=True,
        )

    async def release(self, instance_id: str) -> None:
        return None

    async def adopt(self, found: list[FoundEndpoint]) -> None:
        return None  # nothing of the instances' is kept here

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None
