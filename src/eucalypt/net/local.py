"""The single-host data plane: one network namespace, one veth from the host into it.

On a developer's or CI machine the whole data plane (the CC's bridges,
iptables and dnsmasq, the NC's taps and VMs, the public addresses) lives in
one network namespace, ``eucalypt`` by default; no instance traffic leaves
it. The host reaches the instances' public addresses through a veth pair::

    host namespace                          namespace "eucalypt"
    eucalypt0 169.254.123.1/30  <--veth-->  eupub0 169.254.123.2/30 (+ public /32s)
    route <pool> via 169.254.123.2          DNAT public -> private, ip_forward=1

:func:`ensure_local_dataplane` makes that exist (the namespace with its
loopback up, the veth, the link addresses, a host route per public pool CIDR
and ``net.ipv4.ip_forward=1`` *inside* the namespace — the host's own
sysctls are never touched); it is idempotent: a second call runs only
read-only commands. :func:`teardown_local_dataplane` deletes the veth (its
routes go with it) and the namespace.

Choices that keep this from touching the host's real networks:

- The link network is ``169.254.123.0/30`` (IPv4 link-local, RFC 3927):
  never routed, never handed out by a DHCP server, not the
  ``169.254.169.254`` of cloud metadata services and not the
  ``100.64.0.0/10`` that CGNAT and Tailscale use. Only a ``169.254.0.0/16``
  zeroconf route on another device may contain it (our /30 is more specific).
- The default public pool (:func:`local_network_defaults`) is
  ``198.51.100.0/26`` from TEST-NET-2 (RFC 5737, documentation only).
- Before adding anything, the host's addresses and routes are read: a pool or
  link network that overlaps a network of another host interface is refused
  (:class:`UplinkConflict`), never hijacked.
- The namespace gets no default route: instances reach the host's end of the
  veth (and answer connections from it), nothing beyond. The host does not
  forward for them (its ``ip_forward`` is left as it is).
- The host route carries ``src 169.254.123.1``, so the host's connections to
  public addresses come from an address the namespace can answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import logging
import os
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from eucalypt.config import Config
from eucalypt.net.links import LinkInfo, read_links
from eucalypt.net.netns import NETNS_DIR, create_netns
from eucalypt.net.runner import CommandError, Runner

log = logging.getLogger("eucalypt.net.local")

DEFAULT_NETNS = "eucalypt"
HOST_END = "eucalypt0"
INSIDE_END = "eupub0"
LINK_NET = "169.254.123.0/30"
DEFAULT_PUBLIC_POOL = "198.51.100.0/26"
RUNTIME_ROOT = Path("/run/eucalypt")
IFNAMSIZ = 15
_LINK_LOCAL = IPv4Network("169.254.0.0/16")


class UplinkConflict(RuntimeError):
    """The pool or the link network overlaps a network the host already uses."""


@dataclass(frozen=True)
class LocalUplink:
    """The namespace, the veth pair between it and the host, and what the host routes into it.

    The host end gets the first address of ``link_net``, the inside end the
    second; every CIDR of ``public_cidrs`` is routed from the host via the
    inside end.
    """

    netns: str = DEFAULT_NETNS
    host_end: str = HOST_END
    inside_end: str = INSIDE_END
    link_net: str = LINK_NET
    public_cidrs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in (self.host_end, self.inside_end):
            if not name or len(name) > IFNAMSIZ or "/" in name or " " in name:
                raise ValueError(f"bad interface name {name!r}")
        if not self.netns or "/" in self.netns:
            raise ValueError(f"bad namespace name {self.netns!r}")
        net = self.network
        if net.num_addresses < 4 and net.prefixlen != 31:
            raise ValueError(f"link network {net} has fewer than two host addresses")
        for cidr in self.pools:
            if cidr.overlaps(net):
                raise ValueError(f"public pool {cidr} overlaps the link network {net}")

    @property
    def network(self) -> IPv4Network:
        return IPv4Network(self.link_net, strict=True)

    @property
    def pools(self) -> tuple[IPv4Network, ...]:
        return tuple(IPv4Network(c, strict=False) for c in self.public_cidrs)

    def _host_ip(self, n: int) -> IPv4Interface:
        net = self.network
        hosts = list(net) if net.prefixlen >= 31 else list(net.hosts())[:2]
        return IPv4Interface(f"{hosts[n]}/{net.prefixlen}")

    @property
    def host_address(self) -> IPv4Interface:
        """The host end's address, e.g. ``169.254.123.1/30``."""
        return self._host_ip(0)

    @property
    def inside_address(self) -> IPv4Interface:
        """The inside end's address, e.g. ``169.254.123.2/30`` (the host's next hop)."""
        return self._host_ip(1)


