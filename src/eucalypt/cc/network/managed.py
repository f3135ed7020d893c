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

After a restart the CC adopts the endpoints its NCs report (``adopt``, before
``start``): each goes back into its group's network (the NetworkSpec names the
group; the subnet follows from the address, the VNI from the spec), created
on adoption if the CLC has not pushed it yet. Such a network is *unconfirmed*
until the CLC sends its rules again: ``DescribeNetworks`` leaves it out (so
the CLC's reconciliation re-pushes it) and it is never deleted meanwhile.
When the previous CC did not tear down (it was killed), ``start`` also keeps
what the host still has for the adopted endpoints: their groups' ingress
chains, verbatim, until the CLC's rules replace them, and their public
addresses, provisionally (not shown, so the CLC assigns them again; dropped
after ``adoption_grace`` seconds if it does not). The first sync is then a
no-op: running instances keep their network through a CC restart.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from eucalypt.cc.network.base import FoundEndpoint, instance_mac
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
from eucalypt.cc.network.firewall import (
    PREFIX,
    FirewallPlan,
    NetView,
    dnat_target,
    group_chain,
    managed_iptables,
)
from eucalypt.config import Config
from eucalypt.nc.api import NetworkSpec
from eucalypt.net import iptables
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
#: How long public addresses found on the host after a restart wait for the CLC.
ADOPTION_GRACE_SECONDS = 60.0
#: Group id of a network adopted from an endpoint whose spec does not name its group
#: (launched by an older CC): ``adopted:net<index>``, renamed when the CLC's
#: EnsureNetwork names the same subnet or (MANAGED) VNI.
PLACEHOLDER = "adopted:"


class _NotAdopted(Exception):
    pass


@dataclass
class Network:
    group_id: str
    owner_id: str
    name: str
    index: int
    vni: int
    subnet: IPv4Network
    rules: tuple[IngressRule, ...] = ()
    # False for a network adopted from its instances until the CLC pushes its rules.
    confirmed: bool = True
    # The ingress chain as the host had it at adoption, used until then.
    kept: tuple[str, ...] | None = None


@dataclass
class Endpoint:
    instance_id: str
    group_id: str
    mac: str
    ip: IPv4Address
    node_url: str
    public_ip: IPv4Address | None = None
    # The public address was found on the host after a restart, not assigned by the CLC.
    provisional: bool = False


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
        adoption_grace: float = ADOPTION_GRACE_SECONDS,
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
        # Syncs are coalesced: a sync asked for while one runs is covered by the
        # next one, which renders the book as it is by then (see _sync).
        self._sync_lock = asyncio.Lock()
        self._sync_asked = 0  # generation of the latest request
        self._sync_done = 0  # generation the host is known to match
        self._sync_failed: tuple[int, BaseException] | None = None
        self.syncs = 0  # data-plane syncs run (tests and benchmarks read it)
        self.started = False
        self.adoption_grace = adoption_grace
        self._expiry: asyncio.Task[None] | None = None
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
        # Validated from a dict: vni/vxlan_peers/vxlan_port/network_id are NetworkSpec
        # fields the NC reads or keeps (ignored by a NetworkSpec without them).
        return NetworkSpec.model_validate(
            {
                "mode": "bridge",
                "mac": ep.mac,
                "bridge": node.bridge,
                "private_ip": str(ep.ip),
                "vni": node.vni,
                "vxlan_peers": list(node.peers),
                "vxlan_port": node.port,
                "network_id": ep.group_id,
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
        """Give the instance an address in its group's network and bring that network up.

        The booking is made under the lock; the data-plane sync is awaited outside
        it, so that the launches of one RunInstances share one or two syncs.
        """
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
            async with self.lock:
                if self.book.endpoints.get(spec.instance_id) is ep:
                    del self.book.endpoints[spec.instance_id]
            raise
        return self._spec(ep)

    async def release(self, instance_id: str) -> None:
        async with self.lock:
            ep = self.book.endpoints.pop(instance_id, None)
            if ep is None:
                return
            net = self.book.networks.get(ep.group_id)
            if net is not None and not net.confirmed and not self.book.members(ep.group_id):
                del self.book.networks[ep.group_id]  # adopted, and the CLC never claimed it
            await self._sync()

    async def adopt(self, found: list[FoundEndpoint]) -> None:
        """Book the endpoints of instances an NC reports; apply them once started."""
        async with self.lock:
            nets = set(self.book.networks)
            added: list[str] = []
            for f in found:
                if f.instance_id in self.book.endpoints:
                    continue
                try:
                    self._adopt(f)
                except (_NotAdopted, ValueError) as exc:
                    log.warning(
                        "endpoint not adopted",
                        extra={
                            "instance_id": f.instance_id,
                            "node_url": f.node_url,
                            "private_ip": f.spec.private_ip,
                            "error": str(exc),
                        },
                    )
                    continue
                added.append(f.instance_id)
            if added:
                log.info("endpoints adopted", extra={"count": len(added), "started": self.started})
            if added and self.started:
                try:
                    await self._sync()
                except Exception:
                    # As if never adopted: the caller tries again later.
                    for iid in added:
                        del self.book.endpoints[iid]
                    for group in set(self.book.networks) - nets:
                        del self.book.networks[group]
                    raise

    def _adopt(self, f: FoundEndpoint) -> None:
        spec = f.spec
        if spec.mode != "bridge" or not spec.private_ip:
            raise _NotAdopted("the endpoint has no private address on a bridge")
        ip = IPv4Address(spec.private_ip)
        subnet = IPv4Network((ip, self.layout.subnet_prefix), strict=False)
        index = self.layout.index_of(subnet)
        if ip not in self.layout.host_slice(subnet):
            raise _NotAdopted(f"{ip} is not an instance address of this cluster")
        vni = self.cc.vni_base + index if self.novlan else spec.vni
        if vni is None:
            raise _NotAdopted("the endpoint has no VNI")
        bridge = bridge_name(self.cc.vni_base if self.novlan else vni)
        if spec.bridge != bridge:
            raise _NotAdopted(f"bridge {spec.bridge} is not this network's ({bridge})")
        group = spec.network_id or f"{PLACEHOLDER}net{index}"
        net = self.book.networks.get(group)
        if net is None:
            other = next(
                (
                    n
                    for n in self.book.networks.values()
                    if n.index == index or (not self.novlan and n.vni == vni)
                ),
                None,
            )
            if other is not None:
                raise _NotAdopted(f"its subnet or VNI belongs to network {other.group_id}")
            net = Network(group, f.owner_id, group, index, vni, subnet, confirmed=False)
            self.book.networks[group] = net
        elif net.subnet != subnet or (not self.novlan and net.vni != vni):
            raise _NotAdopted(f"network {group} is {net.subnet} (VNI {net.vni}) here")
        holder = next((e for e in self.book.members(group) if e.ip == ip), None)
        if holder is not None:
            raise _NotAdopted(f"{ip} belongs to {holder.instance_id}")
        self.book.endpoints[f.instance_id] = Endpoint(
            instance_id=f.instance_id,
            group_id=group,
            mac=spec.mac,
            ip=ip,
            node_url=f.node_url,
        )

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
            # The CLC re-sends a group's VNI without its subnet (after a restart, or to
            # another cluster): subnet vni - vni_base, as first allocated, if free.
            preferred = vni - self.cc.vni_base if vni is not None and not self.novlan else -1
            free = (i for i in range(self.layout.subnet_count) if i not in taken)
            if 0 <= preferred < self.layout.subnet_count and preferred not in taken:
                index = preferred
            else:
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
            net = self.book.networks.get(group_id) or self._claim_placeholder(group_id, vni, subnet)
            # MANAGED-NOVLAN: every network is on vni_base, whatever the CLC says.
            moved = net is not None and (
                (subnet is not None and IPv4Network(subnet) != net.subnet)
                or (vni is not None and not self.novlan and vni != net.vni)
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

    def _claim_placeholder(
        self, group_id: str, vni: int | None, subnet: str | None
    ) -> Network | None:
        """An adopted network without a group id that is this group's: renamed to it."""
        for net in list(self.book.networks.values()):
            if not net.group_id.startswith(PLACEHOLDER):
                continue
            if subnet is not None:
                same = IPv4Network(subnet) == net.subnet
            else:
                same = vni is not None and not self.novlan and vni == net.vni
            if not same:
                continue
            old = net.group_id
            del self.book.networks[old]
            net.group_id = net.name = group_id
            self.book.networks[group_id] = net
            for ep in self.book.members(old):
                ep.group_id = group_id
            log.info("adopted network named", extra={"group_id": group_id, "was": old})
            return net
        return None

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
            net.kept = None
            net.confirmed = True
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
                if not holder.provisional:
                    raise AddressInUse(f"{public_ip} is assigned to {holder.instance_id}")
                holder.public_ip, holder.provisional = None, False  # the CLC knows better
            ep.public_ip, ep.provisional = pub, False
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
            holder.public_ip, holder.provisional = None, False
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
                    public_ip=str(e.public_ip) if e.public_ip and not e.provisional else None,
                    node_url=e.node_url,
                )
                for e in sorted(self.book.members(net.group_id), key=lambda e: e.ip)
            ],
        )

    def describe(self, group_ids: list[str]) -> DescribeNetworksResponse:
        """What the CLC has pushed and the CC enforces: networks adopted after a restart
        and public addresses kept from the host are left out until the CLC confirms them
        (so its reconciliation pushes them again)."""
        nets = [
            n
            for n in self.book.networks.values()
            if n.confirmed and (not group_ids or n.group_id in group_ids)
        ]
        eps = self.book.endpoints.values()
        mapped = {e.public_ip: e for e in eps if e.public_ip and not e.provisional}
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
                NetView(n.index, n.subnet, bridge_name(self._vni(n)), n.rules, n.kept)
                for n in active
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
        """Make the host match the book as it is now (or as it is later).

        Requests made while a sync runs wait for it, and then the first of them
        runs one sync for all: it renders the book after every one of their
        changes, so each caller returns once the host has its change. A failed
        sync fails every caller it was to cover.
        """
        self._sync_asked += 1
        mine = self._sync_asked
        async with self._sync_lock:
            if self._sync_done >= mine:
                return
            failed = self._sync_failed
            if failed is not None and failed[0] >= mine:
                raise failed[1]
            covers = self._sync_asked
            state, dhcp = self.desired()
            self.syncs += 1
            try:
                await self.plane.sync(state, dhcp)
            except Exception as exc:
                self._sync_failed = (covers, exc)
                raise
            self._sync_done = covers

    async def _keep_host_state(self) -> None:
        """Keep what a killed CC left on the host for the adopted endpoints (see above)."""
        tables = await iptables.read(self.plane.runner, PREFIX, self.plane.netns)
        filters = tables["filter"].chains if "filter" in tables else {}
        for net in self.book.networks.values():
            chain = filters.get(group_chain(net.index))
            if not net.confirmed and chain is not None:
                net.kept = tuple(chain)
        nat = tables["nat"].chains if "nat" in tables else {}
        by_ip = {e.ip: e for e in self.book.endpoints.values()}
        for line in nat.get(f"{PREFIX}OUTPUT", []):
            found = dnat_target(line)
            if found is None:
                continue
            pub, priv = found
            ep = by_ip.get(priv)
            taken = any(e.public_ip == pub for e in self.book.endpoints.values())
            if ep is not None and ep.public_ip is None and pub in self.pool and not taken:
                ep.public_ip, ep.provisional = pub, True
        kept = [n.group_id for n in self.book.networks.values() if n.kept is not None]
        public = [str(e.public_ip) for e in self.book.endpoints.values() if e.provisional]
        if kept or public:
            log.info("host state kept", extra={"groups": kept, "public_ips": public})

    async def _expire_provisional(self) -> None:
        await asyncio.sleep(self.adoption_grace)
        async with self.lock:
            stale = [e for e in self.book.endpoints.values() if e.provisional]
            for ep in stale:
                log.warning(
                    "public address not confirmed by the CLC: removed",
                    extra={"instance_id": ep.instance_id, "public_ip": str(ep.public_ip)},
                )
                ep.public_ip, ep.provisional = None, False
            if stale:
                try:
                    await self._sync()
                except Exception:
                    log.exception("network sync failed")

    async def start(self) -> None:
        """Bring the host to the desired state: adopted endpoints (``adopt``) included."""
        await self.plane.start()
        async with self.lock:
            if self.book.endpoints:
                await self._keep_host_state()
            await self._sync()
            self.started = True
            if any(e.provisional for e in self.book.endpoints.values()):
                self._expiry = asyncio.create_task(self._expire_provisional())

    async def stop(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
            self._expiry = None
        async with self.lock:
            self.started = False
            state, _ = self.desired()
            await self.plane.stop(state)
