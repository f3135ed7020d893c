"""MANAGED and MANAGED-NOVLAN: each security group is an isolated network.

A group's network gets subnet ``i`` of the private range and, in MANAGED,
VXLAN VNI ``vni_base + i`` (where the paper used a VLAN tag): on the CC and
on every node it is bridge ``eubr<vni>`` with VXLAN port ``euvx<vni>``, and
only its instances are on that LAN. The CC holds the gateway address of each
subnet and routes between them; its iptables (``firewall``) deny traffic
between networks except what the destination group's ingress rules allow,
and map public addresses with DNAT/SNAT. With ``cluster_peers`` the CC also
bridges each network to the other clusters' CCs (VXLAN port ``eupx<vni>``),
so a group's instances in two clusters share one LAN.

MANAGED-NOVLAN puts every network on one bridge and one VNI (``vni_base``):
the subnets and the CC's iptables separate them, not the link (an instance
that reconfigures its own address can reach other subnets on the same LAN).

State is soft: networks, rules and addresses are what the CLC pushed,
endpoints are the instances placed since the CC started. The host is always
rendered from that state and applied as a whole.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from urllib.parse import urlparse

from eucalypt.auth.credentials import Credential
from eucalypt.cc.api import LaunchSpec
from eucalypt.cc.netapi import (
    AddressMapping,
    DescribeNetworksResponse,
    IngressRule,
    NetworkInfo,
    NetworkInstance,
)
from eucalypt.cc.network.addresses import Layout, parse_pool, pool_cidrs
from eucalypt.cc.network.base import instance_mac
from eucalypt.cc.network.dataplane import DataPlane, Dhcp
from eucalypt.cc.network.errors import (
    AddressInUse,
    AddressNotInPool,
    EndpointNotFound,
    NetworkInUse,
    NetworkNotFound,
    NoFreeAddress,
    NoFreeNetwork,
)
from eucalypt.cc.network.firewall import FirewallPlan, NetView, managed_iptables
from eucalypt.config import Config
from eucalypt.nc.api import NetworkSpec
from eucalypt.net.dnsmasq import DhcpHost, DhcpRange
from eucalypt.net.links import Bridge, HostAddresses, Vxlan
from eucalypt.net.node import (
    LINK_PREFIXES,
    NodeNetwork,
    bridge_name,
    peer_vxlan_name,
    vxlan_name,
)
from eucalypt.net.runner import Runner
from eucalypt.net.state import HostState
from eucalypt.rpc.errors import InvalidRequest

log = logging.getLogger("eucalypt.cc.network")

VXLAN_MTU = 1450  # 1500 minus VXLAN's 50 bytes: handed to instances by DHCP


@dataclass
class Network:
    group_id: str
    owner_id: str
    name: str
    index: int
    vni: int
    subnet: IPv4Network
    rules: tuple[IngressRule, ...] = ()


@dataclass
class Endpoint:
    instance_id: str
    group_id: str
    mac: str
    ip: IPv4Address
    node_url: str
    public_ip: IPv4Address | None = None


@dataclass
class _Book:
    networks: dict[str, Network] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)

    def members(self, group_id: str) -> list[Endpoint]:
        return [e for e in self.endpoints.values() if e.group_id == group_id]

    def active(self) -> list[Network]:
        used = {e.group_id for e in self.endpoints.values()}
        return sorted(
            (n for n in self.networks.values() if n.group_id in used), key=lambda n: n.index
        )


class ManagedNetwork:
    """The MANAGED (``novlan=False``) and MANAGED-NOVLAN network of one cluster."""

    def __init__(
        self,
        config: Config,
        *,
        novlan: bool = False,
        runner: Runner | None = None,
        credential: Credential | None = None,
    ) -> None:
        cc = config.cc
        self.mode = "MANAGED-NOVLAN" if novlan else "MANAGED"
        self.novlan = novlan
        self.cc = cc
        self.layout = Layout(
            IPv4Network(cc.private_range), cc.subnet_prefix, cc.cluster_index, cc.cluster_count
        )
        self.pool = parse_pool(cc.public_ips)
        self.book = _Book()
        self.lock = asyncio.Lock()
        self.plane = DataPlane.from_config(
            config, self.instance_for_ip, runner=runner, credential=credential
        )

    # -- addresses of the underlay ------------------------------------------------
    def _node_ip(self, url: str) -> str | None:
        ip = self.cc.node_underlay.get(url) or urlparse(url).hostname
        if not ip:
            return None
        try:
            if ipaddress.ip_address(ip).is_loopback:
                return None
        except ValueError:
            return None  # a host name: give its address in node_underlay
        return ip

    def _node_ips(self) -> list[str]:
        ips = {self._node_ip(u) for u in self.cc.nodes}
        return sorted(ip for ip in ips if ip and ip != self.cc.vxlan_local)

    def _vni(self, net: Network) -> int:
        return self.cc.vni_base if self.novlan else net.vni

    def node_network(self, instance_id: str) -> NodeNetwork:
        """What the instance's node must set up (what the NC reads from its NetworkSpec)."""
        ep = self.book.endpoints.get(instance_id)
        if ep is None:
            raise EndpointNotFound()
        vni = self._vni(self.book.networks[ep.group_id])
        mine = self._node_ip(ep.node_url)
        peers = [ip for ip in self._node_ips() if ip != mine]
        if self.cc.vxlan_local and self.cc.vxlan_local != mine:
            peers.insert(0, self.cc.vxlan_local)
        return NodeNetwork(
            bridge=bridge_name(vni), vni=vni, peers=tuple(peers), port=self.cc.vxlan_port
        )

    # -- the launch path -------------------------------------------------------------
    def _spec(self, ep: Endpoint) -> NetworkSpec:
        node = self.node_network(ep.instance_id)
        # Validated from a dict: vni/vxlan_peers/vxlan_port are NetworkSpec fields
        # the NC reads (ignored by a NetworkSpec that does not have them yet).
        return NetworkSpec.model_validate(
            {
                "mode": "bridge",
                "mac": ep.mac,
                "bridge": node.bridge,
                "private_ip": str(ep.ip),
                "vni": node.vni,
                "vxlan_peers": list(node.peers),
                "vxlan_port": node.port,
            }
        )

    def _allocate_ip(self, net: Network, wanted: str) -> IPv4Address:
        used = {e.ip for e in self.book.members(net.group_id)}
        free = [a for a in self.layout.host_slice(net.subnet) if a not in used]
        if wanted:
            ip = IPv4Address(wanted)
            if ip not in free:
                raise NoFreeAddress(f"{wanted} is not a free address of {net.subnet} here")
            return ip
        if not free:
            raise NoFreeAddress(f"network {net.group_id} ({net.subnet}) is full")
        return free[0]

    async def prepare(self, spec: LaunchSpec, node_url: str) -> NetworkSpec:
        """Give the instance an address in its group's network and bring that network up."""
        req = spec.network
        async with self.lock:
            group = req.network or "default"
            if group not in self.book.networks:
                self._create(group, req.owner_id or spec.owner_id, group, None, None)
            ep = self.book.endpoints.get(spec.instance_id)
            if ep is not None and ep.group_id == group:
                ep.node_url = node_url
            else:
                net = self.book.networks[group]
                ep = Endpoint(
                    instance_id=spec.instance_id,
                    group_id=group,
                    mac=req.mac or instance_mac(spec.instance_id),
                    ip=self._allocate_ip(net, req.private_ip),
                    node_url=node_url,
                )
                self.book.endpoints[spec.instance_id] = ep
            try:
                await self._sync()
            except Exception:
                self.book.endpoints.pop(spec.instance_id, None)
                raise
            return self._spec(ep)

    async def release(self, instance_id: str) -> None:
        async with self.lock:
            if self.book.endpoints.pop(instance_id, None) is not None:
                await self._sync()

    def instance_for_ip(self, ip: str) -> str | None:
        for ep in self.book.endpoints.values():
            if str(ep.ip) == ip:
                return ep.instance_id
        return None

    # -- groups, rules, addresses ------------------------------------------------------
    def _create(
        self, group_id: str, owner: str, name: str, vni: int | None, subnet: str | None
    ) -> Network:
        taken = {n.index for n in self.book.networks.values()}
        if subnet is not None:
            index = self.layout.index_of(IPv4Network(subnet))
            if index in taken:
                raise InvalidRequest(f"subnet {subnet} belongs to another network")
        else:
            free = (i for i in range(self.layout.subnet_count) if i not in taken)
            index = next(free, -1)
            if index < 0:
                raise NoFreeNetwork()
        vni = vni or self.cc.vni_base + index
        if not self.novlan and any(n.vni == vni for n in self.book.networks.values()):
            raise InvalidRequest(f"VNI {vni} belongs to another network")
        net = Network(group_id, owner, name, index, vni, self.layout.subnet(index))
        self.book.networks[group_id] = net
        return net

    async def ensure_network(
        self,
        group_id: str,
        owner_id: str = "",
        name: str = "",
        *,
        vni: int | None = None,
        subnet: str | None = None,
    ) -> NetworkInfo:
        """Create the group's network, or update its owner/name (idempotent)."""
        async with self.lock:
            net = self.book.networks.get(group_id)
            moved = net is not None and (
                (subnet is not None and IPv4Network(subnet) != net.subnet)
                or (vni is not None and vni != net.vni)
            )
            if net is not None and moved:
                if self.book.members(group_id):
                    raise NetworkInUse("cannot move a network that has instances")
                del self.book.networks[group_id]
                net = None
            if net is None:
                net = self._create(group_id, owner_id, name or group_id, vni, subnet)
            else:
                net.owner_id, net.name = owner_id or net.owner_id, name or net.name
            await self._sync()
            return self._info(net)

    async def delete_network(self, group_id: str) -> bool:
        async with self.lock:
            if group_id not in self.book.networks:
                return False
            if self.book.members(group_id):
                raise NetworkInUse()
            del self.book.networks[group_id]
            await self._sync()
            return True

    async def set_ingress_rules(self, group_id: str, rules: list[IngressRule]) -> NetworkInfo:
        async with self.lock:
            net = self.book.networks.get(group_id)
            if net is None:
                raise NetworkNotFound()
            net.rules = tuple(rules)
            await self._sync()
            return self._info(net)

    async def assign_address(self, instance_id: str, public_ip: str) -> AddressMapping:
        async with self.lock:
            pub = IPv4Address(public_ip)
            if pub not in self.pool:
                raise AddressNotInPool()
            ep = self.book.endpoints.get(instance_id)
            if ep is None:
                raise EndpointNotFound()
            holder = next((e for e in self.book.endpoints.values() if e.public_ip == pub), None)
            if holder is not None and holder is not ep:
                raise AddressInUse(f"{public_ip} is assigned to {holder.instance_id}")
            ep.public_ip = pub
            await self._sync()
            return AddressMapping(
                public_ip=public_ip, instance_id=instance_id, private_ip=str(ep.ip)
            )

    async def unassign_address(self, public_ip: str) -> AddressMapping:
        async with self.lock:
            pub = IPv4Address(public_ip)
            holder = next((e for e in self.book.endpoints.values() if e.public_ip == pub), None)
            if holder is None:
                return AddressMapping(public_ip=public_ip)
            holder.public_ip = None
            await self._sync()
            return AddressMapping(
                public_ip=public_ip, instance_id=holder.instance_id, private_ip=str(holder.ip)
            )

    def _info(self, net: Network) -> NetworkInfo:
        return NetworkInfo(
            group_id=net.group_id,
            owner_id=net.owner_id,
            name=net.name,
            vni=self._vni(net),
            subnet=str(net.subnet),
            gateway=str(self.layout.gateway(net.subnet)),
            bridge=bridge_name(self._vni(net)),
            rules=list(net.rules),
            instances=[
                NetworkInstance(
                    instance_id=e.instance_id,
                    mac=e.mac,
                    private_ip=str(e.ip),
                    public_ip=str(e.public_ip) if e.public_ip else None,
                    node_url=e.node_url,
                )
                for e in sorted(self.book.members(net.group_id), key=lambda e: e.ip)
            ],
        )

    def describe(self, group_ids: list[str]) -> DescribeNetworksResponse:
        nets = [n for n in self.book.networks.values() if not group_ids or n.group_id in group_ids]
        mapped = {e.public_ip: e for e in self.book.endpoints.values() if e.public_ip}
        return DescribeNetworksResponse(
            mode=self.mode,
            networks=[self._info(n) for n in sorted(nets, key=lambda n: n.index)],
            addresses=[
                AddressMapping(
                    public_ip=str(p),
                    instance_id=mapped[p].instance_id if p in mapped else None,
                    private_ip=str(mapped[p].ip) if p in mapped else None,
                )
                for p in self.pool
            ],
        )

    # -- rendering ----------------------------------------------------------------------
    def desired(self) -> tuple[HostState, dict[str, Dhcp]]:
        """The CC host's whole network state, from the networks and endpoints."""
        active = self.book.active()
        local = self.cc.vxlan_local or None
        bridges: dict[str, list[str]] = {}
        vxlans: dict[str, Vxlan] = {}
        dhcp_ranges: dict[str, list[DhcpRange]] = {}
        for net in active:
            vni = self._vni(net)
            br = bridge_name(vni)
            gw = self.layout.gateway(net.subnet)
            bridges.setdefault(br, []).append(f"{gw}/{net.subnet.prefixlen}")
            vx = Vxlan(vxlan_name(vni), vni, br, tuple(self._node_ips()), self.cc.vxlan_port, local)
            vxlans[vx.name] = vx
            if self.cc.cluster_peers:
                # Not bound to the cluster-side address: peers reach this CC
                # on whatever address faces them.
                px = Vxlan(
                    peer_vxlan_name(vni),
                    vni,
                    br,
                    tuple(sorted(self.cc.cluster_peers)),
                    self.cc.peer_vxlan_port,
                )
                vxlans[px.name] = px
            dhcp_ranges.setdefault(br, []).append(
                DhcpRange(f"net{net.index}", str(net.subnet), str(gw), VXLAN_MTU)
            )
        hosts: dict[str, list[DhcpHost]] = {}
        nat: list[tuple[IPv4Address, IPv4Address]] = []
        for ep in self.book.endpoints.values():
            br = bridge_name(self._vni(self.book.networks[ep.group_id]))
            hosts.setdefault(br, []).append(DhcpHost(ep.mac, str(ep.ip)))
            if ep.public_ip is not None:
                nat.append((ep.public_ip, ep.ip))
        plan = FirewallPlan(
            private_range=self.layout.private_range,
            networks=tuple(
                NetView(n.index, n.subnet, bridge_name(self._vni(n)), n.rules) for n in active
            ),
            group_subnets={g: n.subnet for g, n in self.book.networks.items()},
            nat=tuple(sorted(nat)),
            metadata_port=self.cc.metadata_port,
            public_interface=self.cc.public_interface or None,
            anti_spoof=not self.novlan,
        )
        public: tuple[HostAddresses, ...] = ()
        if self.cc.public_interface and self.pool:
            public = (
                HostAddresses(
                    self.cc.public_interface,
                    pool_cidrs(self.pool),
                    tuple(sorted(f"{p}/32" for p, _ in nat)),
                ),
            )
        state = HostState(
            link_prefixes=LINK_PREFIXES,
            bridges=tuple(Bridge(b, tuple(sorted(a))) for b, a in sorted(bridges.items())),
            vxlans=tuple(v for _, v in sorted(vxlans.items())),
            host_addresses=public,
            sysctls=(("net.ipv4.ip_forward", "1"),),
            iptables=managed_iptables(plan),
        )
        dhcp = {
            br: Dhcp(tuple(r), tuple(hosts.get(br, ()))) for br, r in sorted(dhcp_ranges.items())
        }
        return state, dhcp

    async def _sync(self) -> None:
        state, dhcp = self.desired()
        await self.plane.sync(state, dhcp)

    async def start(self) -> None:
        await self.plane.start()
        async with self.lock:
            await self._sync()

    async def stop(self) -> None:
        async with self.lock:
            state, _ = self.desired()
            await self.plane.stop(state)