# --------------------------------------------------------------------------- config


def pool_cidrs(entries: list[str]) -> tuple[str, ...]:
    """``cc.public_ips`` (IPs, CIDRs, ``first-last`` ranges) as the fewest CIDRs covering them."""
    nets: list[IPv4Network] = []
    for entry in (e.strip() for e in entries):
        if not entry:
            continue
        if "-" in entry:
            first, last = (IPv4Address(p.strip()) for p in entry.split("-", 1))
            nets.extend(ipaddress.summarize_address_range(first, last))
        else:
            nets.append(IPv4Network(entry, strict=False))
    return tuple(str(n) for n in ipaddress.collapse_addresses(nets))


def uplink_from_config(config: Config) -> LocalUplink:
    """The CC's local uplink: ``cc.network_netns``, ``cc.public_interface`` (inside end),
    ``cc.local_uplink_interface`` (host end), ``cc.local_uplink_net``, ``cc.public_ips``."""
    cc = config.cc
    if not cc.network_netns:
        raise ValueError("cc.local_uplink needs cc.network_netns")
    return LocalUplink(
        netns=cc.network_netns,
        host_end=cc.local_uplink_interface or HOST_END,
        inside_end=cc.public_interface or INSIDE_END,
        link_net=cc.local_uplink_net or LINK_NET,
        public_cidrs=pool_cidrs(cc.public_ips),
    )


def runtime_state_dir(data_dir: Path) -> Path:
    """``/run/eucalypt/<12 hex of sha256(data dir)>/net``: dnsmasq's files for a root install.

    dnsmasq drops to ``nobody`` and rereads its hosts file on SIGHUP, so its
    directory must be reachable by others; ``/root/.eucalypt`` is not (0700).
    Runtime files (pid, hosts, leases; all rebuilt by the CC) belong in
    ``/run`` anyway. The hash keeps two installs on one host apart.
    """
    digest = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:12]
    return RUNTIME_ROOT / digest / "net"


def local_network_defaults(config: Config) -> None:
    """Set ``config`` up as a single-host MANAGED cloud whose data plane is in one namespace.

    For a fresh install as root: the CC's and the NC's data plane in
    namespace ``eucalypt``, the host reaching the public pool
    ``198.51.100.0/26`` through the veth ``eucalypt0``/``eupub0``. The NC is
    reached on loopback, so no VXLAN peers are configured (the CC and the NC
    share the bridges ``eubr<vni>``; see ``eucalypt.net.node``).
    """
    cc, nc = config.cc, config.nc
    cc.network_mode = "MANAGED"
    cc.network_netns = DEFAULT_NETNS
    cc.local_uplink = True
    cc.local_uplink_interface = HOST_END
    cc.local_uplink_net = LINK_NET
    cc.public_interface = INSIDE_END
    cc.public_ips = [DEFAULT_PUBLIC_POOL]
    # One host: no underlay, no VXLAN peers (node URLs on loopback give none).
    cc.vxlan_local = ""
    cc.node_underlay = {}
    cc.cluster_peers = []
    if not cc.network_state_dir and os.geteuid() == 0:
        cc.network_state_dir = str(runtime_state_dir(config.data_dir))
    nc.netns = DEFAULT_NETNS


# --------------------------------------------------------------------------- the namespace


def netns_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


