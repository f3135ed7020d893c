"""STATIC mode: the administrator lists MAC/IP pairs; each instance gets a free one.

Instances' taps join the site bridge (``cc.bridge``) as in SYSTEM mode, but
the CC serves DHCP on its interface on that LAN (``static_interface``) with
a fixed lease for each pair in use, and only for those: a pair is handed
out at launch and taken back (its lease removed) at terminate. When the CC
is the instances' router (``static_router`` is an address of its
``static_interface``, read at start), it also redirects their metadata
requests to its proxy; otherwise the instances' metadata never passes the
CC, and each spec asks the node to serve it (``node_metadata``, as in
SYSTEM mode: :mod:`eucalypt.nc.metadata`). Groups are recorded, not
enforced (the paper's STATIC mode has no isolation).
"""

from __future__ import annotations

import asyncio
import logging
from ipaddress import IPv4Address, IPv4Network

from eucalypt.auth.credentials import Credential
from eucalypt.cc.api import LaunchSpec
from eucalypt.cc.network.base import FoundEndpoint
from eucalypt.cc.network.dataplane import DataPlane, Dhcp
from eucalypt.cc.network.errors import NoFreeAddress
from eucalypt.cc.network.firewall import metadata_iptables
from eucalypt.cc.network.groups import GroupBook
from eucalypt.config import Config
from eucalypt.nc.api import NetworkSpec
from eucalypt.net.dnsmasq import DhcpHost, DhcpRange
from eucalypt.net.links import read_links
from eucalypt.net.runner import Runner
from eucalypt.net.state import HostState

log = logging.getLogger("eucalypt.cc.network")


class StaticNetwork(GroupBook):
    mode = "STATIC"

    def __init__(
        self,
        config: Config,
        *,
        runner: Runner | None = None,
        credential: Credential | None = None,
    ) -> None:
        super().__init__()
        cc = config.cc
        if not cc.static_subnet:
            raise ValueError("STATIC mode needs cc.static_subnet")
        self.subnet = IPv4Network(cc.static_subnet)
        self.pairs = sorted(
            ((mac.lower(), IPv4Address(ip)) for mac, ip in cc.static_pairs.items()),
            key=lambda p: p[1],
        )
        for _, ip in self.pairs:
            if ip not in self.subnet:
                raise ValueError(f"static address {ip} is outside {self.subnet}")
        self.router = cc.static_router or None
        self.bridge = cc.bridge
        self.interface = cc.static_interface or cc.bridge
        self.metadata_port = cc.metadata_port
        # Whether the CC is the instances' router (so it sees their metadata requests).
        self.cc_routes = False
        self.assigned: dict[str, tuple[str, IPv4Address]] = {}
        self.lock = asyncio.Lock()
        self.started = False
        self.plane = DataPlane.from_config(
            config, self.instance_for_ip, runner=runner, credential=credential
        )

    def free_pairs(self) -> list[tuple[str, IPv4Address]]:
        used = set(self.assigned.values())
        return [p for p in self.pairs if p not in used]

    def instance_for_ip(self, ip: str) -> str | None:
        for iid, (_, addr) in self.assigned.items():
            if str(addr) == ip:
                return iid
        return None

    async def prepare(self, spec: LaunchSpec, node_url: str) -> NetworkSpec:
        """Hand the instance a free pair (the one with its requested MAC, if free)."""
        async with self.lock:
            pair = self.assigned.get(spec.instance_id)
            if pair is None:
                free = self.free_pairs()
                wanted = [p for p in free if p[0] == spec.network.mac.lower()]
                if not free or (spec.network.mac and not wanted):
                    raise NoFreeAddress("no free MAC/IP pair is left in this cluster")
                pair = (wanted or free)[0]
                self.assigned[spec.instance_id] = pair
                try:
                    await self._sync()
                except Exception:
                    del self.assigned[spec.instance_id]
                    raise
            mac, ip = pair
            return NetworkSpec(
                mode="bridge",
                mac=mac,
                bridge=self.bridge,
                private_ip=str(ip),
                network_id=spec.network.network or None,
                node_metadata=not self.cc_routes,
            )

    async def release(self, instance_id: str) -> None:
        async with self.lock:
            if self.assigned.pop(instance_id, None) is not None:
                await self._sync()

    async def adopt(self, found: list[FoundEndpoint]) -> None:
        """Take back the pairs of running instances (a restarted CC keeps their leases)."""
        async with self.lock:
            added = False
            for f in found:
                if f.instance_id in self.assigned:
                    continue
                mac, ip = f.spec.mac.lower(), f.spec.private_ip
                pair = next((p for p in self.pairs if p[0] == mac and str(p[1]) == ip), None)
                holder = next((i for i, p in self.assigned.items() if p == pair), None)
                if pair is None or holder is not None:
                    log.warning(
                        "endpoint not adopted",
                        extra={
                            "instance_id": f.instance_id,
                            "mac": f.spec.mac,
                            "private_ip": ip,
                            "error": f"held by {holder}" if holder else "not a configured pair",
                        },
                    )
                    continue
                self.assigned[f.instance_id] = pair
                added = True
            if added and self.started:
                await self._sync()

    def desired(self) -> tuple[HostState, dict[str, Dhcp]]:
        state = HostState(
            link_prefixes=(),
            iptables=metadata_iptables([self.interface], self.metadata_port),
        )
        hosts = tuple(DhcpHost(mac, str(ip)) for mac, ip in self.assigned.values())
        dhcp = {self.interface: Dhcp((DhcpRange("static", str(self.subnet), self.router),), hosts)}
        return state, dhcp

    async def _sync(self) -> None:
        await self.plane.sync(*self.desired())

    async def routes(self) -> bool:
        """Whether ``static_router`` is an address of the CC's interface on the LAN."""
        if self.router is None:
            return False
        links = await read_links(self.plane.runner, self.plane.netns)
        have = links.get(self.interface)
        return have is not None and any(a.split("/")[0] == self.router for a in have.addresses)

    async def start(self) -> None:
        self.cc_routes = await self.routes()
        log.info(
            "static network",
            extra={"router": self.router, "metadata": "cc" if self.cc_routes else "nodes"},
        )
        await self.plane.start()
        async with self.lock:
            await self._sync()
            self.started = True

    async def stop(self) -> None:
        async with self.lock:
            self.started = False
            await self.plane.stop(self.desired()[0])
