"""The CC host's data plane: desired host state, DHCP servers and the metadata proxy.

Every network mode renders what it wants (a :class:`HostState` and, per
interface, DHCP ranges and fixed leases) and hands it to :meth:`DataPlane.sync`,
which applies it through the one runner: stale dnsmasqs stopped, links and
iptables applied (doing nothing when the host already matches), wanted
dnsmasqs started or told about new leases. :meth:`DataPlane.teardown` leaves
nothing of ours behind.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from eucalypt.auth.credentials import Credential
from eucalypt.config import Config
from eucalypt.net import state as host_state
from eucalypt.net.dnsmasq import DhcpHost, DhcpRange, Dnsmasq
from eucalypt.net.local import runtime_state_dir
from eucalypt.net.metadata import Lookup, MetadataProxy
from eucalypt.net.runner import CommandRunner, Runner
from eucalypt.net.state import HostState

log = logging.getLogger("eucalypt.cc.network")


@dataclass(frozen=True)
class Dhcp:
    """What one interface's dnsmasq serves."""

    ranges: tuple[DhcpRange, ...]
    hosts: tuple[DhcpHost, ...] = ()


@dataclass
class DataPlane:
    runner: Runner
    netns: str | None
    state_dir: Path
    metadata: MetadataProxy | None = None
    _dhcp: dict[str, Dnsmasq] = field(default_factory=dict)

    @classmethod
    def from_config(
        cls,
        config: Config,
        lookup: Lookup,
        *,
        runner: Runner | None = None,
        credential: Credential | None = None,
    ) -> DataPlane:
        cc = config.cc
        netns = cc.network_netns or None
        proxy = MetadataProxy(
            lookup,
            cc.metadata_upstream or config.clc.url,
            cc.metadata_port,
            netns=netns,
            credential=credential,
            region=config.region,
        )
        # dnsmasq drops to nobody: as root its files go under /run, which it can read.
        default = (
            runtime_state_dir(config.data_dir)
            if os.geteuid() == 0
            else config.data_dir / "cc" / "net"
        )
        state_dir = Path(cc.network_state_dir or default)
        return cls(runner or CommandRunner(), netns, state_dir, proxy)

    def _dnsmasq(self, iface: str) -> Dnsmasq:
        if iface not in self._dhcp:
            self._dhcp[iface] = Dnsmasq(self.runner, iface, self.state_dir, self.netns)
        return self._dhcp[iface]

    def _leftover_dhcp(self) -> list[str]:
        """Interfaces whose dnsmasq a previous run of the CC may have left running."""
        if not self.state_dir.is_dir():
            return []
        return [p.stem for p in self.state_dir.glob("*.pid")]

    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.metadata is not None:
            await self.metadata.start()

    async def sync(self, want: HostState, dhcp: dict[str, Dhcp]) -> None:
        """Make the host, its dnsmasqs and their leases match ``want`` and ``dhcp``."""
        for iface in sorted(set(self._dhcp) | set(self._leftover_dhcp())):
            if iface not in dhcp:
                await self._dnsmasq(iface).stop()
                self._dhcp.pop(iface, None)
        await host_state.apply(self.runner, want, self.netns)
        for iface, d in sorted(dhcp.items()):
            await self._dnsmasq(iface).ensure(list(d.ranges), list(d.hosts))

    async def teardown(self, want: HostState) -> None:
        """Stop every dnsmasq and remove all that ``want``'s ownership covers."""
        for iface in sorted(set(self._dhcp) | set(self._leftover_dhcp())):
            await self._dnsmasq(iface).stop()
        self._dhcp.clear()
        await host_state.teardown(self.runner, want, self.netns)

    async def stop(self, want: HostState) -> None:
        try:
            await self.teardown(want)
        finally:
            if self.metadata is not None:
                await self.metadata.stop()