async def ensure_netns(runner: Runner, name: str) -> bool:
    """Create namespace ``name`` (loopback up) unless it exists; whether it was created.

    Safe against a concurrent creator (the CC and the NC may both start).
    """
    if netns_exists(name):
        return False
    try:
        await create_netns(runner, name)
    except CommandError:
        if not netns_exists(name):
            raise
        return False
    log.info("network namespace created", extra={"netns": name})
    return True


# --------------------------------------------------------------------------- host checks


def _route_net(dst: str) -> IPv4Network | None:
    if dst == "default":
        return None
    try:
        return IPv4Network(dst, strict=False)
    except ValueError:
        return None


async def _host_routes(runner: Runner, dev: str | None = None) -> list[dict[str, Any]]:
    argv = ["ip", "-j", "-4", "route", "show"]
    if dev is not None:
        argv += ["dev", dev]
    res = await runner.run(argv, readonly=True)
    routes: list[dict[str, Any]] = json.loads(res.stdout or "[]")
    return routes


async def check_host_conflicts(
    runner: Runner, spec: LocalUplink, links: dict[str, LinkInfo]
) -> None:
    """Refuse pools or a link network that overlap what another host interface uses."""
    ours = (spec.network, *spec.pools)
    for name, info in links.items():
        if name == spec.host_end:
            continue
        for addr in info.addresses:
            iface = IPv4Interface(addr)
            for mine in ours:
                if not iface.network.overlaps(mine):
                    continue
                zeroconf = mine == spec.network and iface.network == _LINK_LOCAL
                if zeroconf and iface.ip not in mine:
                    continue  # a zeroconf address elsewhere in 169.254/16
                raise UplinkConflict(
                    f"{mine} overlaps {addr} on the host's {name}: choose another "
                    "public pool (cc.public_ips) or link network (cc.local_uplink_net)"
                )
    for route in await _host_routes(runner):
        if route.get("dev") == spec.host_end:
            continue
        net = _route_net(str(route.get("dst", "")))
        if net is None:
            continue
        for mine in ours:
            if not net.overlaps(mine):
                continue
            if mine == spec.network and net == _LINK_LOCAL:
                continue  # a zeroconf route: our /30 is more specific and link-local anyway
            raise UplinkConflict(
                f"{mine} overlaps the host's route to {net} via {route.get('dev')}: choose "
                "another public pool (cc.public_ips) or link network (cc.local_uplink_net)"
            )


# --------------------------------------------------------------------------- ensure / teardown


async def _ensure_veth(
    runner: Runner, spec: LocalUplink, host: dict[str, LinkInfo], inside: dict[str, LinkInfo]
) -> tuple[LinkInfo | None, LinkInfo | None]:
    he, ie = host.get(spec.host_end), inside.get(spec.inside_end)
    if he is not None and he.kind != "veth":
        raise UplinkConflict(f"host interface {spec.host_end} exists and is not a veth")
    if ie is not None and ie.kind != "veth":
        raise UplinkConflict(f"{spec.inside_end} in {spec.netns} exists and is not a veth")
    if he is not None and ie is None:
        # Our name, but its peer is not in the namespace (a namespace deleted and
        # recreated under it): replace it.
        await runner.run(["ip", "link", "del", spec.host_end])
        he = None
    if ie is not None and he is None:
        await runner.run(["ip", "link", "del", spec.inside_end], netns=spec.netns)
        ie = None
    if he is None:
        argv = ["ip", "link", "add", spec.host_end, "type", "veth"]
        await runner.run([*argv, "peer", "name", spec.inside_end, "netns", spec.netns])
        log.info(
            "uplink veth created",
            extra={"host_end": spec.host_end, "inside_end": spec.inside_end, "netns": spec.netns},
        )
    return he, ie


def _in_pools(addr: str, pools: tuple[IPv4Network, ...]) -> bool:
    ip = IPv4Interface(addr)
    return ip.network.prefixlen == 32 and any(ip.ip in p for p in pools)


