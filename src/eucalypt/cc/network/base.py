"""What every network mode provides to the CC's launch path."""

from __future__ import annotations

import hashlib
from typing import Protocol

from eucalypt.cc.api import LaunchSpec
from eucalypt.nc.api import NetworkSpec

#: Locally administered, unicast; Eucalyptus used d0:0d for instances too.
MAC_PREFIX = "d0:0d"


def instance_mac(instance_id: str) -> str:
    """A stable MAC address for an instance, derived from its id."""
    digest = hashlib.sha256(instance_id.encode()).digest()[:4]
    return MAC_PREFIX + "".join(f":{b:02x}" for b in digest)


class NetworkManager(Protocol):
    """Gives each instance its network endpoint and takes it back.

    ``prepare`` runs before the NC is asked to boot the instance (it may
    allocate addresses and set up host networking); ``release`` runs after
    the instance is terminated or its launch failed, and succeeds when there
    is nothing to release.
    """

    mode: str

    async def prepare(self, spec: LaunchSpec, node_url: str) -> NetworkSpec: ...

    async def release(self, instance_id: str) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...