async def _ensure_addresses(
    runner: Runner, spec: LocalUplink, he: LinkInfo | None, ie: LinkInfo | None
) -> None:
    want_host, want_inside = str(spec.host_address), str(spec.inside_address)
    have_host = he.addresses if he else set()
    for addr in sorted(have_host - {want_host}):  # the host end is wholly ours
        await runner.run(["ip", "addr", "del", addr, "dev", spec.host_end])
    if want_host not in have_host:
        await runner.run(["ip", "addr", "add", want_host, "dev", spec.host_end])
    # The inside end also carries the public /32s of mapped instances (the CC's).
    have_inside = ie.addresses if ie else set()
    stale = {a for a in have_inside if a != want_inside and not _in_pools(a, spec.pools)}
    for addr in sorted(stale):
        await runner.run(["ip", "addr", "del", addr, "dev", spec.inside_end], netns=spec.netns)
    if want_inside not in have_inside:
        await runner.run(
            ["ip", "addr", "add", want_inside, "dev", spec.inside_end], netns=spec.netns
        )
    for dev, info, netns in (
        (spec.host_end, he, None),
        (spec.inside_end, ie, spec.netns),
    ):
        if info is None or not info.up:
            await runner.run(["ip", "link", "set", dev, "up"], netns=netns)


def _route_key(route: dict[str, Any]) -> tuple[str, str | None, str | None]:
    net = _route_net(str(route.get("dst", "")))
    return (str(net) if net else str(route.get("dst")), route.get("gateway"), route.get("prefsrc"))


async def _ensure_routes(runner: Runner, spec: LocalUplink) -> None:
    via, src = str(spec.inside_address.ip), str(spec.host_address.ip)
    want = {str(p): (str(p), via, src) for p in spec.pools}
    have: dict[str, tuple[str, str | None, str | None]] = {}
    for route in await _host_routes(runner, spec.host_end):
        if route.get("protocol") == "kernel":
            continue  # the link network's own route
        key = _route_key(route)
        have[key[0]] = key
    for dst in sorted(set(have) - set(want)):
        await runner.run(["ip", "route", "del", dst, "dev", spec.host_end])
    for dst, key in sorted(want.items()):
        if have.get(dst) != key:
            await runner.run(
                ["ip", "route", "replace", dst, "via", via, "dev", spec.host_end, "src", src]
            )


async def _ensure_forwarding(runner: Runner, netns: str) -> None:
    key = "net.ipv4.ip_forward"
    have = await runner.run(["sysctl", "-n", key], netns=netns, readonly=True)
    if have.stdout.strip() != "1":
        await runner.run(["sysctl", "-q", "-w", f"{key}=1"], netns=netns)


async def ensure_local_dataplane(runner: Runner, spec: LocalUplink) -> None:
    """Make the namespace, the veth, its addresses, the host routes and forwarding exist.

    Idempotent: when everything is in place it runs only read-only commands.
    Raises :class:`UplinkConflict` rather than touch a network the host uses.
    """
    host = await read_links(runner)
    await check_host_conflicts(runner, spec, host)  # before any change
    await ensure_netns(runner, spec.netns)
    inside = await read_links(runner, spec.netns)
    lo = inside.get("lo")
    if lo is not None and not lo.up:
        await runner.run(["ip", "link", "set", "lo", "up"], netns=spec.netns)
    he, ie = await _ensure_veth(runner, spec, host, inside)
    await _ensure_addresses(runner, spec, he, ie)
    await _ensure_routes(runner, spec)
    await _ensure_forwarding(runner, spec.netns)


async def teardown_local_dataplane(runner: Runner, spec: LocalUplink) -> None:
    """Delete the veth (its routes go with it) and the namespace; succeeds when they are gone.

    Processes still inside the namespace (dnsmasq, QEMU) keep it alive
    unnamed: stop the CC and the NC first.
    """
    host = await read_links(runner)
    he = host.get(spec.host_end)
    if he is not None and he.kind == "veth":
        await runner.run(["ip", "link", "del", spec.host_end])
    if netns_exists(spec.netns):
        pids = await runner.run(["ip", "netns", "pids", spec.netns], readonly=True, check=False)
        if pids.stdout.split():
            log.warning(
                "processes still in the namespace",
                extra={"netns": spec.netns, "pids": pids.stdout.split()},
            )
        with contextlib.suppress(CommandError):
            await runner.run(["ip", "netns", "del", spec.netns])
